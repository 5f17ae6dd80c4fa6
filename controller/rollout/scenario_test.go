package rollout

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// TestFirstReleasePipelinesAfterFirstProbe drives a first release of 3
// replicas, start-first, parallelism 1: each slot starts as soon as the
// previous one passed a probe (not after its monitor window, as Swarm does),
// and the release succeeds only once every replica has been healthy for
// update.monitor.
func TestFirstReleasePipelinesAfterFirstProbe(t *testing.T) {
	rev1 := revision(1, "A", 3, monitor(10*time.Second))
	w := newWorld(t, rev1, 0, nil)

	expectStart(t, w.step(), 0)
	for slot := range 3 {
		id := w.newest(slot)
		w.advance(time.Second)
		w.observe(id, state.ReplicaStarting, "")
		expectIdle(t, w.step()) // not healthy yet: the batch holds
		w.advance(time.Second)
		w.observe(id, state.ReplicaHealthy, "")
		d := w.step()
		if !d.Progress || !d.BatchDone {
			t.Fatalf("slot %d passed a probe: Progress %v BatchDone %v, want both", slot, d.Progress, d.BatchDone)
		}
		if slot < 2 {
			expectStart(t, d, slot+1)
		} else {
			expectStart(t, d)
		}
		expectOutcome(t, d, Continue)
	}
	// Slot 2 became healthy last; the release waits for its full window.
	w.advance(9 * time.Second)
	if d := w.step(); d.Outcome == Succeeded {
		t.Fatal("succeeded before the last replica's monitor window closed")
	}
	w.advance(time.Second)
	expectOutcome(t, w.step(), Succeeded)
	expectIdle(t, w.step())
}

// TestFirstReleaseOneSlotAtATimeStopFirst drives a first release of 3
// replicas with stop-first and parallelism 1: each slot starts only when
// the previous one has been healthy for update.monitor, and no sooner.
func TestFirstReleaseOneSlotAtATimeStopFirst(t *testing.T) {
	rev1 := revision(1, "A", 3, monitor(10*time.Second), stopFirst)
	w := newWorld(t, rev1, 0, nil)

	expectStart(t, w.step(), 0)
	for slot := range 3 {
		id := w.newest(slot)
		w.advance(2 * time.Second)
		w.observe(id, state.ReplicaStarting, "")
		expectIdle(t, w.step())
		w.advance(2 * time.Second)
		w.observe(id, state.ReplicaHealthy, "")
		expectIdle(t, w.step())
		w.advance(9 * time.Second)
		expectIdle(t, w.step()) // healthy for 9s < monitor 10s: not done

		w.advance(time.Second)
		d := w.step()
		if !d.Progress || !d.BatchDone {
			t.Fatalf("slot %d done: Progress %v BatchDone %v, want both", slot, d.Progress, d.BatchDone)
		}
		if slot < 2 {
			expectStart(t, d, slot+1)
			expectOutcome(t, d, Continue)
		} else {
			expectStart(t, d)
			expectOutcome(t, d, Succeeded)
		}
		for s := range 3 {
			if got := len(w.inSlot(s)); s <= slot+1 && got != 1 || s > slot+1 && got != 0 {
				t.Fatalf("after slot %d is done, slot %d has %d replicas", slot, s, got)
			}
		}
	}
	expectIdle(t, w.step()) // steady state: nothing left to do
}

// TestBatchesAndDelay rolls 5 replicas out start-first with parallelism 2
// and a 30s delay between batches: batches of 2, 2 and 1. A batch ends when
// its replicas passed a probe; the next waits for the delay; each old
// replica stops when its new one has been healthy for update.monitor.
func TestBatchesAndDelay(t *testing.T) {
	rev1 := revision(1, "A", 5)
	rev2 := revision(2, "B", 5, parallelism(2), delay(30*time.Second), monitor(10*time.Second))
	w := newWorld(t, rev2, 1, healthySet(rev1, "a", 5), rev1)

	becomeHealthy := func(slots ...int) {
		for _, s := range slots {
			w.observe(w.newest(s), state.ReplicaHealthy, "")
		}
	}

	expectStart(t, w.step(), 0, 1)
	w.advance(time.Second)
	becomeHealthy(0)
	d := w.step() // slot 1 still starting: the batch holds
	expectStart(t, d)
	expectStop(t, d)
	if d.BatchDone {
		t.Fatal("batch done while slot 1 is starting")
	}
	w.advance(time.Second)
	becomeHealthy(1)
	d = w.step()
	expectStart(t, d)
	expectStop(t, d) // monitor windows still open: the old replicas serve
	if !d.BatchDone {
		t.Fatal("first batch passed its probes but BatchDone is false")
	}

	w.advance(10 * time.Second)
	d = w.step()
	expectStop(t, d, "a0", "a1") // windows closed: the old replicas go
	expectStart(t, d)            // still within update.delay

	w.advance(19 * time.Second)
	expectIdle(t, w.step())
	w.advance(time.Second)
	expectStart(t, w.step(), 2, 3)

	becomeHealthy(2)
	w.advance(5 * time.Second)
	becomeHealthy(3)
	d = w.step()
	if !d.BatchDone {
		t.Fatal("second batch passed its probes but BatchDone is false")
	}
	w.advance(5 * time.Second)
	expectStop(t, w.step(), "a2") // slot 2 done, slot 3 still monitored
	w.advance(5 * time.Second)
	expectStop(t, w.step(), "a3")

	w.advance(20 * time.Second)
	expectStart(t, w.step(), 4)
	becomeHealthy(4)
	w.step()
	w.advance(10 * time.Second)
	d = w.step()
	expectStop(t, d, "a4")
	expectOutcome(t, d, Succeeded)
}

// TestUpdateOrder shows start-first running both replicas of a slot until the
// new one is done, and stop-first running none until the old one is gone.
func TestUpdateOrder(t *testing.T) {
	rev1 := revision(1, "A", 1)

	t.Run("start-first", func(t *testing.T) {
		w := newWorld(t, revision(2, "B", 1), 1, healthySet(rev1, "a", 1), rev1)
		expectStart(t, w.step(), 0)
		id := w.newest(0)
		for _, obs := range []string{state.ReplicaStarting, state.ReplicaHealthy} {
			w.advance(5 * time.Second)
			w.observe(id, obs, "")
			expectIdle(t, w.step())
			if got, want := w.inSlot(0), []string{"a0", id}; !slices.Equal(got, want) {
				t.Fatalf("slot 0 runs %v while the new replica is %s, want %v", got, obs, want)
			}
		}
		w.advance(10 * time.Second)
		d := w.step()
		expectStop(t, d, "a0")
		expectOutcome(t, d, Succeeded)
	})

	t.Run("stop-first", func(t *testing.T) {
		w := newWorld(t, revision(2, "B", 1, stopFirst), 1, healthySet(rev1, "a", 1), rev1)
		d := w.step()
		expectStop(t, d, "a0")
		expectStart(t, d)
		w.advance(5 * time.Second)
		expectIdle(t, w.step()) // the agent has not stopped a0 yet
		if got := w.inSlot(0); len(got) != 0 {
			t.Fatalf("slot 0 runs %v while its old replica stops", got)
		}
		w.observe("a0", state.ReplicaStopped, "")
		d = w.step()
		expectStart(t, d, 0)
		if !slices.Equal(d.Remove, []string{"a0"}) {
			t.Fatalf("Remove = %v, want [a0]", d.Remove)
		}
		w.observe(w.newest(0), state.ReplicaHealthy, "")
		w.advance(10 * time.Second)
		expectOutcome(t, w.step(), Succeeded)
	})
}

// TestFailureAtBatch fails the rollout in its k-th batch: the rollout rolls
// back, only the failed replica is stopped, and the rollback restarts only
// the slots whose old replica was already replaced.
func TestFailureAtBatch(t *testing.T) {
	for _, k := range []int{1, 2} {
		t.Run(fmt.Sprintf("batch %d", k), func(t *testing.T) {
			rev1 := revision(1, "A", 3)
			w := newWorld(t, revision(2, "B", 3), 1, healthySet(rev1, "a", 3), rev1)

			expectStart(t, w.step(), 0)
			for slot := range k - 1 {
				w.observe(w.newest(slot), state.ReplicaHealthy, "")
				w.advance(10 * time.Second)
				expectStart(t, w.step(), slot+1)
			}
			failed := w.newest(k - 1)
			w.advance(5 * time.Second)
			w.observe(failed, state.ReplicaUnhealthy, "HTTP 500 from /healthz")
			d := w.step()
			expectOutcome(t, d, Rollback)
			expectStop(t, d, failed)
			wantReason := fmt.Sprintf("replica %s (slot %d) unhealthy: HTTP 500 from /healthz", failed, k-1)
			if !strings.HasPrefix(d.Reason, wantReason) {
				t.Fatalf("Reason = %q, want prefix %q", d.Reason, wantReason)
			}
			for slot := k - 1; slot < 3; slot++ {
				if got, want := w.inSlot(slot), []string{fmt.Sprintf("a%d", slot)}; !slices.Equal(got, want) {
					t.Fatalf("after the failure slot %d runs %v, want the untouched %v", slot, got, want)
				}
			}

			// The world began rollback revision 3; run it to the end.
			if got := w.target(); got.Number != 3 || !got.IsRollback() || got.Fingerprint != "A" {
				t.Fatalf("rollback revision = %+v", got)
			}
			runToEnd(t, w, nil, nil)
			if got, want := w.starts[3], k-1; got != want {
				t.Fatalf("rollback started %d replicas, want %d (one per slot already replaced)", got, want)
			}
			checkConverged(t, w, "A", 3)
		})
	}
}

// TestFailureRatioRetries tolerates MaxFailureRatio*N failures, retrying
// their slots, and rolls back on the next one.
func TestFailureRatioRetries(t *testing.T) {
	rev1 := revision(1, "A", 4)
	w := newWorld(t, revision(2, "B", 4, ratio(0.5)), 1, healthySet(rev1, "a", 4), rev1)

	expectStart(t, w.step(), 0)
	for failures := 1; failures <= 2; failures++ {
		id := w.newest(0)
		w.advance(5 * time.Second)
		w.observe(id, state.ReplicaFailed, "exited 1")
		d := w.step()
		expectOutcome(t, d, Continue)
		expectStop(t, d, id)
		expectStart(t, d, 0) // the slot is retried by the next batch
		if d.Failures != failures {
			t.Fatalf("Failures = %d, want %d", d.Failures, failures)
		}
	}
	w.observe(w.newest(0), state.ReplicaHealthy, "")
	w.advance(10 * time.Second)
	d := w.step()
	expectStop(t, d, "a0")
	expectStart(t, d, 1)

	id := w.newest(1)
	w.observe(id, state.ReplicaUnhealthy, "HTTP 503")
	d = w.step()
	expectOutcome(t, d, Rollback)
	expectStop(t, d, id)
	if d.Failures != 3 || !strings.Contains(d.Reason, "(3 failed, 2 allowed for 4 replicas)") {
		t.Fatalf("Failures %d reason %q", d.Failures, d.Reason)
	}
}

// TestFailureCountedOnce runs Decide twice over a failed replica: the step
// that counts it stops it, and a stopped replica is never counted again.
func TestFailureCountedOnce(t *testing.T) {
	rev1 := revision(1, "A", 3)
	w := newWorld(t, revision(2, "B", 3, ratio(0.5), delay(time.Minute)), 1, healthySet(rev1, "a", 3), rev1)
	expectStart(t, w.step(), 0)
	id := w.newest(0)
	w.observe(id, state.ReplicaUnhealthy, "HTTP 500")

	first := w.step()
	expectStop(t, first, id)
	if first.Failures != 1 {
		t.Fatalf("first step Failures = %d, want 1", first.Failures)
	}
	// The agent has not confirmed the stop: the record is still unhealthy.
	w.advance(time.Second)
	second := w.step()
	expectStop(t, second)
	if second.Failures != 1 {
		t.Fatalf("second step Failures = %d, want still 1", second.Failures)
	}
}

// TestDeterminism shuffles the replica records: the Decision, events
// included, does not depend on their order, and the Input is left as it was.
func TestDeterminism(t *testing.T) {
	rev1 := revision(1, "A", 6)
	rev2 := revision(2, "B", 5, parallelism(3), ratio(0.5), stopFirst)
	replicas := join(healthySet(rev1, "a", 6), []state.Replica{
		healthy(rev2, "b0", 0, time.Minute),
		failing(replica(rev2, "b1", 1, ""), state.ReplicaUnhealthy, "HTTP 500"),
		stopped(replica(rev1, "x1", 1, ""), state.ReplicaStopped),
		stopped(replica(rev2, "y2", 2, ""), state.ReplicaHealthy),
		replica(rev2, "b3", 3, state.ReplicaStarting),
	})
	svc := rolloutService(2, 1)
	in := Input{Now: t0, Service: svc, Target: rev2, Replicas: replicas}

	before := slices.Clone(in.Replicas)
	rolloutBefore := *in.Service.Rollout
	serviceBefore := in.Service
	targetBefore := in.Target

	want := Decide(in)
	if len(want.Stop) == 0 || len(want.Remove) == 0 || len(want.Events) == 0 {
		t.Fatalf("fixture decides too little to compare: %+v", want)
	}
	if !reflect.DeepEqual(in.Replicas, before) || !reflect.DeepEqual(*in.Service.Rollout, rolloutBefore) ||
		!reflect.DeepEqual(in.Service, serviceBefore) || !reflect.DeepEqual(in.Target, targetBefore) {
		t.Fatal("Decide modified its input")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		shuffled := slices.Clone(replicas)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := Decide(Input{Now: t0, Service: svc, Target: rev2, Replicas: shuffled})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("order-dependent decision:\n got %+v\nwant %+v", got, want)
		}
	}
	for _, list := range [][]string{want.Stop, want.Remove} {
		if !slices.IsSorted(list) {
			t.Errorf("unsorted IDs %v", list)
		}
	}
	if !slices.IsSorted(want.Start) {
		t.Errorf("unsorted slots %v", want.Start)
	}
}
