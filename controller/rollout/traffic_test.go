package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

func canary(weight float64, d time.Duration) func(*specs.Update) {
	return func(u *specs.Update) { u.Canary = &specs.Canary{Weight: weight, Duration: d} }
}

func rollbackOnErrors(rate float64, minRequests int) func(*specs.Update) {
	return func(u *specs.Update) {
		u.RollbackOn = &specs.RollbackOn{ErrorRate: &rate, MinRequests: minRequests}
	}
}

func rollbackOnLatency(p99 time.Duration, minRequests int) func(*specs.Update) {
	return func(u *specs.Update) {
		u.RollbackOn = &specs.RollbackOn{LatencyP99: p99, MinRequests: minRequests}
	}
}

func deadline(d time.Duration) func(*specs.Update) {
	return func(u *specs.Update) { u.ProgressDeadline = d }
}

// figures is what the proxies sent to the new revision (and to the others).
func figures(requests, errors uint64, p99 time.Duration, old traffic.Summary) *Traffic {
	return &Traffic{New: traffic.Summary{Requests: requests, Errors: errors, P50: p99 / 4, P99: p99}, Old: old}
}

// stepUntil steps the world (agents acting every tick) until cond holds,
// failing the test after max steps.
func stepUntil(t *testing.T, w *world, maxSteps int, cond func(Decision) bool) Decision {
	t.Helper()
	for range maxSteps {
		d := w.step()
		if cond(d) {
			return d
		}
		if d.Outcome != Continue {
			t.Fatalf("rollout ended %s (%s) before the condition held", d.Outcome, d.Reason)
		}
		w.tick(simTick, nil)
	}
	t.Fatalf("condition not reached in %d steps; replicas %+v", maxSteps, w.replicas)
	return Decision{}
}

func hasLine(lines []string, part string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, part) })
}

// The canary is the first batch (update.parallelism slots). It holds the
// rollout, and keeps its slot's old replica running, for its duration
// counted from the moment its replicas are healthy, then ends by itself
// (no rollback_on: a timed canary) and the rollout goes on in batches.
func TestCanaryHoldsTheFirstBatchForItsDuration(t *testing.T) {
	v1 := revision(1, "v1", 3)
	v2 := revision(2, "v2", 3, canary(0.1, time.Minute))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 3), v1)

	d := w.step()
	expectStart(t, d, 0)
	if d.Canary == nil || !slices.Equal(d.Canary.Slots, []int{0}) || !d.Canary.Running() {
		t.Fatalf("canary = %+v, want slot 0 running", d.Canary)
	}
	if !hasLine(d.Waiting, "canary: 1 replica at 10% for 1m0s") {
		t.Fatalf("waiting lines %q lack the canary's", d.Waiting)
	}
	w.tick(simTick, nil) // starting
	w.tick(simTick, nil) // healthy
	healthyAt := w.now
	canaryID := w.newest(0)
	for w.now.Before(healthyAt.Add(time.Minute)) {
		d := w.step()
		if len(d.Start) > 0 || slices.Contains(d.Stop, "old0") || d.Outcome != Continue {
			t.Fatalf("at %s into the canary: start %v, stop %v, outcome %q; want it held", w.now.Sub(healthyAt), d.Start, d.Stop, d.Outcome)
		}
		if !hasLine(d.Waiting, "canary:") {
			t.Fatalf("waiting lines %q lack the canary's while it runs", d.Waiting)
		}
		w.advance(simTick)
	}
	d = w.step()
	if d.Canary.Running() || d.Canary.Ended != "1m0s passed" || !d.Progress {
		t.Fatalf("canary %+v (progress %v), want ended by time", d.Canary, d.Progress)
	}
	expectStop(t, d, "old0")
	expectStart(t, d, 1)
	if hasLine(d.Waiting, "canary:") {
		t.Fatalf("waiting lines %q still name the canary", d.Waiting)
	}
	runToEnd(t, w, nil, nil)
	checkConverged(t, w, "v2", 3)
	if r := w.find(canaryID); r.Desired != state.DesiredRunning {
		t.Fatalf("the canary replica %s was replaced", canaryID)
	}
}

// A canary replica that fails (within max_failure_ratio) is replaced,
// and the canary's duration starts again once the replacement is healthy.
func TestCanaryDurationRestartsWhenItsReplicaFails(t *testing.T) {
	v1 := revision(1, "v1", 4)
	v2 := revision(2, "v2", 4, canary(0.2, time.Minute), ratio(0.5))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 4), v1)
	w.step()
	w.tick(simTick, nil)
	w.tick(simTick, nil)
	w.advance(50 * time.Second)
	w.observe(w.newest(0), state.ReplicaUnhealthy, "HTTP 500 from /healthz")
	d := w.step()
	if d.Failures != 1 || d.Outcome != Continue {
		t.Fatalf("failures %d, outcome %q; want 1 tolerated", d.Failures, d.Outcome)
	}
	// Start-first: the slot is replaced in the step that stops its
	// failed replica; no other slot joins while the canary runs.
	expectStart(t, d, 0)
	w.tick(simTick, nil)
	w.tick(simTick, nil)
	restarted := w.now
	stepUntil(t, w, 100, func(d Decision) bool { return !d.Canary.Running() })
	if got := w.now.Sub(restarted); got < time.Minute {
		t.Fatalf("the canary ended %s after its replacement was healthy, want a full minute", got)
	}
}

// A canary longer than the progress deadline is not a stall: the deadline
// counts from the canary's end.
func TestCanaryLongerThanTheDeadline(t *testing.T) {
	v1 := revision(1, "v1", 2)
	v2 := revision(2, "v2", 2, canary(0.5, 10*time.Minute), deadline(time.Minute))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 2), v1)
	runToEnd(t, w, nil, nil)
	checkConverged(t, w, "v2", 2)
	if w.now.Sub(t0) < 10*time.Minute {
		t.Fatalf("the rollout took %s, less than its canary", w.now.Sub(t0))
	}
}

// promote ends a running canary at once, and one that has not started yet
// before it starts: no batch is held for it.
func TestPromoteEndsTheCanary(t *testing.T) {
	v1 := revision(1, "v1", 3)
	v2 := revision(2, "v2", 3, canary(0.1, time.Hour))
	t.Run("running", func(t *testing.T) {
		w := newWorld(t, v2, 1, healthySet(v1, "old", 3), v1)
		w.step()
		w.tick(simTick, nil)
		w.tick(simTick, nil)
		w.advance(time.Minute)
		expectIdle(t, w.step())
		w.service = withRollout(w.service, func(ro *state.Rollout) {
			c := *ro.Canary
			c.Promoted = true
			ro.Canary = &c
		})
		d := w.step()
		if d.Canary.Running() || d.Canary.Ended != "promoted" || !d.Progress {
			t.Fatalf("canary %+v, want ended by promote", d.Canary)
		}
		expectStart(t, d, 1)
		runToEnd(t, w, nil, nil)
		checkConverged(t, w, "v2", 3)
	})
	t.Run("before it starts", func(t *testing.T) {
		w := newWorld(t, v2, 1, healthySet(v1, "old", 3), v1)
		w.service = withRollout(w.service, func(ro *state.Rollout) { ro.Canary = &state.CanaryState{Promoted: true} })
		d := w.step()
		expectStart(t, d, 0)
		if d.Canary.Running() || len(d.Canary.Slots) != 0 {
			t.Fatalf("canary %+v, want ended without a batch", d.Canary)
		}
		runToEnd(t, w, nil, nil)
		checkConverged(t, w, "v2", 3)
		if w.now.Sub(t0) > 10*time.Minute {
			t.Fatalf("the rollout took %s: the promoted canary held it", w.now.Sub(t0))
		}
	})
}

// A breach of error_rate during the canary fails the release with the
// threshold and the measured figures, beside the other replicas'; the
// failure action rolls back, and the rollback is never judged by traffic
// however bad the figures.
func TestErrorRateBreachRollsBack(t *testing.T) {
	v1 := revision(1, "v1", 3)
	v2 := revision(2, "v2", 3, canary(0.1, time.Minute), rollbackOnErrors(0.02, 50))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 3), v1)
	w.step()
	w.tick(simTick, nil)
	w.tick(simTick, nil)
	w.traffic = figures(40, 30, 0, traffic.Summary{})
	if d := w.step(); d.Outcome != Continue {
		t.Fatalf("judged on %d requests: %s", w.traffic.New.Requests, d.Reason)
	}
	w.traffic = figures(212, 66, 80*time.Millisecond, traffic.Summary{Requests: 1890, Errors: 2})
	d := w.step()
	expectOutcome(t, d, Rollback)
	for _, want := range []string{"error rate 31.1 % over 212 requests > 2 %", "update.rollback_on.error_rate", "the other replicas: 0.1 % over 1890 requests"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q lacks %q", d.Reason, want)
		}
	}
	if len(d.Start) > 0 || len(d.Stop) > 0 {
		t.Fatalf("a failing step started %v and stopped %v", d.Start, d.Stop)
	}
	// The rollback (w.traffic still says 31 % errors) is not judged.
	runToEnd(t, w, nil, nil)
	if target := w.target(); !target.IsRollback() {
		t.Fatalf("revision %d is no rollback", w.service.Current)
	}
	checkConverged(t, w, "v1", 3)
}

// A p99 over latency_p99 fails the release; failure_action pause pauses.
func TestLatencyBreach(t *testing.T) {
	for _, tt := range []struct {
		name string
		from int
		opts []func(*specs.Update)
		want Outcome
	}{
		{"rollback", 1, nil, Rollback},
		{"pause", 1, []func(*specs.Update){pauseOnFailure}, Paused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v1 := revision(1, "v1", 2)
			v2 := revision(2, "v2", 2, append(tt.opts, rollbackOnLatency(500*time.Millisecond, 50))...)
			var old []state.Replica
			if tt.from != 0 {
				old = healthySet(v1, "old", 2)
			}
			w := newWorld(t, v2, tt.from, old, v1)
			w.step()
			w.tick(simTick, nil)
			w.traffic = figures(212, 0, 812*time.Millisecond, traffic.Summary{Requests: 400, P99: 120 * time.Millisecond})
			d := w.step()
			expectOutcome(t, d, tt.want)
			if !strings.Contains(d.Reason, "p99 latency 812ms over 212 requests > 500ms") {
				t.Errorf("reason %q lacks the p99 and the threshold", d.Reason)
			}
			if tt.from != 0 && !strings.Contains(d.Reason, "the other replicas: 120ms over 400 requests") {
				t.Errorf("reason %q lacks the other replicas' p99", d.Reason)
			}
		})
	}
}

// Without enough requests the release is not judged and does not go on:
// the next batch waits (the rollout message says so, the events count),
// and once the evidence is there and within the thresholds the rollout
// goes on and succeeds.
func TestEvidenceGatesBatchesAndSuccess(t *testing.T) {
	v1 := revision(1, "v1", 3)
	v2 := revision(2, "v2", 3, rollbackOnErrors(0.02, 50))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 3), v1)
	expectStart(t, w.step(), 0)
	w.tick(simTick, nil)
	w.tick(simTick, nil)
	w.traffic = figures(12, 0, time.Millisecond, traffic.Summary{})
	for range 5 {
		d := w.step()
		if len(d.Start) > 0 {
			t.Fatalf("a batch started on 12 of 50 requests")
		}
		if !hasLine(d.Waiting, "waiting for traffic: revision 2 needs 50 requests") || !hasLine(d.Events, "waiting for traffic: 12 of 50 requests") {
			t.Fatalf("waiting %q, events %q: want the evidence named", d.Waiting, d.Events)
		}
		w.tick(simTick, nil)
	}
	w.traffic = figures(60, 1, time.Millisecond, traffic.Summary{})
	expectStart(t, w.step(), 1)
	runToEnd(t, w, nil, nil)
	checkConverged(t, w, "v2", 3)
}

// A release that never gets the requests it needs is never passed: every
// slot done is not enough, and the progress deadline applies the failure
// action with the evidence it lacked in the reason.
func TestNoEvidenceEndsAtTheDeadline(t *testing.T) {
	v1 := revision(1, "v1", 1)
	v2 := revision(2, "v2", 1, rollbackOnErrors(0.02, 50), deadline(time.Minute))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 1), v1)
	w.traffic = figures(3, 0, time.Millisecond, traffic.Summary{})
	var d Decision
	for range 100 {
		d = w.step()
		if d.Outcome != Continue {
			break
		}
		w.tick(simTick, nil)
	}
	expectOutcome(t, d, Rollback)
	for _, want := range []string{"progress deadline 1m0s exceeded", "waiting for traffic: 3 of 50 requests"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q lacks %q", d.Reason, want)
		}
	}
}

// A canary whose duration has passed without the evidence waits for it;
// a promoted one goes on with its batches but the release still does not
// succeed before it has the evidence.
func TestCanaryWaitsForEvidencePromoteDoesNotPass(t *testing.T) {
	v1 := revision(1, "v1", 2)
	v2 := revision(2, "v2", 2, canary(0.5, 30*time.Second), rollbackOnErrors(0.05, 50))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 2), v1)
	w.step()
	w.tick(simTick, nil)
	w.tick(simTick, nil)
	w.advance(time.Minute)
	d := w.step()
	if !d.Canary.Running() || len(d.Start) > 0 {
		t.Fatalf("canary %+v, start %v: want it held for evidence", d.Canary, d.Start)
	}
	w.service = withRollout(w.service, func(ro *state.Rollout) {
		c := *ro.Canary
		c.Promoted = true
		ro.Canary = &c
	})
	expectStart(t, w.step(), 1)
	for range 40 {
		w.tick(simTick, nil)
		if d := w.step(); d.Outcome != Continue {
			t.Fatalf("rollout ended %s (%s) without evidence", d.Outcome, d.Reason)
		}
	}
	w.traffic = figures(80, 0, time.Millisecond, traffic.Summary{})
	expectOutcome(t, w.step(), Succeeded)
}

// A manual rollback during a canary ends it at once: the rollback's own
// rollout has no canary and no judging, adopts the old replicas and stops
// the canary's.
func TestRollbackDuringCanary(t *testing.T) {
	v1 := revision(1, "v1", 2, canary(0.1, time.Hour), rollbackOnErrors(0, 50))
	v2 := revision(2, "v2", 2, canary(0.1, time.Hour), rollbackOnErrors(0, 50))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 2), v1)
	w.step()
	w.tick(simTick, nil)
	w.tick(simTick, nil)
	canaryID := w.newest(0)
	w.beginRollback() // as `deployctl rollback` stores one
	w.traffic = figures(500, 500, time.Second, traffic.Summary{})
	d := w.step()
	if d.Canary != nil {
		t.Fatalf("the rollback has canary %+v", d.Canary)
	}
	expectOutcome(t, d, Succeeded)
	expectStop(t, d, canaryID)
}

// A release that starts no replica of its own (only update settings
// changed: every slot is adopted) has nothing new to judge and no canary.
func TestAdoptedReleaseIsNotHeldForEvidence(t *testing.T) {
	v1 := revision(1, "v1", 2)
	v2 := revision(2, "v1", 2, canary(0.1, time.Hour), rollbackOnErrors(0.01, 50))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 2), v1)
	d := w.step()
	expectOutcome(t, d, Succeeded)
	if d.Canary != nil {
		t.Fatalf("canary %+v for a release that starts nothing", d.Canary)
	}
}

func TestCanaryDueIsWhenTheHealthyBatchHasRunItsDuration(t *testing.T) {
	v1 := revision(1, "v1", 2)
	v2 := revision(2, "v2", 2, canary(0.1, 30*time.Second))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 2), v1)
	w.step()
	if _, ok := CanaryDue(w.input()); ok {
		t.Fatal("a canary whose replica is not healthy yet is due")
	}
	w.tick(simTick, nil)
	w.tick(simTick, nil)
	due, ok := CanaryDue(w.input())
	if !ok || !due.Equal(w.now.Add(30*time.Second)) {
		t.Fatalf("CanaryDue = %s, %v; want %s", due, ok, w.now.Add(30*time.Second))
	}
}

// Stop-first, with parallelism 2: the canary is the first two slots, the
// others wait for its end, and the rollout ends converged.
func TestCanaryStopFirst(t *testing.T) {
	v1 := revision(1, "v1", 4)
	v2 := revision(2, "v2", 4, stopFirst, parallelism(2), canary(0.25, time.Minute), rollbackOnErrors(0.02, 10))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 4), v1)
	w.traffic = figures(0, 0, 0, traffic.Summary{})
	d := w.step()
	if !slices.Equal(d.Canary.Slots, []int{0, 1}) {
		t.Fatalf("canary slots %v, want the first batch [0 1]", d.Canary.Slots)
	}
	stepUntil(t, w, 20, func(Decision) bool { return w.healthyRunning() == 4 })
	for range 20 {
		if d := w.step(); slices.ContainsFunc(d.Start, func(s int) bool { return s >= 2 }) {
			t.Fatalf("slot %v started while the canary waits for evidence", d.Start)
		}
		w.tick(simTick, nil)
	}
	w.traffic = figures(40, 0, time.Millisecond, traffic.Summary{Requests: 40})
	runToEnd(t, w, nil, nil)
	checkConverged(t, w, "v2", 4)
}

// A first release has nothing else serving and no users yet: no canary
// (it would get every request whatever its weight) and no judging (held
// for evidence it would wait for requests that come only once it is up).
// It goes by health alone, even with figures that would fail a release.
func TestFirstReleaseIsNeitherCanariedNorJudged(t *testing.T) {
	v1 := revision(1, "v1", 2, canary(0.1, time.Hour), rollbackOnErrors(0.02, 50))
	w := newWorld(t, v1, 0, nil)
	d := w.step()
	expectStart(t, d, 0)
	if d.Canary != nil {
		t.Fatalf("canary %+v on a first release", d.Canary)
	}
	w.traffic = figures(100, 50, time.Millisecond, traffic.Summary{})
	runToEnd(t, w, nil, nil)
	checkConverged(t, w, "v1", 2)
}

// A scale (same containers, one more replica) is not a release of new
// containers: no canary, no waiting for evidence, even with rollback_on.
func TestScaleIsNotJudged(t *testing.T) {
	v1 := revision(1, "v1", 2, canary(0.1, time.Hour), rollbackOnErrors(0.01, 50))
	v2 := revision(2, "v1", 3, canary(0.1, time.Hour), rollbackOnErrors(0.01, 50))
	w := newWorld(t, v2, 1, healthySet(v1, "old", 2), v1)
	d := w.step()
	expectStart(t, d, 2)
	if d.Canary != nil {
		t.Fatalf("canary %+v for a scale", d.Canary)
	}
	runToEnd(t, w, nil, nil)
	checkConverged(t, w, "v1", 3)
}
