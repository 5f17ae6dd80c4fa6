package controller

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// Drain on the real loop with three fake agents: h1's replicas move to the
// others (each replacement healthy before the drained one stops), nothing
// new goes to h1, a repeat writes nothing; draining every host keeps the
// replicas running and says why; rm is refused while a host is up.
func TestDrainMovesReplicasOnTheLoop(t *testing.T) {
	n := mustStartNode(t)
	mustRegisterServer(t, n) // FSM version 4: the drain command passes the gate
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	startFakeAgents(t, n, "h1", "h2", "h3")
	waitUntil(t, 30*time.Second, "three hosts", func() bool { return len(n.store.View().Hosts()) == 3 })
	spec := specFor(ref)
	spec.Replicas = 3
	spec.Update.Monitor = 50 * time.Millisecond
	out, err := n.ctrl.Apply(context.Background(), spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := waitRevision(t, n, out.Revision, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("release ended %s", st)
	}
	onHost := func(h string) int {
		c := 0
		for _, r := range n.store.View().HostReplicas(h) {
			if r.Desired == state.DesiredRunning {
				c++
			}
		}
		return c
	}
	if onHost("h1") == 0 {
		t.Fatal("spread put nothing on h1")
	}
	ctx := context.Background()
	v, err := n.ctrl.SetHostAvailability(ctx, "h1", true)
	if err != nil || v.Availability != state.HostDrain {
		t.Fatalf("drain = %+v, %v", v, err)
	}
	waitUntil(t, 30*time.Second, "h1 empty", func() bool { return onHost("h1") == 0 })
	healthyElsewhere := 0
	for _, r := range n.store.View().ServiceReplicas("web") {
		if r.Desired == state.DesiredRunning && r.Status.State == state.ReplicaHealthy {
			healthyElsewhere++
		}
	}
	if healthyElsewhere != 3 {
		t.Fatalf("%d healthy replicas after the drain, want 3", healthyElsewhere)
	}
	before := n.store.View().Index()
	if _, err := n.ctrl.SetHostAvailability(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	if h, _ := n.store.View().Host("h1"); !h.Draining() || n.store.View().Index() < before {
		t.Fatalf("second drain: %+v", h)
	}
	if err := n.ctrl.RemoveHost(ctx, "h1"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "is up") {
		t.Fatalf("rm of a host that is up = %v, want a conflict saying so", err)
	}
	if _, err := n.ctrl.SetHostAvailability(ctx, "h9", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("drain of an unknown host = %v, want not found", err)
	}

	// Every host drained: nothing can move; the replicas keep running
	// and host ls says why.
	for _, h := range []string{"h2", "h3"} {
		if _, err := n.ctrl.SetHostAvailability(ctx, h, true); err != nil {
			t.Fatal(err)
		}
	}
	var why string
	waitUntil(t, 30*time.Second, "a reason on h2", func() bool {
		v, _ := n.ctrl.Host("h2")
		why = strings.Join(v.Waiting, "; ")
		return strings.Contains(why, "cannot move")
	})
	if !strings.Contains(why, "draining") || !strings.Contains(why, "host activate") {
		t.Fatalf("reason %q, want it to count the draining hosts and name host activate", why)
	}
	// Draining h2 before h3 may have started replacements on h3 meanwhile:
	// a slot on two drained hosts keeps one, so three settle.
	waitUntil(t, 30*time.Second, "one replica per slot kept on h2 and h3", func() bool { return onHost("h2")+onHost("h3") == 3 })
	// Activate h1: the replicas move there.
	if _, err := n.ctrl.SetHostAvailability(ctx, "h1", false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "h2 and h3 empty", func() bool { return onHost("h2")+onHost("h3") == 0 && onHost("h1") == 3 })
	if hosts := n.ctrl.Hosts(); !slices.ContainsFunc(hosts, func(h wire.HostView) bool { return h.ID == "h1" && h.Availability == state.HostActive }) {
		t.Fatalf("hosts %+v, want h1 active", hosts)
	}
}

// A failed first release: the same spec again stores nothing and says
// --force exists; --force retries it as a new revision, which succeeds
// once the cause is gone.
func TestApplyForceRetriesAFailedFirstRelease(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	agents := startFakeAgents(t, n, "h1")
	waitUntil(t, 30*time.Second, "a host", func() bool { return len(n.store.View().Hosts()) == 1 })
	spec := specFor(ref)
	spec.Update.Monitor = 50 * time.Millisecond
	ctx := context.Background()
	out, err := n.ctrl.Apply(ctx, spec, "")
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := n.store.View().Revision("web", out.Revision)
	agents.mu.Lock()
	agents.sick = map[string]bool{rev.Fingerprint: true}
	agents.mu.Unlock()
	if st, _ := waitRevision(t, n, out.Revision, 20*time.Second); st != state.RevisionFailed {
		t.Fatalf("first release ended %s, want failed", st)
	}
	again, err := n.ctrl.Apply(ctx, spec, "")
	if err != nil || !again.Unchanged || !slices.ContainsFunc(again.Warnings, func(w string) bool { return strings.Contains(w, "apply --force") }) {
		t.Fatalf("same spec again = %+v, %v; want unchanged with a warning naming apply --force", again, err)
	}
	agents.mu.Lock()
	agents.sick = map[string]bool{}
	agents.mu.Unlock()
	forced, err := n.ctrl.ApplyWith(ctx, ApplyRequest{Spec: spec, Force: true})
	if err != nil || forced.Unchanged || forced.Revision != out.Revision+1 || forced.Digest != out.Digest {
		t.Fatalf("apply --force = %+v, %v; want revision %d with digest %s", forced, err, out.Revision+1, out.Digest)
	}
	if st, _ := waitRevision(t, n, forced.Revision, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("the retry ended %s", st)
	}
	r2, _ := n.store.View().Revision("web", forced.Revision)
	if !strings.Contains(r2.Cause, "retry of revision 1") {
		t.Fatalf("cause %q", r2.Cause)
	}
	// --force on a running service: nothing to retry.
	noop, err := n.ctrl.ApplyWith(ctx, ApplyRequest{Spec: spec, Force: true})
	if err != nil || !noop.Unchanged || len(noop.Warnings) == 0 {
		t.Fatalf("--force on a running service = %+v, %v; want unchanged with a warning", noop, err)
	}
}
