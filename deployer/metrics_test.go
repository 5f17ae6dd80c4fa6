package deployer

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deployctl/deployctl/deployer/proxy"
)

// The agent's metrics from a real proxy table on loopback: requests by
// service and status class with their latency, and probe failures; every
// family passes promlint.
func TestAgentMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	fail := m.probeFailed("web", "http")
	fail()
	fail()

	tb := proxy.NewTable(nil)
	t.Cleanup(tb.Close)
	m.followProxy(tb)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(be.Close)
	tb.Apply(proxy.Desired{
		Routes:  []proxy.Route{{Listen: 80, Protocol: proxy.HTTP, Path: "/", Service: "web"}},
		Targets: []proxy.DesiredTarget{{TargetKey: proxy.TargetKey{Service: "web", ID: "r1", Addr: be.Listener.Addr().String()}, Healthy: true}},
	})
	px := httptest.NewServer(tb.HTTPHandler(80))
	t.Cleanup(px.Close)
	for _, path := range []string{"/", "/", "/boom"} {
		resp, err := http.Get(px.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	want := `
# HELP deployctl_health_probe_failures_total Failed health probes of this host's replicas, by service and check (http, tcp, exec); every failure, counted towards unhealthy or not.
# TYPE deployctl_health_probe_failures_total counter
deployctl_health_probe_failures_total{check="http",service="web"} 2
# HELP deployctl_proxy_requests_total HTTP requests this host's proxy answered, by service ("" for no route) and status class (1xx..5xx), its own 404, 502 and 503 included.
# TYPE deployctl_proxy_requests_total counter
deployctl_proxy_requests_total{class="1xx",service="web"} 0
deployctl_proxy_requests_total{class="2xx",service="web"} 2
deployctl_proxy_requests_total{class="3xx",service="web"} 0
deployctl_proxy_requests_total{class="4xx",service="web"} 0
deployctl_proxy_requests_total{class="5xx",service="web"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "deployctl_health_probe_failures_total", "deployctl_proxy_requests_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.proxy, "deployctl_proxy_request_duration_seconds"); n != 1 {
		t.Fatalf("latency histograms = %d, want 1 (service web)", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "deployctl_proxy_request_duration_seconds" {
			if got := mf.GetMetric()[0].GetHistogram().GetSampleCount(); got != 3 {
				t.Fatalf("latency samples = %d, want 3", got)
			}
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
