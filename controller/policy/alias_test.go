package policy

import (
	"errors"
	"strings"
	"testing"
)

// The policy is read with the spec's YAML reader, so the same expansion
// limits hold (issue 16, finding 10).
func TestParseRefusesAliasExpansion(t *testing.T) {
	var b strings.Builder
	b.WriteString("registries: [&r " + strings.Repeat("r", 30_000) + ".example.com")
	for range 4000 {
		b.WriteString(", *r")
	}
	b.WriteString("]\n")
	nested := "volume_prefixes: &l0 [/a, /a, /a, /a, /a, /a, /a, /a, /a, /a]\n" +
		"registries: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\n" +
		"allow_capabilities: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\n" +
		"trust: [{match: x, keys: [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]}]\n"
	for name, doc := range map[string]string{"anchor referenced 4,000 times": b.String(), "nested": nested} {
		p, err := Parse([]byte(doc))
		var verr *ValidationError
		if p != nil || !errors.As(err, &verr) || !errors.Is(err, ErrInvalidPolicy) {
			t.Fatalf("%s: Parse = %v, %v; want a *ValidationError", name, p, err)
		}
		if len(verr.Problems) != 1 || verr.Problems[0].Line == 0 || !strings.Contains(verr.Problems[0].Message, "the policy expands to more than") {
			t.Errorf("%s: problems %v, want one naming the expansion and its line", name, verr.Problems)
		}
	}
}
