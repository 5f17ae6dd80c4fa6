package rollout

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// t0 is "now" in single-step tests.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const longAgo = time.Hour

// revision builds revision number of service "web" with fingerprint fp and
// n replicas, with the spec's default update settings changed by opts.
func revision(number int, fp string, n int, opts ...func(*specs.Update)) state.Revision {
	spec := specs.Spec{
		Service:  "web",
		Image:    "registry.test/web:" + fp,
		Replicas: n,
		Update: specs.Update{
			Parallelism:      1,
			Order:            specs.OrderStartFirst,
			Monitor:          10 * time.Second,
			MaxFailureRatio:  0,
			FailureAction:    specs.FailureActionRollback,
			ProgressDeadline: 5 * time.Minute,
		},
	}
	for _, opt := range opts {
		opt(&spec.Update)
	}
	return state.Revision{
		Service:     "web",
		Number:      number,
		Spec:        spec,
		Fingerprint: fp,
		Ref:         "registry.test/web@sha256:" + fp,
		State:       state.RevisionInProgress,
	}
}

func parallelism(n int) func(*specs.Update) { return func(u *specs.Update) { u.Parallelism = n } }
func delay(d time.Duration) func(*specs.Update) {
	return func(u *specs.Update) { u.Delay = d }
}
func monitor(d time.Duration) func(*specs.Update) {
	return func(u *specs.Update) { u.Monitor = d }
}
func ratio(r float64) func(*specs.Update) { return func(u *specs.Update) { u.MaxFailureRatio = r } }
func stopFirst(u *specs.Update)           { u.Order = specs.OrderStopFirst }
func pauseOnFailure(u *specs.Update)      { u.FailureAction = specs.FailureActionPause }

// rollbackTo turns r (a copy of revision `to`) into rollback revision number
// that undoes revision of.
func rollbackTo(r state.Revision, number, of int) state.Revision {
	to := r.Number
	r.Number = number
	r.RollbackOf = of
	r.RollbackTo = to
	return r
}

// rolloutService is service "web" rolling out revision target from from,
// started a minute before t0 with that as its last progress.
func rolloutService(target, from int) state.Service {
	return state.Service{
		Name:    "web",
		Current: target,
		State:   state.ServiceDeploying,
		Rollout: &state.Rollout{
			Revision:       target,
			From:           from,
			StartedAt:      t0.Add(-time.Minute),
			LastProgressAt: t0.Add(-time.Minute),
			State:          state.RolloutInProgress,
		},
		NextRevision: target + 1,
	}
}

// withRollout changes the rollout record of a copy of svc.
func withRollout(svc state.Service, change func(*state.Rollout)) state.Service {
	ro := *svc.Rollout
	change(&ro)
	svc.Rollout = &ro
	return svc
}

// steadyService is service "web" running revision current after a finished
// rollout.
func steadyService(current int, serviceState string) state.Service {
	return state.Service{
		Name:     "web",
		Current:  current,
		LastGood: current,
		State:    serviceState,
		Rollout: &state.Rollout{
			Revision:  current,
			StartedAt: t0.Add(-2 * longAgo),
			State:     state.RolloutSucceeded,
		},
		NextRevision: current + 1,
	}
}

// replica is a record of rev in slot, desired running, in observed state obs.
func replica(rev state.Revision, id string, slot int, obs string) state.Replica {
	return state.Replica{
		ID:          id,
		Service:     "web",
		Slot:        slot,
		Revision:    rev.Number,
		Fingerprint: rev.Fingerprint,
		Host:        "host-1",
		Desired:     state.DesiredRunning,
		CreatedAt:   t0.Add(-2 * longAgo),
		Status:      state.ReplicaStatus{State: obs},
	}
}

// healthy is a replica of rev healthy since age before t0.
func healthy(rev state.Revision, id string, slot int, age time.Duration) state.Replica {
	r := replica(rev, id, slot, state.ReplicaHealthy)
	r.Status.HealthySince = t0.Add(-age)
	return r
}

// stopped turns r into a record desired stopped, observed obs.
func stopped(r state.Replica, obs string) state.Replica {
	r.Desired = state.DesiredStopped
	r.Status.State = obs
	return r
}

// failing turns r into a failed record (obs is failed or unhealthy).
func failing(r state.Replica, obs, msg string) state.Replica {
	r.Status.State = obs
	r.Status.Message = msg
	return r
}

// healthySet is n healthy replicas of rev named prefix0..prefix(n-1).
func healthySet(rev state.Revision, prefix string, n int) []state.Replica {
	var rs []state.Replica
	for i := range n {
		rs = append(rs, healthy(rev, fmt.Sprintf("%s%d", prefix, i), i, longAgo))
	}
	return rs
}

func join(groups ...[]state.Replica) []state.Replica { return slices.Concat(groups...) }

// want is the part of a Decision a test pins down. Events are free text and
// only checked for presence where a test asks.
type want struct {
	Start     []int
	Stop      []string
	Remove    []string
	Failures  int
	Progress  bool
	BatchDone bool
	Outcome   Outcome
	// Reason must contain this; a non-Continue outcome must have a reason.
	Reason string
}

func checkDecision(t *testing.T, got Decision, w want) {
	t.Helper()
	gotW := want{
		Start: got.Start, Stop: got.Stop, Remove: got.Remove, Failures: got.Failures,
		Progress: got.Progress, BatchDone: got.BatchDone, Outcome: got.Outcome, Reason: w.Reason,
	}
	if !reflect.DeepEqual(gotW, w) {
		t.Errorf("decision mismatch\n got: %+v\nwant: %+v\nevents: %q\nreason: %q", gotW, w, got.Events, got.Reason)
	}
	if !strings.Contains(got.Reason, w.Reason) {
		t.Errorf("reason %q does not contain %q", got.Reason, w.Reason)
	}
	if got.Outcome != Continue && got.Reason == "" {
		t.Errorf("outcome %q without a reason", got.Outcome)
	}
	if got.Outcome == Continue && got.Reason != "" {
		t.Errorf("reason %q on a continuing rollout", got.Reason)
	}
	actions := len(got.Start) + len(got.Stop) + len(got.Remove)
	if actions > 0 && len(got.Events) < actions {
		t.Errorf("%d actions but only %d events: %q", actions, len(got.Events), got.Events)
	}
}
