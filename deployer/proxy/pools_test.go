package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A pool listed in Desired.Pools is served by PoolHandler with no route:
// 503 while it has no healthy target, then balanced over its targets;
// the pool survives an Apply that leaves it empty and goes when no
// longer listed.
func TestPoolHandlerServesAPinnedPool(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	tb := NewTable(nil)
	defer tb.Close()
	pinned := []PoolKey{{Service: "api", Port: 8080}}
	tb.Apply(Desired{Pools: pinned})
	srv := httptest.NewServer(tb.PoolHandler("api", 8080))
	defer srv.Close()
	if code, body := get(t, srv.Client(), http.MethodGet, srv.URL+"/", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "service api has no healthy replica serving port 8080") {
		t.Fatalf("empty pool: %d %q", code, body)
	}
	target := func(be *backend) DesiredTarget {
		return DesiredTarget{TargetKey: TargetKey{Service: "api", Port: 8080, ID: be.name, Addr: be.addr}, Healthy: true}
	}
	tb.Apply(Desired{Pools: pinned, Targets: []DesiredTarget{target(a), target(b)}})
	seen := map[string]int{}
	for range 40 {
		code, body := get(t, srv.Client(), http.MethodGet, srv.URL+"/", nil)
		if code != http.StatusOK {
			t.Fatalf("GET: %d %s", code, body)
		}
		seen[body]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("answers %v, want both replicas", seen)
	}
	if got := tb.Counts()["api"].Status2xx; got != 40 {
		t.Errorf("2xx count %d, want 40", got)
	}
	// Another port of the same service is another pool.
	other := httptest.NewServer(tb.PoolHandler("api", 9090))
	defer other.Close()
	if code, _ := get(t, other.Client(), http.MethodGet, other.URL+"/", nil); code != http.StatusServiceUnavailable {
		t.Errorf("port 9090 answered %d, want 503: it has no pool", code)
	}
	// Unlisted and empty: the pool goes.
	tb.Apply(Desired{})
	for _, k := range []TargetKey{target(a).TargetKey, target(b).TargetKey} {
		_ = tb.Drain(t.Context(), k)
	}
	tb.Apply(Desired{})
	if code, _ := get(t, srv.Client(), http.MethodGet, srv.URL+"/", nil); code != http.StatusServiceUnavailable {
		t.Errorf("after the pool went: %d, want 503", code)
	}
	tb.mu.Lock()
	n := len(tb.pools)
	tb.mu.Unlock()
	if n != 0 {
		t.Errorf("%d pools left", n)
	}
}

// ServePoolTCP splices connections to the pool of a service's port, with
// no route: both echo replicas answer, bytes pass both ways.
func TestServePoolTCP(t *testing.T) {
	a, b := startEcho(t, "a"), startEcho(t, "b")
	tb := NewTable(nil)
	defer tb.Close()
	target := func(e *echoServer) DesiredTarget {
		d := e.target()
		d.Service, d.Port = "db", 5432
		return d
	}
	tb.Apply(Desired{Pools: []PoolKey{{Service: "db", Port: 5432}}, Targets: []DesiredTarget{target(a), target(b)}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.ServePoolTCP(ctx, "db", 5432, ln) }()
	defer func() { cancel(); <-done }()
	seen := map[string]bool{}
	for range 30 {
		c := dialLine(t, ln.Addr().String())
		got, err := c.ask("hello")
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.SplitN(got, ":", 2)[0]] = true
		c.Close()
	}
	if len(seen) != 2 {
		t.Fatalf("answers from %v, want both replicas", seen)
	}
}

// A tcp service connection's pool on host A reaches host B's replica
// through B's hop listener: B serves the TCP hop because its own table
// pins the pool as tcp (it has no tcp route); an http-pinned pool is
// refused a raw hop, as an http route's is.
func TestServePoolTCPHopsToAPinnedPool(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		wantB    bool
	}{{TCP, true}, {HTTP, false}} {
		t.Run(tc.protocol, func(t *testing.T) {
			certs := hostTLS(t, "ha", "hb")
			echoB, echoA := startEcho(t, "b"), startEcho(t, "a")
			pool := []PoolKey{{Service: "db", Port: 5432, Protocol: tc.protocol}}
			b := NewTable(nil)
			t.Cleanup(b.Close)
			hopB := startHopListener(t, b, certs["hb"])
			b.Apply(Desired{Pools: pool, Targets: []DesiredTarget{dbTarget("b", echoB.ln.Addr().String(), false)}})
			a := NewTableWith(Options{HopTLSConfig: certs["ha"]})
			t.Cleanup(a.Close)
			a.Apply(Desired{Pools: []PoolKey{{Service: "db", Port: 5432, Protocol: TCP}},
				Targets: []DesiredTarget{dbTarget("b", hopB, true), dbTarget("a", echoA.ln.Addr().String(), false)}})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.ServePoolTCP(ctx, "db", 5432, ln) }()
			defer func() { cancel(); <-done }()
			seen := map[string]int{}
			for range 30 {
				c := dialLine(t, ln.Addr().String())
				got, err := c.ask("x")
				_ = c.Close()
				if err != nil {
					t.Fatal(err)
				}
				seen[strings.SplitN(got, ":", 2)[0]]++
			}
			if (seen["b"] > 0) != tc.wantB || seen["a"] == 0 {
				t.Fatalf("answers %v; want b reached through the hop: %v", seen, tc.wantB)
			}
		})
	}
}
