package audit_test

import (
	"os"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/audit"
)

// TestDocsTableCoversEveryControl keeps docs/cis.md honest: one row per
// control, with its title and every Engine API field its check reads.
func TestDocsTableCoversEveryControl(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cis.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	if !strings.Contains(text, audit.Benchmark) {
		t.Errorf("docs/cis.md does not name %q", audit.Benchmark)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "5.") {
			continue
		}
		id := strings.TrimSpace(cells[1])
		if _, dup := rows[id]; dup {
			t.Errorf("docs/cis.md has two rows for %s", id)
		}
		rows[id] = strings.ReplaceAll(line, "`", "")
	}
	if len(rows) != len(audit.Controls()) {
		t.Errorf("docs/cis.md has %d rows, want %d", len(rows), len(audit.Controls()))
	}
	for _, c := range audit.Controls() {
		row, ok := rows[c.ID]
		if !ok {
			t.Errorf("docs/cis.md has no row for %s", c.ID)
			continue
		}
		if !strings.Contains(row, c.Title) {
			t.Errorf("row %s lacks the title %q", c.ID, c.Title)
		}
		for _, field := range strings.Split(c.Field, ", ") {
			if !strings.Contains(row, field) {
				t.Errorf("row %s lacks the field %s", c.ID, field)
			}
		}
	}
}
