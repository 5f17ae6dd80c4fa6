package seccomprules

import "testing"

// BenchmarkJudgeDefault is the cost of one Judge call on a profile the size
// of Docker's default: the policy pays it per apply, the audit per
// container with a custom profile per audit round.
func BenchmarkJudgeDefault(b *testing.B) {
	data := mustJSON(b, mustDefault(b))
	for b.Loop() {
		if _, err := Judge(data, nil); err != nil {
			b.Fatal(err)
		}
	}
}
