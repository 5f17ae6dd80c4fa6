package hollow

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// recorder is a controller that hands out one assignment set per host and
// keeps the last state each replica was reported in. The scale tests in
// cmd/deployctl run the same hosts against real servers.
type recorder struct {
	mu     sync.Mutex
	sets   map[string]state.AssignmentSet
	states map[string]string
	hosts  map[string]int // reports per host
}

func (r *recorder) Assignments(ctx context.Context, host string, after uint64, wait time.Duration) (state.AssignmentSet, error) {
	r.mu.Lock()
	set := r.sets[host]
	r.mu.Unlock()
	if set.Index > after {
		return set, nil
	}
	select {
	case <-ctx.Done():
		return state.AssignmentSet{}, ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return set, nil
	}
}

func (r *recorder) Report(ctx context.Context, rep state.HostReport) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[rep.Host]++
	for _, s := range rep.Reports {
		r.states[s.ReplicaID] = s.State
	}
	return nil
}

func (r *recorder) state(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.states[id]
}

func assignment(id, image, desired string) state.Assignment {
	return state.Assignment{
		Replica:  state.Replica{ID: id, Fingerprint: "fp-" + image, Desired: desired},
		Revision: state.Revision{Spec: specs.Spec{Image: image}, Ref: "registry.test/app@sha256:00"},
	}
}

func TestHostsRunTheirAssignments(t *testing.T) {
	rec := &recorder{states: map[string]string{}, hosts: map[string]int{}, sets: map[string]state.AssignmentSet{
		"h-0001": {Index: 5, Assignments: []state.Assignment{
			assignment("good", "registry.test/app:v1", state.DesiredRunning),
			assignment("bad", "registry.test/app:v2-bad", state.DesiredRunning),
			assignment("gone", "registry.test/app:v1", state.DesiredStopped),
		}},
		"h-0002": {Index: 7, Assignments: []state.Assignment{assignment("other", "registry.test/app:v1", state.DesiredRunning)}},
	}}
	fleet, err := New(Config{Hosts: 2, Prefix: "h", StartLatency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond},
		func(string) (Controller, error) { return rec, nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- fleet.Run(ctx) }()
	want := map[string]string{"good": state.ReplicaHealthy, "bad": state.ReplicaUnhealthy, "gone": state.ReplicaStopped, "other": state.ReplicaHealthy}
	deadline := time.Now().Add(10 * time.Second)
	for id, st := range want {
		for rec.state(id) != st {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s is %q, want %q", id, rec.state(id), st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The good replica is replaced when its fingerprint changes, and a
	// replica that left the set is forgotten without a report.
	rec.mu.Lock()
	rec.sets["h-0001"] = state.AssignmentSet{Index: 9, Assignments: []state.Assignment{assignment("good", "registry.test/app:v2", state.DesiredRunning)}}
	rec.mu.Unlock()
	for fleet.Stats().Starts < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the changed fingerprint started no new container: %+v", fleet.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := fleet.Stats()
	if s.Healthy < 2 || s.Unhealthy != 1 || s.Stops != 0 || s.Failed != 0 {
		t.Fatalf("stats %+v: want ≥ 2 healthy, 1 unhealthy, no stop (gone never ran), no failure", s)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.hosts["h-0001"] == 0 || rec.hosts["h-0002"] == 0 {
		t.Fatalf("reports per host %v: every host reports (heartbeats)", rec.hosts)
	}
}

func TestFailFractionFailsStarts(t *testing.T) {
	var as []state.Assignment
	for _, id := range []string{"a", "b", "c", "d"} {
		as = append(as, assignment(id, "registry.test/app:v1", state.DesiredRunning))
	}
	rec := &recorder{states: map[string]string{}, hosts: map[string]int{}, sets: map[string]state.AssignmentSet{"hollow-0001": {Index: 1, Assignments: as}}}
	fleet, err := New(Config{Hosts: 1, FailFraction: 1, StartLatency: time.Millisecond}, func(string) (Controller, error) { return rec, nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _ = fleet.Run(ctx) }()
	for _, id := range []string{"a", "b", "c", "d"} {
		for rec.state(id) != state.ReplicaFailed {
			if ctx.Err() != nil {
				t.Fatalf("replica %s is %q with --hollow-fail-fraction 1, want failed", id, rec.state(id))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestConfigIsChecked(t *testing.T) {
	never := func(string) (Controller, error) { return nil, errors.New("not called") }
	for _, cfg := range []Config{{Hosts: 0}, {Hosts: 1, FailFraction: 1.5}, {Hosts: 1, Prefix: "Bad Prefix"}, {Hosts: 1, Jitter: -time.Second}} {
		if _, err := New(cfg, never); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if HostID("hollow", 7) != "hollow-0007" {
		t.Fatal(HostID("hollow", 7))
	}
}

// TestBadMarkerIsNeverReadInADigest: "bad" is hexadecimal, so a good
// release whose digest holds it must not fail its checks.
func TestBadMarkerIsNeverReadInADigest(t *testing.T) {
	for _, tt := range []struct {
		image, ref string
		bad        bool
	}{
		{"reg/scale/app:v2", "reg/scale/app@sha256:e4eb7abad3c5", false},
		{"reg/scale/app@sha256:00bad0", "reg/scale/app@sha256:00bad0", false},
		{"reg/scale/app:v3-bad", "reg/scale/app@sha256:0123", true},
		{"reg/badapp:v1", "reg/badapp@sha256:0123", true},
	} {
		rev := state.Revision{Spec: specs.Spec{Image: tt.image}, Ref: tt.ref}
		if got := isBad(rev); got != tt.bad {
			t.Errorf("isBad(image %s, ref %s) = %v, want %v", tt.image, tt.ref, got, tt.bad)
		}
	}
}
