package rollout

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// world plays the controller and the agents around Decide: it applies each
// Decision the way the controller would, and lets tests (or tick) change what
// the agents report.
type world struct {
	t         *testing.T
	now       time.Time
	service   state.Service
	revisions map[int]state.Revision
	replicas  []state.Replica
	created   int
	// starts counts replicas created per revision number.
	starts map[int]int
	// hosts, when set, makes the world place replicas as the controller
	// does, with at most maxPerHost containers of the service per host (see
	// place); waiting is the rollout message of the last step.
	hosts      []string
	maxPerHost int
	placed     map[int]string
	waiting    []string
	// traffic is what the leader's memory holds for the rollout (the
	// input's Traffic); tests set it.
	traffic *Traffic
}

// newWorld begins a rollout of target from revision from (0 for a first
// release) at t0, over the given replica records.
func newWorld(t *testing.T, target state.Revision, from int, replicas []state.Replica, earlier ...state.Revision) *world {
	t.Helper()
	w := &world{
		t:         t,
		now:       t0,
		revisions: map[int]state.Revision{target.Number: target},
		replicas:  slices.Clone(replicas),
		starts:    map[int]int{},
	}
	for _, r := range earlier {
		w.revisions[r.Number] = r
	}
	w.service = state.Service{
		Name:         "web",
		Current:      target.Number,
		LastGood:     from,
		State:        state.ServiceDeploying,
		NextRevision: target.Number + 1,
		Rollout: &state.Rollout{
			Revision: target.Number, From: from, StartedAt: t0, LastProgressAt: t0,
			State: state.RolloutInProgress,
		},
	}
	return w
}

func (w *world) target() state.Revision { return w.revisions[w.service.Current] }

// input is what Decide sees now.
func (w *world) input() Input {
	in := Input{Now: w.now, Service: w.service, Target: w.target(), Replicas: w.replicas, Traffic: w.traffic}
	if from, ok := w.revisions[w.service.Rollout.From]; ok {
		in.FromFingerprint = from.Fingerprint
	}
	return in
}

// step runs Decide and applies its Decision. With hosts, it first places
// the Starts as the controller does: a start-first replacement that fits
// only in its own slot's room becomes a NoRoom fact, and Decide runs again.
func (w *world) step() Decision {
	w.t.Helper()
	in := w.input()
	d := Decide(in)
	for len(w.hosts) > 0 {
		var more bool
		w.placed, more = w.place(d, in.NoRoom)
		if !more {
			break
		}
		in.NoRoom = w.noRoom(d, in.NoRoom)
		d = Decide(in)
	}
	w.apply(d)
	return d
}

// occupied counts the containers of the service on host: replicas desired
// running, and replicas desired stopped whose container still runs.
func (w *world) occupied(host string, except int) int {
	n := 0
	for _, r := range w.replicas {
		if r.Host == host && r.Slot != except && (r.Desired == state.DesiredRunning || !isGone(&r)) {
			n++
		}
	}
	return n
}

// place puts each started slot on its pinned host if it has room, else on
// the first host with the fewest containers under maxPerHost. It reports
// whether an unplaced slot would fit in its own room and is not yet in
// noRoom: the controller then decides again.
func (w *world) place(d Decision, noRoom map[int]NoRoom) (map[int]string, bool) {
	placed := map[int]string{}
	load := map[string]int{}
	for _, h := range w.hosts {
		load[h] = w.occupied(h, -1)
	}
	more := false
	for _, slot := range d.Start {
		best := ""
		if pin := d.Pin[slot]; pin != "" && load[pin] < w.maxPerHost {
			best = pin
		}
		for _, h := range w.hosts {
			if best == "" || best != d.Pin[slot] {
				if load[h] < w.maxPerHost && (best == "" || load[h] < load[best]) {
					best = h
				}
			}
		}
		if best == "" {
			if _, known := noRoom[slot]; !known && w.ownRoom(slot) != "" {
				more = true
			}
			continue
		}
		placed[slot] = best
		load[best]++
	}
	return placed, more
}

// ownRoom is the host where slot's own containers hold the room a new
// replica needs, or "".
func (w *world) ownRoom(slot int) string {
	for _, r := range w.replicas {
		if r.Slot == slot && (r.Desired == state.DesiredRunning || !isGone(&r)) && w.occupied(r.Host, slot) < w.maxPerHost {
			return r.Host
		}
	}
	return ""
}

func (w *world) noRoom(d Decision, known map[int]NoRoom) map[int]NoRoom {
	out := map[int]NoRoom{}
	for slot, room := range known {
		out[slot] = room
	}
	for _, slot := range d.Start {
		if _, ok := w.placed[slot]; ok {
			continue
		}
		if host := w.ownRoom(slot); host != "" {
			if _, ok := out[slot]; !ok {
				out[slot] = NoRoom{Host: host, Cause: fmt.Sprintf("max_per_host %d", w.maxPerHost)}
			}
		}
	}
	return out
}

// apply does what the controller does with a Decision. The rollout record is
// replaced, never changed in place, so that earlier Inputs stay intact.
func (w *world) apply(d Decision) {
	w.t.Helper()
	for _, id := range d.Stop {
		r := w.find(id)
		if r.Desired != state.DesiredRunning {
			w.t.Fatalf("Decide stopped replica %s which is already desired %s", id, r.Desired)
		}
		r.Desired = state.DesiredStopped
	}
	w.replicas = slices.DeleteFunc(w.replicas, func(r state.Replica) bool { return slices.Contains(d.Remove, r.ID) })
	target := w.target()
	for _, slot := range d.Start {
		host := "host-1"
		if len(w.hosts) > 0 {
			var ok bool
			if host, ok = w.placed[slot]; !ok {
				continue
			}
		}
		w.created++
		w.starts[target.Number]++
		w.replicas = append(w.replicas, state.Replica{
			ID:          fmt.Sprintf("r%d-%d", target.Number, w.created),
			Service:     "web",
			Slot:        slot,
			Revision:    target.Number,
			Fingerprint: target.Fingerprint,
			Host:        host,
			Desired:     state.DesiredRunning,
			CreatedAt:   w.now,
			Status:      state.ReplicaStatus{State: state.ReplicaPending},
		})
	}
	if w.service.Rollout == nil {
		return
	}
	ro := *w.service.Rollout
	ro.Failures = d.Failures
	if ro.State == state.RolloutInProgress {
		ro.InPlace = d.InPlace
		ro.Canary = d.Canary
		w.waiting = d.Waiting
	}
	if len(w.hosts) > 0 && len(d.Start) > 0 && len(w.placed) == 0 {
		// As the controller: an unplaced batch is no progress.
		d.Progress, d.BatchDone = false, false
	}
	if d.Progress {
		ro.LastProgressAt = w.now
	}
	if d.BatchDone {
		ro.BatchDoneAt = w.now
	}
	switch d.Outcome {
	case Succeeded:
		ro.State = state.RolloutSucceeded
		w.service.State = state.ServiceRunning
		w.service.LastGood = w.service.Current
	case Paused:
		ro.State = state.RolloutPaused
		w.service.State = state.ServicePaused
	case Failed, Rollback:
		ro.State = state.RolloutFailed
		w.service.State = state.ServiceFailed
	}
	ro.Message = d.Reason
	w.service.Rollout = &ro
	if d.Outcome == Rollback {
		w.beginRollback()
	}
}

// beginRollback creates the rollback revision of the failed rollout and its
// rollout, as the controller does on a Rollback outcome.
func (w *world) beginRollback() {
	failed := w.service.Current
	to := w.service.Rollout.From
	rb := w.revisions[to]
	rb.Number = w.service.NextRevision
	rb.RollbackOf = failed
	rb.RollbackTo = to
	w.revisions[rb.Number] = rb
	w.service.NextRevision++
	w.service.Current = rb.Number
	w.service.State = state.ServiceRollingBack
	w.service.Rollout = &state.Rollout{
		Revision: rb.Number, From: to, StartedAt: w.now, LastProgressAt: w.now,
		State: state.RolloutInProgress,
	}
}

func (w *world) find(id string) *state.Replica {
	w.t.Helper()
	for i := range w.replicas {
		if w.replicas[i].ID == id {
			return &w.replicas[i]
		}
	}
	w.t.Fatalf("no replica %s", id)
	return nil
}

// observe records an agent report for replica id at the current time.
func (w *world) observe(id, observed, message string) {
	w.t.Helper()
	r := w.find(id)
	if observed == state.ReplicaHealthy && r.Status.State != state.ReplicaHealthy {
		r.Status.HealthySince = w.now
	}
	r.Status.State = observed
	r.Status.Message = message
	r.Status.UpdatedAt = w.now
}

func (w *world) advance(d time.Duration) { w.now = w.now.Add(d) }

// inSlot returns the IDs of the replicas of slot desired running.
func (w *world) inSlot(slot int) []string {
	var ids []string
	for _, r := range w.replicas {
		if r.Slot == slot && r.Desired == state.DesiredRunning {
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// newest returns the ID of the most recently created replica in slot.
func (w *world) newest(slot int) string {
	w.t.Helper()
	var best *state.Replica
	for i := range w.replicas {
		r := &w.replicas[i]
		if r.Slot == slot && (best == nil || r.CreatedAt.After(best.CreatedAt) || r.CreatedAt.Equal(best.CreatedAt) && r.ID > best.ID) {
			best = r
		}
	}
	if best == nil {
		w.t.Fatalf("no replica in slot %d", slot)
	}
	return best.ID
}

// healthyRunning counts replicas desired running and observed healthy.
func (w *world) healthyRunning() int {
	n := 0
	for _, r := range w.replicas {
		if r.Desired == state.DesiredRunning && r.Status.State == state.ReplicaHealthy {
			n++
		}
	}
	return n
}

// tick lets time pass by dt and every agent act once: a stop is confirmed,
// a pending replica starts, a starting one becomes healthy, or unhealthy
// when sick says so.
func (w *world) tick(dt time.Duration, sick func(state.Replica) bool) {
	w.advance(dt)
	for i := range w.replicas {
		r := &w.replicas[i]
		if r.Desired == state.DesiredStopped {
			if !isGone(r) {
				r.Status = state.ReplicaStatus{State: state.ReplicaStopped, UpdatedAt: w.now}
			}
			continue
		}
		switch r.Status.State {
		case state.ReplicaPending:
			r.Status = state.ReplicaStatus{State: state.ReplicaStarting, UpdatedAt: w.now}
		case state.ReplicaStarting:
			if sick != nil && sick(*r) {
				r.Status = state.ReplicaStatus{State: state.ReplicaUnhealthy, Message: "HTTP 500 from /healthz", UpdatedAt: w.now}
			} else {
				r.Status = state.ReplicaStatus{State: state.ReplicaHealthy, HealthySince: w.now, UpdatedAt: w.now}
			}
		}
	}
}

func expectStart(t *testing.T, d Decision, slots ...int) {
	t.Helper()
	if !slices.Equal(d.Start, slots) {
		t.Fatalf("Start = %v, want %v (events %q)", d.Start, slots, d.Events)
	}
}

func expectStop(t *testing.T, d Decision, ids ...string) {
	t.Helper()
	if !slices.Equal(d.Stop, ids) {
		t.Fatalf("Stop = %v, want %v (events %q)", d.Stop, ids, d.Events)
	}
}

func expectOutcome(t *testing.T, d Decision, o Outcome) {
	t.Helper()
	if d.Outcome != o {
		t.Fatalf("Outcome = %q (%s), want %q", d.Outcome, d.Reason, o)
	}
}

func expectIdle(t *testing.T, d Decision) {
	t.Helper()
	if len(d.Start) > 0 || len(d.Stop) > 0 || d.Outcome != Continue {
		t.Fatalf("expected no action, got start %v stop %v outcome %q", d.Start, d.Stop, d.Outcome)
	}
}
