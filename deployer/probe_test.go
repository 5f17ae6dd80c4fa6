package deployer

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// mustServeHTTP serves handler on a loopback listener and returns its IP and
// port.
func mustServeHTTP(t *testing.T, handler http.Handler) (string, int) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &http.Server{Handler: handler}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(func() { _ = server.Close() })
	addr := listener.Addr().(*net.TCPAddr)
	return addr.IP.String(), addr.Port
}

func mustClosedPort(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	return port
}

func TestProbeHTTP(t *testing.T) {
	ip, port := mustServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			code = http.StatusOK
		}
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/elsewhere?code=500")
		}
		w.WriteHeader(code)
	}))
	tests := []struct {
		path string
		pass bool
	}{
		{"/healthz", true},
		{"healthz", true},
		{"/?code=204", true},
		{"/?code=302", true}, // passes without following the redirect to a 500
		{"/?code=404", false},
		{"/?code=500", false},
		{"/?code=503", false},
	}
	for _, tt := range tests {
		err := ProbeHTTP(context.Background(), ip, port, tt.path, time.Second)
		if tt.pass && err != nil {
			t.Errorf("GET %s: %v, want pass", tt.path, err)
		}
		// A failing status is the service's own answer: it counts even
		// before the first interval (healthTracker).
		if !tt.pass && (!errors.Is(err, ErrProbeFailed) || !errors.Is(err, ErrUnhealthyAnswer)) {
			t.Errorf("GET %s: %v, want ErrProbeFailed and ErrUnhealthyAnswer", tt.path, err)
		}
		if !tt.pass && err != nil && !strings.Contains(err.Error(), tt.path[len(tt.path)-3:]) {
			t.Errorf("GET %s: %q does not name the status", tt.path, err)
		}
	}
	// Not reachable is not an answer: a starting service is not judged on it.
	err := ProbeHTTP(context.Background(), "127.0.0.1", mustClosedPort(t), "/", time.Second)
	if !errors.Is(err, ErrProbeFailed) || errors.Is(err, ErrUnhealthyAnswer) {
		t.Errorf("closed port: %v, want ErrProbeFailed but not ErrUnhealthyAnswer", err)
	}
	err = ProbeHTTP(context.Background(), "", port, "/", time.Second)
	if !errors.Is(err, ErrProbeFailed) || errors.Is(err, ErrUnhealthyAnswer) {
		t.Errorf("no IP: %v, want ErrProbeFailed but not ErrUnhealthyAnswer", err)
	}
}

func TestProbeHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ip, port := mustServeHTTP(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		<-release
	}))
	err := ProbeHTTP(context.Background(), ip, port, "/", 50*time.Millisecond)
	if !errors.Is(err, ErrProbeFailed) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnhealthyAnswer) {
		t.Errorf("hanging server: %v, want ErrProbeFailed from the deadline, not an answer", err)
	}
}

func TestProbeTCP(t *testing.T) {
	ip, port := mustServeHTTP(t, http.NotFoundHandler())
	if err := ProbeTCP(context.Background(), ip, port, time.Second); err != nil {
		t.Errorf("open port: %v", err)
	}
	if err := ProbeTCP(context.Background(), "127.0.0.1", mustClosedPort(t), time.Second); !errors.Is(err, ErrProbeFailed) {
		t.Errorf("closed port: %v, want ErrProbeFailed", err)
	}
}

// fakeExecer answers Exec with a fixed result.
type fakeExecer struct {
	code   int
	output string
	err    error
	calls  atomic.Int32
}

func (f *fakeExecer) Exec(context.Context, string, []string, time.Duration) (int, string, error) {
	f.calls.Add(1)
	return f.code, f.output, f.err
}

func TestProbeExec(t *testing.T) {
	tests := []struct {
		name string
		exec *fakeExecer
		pass bool
	}{
		{"exit 0", &fakeExecer{code: 0}, true},
		{"exit 1", &fakeExecer{code: 1, output: "check: 500"}, false},
		{"engine error", &fakeExecer{err: errors.New("no such container")}, false},
	}
	for _, tt := range tests {
		err := Probe(context.Background(), tt.exec, specs.Healthcheck{Exec: []string{"/app", "-check"}}, ProbeTarget{ContainerID: "c1"})
		if tt.pass != (err == nil) || (!tt.pass && !errors.Is(err, ErrProbeFailed)) {
			t.Errorf("%s: Probe = %v, pass want %t", tt.name, err, tt.pass)
		}
	}
	if err := Probe(context.Background(), nil, specs.Healthcheck{}, ProbeTarget{}); err != nil {
		t.Errorf("no check configured: %v, want pass", err)
	}
}

func TestHealthTracker(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	fail := errors.New("fail") // could not reach the service
	answered := unhealthyAnswer{errors.New("GET /healthz: 500")}
	const interval = time.Second

	type step struct {
		at   time.Duration
		err  error
		want string
	}
	tests := []struct {
		name        string
		retries     int
		startPeriod time.Duration
		steps       []step
	}{
		{"first pass is healthy at once", 3, 0, []step{
			{100 * time.Millisecond, nil, state.ReplicaHealthy},
		}},
		{"early failures before the first interval do not count", 1, 0, []step{
			{100 * time.Millisecond, fail, ""},
			{350 * time.Millisecond, fail, ""},
			{850 * time.Millisecond, fail, ""},
			{1100 * time.Millisecond, fail, state.ReplicaUnhealthy},
		}},
		{"an answered failure counts before the first interval", 1, 0, []step{
			{10 * time.Millisecond, answered, state.ReplicaUnhealthy},
		}},
		{"slot 0 counts one answered failure, the next at the first interval", 2, 0, []step{
			{10 * time.Millisecond, fail, ""},
			{35 * time.Millisecond, answered, ""},
			{500 * time.Millisecond, answered, ""},
			{1001 * time.Millisecond, answered, state.ReplicaUnhealthy},
		}},
		{"a warm-up 5xx followed by a pass is healthy", 2, 0, []step{
			{10 * time.Millisecond, answered, ""},
			{300 * time.Millisecond, nil, state.ReplicaHealthy},
			{1300 * time.Millisecond, answered, state.ReplicaHealthy},
			{2300 * time.Millisecond, nil, state.ReplicaHealthy},
		}},
		{"answered failures in start_period do not count", 1, 2 * time.Second, []step{
			{10 * time.Millisecond, answered, ""},
			{1500 * time.Millisecond, answered, ""},
			{2 * time.Second, answered, state.ReplicaUnhealthy},
		}},
		{"one failure counts per interval", 2, 0, []step{
			{1000 * time.Millisecond, fail, ""},
			{1500 * time.Millisecond, fail, ""}, // same interval slot
			{2000 * time.Millisecond, fail, state.ReplicaUnhealthy},
		}},
		{"failures in start_period do not count", 1, 5 * time.Second, []step{
			{2 * time.Second, fail, ""},
			{4 * time.Second, fail, ""},
			{5 * time.Second, fail, state.ReplicaUnhealthy},
		}},
		{"a pass resets the streak", 2, 0, []step{
			{1 * time.Second, nil, state.ReplicaHealthy},
			{2 * time.Second, fail, state.ReplicaHealthy},
			{3 * time.Second, nil, state.ReplicaHealthy},
			{4 * time.Second, fail, state.ReplicaHealthy},
			{5 * time.Second, fail, state.ReplicaUnhealthy},
		}},
		{"unhealthy recovers on a pass", 1, 0, []step{
			{1 * time.Second, fail, state.ReplicaUnhealthy},
			{2 * time.Second, nil, state.ReplicaHealthy},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tracker := newHealthTracker(specs.Healthcheck{Interval: interval, Retries: tt.retries, StartPeriod: tt.startPeriod}, start)
			for i, s := range tt.steps {
				if got := tracker.observe(at(s.at), s.err); got != s.want {
					t.Fatalf("step %d at %v: verdict %q, want %q", i, s.at, got, s.want)
				}
			}
		})
	}
}

func TestProbeDelays(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		check specs.Healthcheck
		first time.Duration
		want  []time.Duration
	}{
		// Every 25ms for the first half second (10ms + 20*25ms = 510ms), then
		// doubling, capped at the interval, and never past the next interval
		// boundary since start (2001ms), where a failure starts to count.
		{"http", specs.Healthcheck{HTTP: &specs.HTTPCheck{Path: "/", Port: 80}, Interval: 2 * time.Second, Retries: 3}, 10 * time.Millisecond,
			append(slices.Repeat([]time.Duration{25 * time.Millisecond}, 20),
				50*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond, 400*time.Millisecond, 741*time.Millisecond, 1482*time.Millisecond)},
		// An exec probe costs the engine an exec: from 10ms, doubling from 250ms.
		{"exec", specs.Healthcheck{Exec: []string{"/check"}, Interval: 2 * time.Second, Retries: 3}, 10 * time.Millisecond,
			[]time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 241 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tracker := newHealthTracker(tt.check, start)
			if got := tracker.firstDelay(); got != tt.first {
				t.Fatalf("first delay = %v, want %v", got, tt.first)
			}
			now := start.Add(tt.first)
			var delays []time.Duration
			delay := tt.first
			for range tt.want {
				delay = tracker.nextDelay(now, delay)
				delays = append(delays, delay)
				now = now.Add(delay)
			}
			for i := range tt.want {
				if delays[i] != tt.want[i] {
					t.Fatalf("delays before the first pass = %v, want %v", delays, tt.want)
				}
			}
			tracker.observe(now, nil)
			if got := tracker.nextDelay(now, 250*time.Millisecond); got != 2*time.Second {
				t.Errorf("delay after the first pass = %v, want the interval", got)
			}
		})
	}
}

// A replica that never passes is judged as soon as its failures count: at
// its first probe when it answers unhealthy, right after the first interval
// boundary since start when it cannot be reached (as Docker would).
func TestProbeVerdictTiming(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		err      error
		min, max time.Duration
	}{
		{"answers 500", unhealthyAnswer{errors.New("500")}, firstProbeDelay, firstProbeDelay},
		{"refused", errors.New("connection refused"), time.Second, time.Second + 10*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tracker := newHealthTracker(specs.Healthcheck{HTTP: &specs.HTTPCheck{Path: "/", Port: 80}, Interval: time.Second, Retries: 1}, start)
			delay := tracker.firstDelay()
			now := start.Add(delay)
			var verdictAt time.Time
			for range 40 {
				if v := tracker.observe(now, tt.err); v == state.ReplicaUnhealthy {
					verdictAt = now
					break
				}
				delay = tracker.nextDelay(now, delay)
				now = now.Add(delay)
			}
			if since := verdictAt.Sub(start); verdictAt.IsZero() || since < tt.min || since > tt.max {
				t.Fatalf("unhealthy at %v after start, want within [%v, %v]", since, tt.min, tt.max)
			}
		})
	}
}

func TestRunProberReportsChanges(t *testing.T) {
	var healthy atomic.Bool
	ip, port := mustServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	check := specs.Healthcheck{HTTP: &specs.HTTPCheck{Path: "/", Port: port}, Interval: 20 * time.Millisecond, Timeout: time.Second, Retries: 2}
	verdicts := make(chan string)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var failures atomic.Int64
	go func() {
		defer close(done)
		runProber(ctx, nil, check, ProbeTarget{IP: ip}, time.Now(), func(st, message string) {
			select {
			case verdicts <- st + ":" + message:
			case <-ctx.Done():
			}
		}, func() { failures.Add(1) })
	}()
	defer func() { cancel(); <-done }()

	if got := <-verdicts; !strings.HasPrefix(got, state.ReplicaUnhealthy+":") || !strings.Contains(got, "503") {
		t.Fatalf("first verdict = %q, want unhealthy naming the 503", got)
	}
	// Unhealthy after retries (2) counted failures: at least that many
	// probes failed, each reported to the metrics hook.
	if n := failures.Load(); n < int64(check.Retries) {
		t.Fatalf("failed probes reported = %d, want at least %d before the unhealthy verdict", n, check.Retries)
	}
	healthy.Store(true)
	if got := <-verdicts; got != state.ReplicaHealthy+":" {
		t.Fatalf("second verdict = %q, want healthy", got)
	}
}
