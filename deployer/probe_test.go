package deployer

import (
	"context"
	"errors"
	"net"
	"net/http"
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
		if !tt.pass && !errors.Is(err, ErrProbeFailed) {
			t.Errorf("GET %s: %v, want ErrProbeFailed", tt.path, err)
		}
	}
	if err := ProbeHTTP(context.Background(), "127.0.0.1", mustClosedPort(t), "/", time.Second); !errors.Is(err, ErrProbeFailed) {
		t.Errorf("closed port: %v, want ErrProbeFailed", err)
	}
	if err := ProbeHTTP(context.Background(), "", port, "/", time.Second); !errors.Is(err, ErrProbeFailed) {
		t.Errorf("no IP: %v, want ErrProbeFailed", err)
	}
}

func TestProbeHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ip, port := mustServeHTTP(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		<-release
	}))
	err := ProbeHTTP(context.Background(), ip, port, "/", 50*time.Millisecond)
	if !errors.Is(err, ErrProbeFailed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging server: %v, want ErrProbeFailed from the deadline", err)
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
	fail := errors.New("fail")
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
	tracker := newHealthTracker(specs.Healthcheck{Interval: 2 * time.Second, Retries: 3}, start)
	now := start.Add(firstProbeDelay)
	var delays []time.Duration
	delay := firstProbeDelay
	for range 7 {
		delay = tracker.nextDelay(now, delay)
		delays = append(delays, delay)
		now = now.Add(delay)
	}
	// Doubling from 250ms, capped at the interval, and never past the next
	// interval boundary since start, where a failure starts to count.
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 151 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("delays before the first pass = %v, want %v", delays, want)
		}
	}
	tracker.observe(now, nil)
	if got := tracker.nextDelay(now, 250*time.Millisecond); got != 2*time.Second {
		t.Errorf("delay after the first pass = %v, want the interval", got)
	}
}

// A replica that never passes is probed right after each interval boundary
// since start, so its failures count as soon as Docker would count them.
func TestProbeLandsOnIntervalBoundaries(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tracker := newHealthTracker(specs.Healthcheck{Interval: time.Second, Retries: 1}, start)
	now := start.Add(firstProbeDelay)
	delay := firstProbeDelay
	var verdictAt time.Time
	for range 20 {
		if v := tracker.observe(now, errors.New("500")); v == state.ReplicaUnhealthy {
			verdictAt = now
			break
		}
		delay = tracker.nextDelay(now, delay)
		now = now.Add(delay)
	}
	if verdictAt.IsZero() || verdictAt.Sub(start) > time.Second+10*time.Millisecond {
		t.Fatalf("unhealthy at %v after start, want just past the first interval (1s)", verdictAt.Sub(start))
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
	go func() {
		defer close(done)
		runProber(ctx, nil, check, ProbeTarget{IP: ip}, time.Now(), func(st, message string) {
			select {
			case verdicts <- st + ":" + message:
			case <-ctx.Done():
			}
		})
	}()
	defer func() { cancel(); <-done }()

	if got := <-verdicts; !strings.HasPrefix(got, state.ReplicaUnhealthy+":") || !strings.Contains(got, "503") {
		t.Fatalf("first verdict = %q, want unhealthy naming the 503", got)
	}
	healthy.Store(true)
	if got := <-verdicts; got != state.ReplicaHealthy+":" {
		t.Fatalf("second verdict = %q, want healthy", got)
	}
}
