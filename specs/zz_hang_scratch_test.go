package specs

import (
	"fmt"
	"os"
	"testing"
)

func FuzzHangScratch(f *testing.F) {
	f.Add([]byte(minimalYAML))
	f.Add([]byte(fullYAML))
	for _, c := range invalidCases() {
		f.Add([]byte(c.document()))
	}
	path := fmt.Sprintf("/tmp/fuzzlast.%d", os.Getpid())
	f.Fuzz(func(t *testing.T, data []byte) {
		os.WriteFile(path, data, 0o644)
		Parse(data)
	})
}
