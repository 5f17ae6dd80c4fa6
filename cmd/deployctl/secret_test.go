package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

func TestReadSecretValue(t *testing.T) {
	got, err := readSecretValue("-", strings.NewReader("from-stdin"))
	if err != nil || string(got) != "from-stdin" {
		t.Fatalf("stdin: %q %v", got, err)
	}
	file := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(file, bytes.Repeat([]byte("x"), wire.MaxSecretSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecretValue(file, nil); err == nil || !strings.Contains(err.Error(), "500 KiB") {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := readSecretValue(file+".missing", nil); err == nil {
		t.Fatal("a missing file was read")
	}
}

func TestPrintSecretShowsUsesNotValues(t *testing.T) {
	var b bytes.Buffer
	printSecret(&b, wire.SecretInfo{Name: "db", Latest: 2, Versions: []wire.SecretVersionInfo{{Version: 1, Size: 5}, {Version: 2, Size: 7}},
		Uses: []state.SecretUse{{Service: "web", Revision: 3, Version: 2, Holds: "current"}, {Service: "web", Revision: 1, Version: 1}}})
	out := b.String()
	for _, want := range []string{"secret db, latest version 2", "web      3         2        current", "web      1         1        -"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printOutdatedSecrets(&b, wire.OutdatedReport{Services: []wire.OutdatedService{{Service: "web", Secrets: []wire.OutdatedSecret{{Name: "db", Pinned: 1, Latest: 2}}}}})
	if !strings.Contains(b.String(), "web: secret db version 1 pinned, 2 is the latest") {
		t.Errorf("outdated: %s", b.String())
	}
}
