package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"10m":                  now.Add(-10 * time.Minute),
		"2026-12-05T19:00:00Z": now.Add(-time.Hour),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("--since %q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "2026-12-05"} {
		if _, err := parseSince(bad, now); err == nil || !strings.Contains(err.Error(), "--since") {
			t.Errorf("--since %q: %v, want an error naming --since", bad, err)
		}
	}
}

func TestPrintLogLine(t *testing.T) {
	var out, errw bytes.Buffer
	at := time.Date(2026, 12, 5, 20, 0, 0, 5, time.UTC)
	lines := []wire.LogLine{
		{Time: at, Replica: "0123456789abcdef", Host: "h1", Stream: "stdout", Text: "hello"},
		{Host: "h2", Error: "host h2: cannot reach its agent"},
		{Replica: "0123456789abcdef", Host: "h1", End: true},
	}
	for _, l := range lines {
		if err := printLogLine(&out, &errw, l, true); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != "2026-12-05T20:00:00.000000005Z 0123456789ab@h1 | hello\n" {
		t.Fatalf("stdout %q", out.String())
	}
	if errw.String() != "deployctl: host h2: cannot reach its agent\n" {
		t.Fatalf("stderr %q", errw.String())
	}
}

func TestPrintPsListsEndedUnderTheirSlot(t *testing.T) {
	now := time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	printPs(&out, wire.PsView{Service: "web", Replicas: []wire.ReplicaRow{
		{ID: "aaaaaaaaaaaaaaaa", Slot: 0, Revision: 3, Host: "h1", Desired: "running", State: "healthy", Health: "healthy", Since: now.Add(-time.Minute)},
		{ID: "bbbbbbbbbbbbbbbb", Slot: 0, Revision: 2, Host: "h2", Desired: "stopped", State: "stopped", Error: "exited with code 3", Ended: true},
	}}, now)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "0 ") || !strings.Contains(lines[1], "1m0s ago") ||
		!strings.Contains(lines[2], `\_ bbbbbbbbbbbb`) || !strings.Contains(lines[2], "exited with code 3") || strings.HasPrefix(lines[2], "0") {
		t.Fatalf("ps table:\n%s", out.String())
	}
}
