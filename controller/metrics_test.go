package controller

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// The controller's and raft's metrics on the real loop and a one-node
// raft: a release that succeeds, one that fails its checks and is rolled
// back, the API's requests; every family the registry gathers passes
// promlint, and /metrics answers them in the text format.
func TestMetricsOnTheLoop(t *testing.T) {
	reg := prometheus.NewRegistry()
	raftMetrics, err := raftstore.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	n := mustStartNodeWithRaft(t, func(c *raftstore.Config) {
		c.Metrics = raftMetrics
		c.FSM = raftstore.NewFSM(c.FSM.(*raftstore.FSM).Store(), raftstore.WithMetrics(raftMetrics))
	}, func(c *Config) {
		m, err := NewMetrics(reg, c.Store)
		if err != nil {
			t.Fatal(err)
		}
		c.Metrics = m
	})
	api := httptest.NewServer(NewAPI(APIConfig{Controller: n.ctrl, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}).Handler())
	t.Cleanup(api.Close)

	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	agents := startFakeAgents(t, n, "h1")
	waitUntil(t, 10*time.Second, "host h1", func() bool { _, ok := n.store.View().Host("h1"); return ok })
	spec := specFor(ref)
	spec.Update.Monitor = 50 * time.Millisecond
	spec.Update.ProgressDeadline = time.Minute
	ctx := context.Background()
	v1, err := n.ctrl.Apply(ctx, spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := waitRevision(t, n, v1.Revision, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("first release ended %s", st)
	}

	// The bad release's replicas report unhealthy from the start: its
	// fingerprint is known before it is applied.
	bad := specFor(ref)
	bad.Update = spec.Update
	bad.Env = map[string]string{"BROKEN": "1"}
	pin, err := n.ctrl.cfg.Resolver.Resolve(ctx, bad.Image)
	if err != nil {
		t.Fatal(err)
	}
	agents.mu.Lock()
	agents.sick = map[string]bool{Fingerprint(*bad, pin.Ref): true}
	agents.mu.Unlock()
	v2, err := n.ctrl.Apply(ctx, bad, "")
	if err != nil {
		t.Fatal(err)
	}
	st, cur := waitRevision(t, n, v2.Revision, 20*time.Second)
	if st != state.RevisionRolledBack || cur == v2.Revision {
		t.Fatalf("bad release ended %s on revision %d, want rolled back", st, cur)
	}
	if st, _ := waitRevision(t, n, cur, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("rollback revision %d ended %s", cur, st)
	}

	// Requests through the API: a status, a route that does not exist.
	for _, path := range []string{"/v1/services/web", "/nope"} {
		resp, err := http.Get(api.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	m := n.ctrl.cfg.Metrics
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"rollouts succeeded (v1 and the rollback)", testutil.ToFloat64(m.rollouts.WithLabelValues(outcomeSucceeded)), 2},
		{"rollouts rolled back", testutil.ToFloat64(m.rollouts.WithLabelValues(outcomeRolledBack)), 1},
		{"rollouts failed", testutil.ToFloat64(m.rollouts.WithLabelValues(outcomeFailed)), 0},
		{"GET /v1/services/{name} 200", testutil.ToFloat64(m.apiRequests.WithLabelValues("GET /v1/services/{name}", "200")), 1},
		{"no route, 404", testutil.ToFloat64(m.apiRequests.WithLabelValues("other", "404")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	resp, err := http.Get(api.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`deployctl_replicas{service="web",state="healthy"} 2`,
		`deployctl_replicas{service="web",state="failed"} 0`,
		`deployctl_rollout_duration_seconds_count{outcome="rolled_back"} 1`,
		`deployctl_raft_state{state="leader"} 1`,
		`deployctl_raft_commit_duration_seconds_count{command="apply-revision"}`,
		`deployctl_raft_fsm_apply_duration_seconds_count{command="rollout-step"}`,
		`deployctl_api_request_duration_seconds_count{route="GET /v1/services/{name}"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, text)
		}
	}
}
