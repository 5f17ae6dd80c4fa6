package controller

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// mustStartNodeWithLiveness is mustStartNode with a short host TTL and
// grace period.
func mustStartNodeWithLiveness(t *testing.T, ttl, grace time.Duration) *testNode {
	t.Helper()
	return mustStartNodeWith(t, func(c *Config) {
		c.HostTTL, c.HostDownGrace, c.Tick = ttl, grace, 50*time.Millisecond
	})
}

// fakeAgent reports for host every 50 ms, as a host agent would: replicas
// desired running are healthy, the others stopped. Stop it to make the
// host vanish.
type fakeAgent struct{ stopped atomic.Bool }

func startFakeAgent(t *testing.T, n *testNode, host string) *fakeAgent {
	t.Helper()
	a := &fakeAgent{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil && !a.stopped.Load() {
			rep := state.HostReport{Host: host}
			for _, r := range n.store.View().HostReplicas(host) {
				st := state.ReplicaHealthy
				if r.Desired != state.DesiredRunning {
					st = state.ReplicaStopped
				}
				rep.Reports = append(rep.Reports, state.StatusReport{ReplicaID: r.ID, State: st, ContainerID: "c-" + r.ID})
			}
			_ = n.ctrl.Report(ctx, rep)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return a
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVanishedHostDoesNotBlockRemove: issue 16 finding 2. A host that
// disappears while it runs a replica of a service being removed never
// confirms the stop; past its grace period the removal finishes anyway.
func TestVanishedHostDoesNotBlockRemove(t *testing.T) {
	n := mustStartNodeWithLiveness(t, 300*time.Millisecond, 300*time.Millisecond)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	gone := startFakeAgent(t, n, "gone")
	waitUntil(t, 5*time.Second, "host gone to be ready", func() bool { h, ok := n.store.View().Host("gone"); return ok && h.State == state.HostReady })

	spec := specFor(ref)
	spec.Replicas = 1
	if _, err := n.ctrl.Apply(context.Background(), spec, "k1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the replica to be healthy on gone", func() bool {
		reps := n.store.View().HostReplicas("gone")
		return len(reps) == 1 && reps[0].Status.State == state.ReplicaHealthy
	})

	gone.stopped.Store(true)
	time.Sleep(100 * time.Millisecond) // the last report is in
	if err := n.ctrl.Remove(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the service to be removed", func() bool { _, ok := n.store.View().Service("web"); return !ok })
	if reps := n.store.View().HostReplicas("gone"); len(reps) != 0 {
		t.Errorf("replicas left on the vanished host: %+v", reps)
	}
}

// TestVanishedHostDoesNotBlockStopFirstRollout: a stop-first rollout waits
// for the old replica's stop; when its host vanishes, the rollout goes on
// once the host is down past its grace period and succeeds elsewhere.
func TestVanishedHostDoesNotBlockStopFirstRollout(t *testing.T) {
	n := mustStartNodeWithLiveness(t, 300*time.Millisecond, 300*time.Millisecond)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	gone := startFakeAgent(t, n, "gone")
	waitUntil(t, 5*time.Second, "host gone to be ready", func() bool { h, ok := n.store.View().Host("gone"); return ok && h.State == state.HostReady })

	spec := specFor(ref)
	spec.Replicas = 1
	spec.Update.Order = specs.OrderStopFirst
	spec.Update.Monitor = 100 * time.Millisecond
	spec.Update.Delay = 0
	if _, err := n.ctrl.Apply(context.Background(), spec, "k1"); err != nil {
		t.Fatal(err)
	}
	succeeded := func(rev int) func() bool {
		return func() bool {
			r, ok := n.store.View().Revision("web", rev)
			return ok && r.State == state.RevisionSucceeded
		}
	}
	waitUntil(t, 10*time.Second, "revision 1 to succeed on gone", succeeded(1))

	// The host vanishes just as revision 2 starts; a second host is there.
	gone.stopped.Store(true)
	time.Sleep(100 * time.Millisecond)
	startFakeAgent(t, n, "a")
	spec2 := specFor(ref)
	spec2.Replicas = 1
	spec2.Update = spec.Update
	spec2.Env = map[string]string{"V": "2"}
	if _, err := n.ctrl.Apply(context.Background(), spec2, "k2"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "revision 2 to succeed on host a", succeeded(2))
	if reps := n.store.View().HostReplicas("a"); len(reps) != 1 || reps[0].Revision != 2 {
		t.Errorf("host a runs %+v, want revision 2's replica", reps)
	}
}
