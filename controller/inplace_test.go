package controller

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// fakeAgents plays the agents of hosts on the test node: every few
// milliseconds each host reports its replicas started (healthy, or
// unhealthy when their fingerprint is sick) and its stops confirmed. It
// records every rollout message of service web.
type fakeAgents struct {
	mu       sync.Mutex
	sick     map[string]bool
	messages []string
	// maxOnHost is the most containers of web seen on one host at once.
	maxOnHost int
}

func startFakeAgents(t *testing.T, n *testNode, hosts ...string) *fakeAgents {
	t.Helper()
	a := &fakeAgents{sick: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			view := n.store.View()
			a.mu.Lock()
			if svc, ok := view.Service("web"); ok && svc.Rollout != nil && svc.Rollout.Message != "" &&
				!slices.Contains(a.messages, svc.Rollout.Message) {
				a.messages = append(a.messages, svc.Rollout.Message)
			}
			sick := a.sick
			a.mu.Unlock()
			for _, h := range hosts {
				report := state.HostReport{Host: h}
				onHost := 0
				view.EachHostReplica(h, func(r state.Replica) {
					if r.Desired == state.DesiredRunning || r.Status.State != state.ReplicaStopped {
						onHost++
					}
					switch {
					case r.Desired == state.DesiredStopped && r.Status.State != state.ReplicaStopped:
						report.Reports = append(report.Reports, state.StatusReport{ReplicaID: r.ID, State: state.ReplicaStopped})
					case r.Desired == state.DesiredRunning && (r.Status.State == "" || r.Status.State == state.ReplicaPending):
						obs := state.ReplicaHealthy
						if sick[r.Fingerprint] {
							obs = state.ReplicaUnhealthy
						}
						report.Reports = append(report.Reports, state.StatusReport{ReplicaID: r.ID, State: obs})
					}
				})
				a.mu.Lock()
				a.maxOnHost = max(a.maxOnHost, onHost)
				a.mu.Unlock()
				_ = n.ctrl.Report(ctx, report)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return a
}

func (a *fakeAgents) seen() ([]string, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.messages), a.maxOnHost
}

// waitRevision waits until revision number of web has ended and returns its
// state and the service's current revision.
func waitRevision(t *testing.T, n *testNode, number int, within time.Duration) (string, int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		view := n.store.View()
		svc, _ := view.Service("web")
		rev, _ := view.Revision("web", number)
		if rev.State != state.RevisionInProgress && svc.Current == number ||
			svc.Current != number && svc.Rollout != nil && svc.Rollout.State != state.RolloutInProgress {
			return rev.State, svc.Current
		}
		time.Sleep(20 * time.Millisecond)
	}
	svc, _ := n.store.View().Service("web")
	t.Fatalf("revision %d did not end within %s: %+v", number, within, svc.Rollout)
	return "", 0
}

// The layout on the real controller loop and placement: three
// hosts, max_per_host 1, the default start-first, three replicas. An update
// ends, replacing each slot stop-first on its own host and saying so; a bad
// release ends rolled back. Neither waits for the progress deadline.
func TestNoSpareHostRolloutEnds(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	agents := startFakeAgents(t, n, "h1", "h2", "h3")
	for !slices.ContainsFunc(n.store.View().Hosts(), func(h state.Host) bool { return h.ID == "h3" }) {
		time.Sleep(10 * time.Millisecond)
	}
	spec := func(tag string) *specs.Spec {
		s := specFor(ref)
		s.Image = strings.TrimSuffix(ref, ":v1") + ":" + tag
		s.Replicas = 3
		s.Placement.MaxPerHost = 1
		s.Update.Monitor = 50 * time.Millisecond
		s.Update.ProgressDeadline = time.Minute
		return s
	}
	apply := func(tag string) int {
		t.Helper()
		mustPush(t, strings.TrimSuffix(ref, ":v1")+":"+tag)
		out, err := n.ctrl.Apply(context.Background(), spec(tag), "")
		if err != nil {
			t.Fatal(err)
		}
		return out.Revision
	}

	if st, _ := waitRevision(t, n, apply("v1"), 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("first release ended %s", st)
	}

	v2 := apply("v2")
	if st, cur := waitRevision(t, n, v2, 20*time.Second); st != state.RevisionSucceeded || cur != v2 {
		t.Fatalf("update ended %s on revision %d, want succeeded on %d", st, cur, v2)
	}
	msgs, most := agents.seen()
	for _, want := range []string{
		"no spare host for start-first (max_per_host 1); replacing stop-first on h",
	} {
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Fatalf("messages %q, want one with %q", msgs, want)
		}
	}
	if most > 1 {
		t.Fatalf("a host ran %d containers of web at once, max_per_host 1", most)
	}
	svc, _ := n.store.View().Service("web")
	if len(svc.Rollout.InPlace) != 3 {
		t.Fatalf("rollout in place %+v, want every slot", svc.Rollout.InPlace)
	}

	v3 := apply("v3")
	bad, _ := n.store.View().Revision("web", v3)
	agents.mu.Lock()
	agents.sick = map[string]bool{bad.Fingerprint: true}
	agents.mu.Unlock()
	st, cur := waitRevision(t, n, v3, 20*time.Second)
	if st != state.RevisionRolledBack && st != state.RevisionFailed {
		t.Fatalf("bad release ended %s", st)
	}
	if cur == v3 {
		t.Fatal("bad release not rolled back")
	}
	if st, _ := waitRevision(t, n, cur, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("rollback revision %d ended %s", cur, st)
	}
	if _, most := agents.seen(); most > 1 {
		t.Fatalf("a host ran %d containers of web at once, max_per_host 1", most)
	}
}
