package main

// Issue 10 point 5: the live view of a rollout. renderLive is a pure
// function from a snapshot to the view's lines; liveView (liveterm.go) is
// the terminal driver that keeps the snapshot (from followRevision's
// observations, ps and the events) and redraws it in place.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// liveSnapshot is everything the live view shows at one moment.
type liveSnapshot struct {
	Service string
	// Status is the latest answer about the service (zero before the first).
	Status wire.ServiceStatus
	// Following is the revision whose rollout is followed; FailedRevision
	// and Why say which revision failed when Following is its rollback.
	Following      int
	FailedRevision int
	Why            string
	// From is the revision each slot ran when the rollout (or the
	// rollback) began: the left of a slot's "old → new".
	From map[int]int
	// Ps are the service's replicas as `deployctl ps` lists them, by ID:
	// their health and last error.
	Ps map[string]wire.ReplicaRow
	// Events are the service's events since the rollout began, oldest first.
	Events  []state.Event
	Elapsed time.Duration
	// Problem is a passing trouble (the servers do not answer).
	Problem string
	// End is the closing line once the rollout ended ("" before), and
	// Ended says it ended (End may be "" when the error says it).
	End   string
	Ended bool
}

// liveSlot is one row of the view: the replica a slot runs for the
// followed revision (or, before it has one, the replica it still runs).
type liveSlot struct {
	slot          int
	from, to      int
	state, health string
	host, note    string
	queued        bool
}

// slotRows groups the snapshot's replicas by slot.
func slotRows(s liveSnapshot) []liveSlot {
	bySlot := map[int][]wire.InstanceView{}
	for _, in := range s.Status.Instances {
		bySlot[in.Slot] = append(bySlot[in.Slot], in)
	}
	var rows []liveSlot
	for slot, ins := range bySlot {
		var cur, old *wire.InstanceView
		for i := range ins {
			in := &ins[i]
			switch {
			case in.Current && in.Desired == state.DesiredRunning:
				cur = in
			case old == nil || in.Desired == state.DesiredRunning:
				old = in
			}
		}
		row := liveSlot{slot: slot, from: s.From[slot]}
		pick := cur
		if cur == nil {
			// Not replaced yet (or going away): its old replica.
			pick, row.queued = old, old.Desired == state.DesiredRunning
		}
		row.to, row.state, row.host, row.note = pick.Revision, pick.State, pick.Host, pick.Message
		if row.queued {
			row.to, row.state = s.Following, "waiting"
		} else if cur == nil {
			row.state = "stopping"
			if pick.State == state.ReplicaStopped {
				row.state = state.ReplicaStopped
			}
		}
		if ps, ok := s.Ps[pick.ID]; ok {
			row.health = ps.Health
			if row.note == "" {
				row.note = ps.Error
			}
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b liveSlot) int { return cmp.Compare(a.slot, b.slot) })
	return rows
}

// seg is a piece of a line with its colour (an SGR parameter, "" none).
type seg struct{ text, sgr string }

const (
	sgrGreen  = "32"
	sgrYellow = "33"
	sgrRed    = "31"
	sgrBold   = "1"
	sgrDim    = "2"
)

// stateColour is the colour of a replica or revision state.
func stateColour(s string) string {
	switch s {
	case state.ReplicaHealthy, state.RevisionSucceeded, state.ServiceRunning, "done":
		return sgrGreen
	// Replica, revision and service states share some words ("failed").
	case state.ReplicaUnhealthy, state.ReplicaFailed, state.ReplicaLost, state.RevisionRolledBack, state.ServicePaused, state.ServiceRollingBack:
		return sgrRed
	case state.ReplicaPending, state.ReplicaStarting, "checking", "waiting", state.ServiceDeploying, "stopping":
		return sgrYellow
	}
	return ""
}

// renderLive draws the snapshot as at most height lines of at most width
// columns (the terminal's less one, so that nothing wraps), with ANSI
// colours when colour is set; without, the lines hold no escape at all.
func renderLive(s liveSnapshot, width, height int, colour bool) []string {
	var lines [][]seg
	st := s.Status

	// The header: service, revisions, state, progress bar, counts, time.
	head := []seg{{s.Service, sgrBold}, {"  ", ""}}
	switch {
	case s.FailedRevision != 0:
		head = append(head, seg{fmt.Sprintf("revision %d → %d (rollback)", s.FailedRevision, s.Following), ""})
	case st.Rollout != nil && st.Rollout.Revision == s.Following && st.Rollout.From != 0:
		head = append(head, seg{fmt.Sprintf("revision %d → %d", st.Rollout.From, s.Following), ""})
	default:
		head = append(head, seg{fmt.Sprintf("revision %d", s.Following), ""})
	}
	svcState := orDash(st.State)
	head = append(head, seg{"  ", ""}, seg{svcState, stateColour(svcState)})
	done, total := st.Replicas.Healthy, st.Replicas.Desired
	head = append(head, seg{"  ", ""})
	head = append(head, progressBar(done, total, 20)...)
	head = append(head, seg{fmt.Sprintf(" %d/%d healthy  %s", done, total, clock(s.Elapsed)), ""})
	lines = append(lines, head)

	if s.FailedRevision != 0 {
		lines = append(lines, []seg{{fmt.Sprintf("revision %d failed: %s", s.FailedRevision, s.Why), sgrRed}})
	}
	if st.Message != "" && !s.Ended {
		lines = append(lines, []seg{{"waiting: " + st.Message, sgrYellow}})
	}
	if tl, _ := trafficWait(st, s.Following); tl != "" {
		lines = append(lines, []seg{{tl, ""}})
	}
	if s.Problem != "" {
		lines = append(lines, []seg{{s.Problem, sgrRed}})
	}

	// A row per slot.
	rows := slotRows(s)
	var slotLines [][]seg
	hostW := len("HOST")
	for _, r := range rows {
		hostW = max(hostW, len(r.host))
	}
	if len(rows) > 0 {
		slotLines = append(slotLines, []seg{{fmt.Sprintf("  %-5s %-9s %-10s %-9s %-*s  %s", "SLOT", "REVISION", "STATE", "HEALTH", hostW, "HOST", "NOTE"), sgrDim}})
	}
	for _, r := range rows {
		rev := fmt.Sprint(r.to)
		if r.from != 0 && r.from != r.to {
			rev = fmt.Sprintf("%d → %d", r.from, r.to)
		}
		health := orDash(r.health)
		slotLines = append(slotLines, []seg{
			{fmt.Sprintf("  %-5d %-9s ", r.slot, rev), ""},
			{fmt.Sprintf("%-10s", r.state), stateColour(r.state)},
			{" ", ""},
			{fmt.Sprintf("%-9s", health), stateColour(health)},
			{fmt.Sprintf(" %-*s  %s", hostW, r.host, strings.ReplaceAll(r.note, "\n", " ")), ""},
		})
	}

	// The last events.
	var eventLines [][]seg
	for _, e := range s.Events {
		eventLines = append(eventLines, eventLine(e))
	}

	var end [][]seg
	if s.End != "" {
		c := sgrGreen
		if !strings.HasPrefix(s.End, "done") {
			c = sgrYellow
		}
		end = append(end, []seg{{s.End, c}})
	}

	// Fit the height: the header lines and the end always; then the slots,
	// then as many of the last events as fit.
	room := height - len(lines) - len(end)
	if len(slotLines) > room && room >= 1 {
		more := len(slotLines) - room + 1
		slotLines = append(slotLines[:room-1:room-1], []seg{{fmt.Sprintf("  … %d more slots", more), sgrDim}})
	} else if room < 1 {
		slotLines = nil
	}
	lines = append(lines, slotLines...)
	room = height - len(lines) - len(end) - 1
	if room > 0 && len(eventLines) > 0 {
		lines = append(lines, []seg{{"last events:", sgrDim}})
		lines = append(lines, eventLines[max(0, len(eventLines)-min(room, 5)):]...)
	}
	lines = append(lines, end...)
	if len(lines) > height && height > 0 {
		lines = lines[:height]
	}

	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = drawLine(l, width-1, colour)
	}
	return out
}

// eventLine is one event in the view: time, type, revision, replica and
// host, message.
func eventLine(e state.Event) []seg {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s %-17s", e.Time.Local().Format(time.TimeOnly), e.Type)
	if e.Revision != 0 {
		fmt.Fprintf(&b, " r%d", e.Revision)
	}
	if e.Slot != nil {
		fmt.Fprintf(&b, " slot %d", *e.Slot)
	}
	if e.Replica != "" {
		fmt.Fprintf(&b, " %s", short(e.Replica))
	}
	if e.Host != "" {
		fmt.Fprintf(&b, "@%s", e.Host)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, "  %s", strings.ReplaceAll(e.Message, "\n", " "))
	}
	c := ""
	switch e.Type {
	case state.EventReplicaUnhealthy, state.EventReplicaFailed, state.EventReplicaLost, state.EventRolloutFailed,
		state.EventRolledBack, state.EventRolloutPaused, state.EventHostDown, state.EventApplyRefused:
		c = sgrRed
	case state.EventRolloutSucceeded, state.EventReplicaHealthy:
		c = sgrGreen
	}
	return []seg{{b.String(), c}}
}

// progressBar is "[#######-------------]", n of total filled.
func progressBar(n, total, width int) []seg {
	filled := width
	if total > 0 {
		filled = min(width, width*n/total)
	}
	return []seg{{"[", ""}, {strings.Repeat("#", filled), sgrGreen}, {strings.Repeat("-", width-filled), sgrDim}, {"]", ""}}
}

// clock shows an elapsed time as m:ss.
func clock(d time.Duration) string {
	d = d.Truncate(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// drawLine joins a line's pieces, cut at width runes (an ellipsis marks
// the cut), coloured with SGR escapes when colour is set.
func drawLine(l []seg, width int, colour bool) string {
	var b strings.Builder
	left := max(width, 1)
	for i, sg := range l {
		text := []rune(sg.text)
		cut := false
		if len(text) > left || len(text) == left && i < len(l)-1 && restHasText(l[i+1:]) {
			text, cut = text[:max(left-1, 0)], true
			text = append(text, '…')
		}
		left -= len(text)
		if colour && sg.sgr != "" && len(text) > 0 {
			b.WriteString("\x1b[" + sg.sgr + "m" + string(text) + "\x1b[0m")
		} else {
			b.WriteString(string(text))
		}
		if cut || left <= 0 {
			break
		}
	}
	return strings.TrimRight(b.String(), " ")
}

func restHasText(l []seg) bool {
	for _, sg := range l {
		if sg.text != "" {
			return true
		}
	}
	return false
}
