package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// on puts a copy of r on host.
func on(r state.Replica, host string) state.Replica {
	r.Host = host
	return r
}

// Replicas on a draining host (Input.Draining) move start-first in steady
// state: a replacement starts, the drained replica runs until it is done.
// A rollout in progress, a paused or failed service: nothing moves.
func TestDecideDraining(t *testing.T) {
	rev1 := revision(1, "A", 3)
	a0, a1, a2 := healthy(rev1, "a0", 0, longAgo), on(healthy(rev1, "a1", 1, longAgo), "host-2"), healthy(rev1, "a2", 2, longAgo)
	running := steadyService(1, state.ServiceRunning)
	draining := map[string]bool{"host-2": true}
	fresh := on(healthy(rev1, "b1", 1, 5*time.Second), "host-3")
	done := on(healthy(rev1, "b1", 1, longAgo), "host-3")

	tests := []struct {
		name     string
		service  state.Service
		target   state.Revision
		replicas []state.Replica
		want     want
		event    string
	}{
		{name: "a replica on a draining host gets a replacement and keeps running",
			service: running, target: rev1, replicas: []state.Replica{a0, a1, a2},
			want: want{Start: []int{1}}, event: "replica a1 is on draining host host-2: moving it"},
		{name: "it keeps running while the replacement is not done",
			service: running, target: rev1, replicas: []state.Replica{a0, a1, a2, fresh},
			want: want{}},
		{name: "it stops once the replacement is done",
			service: running, target: rev1, replicas: []state.Replica{a0, a1, a2, done},
			want: want{Stop: []string{"a1"}}, event: "moved off draining host host-2: replaced by replica b1"},
		{name: "a failed replica on a draining host is replaced as any failed one",
			service: running, target: rev1, replicas: []state.Replica{a0, failing(a1, state.ReplicaUnhealthy, "HTTP 500"), a2},
			want: want{Start: []int{1}, Stop: []string{"a1"}}},
		{name: "a rollout in progress leaves it to its batches",
			service: rolloutService(1, 0), target: rev1, replicas: []state.Replica{a0, a1, a2},
			want: want{Outcome: Succeeded, Reason: "all 3 replicas run revision 1", Progress: false}},
		{name: "a failed service moves nothing",
			service: steadyService(1, state.ServiceFailed), target: rev1, replicas: []state.Replica{a0, a1, a2},
			want: want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(Input{Now: t0, Service: tt.service, Target: tt.target, Replicas: tt.replicas, Draining: draining})
			checkDecision(t, got, tt.want)
			if tt.event != "" && !slices.ContainsFunc(got.Events, func(e string) bool { return strings.Contains(e, tt.event) }) {
				t.Errorf("events %q, want one with %q", got.Events, tt.event)
			}
		})
	}
}

// A slot with replicas on two draining hosts (its replacement went to a
// host drained since) keeps one, the done one, until a host can take it.
func TestDecideDrainingTwice(t *testing.T) {
	rev1 := revision(1, "A", 1)
	old := on(healthy(rev1, "a0", 0, longAgo), "host-2")
	fresh := on(healthy(rev1, "b0", 0, time.Second), "host-3")
	got := Decide(Input{Now: t0, Service: steadyService(1, state.ServiceRunning), Target: rev1,
		Replicas: []state.Replica{old, fresh}, Draining: map[string]bool{"host-2": true, "host-3": true}})
	checkDecision(t, got, want{Start: []int{0}, Stop: []string{"b0"}})
}
