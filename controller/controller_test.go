package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// testNode is a controller on a real single-node raft (loopback TCP, bolt
// files in a temp dir) with its API on a real loopback listener.
type testNode struct {
	node  *raftstore.Node
	store *state.Store
	ctrl  *Controller
	api   *httptest.Server
}

func mustStartNode(t testing.TB) *testNode {
	t.Helper()
	return mustStartNodeWith(t, nil)
}

// mustStartNodeWith is mustStartNode with a hook to adjust the Config.
func mustStartNodeWith(t testing.TB, adjust func(*Config)) *testNode {
	t.Helper()
	return mustStartNodeWithRaft(t, nil, adjust)
}

// mustStartNodeWithRaft is mustStartNodeWith with a hook to adjust the
// raft node's Config too (its FSM is over the store the controller gets).
func mustStartNodeWithRaft(t testing.TB, adjustRaft func(*raftstore.Config), adjust func(*Config)) *testNode {
	t.Helper()
	store := state.NewStore()
	rcfg := raftstore.Config{
		NodeID: "n1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true,
		FSM: raftstore.NewFSM(store), Logger: hclog.NewNullLogger(),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond,
	}
	if adjustRaft != nil {
		adjustRaft(&rcfg)
	}
	node, err := raftstore.Open(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := node.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Raft: node, Store: store, Resolver: RegistryResolver{}}
	if adjust != nil {
		adjust(&cfg)
	}
	ctrl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ctrl.Run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	for !ctrl.Ready() {
		if ctx.Err() != nil {
			t.Fatal("controller not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	api := httptest.NewServer(NewAPI(APIConfig{Controller: ctrl}).Handler())
	t.Cleanup(api.Close)
	return &testNode{node: node, store: store, ctrl: ctrl, api: api}
}

// mustRegistryImage serves a random image from an in-process registry on
// 127.0.0.1 and returns its tag reference and digest.
func mustRegistryImage(t *testing.T, repoTag string) (*httptest.Server, string, string) {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	ref := strings.TrimPrefix(reg.URL, "http://") + "/" + repoTag
	return reg, ref, mustPush(t, ref)
}

func mustPush(t *testing.T, ref string) string {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func specFor(image string) *specs.Spec {
	s := &specs.Spec{Service: "web", Image: image, Replicas: 2}
	// What Parse defaults and ApplyDefaults cannot (a Go zero is false):
	// the default policy refuses no_new_privileges: false and warns on a
	// writable root file system.
	s.Security.NoNewPrivileges = specs.DefaultNoNewPrivileges
	s.Security.ReadOnly = specs.DefaultReadOnly
	s.ApplyDefaults()
	return s
}

func TestApplyPinsDigestAndIsIdempotent(t *testing.T) {
	n := mustStartNode(t)
	_, ref, digest := mustRegistryImage(t, "team/web:v1")
	ctx := context.Background()

	out, err := n.ctrl.Apply(ctx, specFor(ref), "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if out.Revision != 1 || out.Digest != digest || !strings.HasSuffix(out.Ref, "/team/web@"+digest) || out.Unchanged {
		t.Fatalf("apply = %+v, want revision 1 pinned to %s", out, digest)
	}
	rev, _ := n.store.View().Revision("web", 1)
	if rev.Ref != out.Ref || rev.State != state.RevisionInProgress || rev.Cause != "apply" || rev.CreatedAt.IsZero() {
		t.Fatalf("stored revision %+v", rev)
	}
	// Same spec again: no new revision.
	again, err := n.ctrl.Apply(ctx, specFor(ref), "key-2")
	if err != nil || !again.Unchanged || again.Revision != 1 {
		t.Fatalf("unchanged apply = %+v, %v; want revision 1 unchanged", again, err)
	}
	// A retried request (same key) with a changed spec still answers the first outcome.
	changed := specFor(ref)
	changed.Replicas = 5
	retry, err := n.ctrl.Apply(ctx, changed, "key-1")
	if err != nil || retry.Revision != 1 {
		t.Fatalf("retry with the same key = %+v, %v; want revision 1", retry, err)
	}
	// A real change makes revision 2; the tag now points elsewhere.
	newDigest := mustPush(t, ref)
	out2, err := n.ctrl.Apply(ctx, specFor(ref), "key-3")
	if err != nil || out2.Revision != 2 || out2.Digest != newDigest {
		t.Fatalf("apply after the tag moved = %+v, %v; want revision 2 at %s", out2, err, newDigest)
	}
	if got := len(n.store.View().Revisions("web")); got != 2 {
		t.Fatalf("%d revisions, want 2", got)
	}
}

func TestApplyRefusesUnresolvableImageAndKeepsRevision(t *testing.T) {
	n := mustStartNode(t)
	reg, ref, _ := mustRegistryImage(t, "team/web:v1")
	ctx := context.Background()
	if _, err := n.ctrl.Apply(ctx, specFor(ref), ""); err != nil {
		t.Fatal(err)
	}

	host := strings.TrimPrefix(reg.URL, "http://")
	for _, image := range []string{host + "/team/web:nope", host + "/team/missing:v1"} {
		_, err := n.ctrl.Apply(ctx, specFor(image), "")
		if !errors.Is(err, ErrImageUnresolvable) || !strings.Contains(err.Error(), image) {
			t.Fatalf("apply %s: %v, want ErrImageUnresolvable naming the image", image, err)
		}
	}
	reg.Close() // the registry is down
	_, err := n.ctrl.Apply(ctx, specFor(host+"/team/web:v2"), "")
	if !errors.Is(err, ErrImageUnresolvable) || !strings.Contains(err.Error(), "reachable") {
		t.Fatalf("registry down: %v, want ErrImageUnresolvable saying to check the registry", err)
	}
	if got := len(n.store.View().Revisions("web")); got != 1 {
		t.Fatalf("a refused apply stored a revision: %d revisions", got)
	}
	svc, _ := n.store.View().Service("web")
	if svc.Current != 1 {
		t.Fatalf("current revision %d, want 1 untouched", svc.Current)
	}
}

func TestRollbackTarget(t *testing.T) {
	h := []state.Revision{
		{Number: 1, Digest: "sha256:a", State: state.RevisionSucceeded},
		{Number: 2, Digest: "sha256:b", State: state.RevisionSucceeded},
		{Number: 3, Digest: "sha256:b", State: state.RevisionSucceeded}, // env change only
		{Number: 4, Digest: "sha256:c", State: state.RevisionFailed},
		{Number: 5, Digest: "sha256:b", State: state.RevisionInProgress},
	}
	cases := []struct {
		cur, to, want int
		err           bool
	}{
		{cur: 5, want: 1},          // latest earlier success with a different digest than b
		{cur: 4, want: 3},          // c is current: 3 succeeded with b
		{cur: 5, to: 4, want: 4},   // --to any existing revision
		{cur: 5, to: 5, err: true}, // not the current one
		{cur: 5, to: 9, err: true}, // not a missing one
		{cur: 1, err: true},        // nothing before
		{cur: 2, want: 1},          //
		{cur: 3, want: 1},          // 2 has the same digest as 3
	}
	for _, c := range cases {
		got, err := rollbackTarget(h, h[c.cur-1], c.to)
		if c.err {
			if !errors.Is(err, ErrNoRollbackTarget) {
				t.Errorf("cur %d to %d: err %v, want ErrNoRollbackTarget", c.cur, c.to, err)
			}
			continue
		}
		if err != nil || got.Number != c.want {
			t.Errorf("cur %d to %d: got %d, %v; want %d", c.cur, c.to, got.Number, err, c.want)
		}
	}
}

func TestAPIRejectsBadRequests(t *testing.T) {
	n := mustStartNode(t)
	post := func(path, ctype string, body []byte) (*http.Response, wire.APIError) {
		t.Helper()
		resp, err := http.Post(n.api.URL+path, ctype, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e wire.APIError
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("%s: error body is not JSON: %v", path, err)
		}
		return resp, e
	}
	cases := []struct {
		name, path, ctype string
		body              []byte
		status            int
		code, mentions    string
	}{
		{"invalid yaml", "/v1/services", "application/yaml", []byte("service: [web"), 400, "invalid_spec", "line"},
		{"unknown field", "/v1/services", "application/yaml", []byte("service: web\nimage: a/b:1\nreplicaz: 3\n"), 400, "invalid_spec", "did you mean replicas"},
		{"oversized", "/v1/services", "application/yaml", bytes.Repeat([]byte("#"), maxBody+10), 413, "too_large", "bytes"},
		{"malformed report", "/v1/agent/report", "application/json", []byte("{not json"), 400, "bad_request", "malformed"},
		{"unknown report field", "/v1/agent/report", "application/json", []byte(`{"host":"h","bogus":1}`), 400, "bad_request", "bogus"},
		{"rollback missing service", "/v1/services/nope/rollback", "application/json", []byte(`{}`), 404, "not_found", "nope"},
		{"rollback negative", "/v1/services/web/rollback", "application/json", []byte(`{"to":-1}`), 400, "bad_request", "to"},
		{"no route", "/v2/anything", "application/json", nil, 404, "not_found", "/v1/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, e := post(c.path, c.ctype, c.body)
			if resp.StatusCode != c.status || e.Code != c.code || !strings.Contains(e.Error, c.mentions) {
				t.Fatalf("%d %+v; want %d %s mentioning %q", resp.StatusCode, e, c.status, c.code, c.mentions)
			}
		})
	}
	if n.store.View().Index() > 2 {
		// index 1 is the bootstrap configuration, 2 may be the leader's no-op
		t.Fatalf("bad requests wrote to raft (index %d)", n.store.View().Index())
	}
}

func TestAPIInvalidSpecListsEveryProblem(t *testing.T) {
	n := mustStartNode(t)
	c := wire.NewClient([]string{n.api.URL}, nil)
	_, err := c.Apply(context.Background(), []byte("service: Web!\nimage: a/b:1\nreplicas: -1\nresources: { memory: lots }\n"))
	var re *wire.RemoteError
	if !errors.As(err, &re) || !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("err %v, want an invalid_spec RemoteError", err)
	}
	fields := map[string]bool{}
	for _, p := range re.Problems {
		fields[p.Field] = true
	}
	for _, f := range []string{"service", "replicas", "resources.memory"} {
		if !fields[f] {
			t.Errorf("no problem reported for %s; got %+v", f, re.Problems)
		}
	}
}

func TestClientStatusBlocksUntilChange(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	c := wire.NewClient([]string{n.api.URL}, nil)
	ctx := context.Background()
	if _, err := c.Apply(ctx, []byte(fmt.Sprintf("service: web\nimage: %s\nreplicas: 0\n", ref))); err != nil {
		t.Fatal(err)
	}
	// Wait for the rollout (of no replicas) to end, so that nothing but the
	// removal below changes the service.
	var st wire.ServiceStatus
	for st.RevisionState != state.RevisionSucceeded {
		var err error
		if st, err = c.Status(ctx, "web", st.Index, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	type answer struct {
		st  wire.ServiceStatus
		err error
	}
	got := make(chan answer, 1)
	go func() {
		next, err := c.Status(ctx, "web", st.Index, 10*time.Second)
		got <- answer{next, err}
	}()
	select {
	case a := <-got:
		t.Fatalf("blocking query answered before any change: %+v, %v", a.st, a.err)
	case <-time.After(300 * time.Millisecond):
	}
	// Remove the service: the waiting query must answer, with a newer index
	// (the service is being removed) or not found (it is already gone,
	// when the controller finished the removal before the query woke).
	if err := c.Remove(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		switch {
		case errors.Is(a.err, ErrNotFound):
		case a.err != nil:
			t.Fatalf("blocking query: %v", a.err)
		case a.st.Index <= st.Index:
			t.Fatalf("blocking query answered index %d, not past %d", a.st.Index, st.Index)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking query did not answer after a change")
	}
}

func TestNextTimedChange(t *testing.T) {
	store := state.NewStore()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	spec := specFor("127.0.0.1:1/x:v1")
	spec.Update.Monitor = 10 * time.Second
	spec.Update.ProgressDeadline = time.Minute
	if _, err := store.ApplyRevision(1, state.ApplyRevisionCmd{Now: now, Revision: state.Revision{Service: "web", Spec: *spec, Ref: "r@sha256:a", Fingerprint: "f"}}); err != nil {
		t.Fatal(err)
	}
	if at, ok := nextTimedChange(store.View(), now); !ok || !at.Equal(now.Add(time.Minute)) {
		t.Fatalf("next = %v %v, want the progress deadline", at, ok)
	}
	svc, _ := store.View().Service("web")
	_ = store.ApplyRolloutStep(2, state.RolloutStepCmd{Now: now, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
		Create: []state.Replica{{ID: "r1", Service: "web", Revision: 1, Fingerprint: "f", Host: "h"}}})
	_ = store.ApplyHostReport(3, state.HostReportCmd{Now: now.Add(2 * time.Second), Report: state.HostReport{Host: "h",
		Reports: []state.StatusReport{{ReplicaID: "r1", State: state.ReplicaHealthy}}}})
	if at, ok := nextTimedChange(store.View(), now.Add(3*time.Second)); !ok || !at.Equal(now.Add(12*time.Second)) {
		t.Fatalf("next = %v %v, want the end of r1's monitor window", at, ok)
	}
	// Nothing in the future: no wake.
	if _, ok := nextTimedChange(store.View(), now.Add(time.Hour)); ok {
		t.Fatal("a wake in the past was returned")
	}
}

// With no host to place on, the leader says why once and then writes
// nothing: no storm of identical steps, and the progress deadline still runs.
func TestNoHostMeansNoWriteStorm(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	if _, err := n.ctrl.Apply(context.Background(), specFor(ref), ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		svc, _ := n.store.View().Service("web")
		if svc.Rollout != nil && strings.Contains(svc.Rollout.Message, "cannot be placed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout message never said why: %+v", svc.Rollout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := n.store.View().Index()
	time.Sleep(1500 * time.Millisecond) // spans the loop's tick
	if after := n.store.View().Index(); after != before {
		t.Fatalf("%d raft writes while nothing could be placed", after-before)
	}
	svc, _ := n.store.View().Service("web")
	if !svc.Rollout.LastProgressAt.Equal(svc.Rollout.StartedAt) {
		t.Fatal("an unplaced batch counted as progress")
	}
}
