package deployer

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/hashicorp/go-hclog"
)

// fixedIngress is a controller that serves one ingress table and then
// blocks like a long poll with no change.
type fixedIngress struct {
	mu    sync.Mutex
	table wire.IngressTable
}

func (f *fixedIngress) Ingress(ctx context.Context, after uint64, wait time.Duration) (wire.IngressTable, error) {
	f.mu.Lock()
	t := f.table
	f.mu.Unlock()
	if t.Index > after {
		return t, nil
	}
	select {
	case <-ctx.Done():
		return wire.IngressTable{}, ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return t, nil
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestIngressRunnerServesLocalReplicasAndDrains: the runner opens the
// routed port, sends requests only to a local replica the agent calls
// healthy, and drain waits for a request in flight before returning.
func TestIngressRunnerServesLocalReplicasAndDrains(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "r1")
	}))
	defer backend.Close()
	host, portText, _ := net.SplitHostPort(strings.TrimPrefix(backend.URL, "http://"))
	backendPort, _ := strconv.Atoi(portText)

	listen := freePort(t)
	src := &fixedIngress{table: wire.IngressTable{Index: 7, Routes: []wire.IngressRoute{
		{Service: "web", Listen: listen, Protocol: "http", Path: "/", Port: backendPort},
	}}}
	g := newIngressRunner(IngressConfig{Source: src, ListenIP: "127.0.0.1"}, "h1", hclog.NewNullLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	url := "http://127.0.0.1:" + strconv.Itoa(listen)
	get := func(path string) (int, string) {
		resp, err := http.Get(url + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Routed but no healthy replica: the proxy's 503.
	waitFor("the ingress port", func() bool { code, _ := get("/"); return code == http.StatusServiceUnavailable })

	g.setLocal([]localTarget{{service: "web", replica: "r1", container: "c1", ip: host, ports: []int{backendPort}, healthy: false}})
	time.Sleep(50 * time.Millisecond)
	if code, body := get("/"); code != http.StatusServiceUnavailable {
		t.Fatalf("a replica not yet healthy got a request: %d %q", code, body)
	}
	g.setLocal([]localTarget{{service: "web", replica: "r1", container: "c1", ip: host, ports: []int{backendPort}, healthy: true}})
	waitFor("the healthy replica", func() bool { code, body := get("/"); return code == http.StatusOK && body == "r1" })

	slow := make(chan int, 1)
	go func() { code, _ := get("/slow"); slow <- code }()
	waitFor("the slow request in flight", func() bool {
		for _, tg := range g.table.Current().Targets {
			if g.table.InFlight(tg.TargetKey) > 0 {
				return true
			}
		}
		return false
	})
	drained := make(chan struct{})
	go func() { g.drain(context.Background(), "web", "r1"); close(drained) }()
	select {
	case <-drained:
		t.Fatal("drain returned with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	if code, _ := get("/"); code != http.StatusServiceUnavailable {
		t.Errorf("a draining replica got a new request: %d", code)
	}
	close(release)
	if code := <-slow; code != http.StatusOK {
		t.Errorf("the in-flight request failed: %d", code)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not return after the last request ended")
	}

	// The route goes: the port closes.
	src.mu.Lock()
	src.table = wire.IngressTable{Index: 8}
	src.mu.Unlock()
	waitFor("the port to close", func() bool { code, _ := get("/"); return code == 0 })
}

// TestIngressRunnerReportsPortsItCannotOpen: a listen port another process
// holds is a problem the agent reports (the listen port, the address and
// the cause); the runner keeps trying, and once the port is free it opens
// it and the problem goes. A hop listener that cannot open is one too.
func TestIngressRunnerReportsPortsItCannotOpen(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := squatter.Addr().(*net.TCPAddr).Port
	hopSquatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hopSquatter.Close()
	src := &fixedIngress{table: wire.IngressTable{Index: 3, Routes: []wire.IngressRoute{
		{Service: "web", Listen: listen, Protocol: "http", Path: "/", Port: 8080},
	}}}
	g := newIngressRunner(IngressConfig{Source: src, ListenIP: "127.0.0.1", ProxyAddr: hopSquatter.Addr().String()}, "h1", hclog.NewNullLogger())
	if g.problems() != nil {
		t.Fatalf("problems before the runner started: %v", g.problems())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s; problems %+v", what, g.problems())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("both listeners are reported", func() bool { return len(g.problems()) == 2 })
	p := g.problems()
	if p[0].Listen != 0 || p[0].Addr != hopSquatter.Addr().String() || !strings.Contains(p[0].Error, "address already in use") {
		t.Errorf("hop listener problem %+v", p[0])
	}
	if p[1].Listen != listen || p[1].Addr != squatter.Addr().String() || p[1].Error != "listen: bind: address already in use" {
		t.Errorf("ingress port problem %+v", p[1])
	}
	_ = squatter.Close()
	waitUntil("the freed port opens and its problem goes", func() bool {
		conn, err := net.Dial("tcp", squatter.Addr().String())
		if err != nil {
			return false
		}
		_ = conn.Close()
		return len(g.problems()) == 1 && g.problems()[0].Listen == 0
	})
	var none *ingressRunner
	if none.problems() != nil {
		t.Error("a host without a proxy reports problems")
	}
}
