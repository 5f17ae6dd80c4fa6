package rollout

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

const simTick = 5 * time.Second

// runToEnd alternates Decide and agent ticks until a rollout succeeds
// (following the rollback if the world begins one), then lets the steady
// state finish its removals. check runs after every change to the world.
// The loop is bounded: a rollout that does not end fails the test.
func runToEnd(t *testing.T, w *world, sick func(state.Replica) bool, check func(when string)) {
	t.Helper()
	if check == nil {
		check = func(string) {}
	}
	const maxSteps = 2000
	for i := 0; ; i++ {
		if i == maxSteps {
			t.Fatalf("rollout of revision %d did not end after %d steps", w.service.Current, maxSteps)
		}
		d := w.step()
		check(fmt.Sprintf("step %d", i))
		if d.Outcome == Succeeded {
			break
		}
		if d.Outcome == Failed || d.Outcome == Paused {
			t.Fatalf("rollout ended %s: %s", d.Outcome, d.Reason)
		}
		w.tick(simTick, sick)
		check(fmt.Sprintf("tick %d", i))
	}
	for range 10 {
		w.tick(simTick, sick)
		d := w.step()
		check("steady")
		stopping := slices.ContainsFunc(w.replicas, func(r state.Replica) bool { return r.Desired == state.DesiredStopped })
		if len(d.Start)+len(d.Stop)+len(d.Remove) == 0 && !stopping {
			return
		}
	}
	t.Fatalf("steady state did not settle: %+v", w.replicas)
}

// checkConverged asserts the end state: n records, one per slot, all
// desired running, healthy and running fingerprint fp.
func checkConverged(t *testing.T, w *world, fp string, n int) {
	t.Helper()
	if w.service.State != state.ServiceRunning || w.service.Rollout.State != state.RolloutSucceeded {
		t.Fatalf("service %s, rollout %s; want running, succeeded", w.service.State, w.service.Rollout.State)
	}
	if len(w.replicas) != n {
		t.Fatalf("%d replica records left, want %d: %+v", len(w.replicas), n, w.replicas)
	}
	seen := make([]bool, n)
	for _, r := range w.replicas {
		if r.Desired != state.DesiredRunning || r.Status.State != state.ReplicaHealthy || r.Fingerprint != fp {
			t.Fatalf("replica %s: desired %s, observed %s, fingerprint %s; want running, healthy, %s",
				r.ID, r.Desired, r.Status.State, r.Fingerprint, fp)
		}
		if r.Slot < 0 || r.Slot >= n || seen[r.Slot] {
			t.Fatalf("replica %s in slot %d: out of range or duplicate", r.ID, r.Slot)
		}
		seen[r.Slot] = true
	}
}

// TestSimulation drives whole rollouts through a fake world in which agents
// act one tick after each decision, and checks that they end, where they
// end, and that capacity holds on the way: with start-first the healthy
// replicas desired running never drop below what both revisions share, with
// stop-first never by more than update.parallelism.
func TestSimulation(t *testing.T) {
	tests := []struct {
		name      string
		oldN      int // replicas of revision 1 running at the start; 0: first release
		n         int
		sameFP    bool // revision 2 runs the same containers as revision 1
		sick      bool // every replica of revision 2 becomes unhealthy
		update    []func(*specs.Update)
		wantFP    string
		wantRev   int
		maxStarts int // replicas started over the whole run, at most
	}{
		{name: "first release 4, parallelism 2", n: 4, update: []func(*specs.Update){parallelism(2)},
			wantFP: "B", wantRev: 2, maxStarts: 4},
		{name: "start-first 3, parallelism 1", oldN: 3, n: 3,
			wantFP: "B", wantRev: 2, maxStarts: 3},
		{name: "start-first 10, parallelism 3, delay and monitor", oldN: 10, n: 10,
			update: []func(*specs.Update){parallelism(3), delay(20 * time.Second), monitor(15 * time.Second)},
			wantFP: "B", wantRev: 2, maxStarts: 10},
		{name: "start-first scale up 3 to 7", oldN: 3, n: 7, update: []func(*specs.Update){parallelism(2)},
			wantFP: "B", wantRev: 2, maxStarts: 7},
		{name: "start-first scale down 6 to 2", oldN: 6, n: 2,
			wantFP: "B", wantRev: 2, maxStarts: 2},
		{name: "same fingerprint scale 3 to 5 adopts", oldN: 3, n: 5, sameFP: true,
			wantFP: "A", wantRev: 2, maxStarts: 2},
		{name: "stop-first 5, parallelism 2", oldN: 5, n: 5, update: []func(*specs.Update){stopFirst, parallelism(2)},
			wantFP: "B", wantRev: 2, maxStarts: 5},
		{name: "stop-first 4, parallelism 4, delay", oldN: 4, n: 4,
			update: []func(*specs.Update){stopFirst, parallelism(4), delay(10 * time.Second)},
			wantFP: "B", wantRev: 2, maxStarts: 4},
		{name: "start-first failing revision rolls back without a start", oldN: 4, n: 4, sick: true,
			update: []func(*specs.Update){parallelism(2)},
			wantFP: "A", wantRev: 3, maxStarts: 2},
		{name: "stop-first failing revision rolls back", oldN: 4, n: 4, sick: true,
			update: []func(*specs.Update){stopFirst, parallelism(2)},
			wantFP: "A", wantRev: 3, maxStarts: 4},
		{name: "tolerated failures then rollback", oldN: 4, n: 4, sick: true,
			update: []func(*specs.Update){ratio(0.5)},
			wantFP: "A", wantRev: 3, maxStarts: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev1 := revision(1, "A", tt.oldN, tt.update...)
			fp := "B"
			if tt.sameFP {
				fp = "A"
			}
			rev2 := revision(2, fp, tt.n, tt.update...)
			from := 1
			if tt.oldN == 0 {
				from = 0
			}
			w := newWorld(t, rev2, from, healthySet(rev1, "a", tt.oldN), rev1)
			var sick func(state.Replica) bool
			if tt.sick {
				sick = func(r state.Replica) bool { return r.Fingerprint == "B" }
			}

			floor := min(tt.oldN, tt.n)
			if rev2.Spec.Update.Order == specs.OrderStopFirst {
				floor -= rev2.Spec.Update.Parallelism
			}
			lowest := -1
			check := func(when string) {
				if h := w.healthyRunning(); h < floor {
					t.Fatalf("%s: %d healthy replicas desired running, want at least %d", when, h, floor)
				} else if lowest < 0 || h < lowest {
					lowest = h
				}
			}
			check("start")
			runToEnd(t, w, sick, check)

			if w.service.Current != tt.wantRev {
				t.Fatalf("ended on revision %d, want %d", w.service.Current, tt.wantRev)
			}
			checkConverged(t, w, tt.wantFP, tt.n)
			if w.created > tt.maxStarts {
				t.Fatalf("started %d replicas, want at most %d", w.created, tt.maxStarts)
			}
			if tt.sick && rev2.Spec.Update.Order == specs.OrderStartFirst && w.starts[3] != 0 {
				t.Fatalf("start-first rollback started %d replicas, want 0: it adopts the old ones", w.starts[3])
			}
			if tt.oldN > 0 && rev2.Spec.Update.Order == specs.OrderStartFirst && lowest < min(tt.oldN, tt.n) {
				t.Fatalf("start-first capacity dropped to %d", lowest)
			}
		})
	}
}

// BenchmarkDecide decides one step of a 1000-replica rollout half way
// through: 500 slots done, a batch of 10 in flight, the rest old.
func BenchmarkDecide(b *testing.B) {
	const n = 1000
	rev1 := revision(1, "A", n)
	rev2 := revision(2, "B", n, parallelism(10), ratio(0.1))
	var replicas []state.Replica
	for slot := range n {
		id := fmt.Sprintf("web-%04d", slot)
		switch {
		case slot < 500:
			replicas = append(replicas, healthy(rev2, id+"-b", slot, longAgo),
				stopped(replica(rev1, id+"-a", slot, ""), state.ReplicaStopped))
		case slot < 510:
			replicas = append(replicas, replica(rev2, id+"-b", slot, state.ReplicaStarting),
				healthy(rev1, id+"-a", slot, longAgo))
		default:
			replicas = append(replicas, healthy(rev1, id+"-a", slot, longAgo))
		}
	}
	in := Input{Now: t0, Service: rolloutService(2, 1), Target: rev2, Replicas: replicas}
	if d := Decide(in); len(d.Remove) != 500 || d.Outcome != Continue {
		b.Fatalf("unexpected decision: %d removes, outcome %q", len(d.Remove), d.Outcome)
	}
	b.ReportAllocs()
	for b.Loop() {
		Decide(in)
	}
}

// TestSimulationSlidingWindow: start-first without update.delay keeps
// update.parallelism slots in flight while any are pending (Swarm's
// update workers), so a slow replica holds only its own slot: at every
// step no more than parallelism replicas of the target are on their way,
// the rollout never waits with room in the window and pending slots, and
// it ends converged in fewer steps than lock-step batches (the same
// rollout with a tiny delay, which keeps batches) take.
func TestSimulationSlidingWindow(t *testing.T) {
	const n, par = 20, 4
	run := func(t *testing.T, opts ...func(*specs.Update)) int {
		rev1 := revision(1, "A", n, opts...)
		rev2 := revision(2, "B", n, opts...)
		w := newWorld(t, rev2, 1, healthySet(rev1, "a", n), rev1)
		// Every third slot's replica takes four ticks to pass its probe.
		age := map[string]int{}
		slow := func(r state.Replica) bool { return r.Slot%3 == 0 }
		steps := 0
		for ; steps < 500; steps++ {
			d := w.step()
			if d.Outcome == Succeeded {
				break
			}
			if d.Outcome != Continue {
				t.Fatalf("rollout ended %s: %s", d.Outcome, d.Reason)
			}
			onTheirWay, pending := 0, 0
			started := map[int]bool{}
			for _, r := range w.replicas {
				if r.Fingerprint != "B" || r.Desired != state.DesiredRunning {
					continue
				}
				started[r.Slot] = true
				if r.Status.State != state.ReplicaHealthy {
					onTheirWay++
				}
			}
			for slot := range n {
				if !started[slot] {
					pending++
				}
			}
			if onTheirWay > par {
				t.Fatalf("step %d: %d replicas of the target on their way, parallelism %d", steps, onTheirWay, par)
			}
			if len(opts) == 1 && onTheirWay < par && pending > 0 {
				t.Fatalf("step %d: %d on their way and %d slots pending: the window waits with room", steps, onTheirWay, pending)
			}
			// Time passes; a slow replica stays starting for four ticks.
			w.advance(simTick)
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
					age[r.ID]++
					if !slow(*r) || age[r.ID] >= 4 {
						r.Status = state.ReplicaStatus{State: state.ReplicaHealthy, HealthySince: w.now, UpdatedAt: w.now}
					}
				}
			}
		}
		if steps == 500 {
			t.Fatal("rollout did not end after 500 steps")
		}
		for range 10 { // the steady state removes the stopped records
			w.tick(simTick, nil)
			w.step()
		}
		checkConverged(t, w, "B", n)
		if w.created != n {
			t.Fatalf("started %d replicas, want %d", w.created, n)
		}
		return steps
	}
	window := run(t, parallelism(par))
	lockStep := run(t, parallelism(par), delay(time.Millisecond))
	if window >= lockStep {
		t.Fatalf("sliding window took %d steps, lock-step batches %d: want fewer", window, lockStep)
	}
	t.Logf("steps to success: sliding window %d, lock-step batches %d", window, lockStep)
}
