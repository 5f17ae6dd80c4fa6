package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
)

// takeUntil accumulates TakeTraffic until cond holds on the sum (the
// figures of a request are observed when the proxy gets its answer, which
// the client may see a moment before).
func takeUntil(t *testing.T, tb *Table, what string, cond func(map[string]traffic.Figures) bool) map[string]traffic.Figures {
	t.Helper()
	sum := map[string]traffic.Figures{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for id, f := range tb.TakeTraffic() {
			got := sum[id]
			got.Add(f)
			sum[id] = got
		}
		if cond(sum) {
			return sum
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: figures %+v", what, sum)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func answered(f traffic.Figures) uint64 {
	var n uint64
	for _, c := range f.Latency {
		n += c
	}
	return n
}

// TestTrafficCountsAnswersAndErrors: every request to a replica counts,
// 5xx answers as errors (a 404 is not), each with a latency; a second
// TakeTraffic has nothing new.
func TestTrafficCountsAnswersAndErrors(t *testing.T) {
	be := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		}
	})
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{be.target(true)}})
	for _, p := range []string{"/fail", "/ok", "/fail", "/missing", "/fail"} {
		get(t, http.DefaultClient, http.MethodGet, px.URL+p, nil)
	}
	got := takeUntil(t, tb, "5 requests", func(m map[string]traffic.Figures) bool { return m["a"].Requests == 5 })
	if a := got["a"]; a.Errors != 3 || answered(a) != 5 || len(got) != 1 {
		t.Fatalf("figures %+v, want a: 5 requests, 3 errors (the 503s, not the 404), 5 latencies", got)
	}
	if again := tb.TakeTraffic(); len(again) != 0 {
		t.Fatalf("a second take = %+v, want nothing new", again)
	}
}

// TestTrafficCountsRetriedRequestOnBoth: a GET refused by one replica and
// retried on another is a failure of the first (no latency: no answer)
// and a request of the second, so a retry hides no failing replica.
func TestTrafficCountsRetriedRequestOnBoth(t *testing.T) {
	a := startBackend(t, "a", nil)
	dead := DesiredTarget{TargetKey: TargetKey{Service: "web", ID: "dead", Addr: refusedAddr(t)}, Healthy: true}
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{dead, a.target(true)}})
	// With two targets a pick is least outstanding: a looks busy, so the
	// request goes to dead first.
	busy := tb.targets[a.target(true).TargetKey]
	busy.inflight.Add(5)
	code, body := get(t, http.DefaultClient, http.MethodGet, px.URL+"/", nil)
	busy.inflight.Add(-5)
	if code != http.StatusOK || body != "a" {
		t.Fatalf("retried request: %d %q, want 200 from a", code, body)
	}
	got := takeUntil(t, tb, "both attempts", func(m map[string]traffic.Figures) bool {
		return m["dead"].Requests+m["a"].Requests == 2
	})
	if d := got["dead"]; d.Requests != 1 || d.Errors != 1 || answered(d) != 0 {
		t.Errorf("dead: %+v, want 1 request, 1 error, no latency", d)
	}
	if f := got["a"]; f.Requests != 1 || f.Errors != 0 || answered(f) != 1 {
		t.Errorf("a: %+v, want 1 request answered", f)
	}
	if tb.Counts()["web"].Status2xx != 1 || tb.Counts()["web"].Retries != 1 {
		t.Errorf("counts %+v, want one 2xx and one retry", tb.Counts()["web"])
	}
}

// TestTrafficLatencyIsTimeToFirstByte: a replica that answers after 30 ms
// lands in the bucket of 30 ms (no lower, no higher than what the client
// waited); an event stream whose headers come at once and whose body
// takes 400 ms is not slow.
func TestTrafficLatencyIsTimeToFirstByte(t *testing.T) {
	const delay, stream = 30 * time.Millisecond, 400 * time.Millisecond
	be := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			time.Sleep(stream)
			_, _ = io.WriteString(w, "data: done\n\n")
			return
		}
		time.Sleep(delay)
		_, _ = io.WriteString(w, "slow")
	})
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{be.target(true)}})

	start := time.Now()
	get(t, http.DefaultClient, http.MethodGet, px.URL+"/slow", nil)
	waited := time.Since(start)
	got := takeUntil(t, tb, "the slow request", func(m map[string]traffic.Figures) bool { return m["a"].Requests == 1 })["a"]
	if len(got.Latency) != 1 {
		t.Fatalf("latency %v, want one bucket", got.Latency)
	}
	for b := range got.Latency {
		if b < traffic.BucketOf(delay) || b > traffic.BucketOf(waited) {
			t.Errorf("latency bucket %d (up to %v), want between %d (%v, the replica's delay) and %d (%v, what the client waited)",
				b, traffic.Bound(b), traffic.BucketOf(delay), delay, traffic.BucketOf(waited), waited)
		}
	}

	start = time.Now()
	_, body := get(t, http.DefaultClient, http.MethodGet, px.URL+"/events", nil)
	if took := time.Since(start); took < stream || body != "data: done\n\n" {
		t.Fatalf("stream: %q in %v, want the whole body after %v", body, took, stream)
	}
	got = takeUntil(t, tb, "the stream", func(m map[string]traffic.Figures) bool { return m["a"].Requests == 1 })["a"]
	if p := got.Quantile(1); p >= stream/2 {
		t.Errorf("stream latency %v, want the time to its headers, well under the body's %v", p, stream)
	}
}

// TestTrafficClientGoneIsSlowNotFailed: a client that gives up on a
// replica that does not answer leaves one request, no error, and its wait
// as a latency, so a replica that hangs shows as slow.
func TestTrafficClientGoneIsSlowNotFailed(t *testing.T) {
	release := make(chan struct{})
	be := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{be.target(true)}})
	const patience = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, px.URL+"/", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("answered %d, want the client's timeout", resp.StatusCode)
	}
	got := takeUntil(t, tb, "the abandoned request", func(m map[string]traffic.Figures) bool { return m["a"].Requests == 1 })["a"]
	if got.Errors != 0 || answered(got) != 1 || got.Quantile(1) < patience {
		t.Fatalf("figures %+v (p100 %v), want 1 request, no error, a latency of at least %v", got, got.Quantile(1), patience)
	}
}

// TestTrafficTCPCountsConnections: a tcp connection counts one request on
// the replica it reaches and none of latency; a refused dial is an error
// of the refusing replica, and its retry a request of the next.
func TestTrafficTCPCountsConnections(t *testing.T) {
	a := startEcho(t, "a")
	dead := DesiredTarget{TargetKey: TargetKey{Service: "db", ID: "dead", Addr: refusedAddr(t)}, Healthy: true}
	tb := NewTable(nil)
	addr := startTCPProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{dbRoute}, Targets: []DesiredTarget{dead, a.target()}})
	busy := tb.targets[a.target().TargetKey]
	busy.inflight.Add(5) // the first connection goes to dead
	c := dialLine(t, addr)
	got, err := c.ask("x")
	_ = c.Close()
	busy.inflight.Add(-5)
	if err != nil || got != "a:x" {
		t.Fatalf("through a refusing target: %q, %v", got, err)
	}
	c = dialLine(t, addr)
	if _, err := c.ask("y"); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	figures := takeUntil(t, tb, "three dials", func(m map[string]traffic.Figures) bool {
		return m["dead"].Requests+m["a"].Requests == 3
	})
	if d := figures["dead"]; d.Requests != 1 || d.Errors != 1 || len(d.Latency) != 0 {
		t.Errorf("dead: %+v, want 1 connection, failed", d)
	}
	if f := figures["a"]; f.Requests != 2 || f.Errors != 0 || len(f.Latency) != 0 {
		t.Errorf("a: %+v, want 2 connections, no error, no latency", f)
	}
}

// TestTrafficCountedByTheReplicasHost: a request through another host's
// proxy counts on that host only (the attempt to its container), not on
// the sending host's hop target; the hop host's replicas of one replica
// ID on two ports add up.
func TestTrafficCountedByTheReplicasHost(t *testing.T) {
	b1 := startBackend(t, "b1", nil)
	hostB := NewTable(nil)
	other := hopTarget(b1)
	other.Port = 9090
	hostB.Apply(Desired{Routes: []Route{hopRoute, {Listen: 81, Protocol: HTTP, Path: "/", Service: "web", Port: 9090}}, Targets: []DesiredTarget{hopTarget(b1), other}})
	hopAddr := startHopListener(t, hostB, nil)
	hostA := NewTable(nil)
	hostA.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "b1", Addr: hopAddr, Hop: true}, Healthy: true},
	}})
	edge := startProxy(t, hostA)
	for range 3 {
		if code, body := get(t, http.DefaultClient, http.MethodGet, edge.URL+"/", nil); code != http.StatusOK || body != "b1" {
			t.Fatalf("through the hop: %d %q", code, body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+hopAddr+"/", nil)
	req.Header.Set(HeaderHopService, "web")
	req.Header.Set(HeaderHopPort, "9090")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	got := takeUntil(t, hostB, "4 requests on B", func(m map[string]traffic.Figures) bool { return m["b1"].Requests == 4 })
	if len(got) != 1 || got["b1"].Errors != 0 {
		t.Errorf("host B: %+v, want b1 only, 4 requests (3 on port 8080, 1 on 9090)", got)
	}
	if a := hostA.TakeTraffic(); len(a) != 0 {
		t.Errorf("host A counted %+v, want nothing: its only target is a hop", a)
	}
}

// TestTrafficOfForgottenTargetIsTakenOnce: a replica drained and forgotten
// between two takes is reported once more (its last requests are the ones
// a release is judged by when it is rolled back), then no more.
func TestTrafficOfForgottenTargetIsTakenOnce(t *testing.T) {
	a := startBackend(t, "a", nil)
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{a.target(true)}})
	get(t, http.DefaultClient, http.MethodGet, px.URL+"/", nil)
	key := a.target(true).TargetKey
	waitUntilIdle(t, tb, key)
	tb.Apply(Desired{Routes: []Route{webRoute}})
	if err := tb.Drain(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if ch := tb.Apply(Desired{Routes: []Route{webRoute}}); len(ch.Forget) != 1 {
		t.Fatalf("forget = %v, want a", ch.Forget)
	}
	if got := tb.TakeTraffic(); got["a"].Requests != 1 {
		t.Fatalf("after the forget: %+v, want a's request", got)
	}
	if got := tb.TakeTraffic(); len(got) != 0 || len(tb.retired) != 0 {
		t.Fatalf("a second take: %+v (%d retired kept), want nothing", got, len(tb.retired))
	}
}

func waitUntilIdle(t *testing.T, tb *Table, key TargetKey) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for tb.InFlight(key) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still has requests in flight", key)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTakeLosesNothingUnderConcurrency: takes racing with observations
// add up to every observation (run with -race).
func TestTakeLosesNothingUnderConcurrency(t *testing.T) {
	var f liveFigures
	const workers, each = 4, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				f.observe(time.Duration(w+1)*time.Millisecond, i%10 == 0, i%2 == 0)
			}
		})
	}
	sum := map[string]traffic.Figures{}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		part := map[string]traffic.Figures{}
		f.take(part, "r")
		got := sum["r"]
		got.Add(part["r"])
		sum["r"] = got
	}
	got := sum["r"]
	if got.Requests != workers*each || got.Errors != workers*each/10 || answered(got) != workers*each/2 {
		t.Fatalf("sum of takes %d requests, %d errors, %d latencies; want %d, %d, %d",
			got.Requests, got.Errors, answered(got), workers*each, workers*each/10, workers*each/2)
	}
	for w := range workers {
		if n := got.Latency[traffic.BucketOf(time.Duration(w+1)*time.Millisecond)]; n != each/2 {
			t.Errorf("bucket of %d ms holds %d, want %d", w+1, n, each/2)
		}
	}
}

// TestHopHeadersNeverReachAReplica: neither a client's X-Deployctl-Canary
// on an ingress port nor the hop headers of a request that came through
// another host's proxy (side included) reach the replica.
func TestHopHeadersNeverReachAReplica(t *testing.T) {
	seen := make(chan http.Header, 1)
	be := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() })
	canary := hopTarget(be)
	canary.Canary = true
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{canary}, Canaries: map[string]float64{"web": 0.5}})
	hop := startHopListener(t, tb, nil)
	check := func(how string, req *http.Request) {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", how, resp.StatusCode)
		}
		h := <-seen
		for name := range h {
			if strings.HasPrefix(strings.ToLower(name), "x-deployctl-") {
				t.Errorf("%s: the replica got %s: %v", how, name, h.Values(name))
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, px.URL+"/", nil)
	req.Header.Set(HeaderHopCanary, "1")
	check("ingress", req)
	req, _ = http.NewRequest(http.MethodGet, "http://"+hop+"/", nil)
	req.Header.Set(HeaderHopService, "web")
	req.Header.Set(HeaderHopPort, "8080")
	req.Header.Set(HeaderHopCanary, "1")
	check("hop", req)
}
