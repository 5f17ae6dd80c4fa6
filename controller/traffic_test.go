package controller

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// trafficFeeder plays the hosts' proxies: every 50 ms each host sends, for
// each of its healthy replicas desired running, 10 requests answered in
// about 2 ms, all failed for the revisions marked bad. It sends through
// the API with the wire client, as an agent does.
type trafficFeeder struct {
	mu  sync.Mutex
	on  bool
	bad map[int]bool
}

func startTrafficFeeder(t *testing.T, n *testNode, hosts ...string) *trafficFeeder {
	t.Helper()
	f := &trafficFeeder{bad: map[int]bool{}}
	client := wire.NewClient([]string{n.api.URL}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			f.mu.Lock()
			on, bad := f.on, f.bad
			f.mu.Unlock()
			for _, h := range hosts {
				if !on {
					break
				}
				rep := wire.TrafficReport{Host: h, Replicas: map[string]traffic.Figures{}}
				n.store.View().EachHostReplica(h, func(r state.Replica) {
					if r.Desired != state.DesiredRunning || r.Status.State != state.ReplicaHealthy {
						return
					}
					var fig traffic.Figures
					for range 10 {
						fig.Observe(2*time.Millisecond, bad[r.Revision], true)
					}
					rep.Replicas[r.ID] = fig
				})
				_ = client.ReportTraffic(ctx, rep)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return f
}

func (f *trafficFeeder) set(on bool, badRevisions ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.on = on
	f.bad = map[int]bool{}
	for _, r := range badRevisions {
		f.bad[r] = true
	}
}

// judgedSpec is web (2 replicas, exposing 8080 so proxies send it
// requests) at tag, with a canary and rollback_on.
func judgedSpec(ref, tag string, weight float64, canaryFor time.Duration) *specs.Spec {
	s := specFor(strings.TrimSuffix(ref, ":v1") + ":" + tag)
	s.Expose = []specs.Expose{{Port: 8080, Protocol: specs.IngressHTTP}}
	s.Update.Monitor = 50 * time.Millisecond
	s.Update.ProgressDeadline = time.Minute
	rate := 0.02
	s.Update.Canary = &specs.Canary{Weight: weight, Duration: canaryFor}
	s.Update.RollbackOn = &specs.RollbackOn{ErrorRate: &rate, MinRequests: 40}
	return s
}

func applyTag(t *testing.T, n *testNode, ref, tag string, spec *specs.Spec) int {
	t.Helper()
	mustPush(t, strings.TrimSuffix(ref, ":v1")+":"+tag)
	out, err := n.ctrl.Apply(context.Background(), spec, "")
	if err != nil {
		t.Fatal(err)
	}
	return out.Revision
}

// startTrafficWorld is a test node with two hosts whose fake agents start
// every replica healthy and whose proxies' figures the feeder sends (off
// until set), and a registry holding web:v1 (ref).
func startTrafficWorld(t *testing.T) (*testNode, string, *trafficFeeder) {
	t.Helper()
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	startFakeAgents(t, n, "h1", "h2")
	feeder := startTrafficFeeder(t, n, "h1", "h2")
	waitUntil(t, 5*time.Second, "hosts", func() bool { return len(n.store.View().Hosts()) == 2 })
	return n, ref, feeder
}

// The issue on the real loop: a canary's replica is marked in the ingress
// table (and the split listed with its weight, the table's index moving)
// while it runs; its failing requests breach error_rate, the release is
// rolled back, and the failed revision keeps the figures and names the
// threshold with them. The split goes with the canary.
func TestCanaryBreachRollsBackOnTheLoop(t *testing.T) {
	n, ref, feeder := startTrafficWorld(t)

	// The first release is not judged (the feeder is off: it would wait
	// for evidence until its deadline).
	plain := judgedSpec(ref, "v1", 0.5, time.Hour)
	plain.Update.Canary, plain.Update.RollbackOn = nil, nil
	if st, _ := waitRevision(t, n, applyTag(t, n, ref, "v1", plain), 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("first release ended %s", st)
	}
	before, err := n.ctrl.Ingress(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	v2 := applyTag(t, n, ref, "v2", judgedSpec(ref, "v2", 0.5, time.Hour))
	var during wire.IngressTable
	waitUntil(t, 10*time.Second, "the canary's replica marked in the ingress table", func() bool {
		during, _ = n.ctrl.Ingress(context.Background(), 0, 0)
		return slices.ContainsFunc(during.Backends, func(b wire.IngressBackend) bool { return b.Canary })
	})
	if !slices.Equal(during.Canaries, []wire.CanarySplit{{Service: "web", Weight: 0.5}}) || during.Index <= before.Index {
		t.Fatalf("during the canary: canaries %+v, index %d (before %d); want web at 0.5 and a new index", during.Canaries, during.Index, before.Index)
	}
	for _, b := range during.Backends {
		r, _ := n.store.View().Replica(b.Replica)
		if b.Canary != (r.Revision == v2) {
			t.Errorf("backend %s of revision %d marked canary=%v", b.Replica, r.Revision, b.Canary)
		}
	}

	feeder.set(true, v2)
	if st, cur := waitRevision(t, n, v2, 20*time.Second); st != state.RevisionRolledBack || cur == v2 {
		t.Fatalf("revision %d ended %s (current %d), want rolled back", v2, st, cur)
	}
	rev, _ := n.store.View().Revision("web", v2)
	for _, want := range []string{"error rate 100 % over ", "> 2 % (update.rollback_on.error_rate; the other replicas: 0 % over "} {
		if !strings.Contains(rev.Message, want) {
			t.Errorf("revision %d message %q lacks %q", v2, rev.Message, want)
		}
	}
	if rev.Traffic == nil || rev.Traffic.New.Requests < 40 || rev.Traffic.New.Errors != rev.Traffic.New.Requests || rev.Traffic.Old == nil {
		t.Fatalf("revision %d kept figures %+v, want >= 40 requests all failed and the others' beside", v2, rev.Traffic)
	}
	after, _ := n.ctrl.Ingress(context.Background(), 0, 0)
	if len(after.Canaries) > 0 || slices.ContainsFunc(after.Backends, func(b wire.IngressBackend) bool { return b.Canary }) {
		t.Fatalf("after the rollback: canaries %+v, backends %+v", after.Canaries, after.Backends)
	}
}

// promote ends a running canary at once (and is refused, naming why, when
// no canary runs); the release is then judged all the same: it does not
// succeed before it has min_requests, and it keeps its figures. The
// status shows the live figures and the evidence still missing.
func TestPromoteAndEvidenceOnTheLoop(t *testing.T) {
	n, ref, feeder := startTrafficWorld(t)
	client := wire.NewClient([]string{n.api.URL}, nil)
	ctx := context.Background()

	feeder.set(true)
	v1 := applyTag(t, n, ref, "v1", judgedSpec(ref, "v1", 0.1, time.Hour))
	if st, _ := waitRevision(t, n, v1, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("first release ended %s", st)
	}
	if _, err := client.Promote(ctx, "web"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "no rollout in progress") {
		t.Fatalf("promote without a rollout: %v, want a conflict saying why", err)
	}
	// A first release is judged by health alone (no users to judge by).
	if h, _ := client.History(ctx, "web"); len(h) != 1 || h[0].State != string(state.RevisionSucceeded) {
		t.Fatalf("history of the first release: %+v", h)
	}

	feeder.set(false)
	v2 := applyTag(t, n, ref, "v2", judgedSpec(ref, "v2", 0.1, time.Hour))
	waitUntil(t, 10*time.Second, "the canary running healthy", func() bool {
		s, err := client.Status(ctx, "web", 0, 0)
		return err == nil && s.Rollout != nil && s.Rollout.Canary.Running() && s.Replicas.Healthy == 1
	})
	status, err := client.Status(ctx, "web", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tr := status.Traffic; tr == nil || !tr.Live || tr.Revision != v2 || tr.Waiting != "waiting for traffic: 0 of 40 requests" {
		t.Fatalf("status traffic %+v, want live, waiting for 0 of 40", status.Traffic)
	}
	if !strings.Contains(status.Message, "canary: 1 replica at 10% for 1h0m0s") {
		t.Fatalf("status message %q lacks the canary", status.Message)
	}
	if _, err := client.Promote(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "both replicas on revision 2", func() bool {
		s, _ := client.Status(ctx, "web", 0, 0)
		return s.Replicas.Healthy == 2 && s.Rollout != nil && !s.Rollout.Canary.Running() && s.Rollout.Canary.Ended == "promoted"
	})
	time.Sleep(300 * time.Millisecond)
	if rev, _ := n.store.View().Revision("web", v2); rev.State != state.RevisionInProgress {
		t.Fatalf("revision %d ended %s without evidence", v2, rev.State)
	}
	if s, _ := client.Status(ctx, "web", 0, 0); !strings.Contains(s.Message, "waiting for traffic: revision 2 needs 40 requests") {
		t.Fatalf("status message %q does not say the release waits for traffic", s.Message)
	}
	feeder.set(true)
	if st, _ := waitRevision(t, n, v2, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("revision %d ended %s with good traffic", v2, st)
	}
	if _, err := client.Promote(ctx, "web"); !errors.Is(err, ErrConflict) {
		t.Fatalf("promote after the rollout: %v, want a conflict", err)
	}
	h, _ := client.History(ctx, "web")
	if last := h[len(h)-1]; last.Traffic == nil || last.Traffic.New.Requests < 40 || last.Traffic.New.Errors != 0 || last.Traffic.New.P99 <= 0 {
		t.Fatalf("history of revision %d: traffic %+v, want its figures", v2, last.Traffic)
	}
}

// The book counts a host's figures only for the replicas on that host,
// for the rollout in progress, split between the target revision's
// replicas and the others; a new rollout starts a new window, and the
// stored figures are replaced only by figures over more requests.
func TestTrafficBook(t *testing.T) {
	s := state.NewStore()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	apply := func(index uint64, digest string, expect int) {
		t.Helper()
		rev := state.Revision{Service: "web", Spec: specs.Spec{Service: "web", Replicas: 2}, Digest: digest, Ref: "r@" + digest, Fingerprint: "fp" + digest}
		if _, err := s.ApplyRevision(index, state.ApplyRevisionCmd{Now: now, ExpectCurrent: expect, Revision: rev}); err != nil {
			t.Fatal(err)
		}
	}
	apply(1, "a", 0)
	apply(2, "b", 1)
	svc, _ := s.View().Service("web")
	if err := s.ApplyRolloutStep(3, state.RolloutStepCmd{Now: now, Service: "web", ExpectCurrent: 2, ExpectModifyIndex: svc.ModifyIndex,
		Create: []state.Replica{
			{ID: "old", Service: "web", Revision: 1, Fingerprint: "fpa", Host: "h1"},
			{ID: "new", Service: "web", Slot: 1, Revision: 2, Fingerprint: "fpb", Host: "h1"},
			{ID: "far", Service: "web", Slot: 1, Revision: 2, Fingerprint: "fpb", Host: "h2"},
		}}); err != nil {
		t.Fatal(err)
	}
	fig := func(requests, errors uint64) traffic.Figures {
		return traffic.Figures{Requests: requests, Errors: errors, Latency: map[int]uint64{10: requests - errors}}
	}
	b := newTrafficBook()
	foreign, first := b.record(s.View(), wire.TrafficReport{Host: "h1", Replicas: map[string]traffic.Figures{
		"old": fig(100, 1), "new": fig(20, 5), "far": fig(1000, 1000), "gone": fig(7, 7),
	}}, now)
	if foreign != 1 || first != "far" {
		t.Errorf("foreign entries %d (first %q), want 1 (far)", foreign, first)
	}
	got := b.input("web", 2)
	if got == nil || got.New.Requests != 20 || got.New.Errors != 5 || got.Old.Requests != 100 {
		t.Fatalf("input = %+v, want new 20/5 and old 100", got)
	}
	if b.input("web", 1) != nil {
		t.Fatal("figures for a revision that is not being rolled out")
	}
	w, _ := b.window("web", 2)
	stored := w.revisionTraffic(nil)
	if stored == nil || stored.New.Requests != 20 || stored.Old == nil || stored.Old.Requests != 100 {
		t.Fatalf("revisionTraffic = %+v", stored)
	}
	if w.revisionTraffic(stored) != nil {
		t.Error("the same figures are stored again")
	}
	if w.revisionTraffic(&state.RevisionTraffic{New: traffic.Summary{Requests: 500}}) != nil {
		t.Error("figures over fewer requests replace the stored ones")
	}

	apply(4, "c", 2)
	b.record(s.View(), wire.TrafficReport{Host: "h1", Replicas: map[string]traffic.Figures{"new": fig(3, 0)}}, now)
	if got := b.input("web", 3); got == nil || got.New.Requests != 0 || got.Old.Requests != 3 {
		t.Fatalf("after a new apply: %+v, want a new window with revision 2's replica among the others", got)
	}
	b.prune(s.View())
	if b.input("web", 3) == nil {
		t.Fatal("prune dropped the window of the rollout in progress")
	}
}

// A report whose figures cannot be true is refused, naming the entry.
func TestTrafficReportChecks(t *testing.T) {
	n := mustStartNode(t)
	for _, tt := range []struct {
		body string
		code string
		want string
	}{
		{`{"host":"h1","replicas":{"r1":{"requests":1,"errors":2}}}`, wire.CodeBadRequest, `replicas["r1"].errors: 2 is more than its 1 requests`},
		{`{"host":"h1","replicas":{"r1":{"requests":1,"latency":{"3":2}}}}`, wire.CodeBadRequest, `replicas["r1"].latency: more answered requests`},
		{`{"host":"h1","replicas":{"r1":{"requests":1,"latency":{"150":1}}}}`, wire.CodeBadRequest, "bucket 150 is not one of 0 to 149"},
		{`{"replicas":{}}`, wire.CodeBadRequest, "host"},
		{`{"host":"h1","replicas":{"r1":{"requests":2,"errors":1,"latency":{"3":1}}}}`, "", ""},
	} {
		got := call(t, http.DefaultClient, http.MethodPost, n.api.URL+"/v1/agent/traffic", json.RawMessage(tt.body))
		if tt.code == "" {
			wantStatus(t, tt.body, got, http.StatusNoContent, "")
			continue
		}
		wantStatus(t, tt.body, got, http.StatusBadRequest, tt.code)
		if !strings.Contains(got.Error, tt.want) {
			t.Errorf("%s: error %q lacks %q", tt.body, got.Error, tt.want)
		}
	}
}

// The loop wakes when a canary's duration ends (from its batch's
// healthy moment), not at the next tick or the deadline.
func TestNextTimedChangeWakesAtTheCanarysEnd(t *testing.T) {
	store := state.NewStore()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	spec := specFor("127.0.0.1:1/x:v1")
	spec.Update.Monitor = 0
	spec.Update.ProgressDeadline = time.Hour
	spec.Update.Canary = &specs.Canary{Weight: 0.1, Duration: 30 * time.Second}
	for i, fp := range []string{"a", "b"} {
		if _, err := store.ApplyRevision(uint64(i+1), state.ApplyRevisionCmd{Now: now, ExpectCurrent: i,
			Revision: state.Revision{Service: "web", Spec: *spec, Ref: "r@sha256:" + fp, Fingerprint: fp}}); err != nil {
			t.Fatal(err)
		}
	}
	svc, _ := store.View().Service("web")
	ro := *svc.Rollout
	ro.From = 1 // a release over revision 1 (a first release has no canary)
	ro.Canary = &state.CanaryState{Slots: []int{0}, StartedAt: now}
	if err := store.ApplyRolloutStep(3, state.RolloutStepCmd{Now: now, Service: "web", ExpectCurrent: 2, ExpectModifyIndex: svc.ModifyIndex, Rollout: &ro,
		Create: []state.Replica{{ID: "c", Service: "web", Revision: 2, Fingerprint: "b", Host: "h"}}}); err != nil {
		t.Fatal(err)
	}
	_ = store.ApplyHostReport(4, state.HostReportCmd{Now: now.Add(5 * time.Second), Report: state.HostReport{Host: "h",
		Reports: []state.StatusReport{{ReplicaID: "c", State: state.ReplicaHealthy}}}})
	if at, ok := nextTimedChange(store.View(), now.Add(6*time.Second)); !ok || !at.Equal(now.Add(35*time.Second)) {
		t.Fatalf("next = %v %v, want the canary's end at %v", at, ok, now.Add(35*time.Second))
	}
}

// The ingress table marks the canary's new replicas and lists the split
// while the canary runs, also once its rollout paused (its replicas stay
// backends until a human decides); not once it ended.
func TestIngressCanarySplit(t *testing.T) {
	s := state.NewStore()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	spec := specFor("127.0.0.1:1/x:v1")
	spec.Expose = []specs.Expose{{Port: 8080, Protocol: specs.IngressHTTP}}
	spec.Update.Canary = &specs.Canary{Weight: 0.25, Duration: time.Minute}
	for i, fp := range []string{"a", "b"} {
		if _, err := s.ApplyRevision(uint64(i+1), state.ApplyRevisionCmd{Now: now, ExpectCurrent: i,
			Revision: state.Revision{Service: "web", Spec: *spec, Ref: "r@sha256:" + fp, Fingerprint: fp}}); err != nil {
			t.Fatal(err)
		}
	}
	index := uint64(3)
	step := func(change func(*state.Rollout), create ...state.Replica) {
		t.Helper()
		svc, _ := s.View().Service("web")
		ro := *svc.Rollout
		change(&ro)
		if err := s.ApplyRolloutStep(index, state.RolloutStepCmd{Now: now, Service: "web", ExpectCurrent: 2, ExpectModifyIndex: svc.ModifyIndex,
			Rollout: &ro, Create: create}); err != nil {
			t.Fatal(err)
		}
		index++
	}
	step(func(ro *state.Rollout) { ro.Canary = &state.CanaryState{Slots: []int{0}, StartedAt: now} },
		state.Replica{ID: "old0", Service: "web", Slot: 0, Revision: 1, Fingerprint: "a", Host: "h"},
		state.Replica{ID: "old1", Service: "web", Slot: 1, Revision: 1, Fingerprint: "a", Host: "h"},
		state.Replica{ID: "new0", Service: "web", Slot: 0, Revision: 2, Fingerprint: "b", Host: "h"})
	var reports []state.StatusReport
	for _, id := range []string{"old0", "old1", "new0"} {
		reports = append(reports, state.StatusReport{ReplicaID: id, State: state.ReplicaHealthy})
	}
	if err := s.ApplyHostReport(index, state.HostReportCmd{Now: now, Report: state.HostReport{Host: "h", Reports: reports}}); err != nil {
		t.Fatal(err)
	}
	index++
	check := func(when string, wantSplit bool) {
		t.Helper()
		view := s.View()
		var canaries []string
		for _, b := range ingressBackends(view) {
			if b.Canary {
				canaries = append(canaries, b.Replica)
			}
		}
		split := ingressCanaries(view)
		if wantSplit && (!slices.Equal(canaries, []string{"new0"}) || !slices.Equal(split, []wire.CanarySplit{{Service: "web", Weight: 0.25}})) {
			t.Errorf("%s: canary backends %v, split %+v; want new0 at 0.25", when, canaries, split)
		}
		if !wantSplit && (len(canaries) > 0 || len(split) > 0) {
			t.Errorf("%s: canary backends %v, split %+v; want none", when, canaries, split)
		}
	}
	check("running", true)
	step(func(ro *state.Rollout) { ro.State = state.RolloutPaused })
	check("paused", true)
	step(func(ro *state.Rollout) {
		c := *ro.Canary
		c.EndedAt, c.Ended = now, "promoted"
		ro.Canary = &c
	})
	check("ended", false)
}
