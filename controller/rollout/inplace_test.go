package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// hostWorld is a world of the given hosts with max_per_host 1, whose old
// replicas (revision 1, n of them) run one per host from the first host.
func hostWorld(t *testing.T, hosts []string, target state.Revision, rev1 state.Revision, n int) *world {
	t.Helper()
	old := healthySet(rev1, "a", n)
	for i := range old {
		old[i].Host = hosts[i]
	}
	w := newWorld(t, target, 1, old, rev1)
	w.hosts, w.maxPerHost = hosts, 1
	return w
}

// checkHosts fails when a host runs more containers of the service than
// max_per_host: a container desired stopped runs until its stop is
// confirmed, so stop-first in place must wait for it.
func checkHosts(t *testing.T, w *world, when string) {
	t.Helper()
	for _, h := range w.hosts {
		if n := w.occupied(h, -1); n > w.maxPerHost {
			t.Fatalf("%s: host %s runs %d containers of the service, max_per_host %d: %+v", when, h, n, w.maxPerHost, w.replicas)
		}
	}
}

// The layout: three hosts, max_per_host 1, start-first (the
// default), three replicas. No host has room for a replacement beside an
// old replica and none will come, so each slot is replaced stop-first on
// its own host, with a line that says so, and the rollout ends.
func TestNoSpareHostReplacesInPlace(t *testing.T) {
	hosts := []string{"h0", "h1", "h2"}
	tests := []struct {
		name   string
		sick   bool
		update []func(*specs.Update)
	}{
		{name: "update"},
		{name: "update, parallelism 2", update: []func(*specs.Update){parallelism(2)}},
		{name: "bad release rolls back", sick: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev1 := revision(1, "A", 3, tt.update...)
			rev2 := revision(2, "B", 3, tt.update...)
			w := hostWorld(t, hosts, rev2, rev1, 3)
			var sick func(state.Replica) bool
			wantFP, wantRev := "B", 2
			if tt.sick {
				sick = func(r state.Replica) bool { return r.Fingerprint == "B" }
				wantFP, wantRev = "A", 3
			}
			var lines []string
			start := w.now
			runToEnd(t, w, sick, func(when string) {
				checkHosts(t, w, when)
				for _, l := range w.waiting {
					if !slices.Contains(lines, l) {
						lines = append(lines, l)
					}
				}
			})
			if w.service.Current != wantRev {
				t.Fatalf("ended on revision %d, want %d", w.service.Current, wantRev)
			}
			checkConverged(t, w, wantFP, 3)
			if took := w.now.Sub(start); took >= rev2.Spec.Update.ProgressDeadline {
				t.Fatalf("took %s, as long as the progress deadline %s", took, rev2.Spec.Update.ProgressDeadline)
			}
			want := "slot 0: no spare host for start-first (max_per_host 1); replacing stop-first on h0"
			if len(lines) == 0 || lines[0] != want {
				t.Fatalf("progress lines %q, want first %q", lines, want)
			}
			if !tt.sick && len(lines) != 3 {
				t.Fatalf("progress lines %q, want one per slot", lines)
			}
			for _, r := range w.replicas {
				if want := hosts[r.Slot]; r.Host != want {
					t.Errorf("replica %s of slot %d on %s, want its old host %s", r.ID, r.Slot, r.Host, want)
				}
			}
		})
	}
}

// A manual rollback is a rollout of the rollback revision: with no spare
// host it is replaced in place too.
func TestNoSpareHostManualRollback(t *testing.T) {
	hosts := []string{"h0", "h1", "h2"}
	rev1 := revision(1, "A", 3)
	rev2 := revision(2, "B", 3)
	rb := rollbackTo(rev1, 3, 2)
	old := healthySet(rev2, "b", 3)
	for i := range old {
		old[i].Host = hosts[i]
	}
	w := newWorld(t, rb, 2, old, rev1, rev2)
	w.hosts, w.maxPerHost = hosts, 1
	runToEnd(t, w, nil, func(when string) { checkHosts(t, w, when) })
	checkConverged(t, w, "A", 3)
	if len(w.service.Rollout.InPlace) != 3 {
		t.Fatalf("in place %+v, want every slot", w.service.Rollout.InPlace)
	}
}

// With one spare host the rollout stays start-first: capacity never drops,
// and a slot whose replacement waits for the room an earlier slot frees
// waits for it instead of going stop-first.
func TestSpareHostKeepsStartFirst(t *testing.T) {
	hosts := []string{"h0", "h1", "h2", "h3"}
	rev1 := revision(1, "A", 3)
	rev2 := revision(2, "B", 3)
	w := hostWorld(t, hosts, rev2, rev1, 3)
	runToEnd(t, w, nil, func(when string) {
		checkHosts(t, w, when)
		if h := w.healthyRunning(); h < 3 {
			t.Fatalf("%s: %d healthy replicas, start-first keeps 3", when, h)
		}
		if len(w.waiting) > 0 || len(w.service.Rollout.InPlace) > 0 {
			t.Fatalf("%s: replaced in place with a spare host: %q", when, w.waiting)
		}
	})
	checkConverged(t, w, "B", 3)
}

// Decide alone: a NoRoom slot goes stop-first only when no room may come.
func TestNoRoomDecide(t *testing.T) {
	rev1 := revision(1, "A", 2)
	rev2 := revision(2, "B", 2)
	room := map[int]NoRoom{0: {Host: "h0", Cause: "host port 0.0.0.0:80/tcp"}}

	t.Run("nothing else moves: stop the old replica, say so", func(t *testing.T) {
		d := Decide(Input{Now: t0, Service: rolloutService(2, 1), Target: rev2,
			Replicas: healthySet(rev1, "a", 2), NoRoom: room})
		expectStart(t, d)
		expectStop(t, d, "a0")
		want := []state.InPlaceSlot{{Slot: 0, Host: "h0", Cause: "host port 0.0.0.0:80/tcp"}}
		if !slices.Equal(d.InPlace, want) || !d.Progress {
			t.Fatalf("InPlace %+v progress %v, want %+v and progress", d.InPlace, d.Progress, want)
		}
		line := "slot 0: no spare host for start-first (host port 0.0.0.0:80/tcp); replacing stop-first on h0"
		if !slices.Equal(d.Waiting, []string{line}) || !slices.Contains(d.Events, line) {
			t.Fatalf("Waiting %q Events %q, want %q", d.Waiting, d.Events, line)
		}
	})
	t.Run("another slot monitoring: wait for its room", func(t *testing.T) {
		reps := join(healthySet(rev1, "a", 2), []state.Replica{healthy(rev2, "b1", 1, time.Second)})
		d := Decide(Input{Now: t0, Service: rolloutService(2, 1), Target: rev2, Replicas: reps, NoRoom: room})
		expectStart(t, d, 0)
		expectStop(t, d)
		if d.InPlace != nil || d.Waiting != nil {
			t.Fatalf("went in place while room may come: %+v", d)
		}
	})
	t.Run("a container still stopping: wait for its room", func(t *testing.T) {
		reps := join(healthySet(rev1, "a", 2), []state.Replica{stopped(replica(rev1, "x", 1, state.ReplicaHealthy), state.ReplicaHealthy)})
		d := Decide(Input{Now: t0, Service: rolloutService(2, 1), Target: rev2, Replicas: reps, NoRoom: room})
		if d.InPlace != nil {
			t.Fatalf("went in place while a container stops: %+v", d)
		}
	})
	t.Run("recorded: the new replica starts on the pinned host once the old one is gone", func(t *testing.T) {
		svc := withRollout(rolloutService(2, 1), func(ro *state.Rollout) {
			ro.InPlace = []state.InPlaceSlot{{Slot: 0, Host: "h0", Cause: "max_per_host 1"}}
		})
		old := healthySet(rev1, "a", 2)
		draining := stopped(old[0], state.ReplicaHealthy)
		d := Decide(Input{Now: t0, Service: svc, Target: rev2, Replicas: []state.Replica{draining, old[1]}})
		expectStart(t, d)
		if len(d.Waiting) != 1 || !strings.Contains(d.Waiting[0], "replacing stop-first on h0") {
			t.Fatalf("Waiting %q", d.Waiting)
		}
		gone := stopped(old[0], state.ReplicaStopped)
		d = Decide(Input{Now: t0, Service: svc, Target: rev2, Replicas: []state.Replica{gone, old[1]}})
		expectStart(t, d, 0)
		if d.Pin[0] != "h0" || !slices.Equal(d.Remove, []string{"a0"}) {
			t.Fatalf("Pin %v Remove %v, want slot 0 on h0 and a0 removed", d.Pin, d.Remove)
		}
	})
	t.Run("stop-first spec: NoRoom changes nothing", func(t *testing.T) {
		rev2 := revision(2, "B", 2, stopFirst)
		d := Decide(Input{Now: t0, Service: rolloutService(2, 1), Target: rev2, Replicas: healthySet(rev1, "a", 2), NoRoom: room})
		if d.InPlace != nil || d.Waiting != nil {
			t.Fatalf("stop-first rollout recorded in place slots: %+v", d)
		}
	})
}
