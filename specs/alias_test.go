package specs

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// aliasFlood is the review's shape (issue 16, finding 10): a 30 KB string
// anchored once and referenced n times from a list the spec reads.
func aliasFlood(n int) string {
	var b strings.Builder
	b.WriteString(minimalYAML)
	b.WriteString("env: {BIG: &big " + strings.Repeat("x", 30_000) + "}\ncommand: [")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("*big")
	}
	b.WriteString("]\n")
	return b.String()
}

// billionLaughs nests anchors: each level is a list of ten aliases to the
// level below, so level k stands for 10^k copies of "lol".
func billionLaughs(levels int, use string) string {
	var b strings.Builder
	b.WriteString(minimalYAML)
	b.WriteString("labels:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for k := 1; k <= levels; k++ {
		fmt.Fprintf(&b, "  l%d: &l%d [%s]\n", k, k, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", k-1), 10), ", "))
	}
	b.WriteString(use)
	return b.String()
}

func TestParseRefusesAliasExpansion(t *testing.T) {
	cases := []struct {
		name, doc, field string
		line             int
		want             string
	}{
		// 4,000 references to 30 KB: 120 MB once copied. The limit is
		// crossed at the 34th reference (the anchor and 34 copies of
		// 30,001 bytes > 1 MiB).
		{"anchor referenced 4,000 times", aliasFlood(4000), "command[33]", 4, "more than 1048576 bytes"},
		// Few bytes, many aliases: 2,000 references to a one-letter anchor.
		{"many small aliases", minimalYAML + "env: {A: &a x}\ncommand: [" + strings.TrimSuffix(strings.Repeat("*a, ", 2000), ", ") + "]\n",
			"command[1000]", 4, "more than 1000 aliases"},
		// 10^9 copies of "lol" from a 1 KB document; refused where the
		// definitions cross the limit (l1 holds 10 aliases, l2 110, each *l2
		// in l3 111: the 8th), before the spec reads anything.
		{"nested billion laughs", billionLaughs(9, "command: *l9\n"), "labels.l3[7]", 7, "more than 1000 aliases"},
		{"alias inside its own anchor", minimalYAML + "command: &c [x, *c]\n", "command[1]", 3, "never ends"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			spec, err := Parse([]byte(c.doc))
			runtime.ReadMemStats(&after)
			var verr *ValidationError
			if spec != nil || !errors.As(err, &verr) || !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Parse = %v, %v; want a *ValidationError", spec, err)
			}
			if len(verr.Problems) != 1 {
				t.Fatalf("problems %v, want exactly the expansion", verr.Problems)
			}
			p := verr.Problems[0]
			if p.Field != c.field || p.Line != c.line || !strings.Contains(p.Message, c.want) {
				t.Fatalf("problem %+v, want field %s line %d mentioning %q", p, c.field, c.line, c.want)
			}
			if !strings.Contains(p.Message, "never ends") && !strings.Contains(p.Message, "write the values out") {
				t.Errorf("problem %q does not say how to fix it", p.Message)
			}
			// Refused before anything was expanded: the expansions weigh
			// 120 MB and 3 GB; parsing the document itself costs a few MB.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
				t.Errorf("Parse allocated %d MB: the aliases were expanded", grew>>20)
			}
		})
	}
}

func TestParseKeepsReasonableAliases(t *testing.T) {
	// A shared value used a few times, and a level of nesting, stay fine.
	doc := minimalYAML + "env: {A: &v " + strings.Repeat("v", 1000) + ", B: *v, C: *v}\ncommand: &c [sh, -c, *v]\nentrypoint: *c\n"
	spec, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Env["C"] != strings.Repeat("v", 1000) || len(spec.Entrypoint) != 3 {
		t.Fatalf("aliases not read: env %d entries, entrypoint %v", len(spec.Env), len(spec.Entrypoint))
	}
	// Just under the alias limit.
	many := minimalYAML + "env: {A: &a x}\ncommand: [" + strings.TrimSuffix(strings.Repeat("*a, ", MaxAliasExpansions), ", ") + "]\n"
	if _, err := Parse([]byte(many)); err != nil {
		t.Fatalf("%d aliases refused: %v", MaxAliasExpansions, err)
	}
}
