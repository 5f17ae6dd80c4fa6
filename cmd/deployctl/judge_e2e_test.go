package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// loadRecord is one request of steadyLoad.
type loadRecord struct {
	at      time.Time
	failed  bool
	version string // the body's "webapp vX" answer, "" when failed
}

// steadyLoad sends GETs to url from a few clients (half of them on a new
// connection each time) until stopped, and keeps every outcome.
type steadyLoad struct {
	mu      sync.Mutex
	records []loadRecord
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

func startSteadyLoad(url string, clients int, pause time.Duration) *steadyLoad {
	ctx, stop := context.WithCancel(context.Background())
	l := &steadyLoad{stop: stop}
	for i := range clients {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: i%2 == 1}}
		l.wg.Go(func() {
			for ctx.Err() == nil {
				rec := loadRecord{at: time.Now()}
				resp, err := client.Get(url)
				if err != nil {
					rec.failed = true
				} else {
					body, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					rec.failed = resp.StatusCode != http.StatusOK
					if !rec.failed {
						rec.version = strings.TrimSpace(strings.TrimPrefix(string(body), "webapp "))
					}
				}
				if ctx.Err() == nil || !rec.failed {
					l.mu.Lock()
					l.records = append(l.records, rec)
					l.mu.Unlock()
				}
				time.Sleep(pause)
			}
		})
	}
	return l
}

func (l *steadyLoad) end() {
	l.stop()
	l.wg.Wait()
}

// window counts the requests sent in [from, to) and those that failed.
func (l *steadyLoad) window(from, to time.Time) (total, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if !r.at.Before(from) && r.at.Before(to) {
			total++
			if r.failed {
				failed++
			}
		}
	}
	return total, failed
}

// waitAnswering waits until url answers 200 with version in its body.
func waitAnswering(t *testing.T, url, version string) {
	t.Helper()
	waitFor(t, 30*time.Second, url+" to answer "+version, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), version)
	})
}

// judgedSpec is web behind an ingress port, its releases judged by their
// traffic (issue 15).
func judgedSpec(ref string, listen int, canary, judge, deadline, env string) string {
	return fmt.Sprintf(`service: web
image: %s
replicas: 4
resources: { cpus: 0.2, memory: 32M, pids: 32 }
healthcheck:
  http: { path: /healthz, port: 8080 }
  interval: 500ms
  timeout: 500ms
  retries: 2
update:
  parallelism: 1
  monitor: 2s
  progress_deadline: %s
%s%sstop_grace_period: 1s
ingress:
  - {listen: %d, port: 8080}
%s`, ref, deadline, canary, judge, listen, env)
}

// TestCLIReleaseJudgedByTraffic (issue 15's proof) on one host, under a
// steady load through the ingress port: a release that passes its health
// check but fails every second request is rolled back on its error rate,
// with users seeing at most about weight x failure share of errors during
// the canary and none after; a good release passes and keeps its figures;
// a slow one is rolled back on its p99; one without traffic waits, says
// so, and ends at its progress deadline by failure_action.
func TestCLIReleaseJudgedByTraffic(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	listen := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", listen)
	const canary = "  canary: { weight: 10%, duration: 6s }\n"
	const judge = "  rollback_on: { error_rate: 2%, latency_p99: 300ms, min_requests: 50 }\n"
	spec := func(ref, env string) string {
		return judgedSpec(ref, listen, canary, judge, "2m", env)
	}
	mustCLI(t, s, 0, spec(env.refs["v1"], ""), "apply", "-")
	waitAnswering(t, url, "webapp v1")
	load := startSteadyLoad(url, 4, 5*time.Millisecond)
	defer load.end()
	time.Sleep(time.Second)

	// A release answering 500 to every second request: rolled back.
	start := time.Now()
	r := mustCLI(t, s, 3, spec(env.refs["v11"], "env: { WEBAPP_FAIL_EVERY: \"2\" }\n"), "apply", "-")
	end := time.Now()
	out := r.stdout + r.stderr
	if !strings.Contains(out, "error rate") || !strings.Contains(out, "> 2 %") {
		t.Errorf("apply of a failing release: want the error-rate threshold named\n%s", out)
	}
	total, failed := load.window(start, end)
	t.Logf("failing release: %d requests, %d failed (%.1f %%) from apply to rollback; apply said:\n%s", total, failed, 100*float64(failed)/float64(max(total, 1)), out)
	// Weight 10% x half failing = 5% in the canary's window; the window
	// measured here also holds the time before the split starts and after
	// it ends, so it can only be lower. 8% leaves room for noise.
	if total < 200 || float64(failed) > 0.08*float64(total) {
		t.Errorf("users saw %d failures of %d requests during the canary: want at most about 5 %%", failed, total)
	}
	time.Sleep(3 * time.Second)
	if after, failedAfter := load.window(end, time.Now()); failedAfter > 0 || after == 0 {
		t.Errorf("after the rollback: %d of %d requests failed, want 0 of some", failedAfter, after)
	}
	h := mustHistory(t, s, "web")
	bad := h[len(h)-2]
	if !strings.Contains(bad.Message, "error rate") || bad.Traffic == nil || bad.Traffic.New.Errors == 0 {
		t.Errorf("history of the failing release: want the error rate and its figures, got %+v (traffic %+v)", bad, bad.Traffic)
	}

	// A good release under the same settings passes, with its figures.
	mustCLI(t, s, 0, spec(env.refs["v11"], ""), "apply", "-")
	h = mustHistory(t, s, "web")
	if good := h[len(h)-1]; good.Traffic == nil || good.Traffic.New.Requests < 50 || good.Traffic.New.Errors != 0 {
		t.Errorf("history of the good release: want >= 50 requests and no error, got %+v", good.Traffic)
	}

	// A slow release (400 ms per answer > p99 300 ms): rolled back.
	r = mustCLI(t, s, 3, spec(env.refs["v1"], "env: { WEBAPP_DELAY: 400ms }\n"), "apply", "-")
	if out := r.stdout + r.stderr; !strings.Contains(out, "p99") {
		t.Errorf("apply of a slow release: want the p99 threshold named\n%s", out)
	}
	load.end()

	// No traffic: waits for evidence, says so, and ends at its deadline.
	start = time.Now()
	r = mustCLI(t, s, 3, judgedSpec(env.refs["v1"], listen, canary, judge, "15s", ""), "apply", "-")
	if out := r.stdout + r.stderr; !strings.Contains(out, "waiting for traffic") {
		t.Errorf("apply without traffic: want it to say it waits for traffic\n%s", out)
	}
	t.Logf("release without traffic ended by failure_action after %s:\n%s", time.Since(start).Round(time.Second), r.stdout)
	h = mustHistory(t, s, "web")
	if idle := h[len(h)-2]; !strings.Contains(idle.Message, "waiting for traffic") {
		t.Errorf("history of the release without traffic: want its failure to say it waited for traffic, got %q", idle.Message)
	}
}
