package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// scrape GETs a /metrics URL and returns the body of a 200; any other
// answer fails t.
func scrape(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s\n%s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: Content-Type %q, want the text format", url, ct)
	}
	return string(body)
}

// sample is the value of one series (name and labels as the text format
// writes them, e.g. `deployctl_replicas{service="web",state="healthy"}`),
// and whether it is there.
func sample(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// mustSample is sample, failing t when the series is missing or does not
// satisfy ok.
func mustSample(t *testing.T, what, text, series string, ok func(float64) bool) {
	t.Helper()
	v, found := sample(text, series)
	if !found || !ok(v) {
		t.Fatalf("%s: %s = %v (present %v), not as expected; scrape:\n%s", what, series, v, found, grepLines(text, "deployctl_"))
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// mustLint fails t on any promlint problem of a real scrape.
func mustLint(t *testing.T, what, text string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("%s: lint: %v", what, err)
	}
	for _, p := range problems {
		t.Errorf("%s: promlint: %s: %s", what, p.Metric, p.Text)
	}
}

// A dev server and a separate agent, each with --metrics-addr: a release
// on the agent's host, then one that fails its health checks and is rolled
// back. The server's /metrics (on its API, and on its plain listener) has
// the replicas by state, the rollouts by outcome, the API's requests and
// raft's state; the agent's has the failed probes. Every scrape passes
// promlint.
func TestCLIMetricsAfterDeployAndBadRelease(t *testing.T) {
	needEngine(t)
	serverMetrics, agentMetrics := freeAddr(t), freeAddr(t)
	s := mustStartServerArgs(t, append(e2eServerArgs(), "--metrics-addr", serverMetrics)...)
	agentHost := mustStartAgent(t, s, "m2", "--metrics-addr", agentMetrics)
	waitHostsReady(t, s, agentHost)
	pinned := fmt.Sprintf("placement: { constraints: [\"node.id == %s\"] }\n", agentHost)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 1, pinned), "apply", "-")
	mustCLI(t, s, ExitRolledBack, webSpec(env.refs["v1"], 1, pinned+"env: { WEBAPP_BROKEN: \"1\" }\n"), "apply", "-")

	plain := &http.Client{Timeout: 10 * time.Second}
	api := scrape(t, plain, "http://"+s.addr+"/metrics")
	mustLint(t, "server API", api)
	gt0 := func(v float64) bool { return v > 0 }
	is := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
	mustSample(t, "server API", api, `deployctl_replicas{service="web",state="healthy"}`, is(1))
	mustSample(t, "server API", api, `deployctl_rollouts_total{outcome="succeeded"}`, is(2)) // v1 and the rollback
	mustSample(t, "server API", api, `deployctl_rollouts_total{outcome="rolled_back"}`, is(1))
	mustSample(t, "server API", api, `deployctl_rollout_duration_seconds_count{outcome="rolled_back"}`, is(1))
	mustSample(t, "server API", api, `deployctl_api_requests_total{code="201",route="POST /v1/services"}`, is(2))
	mustSample(t, "server API", api, `deployctl_api_requests_total{code="204",route="POST /v1/agent/report"}`, gt0)
	mustSample(t, "server API", api, `deployctl_raft_state{state="leader"}`, is(1))
	mustSample(t, "server API", api, `deployctl_raft_commit_duration_seconds_count{command="apply-revision"}`, is(3))

	// The plain listener serves the same registry to no certificate.
	side := scrape(t, plain, "http://"+serverMetrics+"/metrics")
	mustLint(t, "server --metrics-addr", side)
	mustSample(t, "server --metrics-addr", side, `deployctl_rollouts_total{outcome="rolled_back"}`, is(1))
	mustSample(t, "server --metrics-addr", side, `deployctl_raft_applied_index`, gt0)

	// The agent has no API: its metrics are on --metrics-addr only. Both
	// releases ran on its host, so the bad one's failed probes are here.
	agent := scrape(t, plain, "http://"+agentMetrics+"/metrics")
	mustLint(t, "agent", agent)
	mustSample(t, "agent", agent, `deployctl_health_probe_failures_total{check="http",service="web"}`, func(v float64) bool { return v >= 2 }) // retries: 2
	if strings.Contains(agent, "deployctl_raft_") || strings.Contains(agent, "deployctl_api_") {
		t.Fatalf("the agent's metrics carry the server's:\n%s", grepLines(agent, "deployctl_"))
	}
}

// Under mutual TLS /metrics on the API needs a certificate of the cluster
// (any role): without one the connection is refused. --metrics-addr
// serves the same metrics in plain HTTP to anyone who reaches it.
func TestClusterMetricsNeedACertificate(t *testing.T) {
	side := freeAddr(t)
	c := mustStartClusterWith(t, 1, func(int) []string { return []string{"--metrics-addr", side} }, "--no-agent")
	nd := c.mustLeader(30 * time.Second)
	url := "https://" + nd.httpAddr + "/metrics"

	operator := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c.clientTLS()}}
	text := scrape(t, operator, url)
	mustLint(t, "TLS API", text)
	mustSample(t, "TLS API", text, `deployctl_raft_state{state="leader"}`, func(v float64) bool { return v == 1 })

	// The node's own server certificate may scrape too.
	serverCert, err := tls.LoadX509KeyPair(filepath.Join(c.tlsDir, nd.id+".pem"), filepath.Join(c.tlsDir, nd.id+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(c.tlsDir, "ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("read the CA: %v", err)
	}
	asServer := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{serverCert}}}}
	scrape(t, asServer, url)

	// No client certificate: refused (the handshake, or 401).
	anonymous := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := anonymous.Get(url); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "deployctl_") {
			t.Fatalf("scrape without a client certificate: %s\n%s", resp.Status, body)
		}
	}
	// Plain HTTP to the TLS API is no way around it.
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + nd.httpAddr + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "deployctl_") {
			t.Fatalf("plain HTTP to the TLS API answered metrics: %s", resp.Status)
		}
	}

	plain := scrape(t, &http.Client{Timeout: 10 * time.Second}, "http://"+side+"/metrics")
	mustSample(t, "TLS server --metrics-addr", plain, `deployctl_raft_state{state="leader"}`, func(v float64) bool { return v == 1 })
	mustSample(t, "TLS server --metrics-addr", plain, `deployctl_api_requests_total{code="200",route="GET /metrics"}`, func(v float64) bool { return v >= 2 })
}
