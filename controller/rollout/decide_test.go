package rollout

import (
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

func TestDone(t *testing.T) {
	rev := revision(1, "A", 1)
	zeroSince := replica(rev, "z", 0, state.ReplicaHealthy)
	tests := []struct {
		name    string
		r       state.Replica
		monitor time.Duration
		want    bool
	}{
		{"starting is not done", replica(rev, "s", 0, state.ReplicaStarting), 0, false},
		{"unhealthy is not done", failing(healthy(rev, "u", 0, time.Hour), state.ReplicaUnhealthy, "x"), 0, false},
		{"healthy shorter than monitor", healthy(rev, "h", 0, 9*time.Second), 10 * time.Second, false},
		{"healthy exactly monitor", healthy(rev, "h", 0, 10*time.Second), 10 * time.Second, true},
		{"healthy longer than monitor", healthy(rev, "h", 0, time.Minute), 10 * time.Second, true},
		{"healthy, monitor 0", healthy(rev, "h", 0, 0), 0, true},
		{"healthy without a since stamp, monitor 0", zeroSince, 0, true},
		{"healthy without a since stamp is not guessed old", zeroSince, 10 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Done(tt.r, tt.monitor, t0); got != tt.want {
				t.Errorf("Done = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecideRollout(t *testing.T) {
	rev1 := revision(1, "A", 3)
	rev2 := revision(2, "B", 3)
	old := healthySet(rev1, "a", 3)
	a0, a1, a2 := old[0], old[1], old[2]
	inRollout := rolloutService(2, 1)

	rev2Delay := revision(2, "B", 3, delay(30*time.Second))
	rev2Par2 := revision(2, "B", 3, parallelism(2))
	rev2StopFirst := revision(2, "B", 3, stopFirst)
	rev2Half := revision(2, "B", 3, ratio(0.5))
	rev2Quarter4 := revision(2, "B", 4, ratio(0.5))
	rev3Rollback := rollbackTo(rev1, 3, 2)
	rollingBack := rolloutService(3, 2)
	rollingBack.State = state.ServiceRollingBack

	unhealthyB0 := failing(replica(rev2, "b0", 0, ""), state.ReplicaUnhealthy, "HTTP 500 from /healthz")

	tests := []struct {
		name     string
		service  state.Service
		target   state.Revision
		replicas []state.Replica
		want     want
	}{
		{
			name:    "first batch starts slot 0 and keeps the old replicas",
			service: inRollout, target: rev2, replicas: old,
			want: want{Start: []int{0}, Progress: true},
		},
		{
			// Start-first: passing a probe ends the slot's batch (the next
			// starts, as in Swarm) but not its monitor window: the old
			// replica of the slot keeps running until the window closes.
			name:    "new replica healthy for less than monitor keeps the old one; the next batch starts",
			service: inRollout, target: rev2,
			replicas: join(old, []state.Replica{healthy(rev2, "b0", 0, 9*time.Second)}),
			want:     want{Start: []int{1}, Progress: true, BatchDone: true},
		},
		{
			name:    "stop-first: a new replica healthy for less than monitor holds its batch",
			service: inRollout, target: rev2StopFirst,
			replicas: []state.Replica{stopped(a0, state.ReplicaStopped), a1, a2, healthy(rev2StopFirst, "b0", 0, 9*time.Second)},
			want:     want{Remove: []string{"a0"}},
		},
		{
			name:    "done replica stops the old one of its slot and the next batch starts",
			service: inRollout, target: rev2,
			replicas: join(old, []state.Replica{healthy(rev2, "b0", 0, 10*time.Second)}),
			want:     want{Start: []int{1}, Stop: []string{"a0"}, Progress: true, BatchDone: true},
		},
		{
			name:    "update.delay holds the next batch",
			service: inRollout, target: rev2Delay,
			replicas: join(old, []state.Replica{healthy(rev2, "b0", 0, 10*time.Second)}),
			want:     want{Stop: []string{"a0"}, Progress: true, BatchDone: true},
		},
		{
			name: "next batch waits until the delay is over",
			service: withRollout(inRollout, func(r *state.Rollout) {
				r.BatchDoneAt, r.LastProgressAt = t0.Add(-29*time.Second), t0.Add(-29*time.Second)
			}),
			target:   rev2Delay,
			replicas: []state.Replica{stopped(a0, state.ReplicaHealthy), a1, a2, healthy(rev2, "b0", 0, 39*time.Second)},
			want:     want{},
		},
		{
			name: "next batch starts once the delay is over",
			service: withRollout(inRollout, func(r *state.Rollout) {
				r.BatchDoneAt, r.LastProgressAt = t0.Add(-30*time.Second), t0.Add(-30*time.Second)
			}),
			target:   rev2Delay,
			replicas: []state.Replica{stopped(a0, state.ReplicaHealthy), a1, a2, healthy(rev2, "b0", 0, 40*time.Second)},
			want:     want{Start: []int{1}, Progress: true},
		},
		{
			name:    "parallelism 2 starts two slots",
			service: inRollout, target: rev2Par2, replicas: old,
			want: want{Start: []int{0, 1}, Progress: true},
		},
		{
			// Start-first without update.delay: parallelism bounds the
			// slots in flight (a sliding window, as Swarm's update
			// workers), so a slot that passed makes room at once.
			name:    "parallelism 2: a slot that passed makes room for the next at once",
			service: inRollout, target: rev2Par2,
			replicas: join(old, []state.Replica{healthy(rev2, "b0", 0, 10*time.Second), replica(rev2, "b1", 1, state.ReplicaStarting)}),
			want:     want{Start: []int{2}, Stop: []string{"a0"}, Progress: true},
		},
		{
			name:    "parallelism 2: the window takes only what it has room for",
			service: inRollout, target: revision(2, "B", 4, parallelism(2)),
			replicas: join(healthySet(rev1, "a", 4), []state.Replica{healthy(rev2, "b0", 0, time.Second), replica(rev2, "b1", 1, state.ReplicaStarting)}),
			want:     want{Start: []int{2}, Progress: true},
		},
		{
			// With update.delay batches stay lock-step: the delay is a
			// pause between whole batches.
			name:    "parallelism 2 with a delay: the batch waits for its slowest slot",
			service: inRollout, target: revision(2, "B", 3, parallelism(2), delay(5*time.Second)),
			replicas: join(old, []state.Replica{healthy(rev2, "b0", 0, 10*time.Second), replica(rev2, "b1", 1, state.ReplicaStarting)}),
			want:     want{Stop: []string{"a0"}, Progress: true},
		},
		{
			name:    "parallelism 2 stop-first: the batch waits for its slowest slot",
			service: inRollout, target: revision(2, "B", 3, parallelism(2), stopFirst),
			replicas: []state.Replica{stopped(a0, state.ReplicaStopped), stopped(a1, state.ReplicaStopped), a2,
				healthy(rev2, "b0", 0, 30*time.Second), replica(rev2, "b1", 1, state.ReplicaStarting)},
			want: want{Remove: []string{"a0", "a1"}, Progress: true},
		},
		{
			name: "parallelism 2: the second batch takes the remaining slot",
			service: withRollout(inRollout, func(r *state.Rollout) {
				r.LastProgressAt = t0.Add(-20 * time.Second)
			}),
			target: rev2Par2,
			replicas: []state.Replica{stopped(a0, state.ReplicaHealthy), a1, a2,
				healthy(rev2, "b0", 0, 30*time.Second), healthy(rev2, "b1", 1, 10*time.Second)},
			want: want{Start: []int{2}, Stop: []string{"a1"}, Progress: true, BatchDone: true},
		},
		{
			name:    "start-first keeps the old replica while the new one starts",
			service: inRollout, target: rev2,
			replicas: join(old, []state.Replica{replica(rev2, "b0", 0, state.ReplicaStarting)}),
			want:     want{},
		},
		{
			name:    "stop-first stops the old replica before starting",
			service: inRollout, target: rev2StopFirst, replicas: old,
			want: want{Stop: []string{"a0"}, Progress: true},
		},
		{
			name:    "stop-first waits for the old replica to stop",
			service: inRollout, target: rev2StopFirst,
			replicas: []state.Replica{stopped(a0, state.ReplicaHealthy), a1, a2},
			want:     want{},
		},
		{
			name:    "stop-first starts once the old replica is observed stopped",
			service: inRollout, target: rev2StopFirst,
			replicas: []state.Replica{stopped(a0, state.ReplicaStopped), a1, a2},
			want:     want{Start: []int{0}, Remove: []string{"a0"}, Progress: true},
		},
		{
			name:    "stop-first: a stopped record does not start a slot that still runs an old replica",
			service: rolloutService(3, 2), target: revision(3, "C", 3, stopFirst),
			replicas: []state.Replica{stopped(a0, state.ReplicaStopped), healthy(rev2, "b0", 0, longAgo), a1, a2},
			want:     want{Stop: []string{"b0"}, Remove: []string{"a0"}, Progress: true},
		},
		{
			name:    "stop-first starts at once when the old replica already failed",
			service: inRollout, target: rev2StopFirst,
			replicas: []state.Replica{failing(a0, state.ReplicaFailed, "exited 1"), a1, a2},
			want:     want{Start: []int{0}, Stop: []string{"a0"}, Progress: true},
		},
		{
			name:    "stop-first slot without an old replica starts directly",
			service: rolloutService(1, 0), target: revision(1, "A", 3, stopFirst),
			want: want{Start: []int{0}, Progress: true},
		},
		{
			name: "stop-first batch skips a slot still draining a failed replica",
			service: withRollout(inRollout, func(r *state.Rollout) {
				r.Failures = 1
			}),
			target:   revision(2, "B", 3, stopFirst, ratio(0.5)),
			replicas: []state.Replica{stopped(unhealthyB0, state.ReplicaUnhealthy), a1, a2},
			want:     want{Stop: []string{"a1"}, Failures: 1, Progress: true},
		},
		{
			name:    "failed new replica rolls back and is stopped",
			service: inRollout, target: rev2,
			replicas: join(old, []state.Replica{unhealthyB0}),
			want: want{Stop: []string{"b0"}, Failures: 1, Outcome: Rollback,
				Reason: "replica b0 (slot 0) unhealthy: HTTP 500 from /healthz (1 failed, 0 allowed for 3 replicas)"},
		},
		{
			name:    "failure with failure_action pause pauses",
			service: inRollout, target: revision(2, "B", 3, pauseOnFailure),
			replicas: join(old, []state.Replica{unhealthyB0}),
			want:     want{Stop: []string{"b0"}, Failures: 1, Outcome: Paused, Reason: "replica b0 (slot 0) unhealthy"},
		},
		{
			name:    "first release failure has nothing to roll back to",
			service: rolloutService(1, 0), target: rev1,
			replicas: []state.Replica{failing(replica(rev1, "a0", 0, ""), state.ReplicaFailed, "pull access denied")},
			want:     want{Stop: []string{"a0"}, Failures: 1, Outcome: Failed, Reason: "replica a0 (slot 0) failed: pull access denied"},
		},
		{
			name:    "a failing rollback revision fails and is never rolled back",
			service: rollingBack, target: rev3Rollback,
			replicas: []state.Replica{failing(a0, state.ReplicaUnhealthy, "timeout"), a1, a2},
			want:     want{Stop: []string{"a0"}, Failures: 1, Outcome: Failed, Reason: "replica a0 (slot 0) unhealthy: timeout"},
		},
		{
			name:    "a failure drops the other actions of its step",
			service: inRollout, target: rev2Par2,
			replicas: join(old, []state.Replica{healthy(rev2, "b0", 0, time.Minute),
				failing(replica(rev2, "b1", 1, ""), state.ReplicaFailed, "exited 137")}),
			want: want{Stop: []string{"b1"}, Failures: 1, Outcome: Rollback, Reason: "replica b1 (slot 1) failed: exited 137"},
		},
		{
			name:    "a tolerated failure is stopped and its slot retried in the next batch",
			service: inRollout, target: rev2Half,
			replicas: join(old, []state.Replica{unhealthyB0}),
			want:     want{Start: []int{0}, Stop: []string{"b0"}, Failures: 1, Progress: true, BatchDone: true},
		},
		{
			name:     "a replica already desired stopped is not counted again",
			service:  withRollout(inRollout, func(r *state.Rollout) { r.Failures = 1 }),
			target:   rev2Half,
			replicas: join(old, []state.Replica{stopped(unhealthyB0, state.ReplicaUnhealthy)}),
			want:     want{Start: []int{0}, Failures: 1, Progress: true},
		},
		{
			name:    "ratio 0.5 of 4 replicas: the third failure rolls back",
			service: withRollout(inRollout, func(r *state.Rollout) { r.Failures = 2 }),
			target:  rev2Quarter4,
			replicas: join(healthySet(rev1, "a", 4), []state.Replica{
				failing(replica(rev2, "b2", 2, ""), state.ReplicaFailed, "exited 1")}),
			want: want{Stop: []string{"b2"}, Failures: 3, Outcome: Rollback, Reason: "(3 failed, 2 allowed for 4 replicas)"},
		},
		{
			name:    "ratio 0.5 of 4 replicas: two failures in one step are tolerated",
			service: inRollout, target: revision(2, "B", 4, ratio(0.5), parallelism(4)),
			replicas: join(healthySet(rev1, "a", 4), []state.Replica{
				failing(replica(rev2, "b0", 0, ""), state.ReplicaFailed, "exited 1"),
				failing(replica(rev2, "b1", 1, ""), state.ReplicaUnhealthy, "HTTP 503"),
				replica(rev2, "b2", 2, state.ReplicaStarting),
				replica(rev2, "b3", 3, state.ReplicaStarting)}),
			// The window has room again: the failed slots start anew.
			want: want{Start: []int{0, 1}, Stop: []string{"b0", "b1"}, Failures: 2, Progress: true},
		},
		{
			name: "progress deadline exceeded rolls back",
			service: withRollout(inRollout, func(r *state.Rollout) {
				r.LastProgressAt = t0.Add(-5*time.Minute - time.Second)
			}),
			target:   rev2,
			replicas: join(old, []state.Replica{replica(rev2, "b0", 0, state.ReplicaStarting)}),
			want: want{Outcome: Rollback,
				Reason: "progress deadline 5m0s exceeded: no progress since 2025-03-01T11:54:59Z; slot 0: replica b0 is starting"},
		},
		{
			name: "progress deadline exceeded with failure_action pause pauses",
			service: withRollout(inRollout, func(r *state.Rollout) {
				r.LastProgressAt = t0.Add(-10 * time.Minute)
			}),
			target:   revision(2, "B", 3, pauseOnFailure),
			replicas: join(old, []state.Replica{replica(rev2, "b0", 0, state.ReplicaPending)}),
			want:     want{Outcome: Paused, Reason: "progress deadline 5m0s exceeded"},
		},
		{
			name: "progress deadline is not exceeded at exactly the deadline",
			service: withRollout(inRollout, func(r *state.Rollout) {
				r.LastProgressAt = t0.Add(-5 * time.Minute)
			}),
			target:   rev2,
			replicas: join(old, []state.Replica{replica(rev2, "b0", 0, state.ReplicaStarting)}),
			want:     want{},
		},
		{
			name: "waiting out update.delay is not a stall",
			service: withRollout(inRollout, func(r *state.Rollout) {
				r.LastProgressAt, r.BatchDoneAt = t0.Add(-6*time.Minute), t0.Add(-6*time.Minute)
			}),
			target:   revision(2, "B", 3, delay(10*time.Minute)),
			replicas: []state.Replica{healthy(rev2, "b0", 0, 7*time.Minute), a1, a2},
			want:     want{},
		},
		{
			name:    "rollback adopts the old replicas and stops the new ones without starting any",
			service: rollingBack, target: rev3Rollback,
			replicas: join(old, []state.Replica{
				stopped(unhealthyB0, state.ReplicaFailed),
				failing(healthy(rev2, "b1", 1, time.Minute), state.ReplicaUnhealthy, "HTTP 500")}),
			want: want{Stop: []string{"b1"}, Remove: []string{"b0"}, Progress: true, Outcome: Succeeded,
				Reason: "all 3 replicas run revision 3"},
		},
		{
			name:    "rollback restarts a slot whose old replica is gone",
			service: rollingBack, target: rev3Rollback,
			replicas: []state.Replica{stopped(unhealthyB0, state.ReplicaStopped), a1, a2},
			want:     want{Start: []int{0}, Remove: []string{"b0"}, Progress: true},
		},
		{
			name:    "scale up in a rollout adopts the running replicas and fills the new slots",
			service: inRollout, target: revision(2, "A", 5, parallelism(2)), replicas: old,
			want: want{Start: []int{3, 4}, Progress: true},
		},
		{
			name:    "scale down in a rollout stops the extra slots at once",
			service: inRollout, target: revision(2, "A", 1), replicas: old,
			want: want{Stop: []string{"a1", "a2"}, Outcome: Succeeded, Reason: "all 1 replicas run revision 2"},
		},
		{
			name:    "scale down to zero stops everything and succeeds",
			service: inRollout, target: revision(2, "A", 0),
			replicas: join(old, []state.Replica{stopped(replica(rev1, "x", 5, ""), state.ReplicaStopped)}),
			want: want{Stop: []string{"a0", "a1", "a2"}, Remove: []string{"x"}, Outcome: Succeeded,
				Reason: "scaled to 0 replicas"},
		},
		{
			name:    "zero replicas with nothing running succeeds",
			service: inRollout, target: revision(2, "A", 0),
			want: want{Outcome: Succeeded, Reason: "scaled to 0 replicas"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(Input{Now: t0, Service: tt.service, Target: tt.target, Replicas: tt.replicas})
			checkDecision(t, got, tt.want)
		})
	}
}

func TestDecideSteadyState(t *testing.T) {
	rev1 := revision(1, "A", 3)
	old := healthySet(rev1, "a", 3)
	a0, a1, a2 := old[0], old[1], old[2]
	z1 := healthy(revision(9, "Z", 3), "z1", 1, longAgo)
	running := steadyService(1, state.ServiceRunning)
	noRollout := running
	noRollout.Rollout = nil
	confirmed := stopped(replica(rev1, "x", 1, ""), state.ReplicaStopped)

	tests := []struct {
		name     string
		service  state.Service
		target   state.Revision
		replicas []state.Replica
		want     want
	}{
		{
			name:    "all slots healthy: nothing to do",
			service: running, target: rev1, replicas: old,
			want: want{},
		},
		{
			name:    "a failed replica is stopped and replaced in the same step",
			service: running, target: rev1,
			replicas: []state.Replica{a0, failing(a1, state.ReplicaUnhealthy, "HTTP 500"), a2},
			want:     want{Start: []int{1}, Stop: []string{"a1"}},
		},
		{
			name:    "a missing slot is filled",
			service: running, target: rev1, replicas: []state.Replica{a0, a2},
			want: want{Start: []int{1}},
		},
		{
			name:    "without a rollout record a missing slot is filled",
			service: noRollout, target: rev1, replicas: []state.Replica{a0, a2},
			want: want{Start: []int{1}},
		},
		{
			name:    "scale up fills the new slots",
			service: running, target: revision(1, "A", 5), replicas: old,
			want: want{Start: []int{3, 4}},
		},
		{
			name:    "scale down stops the extra slots",
			service: running, target: revision(1, "A", 1), replicas: old,
			want: want{Stop: []string{"a1", "a2"}},
		},
		{
			name:    "scale to zero stops everything",
			service: running, target: revision(1, "A", 0), replicas: old,
			want: want{Stop: []string{"a0", "a1", "a2"}},
		},
		{
			name:    "an old replica gets a replacement and keeps running meanwhile",
			service: running, target: rev1, replicas: []state.Replica{a0, z1, a2},
			want: want{Start: []int{1}},
		},
		{
			name:    "an old replica is kept while its replacement is not done",
			service: running, target: rev1,
			replicas: []state.Replica{a0, z1, healthy(rev1, "a1", 1, 5*time.Second), a2},
			want:     want{},
		},
		{
			name:    "an old replica is stopped once its replacement is done",
			service: running, target: rev1,
			replicas: []state.Replica{a0, z1, a1, a2},
			want:     want{Stop: []string{"z1"}},
		},
		{
			name:    "a duplicate replica of the target is stopped",
			service: running, target: rev1,
			replicas: join(old, []state.Replica{replica(rev1, "a0-dup", 0, state.ReplicaStarting)}),
			want:     want{Stop: []string{"a0-dup"}},
		},
		{
			name:    "only confirmed stops are removed",
			service: running, target: rev1,
			replicas: join(old, []state.Replica{
				confirmed,
				stopped(replica(rev1, "y", 1, ""), state.ReplicaPending),
				stopped(replica(rev1, "u", 2, ""), ""),
				stopped(replica(rev1, "f", 2, ""), state.ReplicaFailed),
				stopped(replica(rev1, "h", 0, ""), state.ReplicaHealthy),
				stopped(replica(rev1, "s", 0, ""), state.ReplicaStarting),
				stopped(replica(rev1, "far", 40, ""), state.ReplicaStopped),
			}),
			want: want{Remove: []string{"f", "far", "u", "x", "y"}},
		},
		{
			name:    "a paused service only removes",
			service: steadyService(1, state.ServicePaused), target: rev1,
			replicas: []state.Replica{a0, failing(a1, state.ReplicaFailed, "exited"), confirmed},
			want:     want{Remove: []string{"x"}},
		},
		{
			name:    "a failed service only removes",
			service: steadyService(1, state.ServiceFailed), target: revision(1, "A", 1),
			replicas: join(old, []state.Replica{confirmed}),
			want:     want{Remove: []string{"x"}},
		},
		{
			name: "a deploying service without a rollout only removes",
			service: func() state.Service {
				s := steadyService(1, state.ServiceDeploying)
				s.Rollout = nil
				return s
			}(),
			target:   rev1,
			replicas: []state.Replica{a0, confirmed},
			want:     want{Remove: []string{"x"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(Input{Now: t0, Service: tt.service, Target: tt.target, Replicas: tt.replicas})
			checkDecision(t, got, tt.want)
		})
	}
}
