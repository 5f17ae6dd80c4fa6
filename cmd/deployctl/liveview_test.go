package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// regexpSGR matches a colour escape.
var regexpSGR = regexp.MustCompile("\x1b\\[[0-9;]*m")

// midRollout is revision 2 replacing revision 1 on three slots: slot 0
// done, slot 1 starting beside its old replica, slot 2 not yet begun.
func midRollout() liveSnapshot {
	slot := func(n int) *int { return &n }
	at := time.Date(2026, 12, 6, 1, 2, 3, 0, time.Local)
	return liveSnapshot{
		Service: "web", Following: 2, Elapsed: 75 * time.Second,
		From: map[int]int{0: 1, 1: 1, 2: 1},
		Status: wire.ServiceStatus{
			Service: "web", Revision: 2, State: state.ServiceDeploying, RevisionState: state.RevisionInProgress,
			Replicas: wire.ReplicaCounts{Desired: 3, Running: 4, Healthy: 1},
			Rollout:  &state.Rollout{Revision: 2, From: 1},
			Instances: []wire.InstanceView{
				{ID: "aaaaaaaaaaaaaaaa", Slot: 0, Revision: 2, Current: true, Host: "n1", Desired: "running", State: "healthy"},
				{ID: "bbbbbbbbbbbbbbbb", Slot: 1, Revision: 1, Host: "n2", Desired: "running", State: "healthy"},
				{ID: "cccccccccccccccc", Slot: 1, Revision: 2, Current: true, Host: "n3", Desired: "running", State: "starting"},
				{ID: "dddddddddddddddd", Slot: 2, Revision: 1, Host: "n1", Desired: "running", State: "healthy"},
			},
		},
		Ps: map[string]wire.ReplicaRow{
			"aaaaaaaaaaaaaaaa": {ID: "aaaaaaaaaaaaaaaa", Health: "healthy"},
			"cccccccccccccccc": {ID: "cccccccccccccccc", Health: "checking"},
			"dddddddddddddddd": {ID: "dddddddddddddddd", Health: "healthy"},
		},
		Events: []state.Event{
			{Seq: 10, Time: at, Type: state.EventRevisionStored, Service: "web", Revision: 2, Message: "apply: reg/web:v2"},
			{Seq: 11, Time: at, Type: state.EventReplicaHealthy, Service: "web", Revision: 2, Replica: "aaaaaaaaaaaaaaaa", Slot: slot(0), Host: "n1"},
			{Seq: 12, Time: at, Type: state.EventReplicaPlaced, Service: "web", Revision: 2, Replica: "cccccccccccccccc", Slot: slot(1), Host: "n3", Message: "on host n3"},
		},
	}
}

func TestRenderLiveMidRollout(t *testing.T) {
	lines := renderLive(midRollout(), 120, 40, false)
	view := strings.Join(lines, "\n")
	t.Logf("\n%s", view)
	want := []string{
		"web  revision 1 → 2  deploying  [######--------------] 1/3 healthy  1:15",
		"  SLOT  REVISION  STATE      HEALTH    HOST  NOTE",
		"  0     1 → 2     healthy    healthy   n1",
		"  1     1 → 2     starting   checking  n3",
		"  2     1 → 2     waiting    healthy   n1",
		"last events:",
	}
	for i, w := range want {
		if i >= len(lines) || lines[i] != w {
			t.Fatalf("line %d:\n got %q\nwant %q\nview:\n%s", i, at(lines, i), w, view)
		}
	}
	if !strings.Contains(view, "replica_placed    r2 slot 1 cccccccccccc@n3  on host n3") {
		t.Fatalf("events missing:\n%s", view)
	}
	if strings.Contains(view, "\x1b") {
		t.Fatalf("escape without colour: %q", view)
	}
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<none>"
}

func TestRenderLiveColourOnlyWhenAsked(t *testing.T) {
	coloured := strings.Join(renderLive(midRollout(), 120, 40, true), "\n")
	for _, want := range []string{"\x1b[32mhealthy   \x1b[0m", "\x1b[33mstarting  \x1b[0m", "\x1b[1mweb\x1b[0m"} {
		if !strings.Contains(coloured, want) {
			t.Fatalf("coloured view lacks %q:\n%q", want, coloured)
		}
	}
	stripped := regexpSGR.ReplaceAllString(coloured, "")
	if plain := strings.Join(renderLive(midRollout(), 120, 40, false), "\n"); stripped != plain {
		t.Fatalf("colour changes the text:\n%s\n---\n%s", stripped, plain)
	}
}

func TestRenderLiveNarrowAndShortTerminals(t *testing.T) {
	s := midRollout()
	for _, width := range []int{20, 40, 60} {
		for _, l := range renderLive(s, width, 40, true) {
			if n := utf8.RuneCountInString(regexpSGR.ReplaceAllString(l, "")); n > width-1 {
				t.Fatalf("width %d: a line of %d columns: %q", width, n, l)
			}
		}
	}
	narrow := renderLive(s, 40, 40, false)
	if narrow[0] != "web  revision 1 → 2  deploying  [#####…" {
		t.Fatalf("header cut at 39 columns: %q", narrow[0])
	}
	// Five lines: the header, the slots' heading, one slot and a "more"
	// line, the end; no events.
	s.End, s.Ended = "done: revision 2 is healthy on 3/3 replicas (digest sha256:abc)", true
	short := renderLive(s, 120, 5, false)
	t.Logf("\n%s", strings.Join(short, "\n"))
	if len(short) != 5 || !strings.Contains(short[2], "  0     1 → 2") || !strings.Contains(short[3], "… 2 more slots") || !strings.HasPrefix(short[4], "done: revision 2") {
		t.Fatalf("height 5:\n%s", strings.Join(short, "\n"))
	}
}

func TestRenderLiveRollbackAndEnd(t *testing.T) {
	s := midRollout()
	s.Following, s.FailedRevision, s.Why = 3, 2, "health check failed 2 times in a row"
	s.From = map[int]int{0: 2, 1: 1, 2: 1}
	s.Status.Revision, s.Status.State, s.Status.RevisionState = 3, state.ServiceRunning, state.RevisionSucceeded
	s.Status.Replicas = wire.ReplicaCounts{Desired: 3, Running: 3, Healthy: 3}
	s.Status.Rollout = nil
	s.Status.Instances = []wire.InstanceView{
		{ID: "bbbbbbbbbbbbbbbb", Slot: 0, Revision: 1, Current: true, Host: "n2", Desired: "running", State: "healthy"},
		{ID: "eeeeeeeeeeeeeeee", Slot: 0, Revision: 2, Host: "n2", Desired: "stopped", State: "unhealthy", Message: "probe: 500"},
		{ID: "ffffffffffffffff", Slot: 1, Revision: 1, Current: true, Host: "n3", Desired: "running", State: "healthy"},
		{ID: "dddddddddddddddd", Slot: 2, Revision: 1, Current: true, Host: "n1", Desired: "running", State: "healthy"},
	}
	s.End, s.Ended = "rolled back: revision 3 is healthy on 3/3 replicas (digest sha256:abc)", true
	lines := renderLive(s, 120, 40, false)
	view := strings.Join(lines, "\n")
	t.Logf("\n%s", view)
	for _, want := range []string{
		"web  revision 2 → 3 (rollback)  running  [####################] 3/3 healthy",
		"revision 2 failed: health check failed 2 times in a row",
		"  0     2 → 1     healthy",
		"  2     1         healthy",
	} {
		if !strings.Contains(view, want) {
			t.Fatalf("rollback view lacks %q:\n%s", want, view)
		}
	}
	if lines[len(lines)-1] != s.End {
		t.Fatalf("last line %q, want the closing line", lines[len(lines)-1])
	}
}

func TestStartRevisions(t *testing.T) {
	st := midRollout().Status
	st.Instances = append(st.Instances, wire.InstanceView{Slot: 3, Revision: 2, Desired: "running"},
		wire.InstanceView{Slot: 4, Revision: 1, Desired: "stopped"})
	got := startRevisions(st, 2)
	want := map[int]int{0: 2, 1: 1, 2: 1, 3: 2}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestFromRevisionStored(t *testing.T) {
	evs := []state.Event{{Seq: 1, Type: state.EventRolloutSucceeded, Revision: 1}, {Seq: 2, Type: state.EventRevisionStored, Revision: 2}, {Seq: 3, Type: state.EventReplicaPlaced, Revision: 2}}
	if got := fromRevisionStored(evs, 2); len(got) != 2 || got[0].Seq != 2 {
		t.Fatalf("from revision 2: %+v", got)
	}
	if got := fromRevisionStored(evs, 5); len(got) != 3 {
		t.Fatalf("revision 5 not among them: %+v", got)
	}
}

func TestLiveTerminalDetection(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	// A buffer is never a terminal, whatever the environment.
	if _, ok := liveTerminal(&bytes.Buffer{}, false, env(map[string]string{"TERM": "xterm"})); ok {
		t.Fatal("a buffer is a terminal")
	}
	// A file that is not a terminal either.
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := liveTerminal(f, false, env(map[string]string{"TERM": "xterm"})); ok {
		t.Fatal("a regular file is a terminal")
	}
	// --plain, NO_COLOR and TERM=dumb (or none) refuse before looking at
	// the writer; the tmux e2e test proves the positive case on a real
	// terminal.
	for _, c := range []struct {
		plain bool
		env   map[string]string
	}{
		{true, map[string]string{"TERM": "xterm"}},
		{false, map[string]string{"TERM": "xterm", "NO_COLOR": "1"}},
		{false, map[string]string{"TERM": "dumb"}},
		{false, map[string]string{}},
	} {
		if _, ok := liveTerminal(os.Stdout, c.plain, env(c.env)); ok {
			t.Fatalf("live view with plain=%v env=%v", c.plain, c.env)
		}
	}
}

// TestPlainObserverLines: the plain path prints today's lines from the
// same observations the live view gets.
func TestPlainObserverLines(t *testing.T) {
	var b bytes.Buffer
	p := newPlainObserver(&b)
	st := midRollout().Status
	p.status(st, 2)
	st.Instances[2].State = "healthy"
	st.Message = "batch 2 of 3 monitoring"
	p.status(st, 2)
	p.rollingBack(2, 3, "health check failed")
	p.finish("rolled back: revision 3 is healthy on 3/3 replicas (digest d)", nil)
	want := `  slot 0: replica aaaaaaaaaaaa (revision 2) placed on host n1
  slot 0: replica aaaaaaaaaaaa (revision 2) healthy
  slot 1: replica cccccccccccc (revision 2) placed on host n3
  slot 1: replica cccccccccccc (revision 2) starting
  slot 1: replica cccccccccccc (revision 2) healthy
  waiting: batch 2 of 3 monitoring
revision 2 failed: health check failed
rolling back: revision 3 restores the previous good revision
rolled back: revision 3 is healthy on 3/3 replicas (digest d)
`
	if b.String() != want {
		t.Fatalf("plain lines:\n%s\nwant:\n%s", b.String(), want)
	}
}
