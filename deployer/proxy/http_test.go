package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a real loopback HTTP server that answers its name and can
// exit abruptly (Close drops its listener and every connection at once,
// like a process killed without a graceful shutdown).
type backend struct {
	name   string
	addr   string
	srv    *http.Server
	served atomic.Int64
}

func startBackend(t *testing.T, name string, handler http.HandlerFunc) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().String()}
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("slow") != "" {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			}
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, name)
		}
	}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.served.Add(1)
		handler(w, r)
	})}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *backend) target(healthy bool) DesiredTarget {
	return DesiredTarget{TargetKey: TargetKey{Service: "web", ID: b.name, Addr: b.addr}, Healthy: healthy}
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

var webRoute = Route{Listen: 80, Protocol: HTTP, Path: "/", Service: "web"}

// startProxy serves the table's port 80 routes on a loopback listener.
func startProxy(t *testing.T, tb *Table) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(tb.HTTPHandler(80))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, client *http.Client, method, url string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPNoRouteAndNoHealthyReplica(t *testing.T) {
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{{Listen: 80, Protocol: HTTP, Host: "api.example.com", Path: "/v1", Service: "web"}}})

	code, body := get(t, px.Client(), "GET", px.URL+"/other", nil)
	if code != http.StatusNotFound || body != "deployctl proxy: no route for host \"127.0.0.1\" and path \"/other\" on port 80\n" {
		t.Errorf("no route: %d %q", code, body)
	}
	req, _ := http.NewRequest("GET", px.URL+"/v1/users", nil)
	req.Host = "api.example.com"
	resp, err := px.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || string(b) != "deployctl proxy: service web has no healthy replica\n" {
		t.Errorf("no healthy replica: %d %q", resp.StatusCode, b)
	}
	// A target that is not healthy yet does not count.
	be := startBackend(t, "a", nil)
	tb.Apply(Desired{Routes: []Route{{Listen: 80, Protocol: HTTP, Host: "api.example.com", Path: "/v1", Service: "web"}}, Targets: []DesiredTarget{be.target(false)}})
	resp, err = px.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || be.served.Load() != 0 {
		t.Errorf("adding target: %d, backend served %d", resp.StatusCode, be.served.Load())
	}
	counts := tb.Counts()
	if counts[""].Status4xx != 1 || counts["web"].Status5xx != 2 {
		t.Errorf("counts = %+v", counts)
	}
}

func TestHTTPForwardedHeaders(t *testing.T) {
	seen := make(chan http.Header, 1)
	hosts := make(chan string, 1)
	be := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		hosts <- r.Host
	})
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{be.target(true)}})
	req, _ := http.NewRequest("GET", px.URL+"/", nil)
	req.Host = "www.example.com:8080"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	resp, err := px.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-seen
	if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the client's address alone", got)
	}
	if got := h.Get("X-Forwarded-Host"); got != "www.example.com:8080" {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	if got := h.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := h.Get("Forwarded"); got != "" {
		t.Errorf("Forwarded = %q passed through", got)
	}
	if got := <-hosts; got != "www.example.com:8080" {
		t.Errorf("Host = %q, want the client's", got)
	}
	if c := tb.Counts()["web"]; c.Status2xx != 1 {
		t.Errorf("counts = %+v", c)
	}
}

// A target that refuses connections: idempotent requests without a body
// are retried once on another target and all succeed; a POST, or a PUT
// with a body, is not retried.
func TestHTTPRetryOnceOnRefused(t *testing.T) {
	be := startBackend(t, "live", nil)
	dead := DesiredTarget{TargetKey: TargetKey{Service: "web", ID: "dead", Addr: refusedAddr(t)}, Healthy: true}
	tb := NewTable(nil)
	keepPicking(tb)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{be.target(true), dead}})
	for _, method := range []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"} {
		for range 20 {
			if code, _ := get(t, px.Client(), method, px.URL+"/", nil); code != http.StatusOK {
				t.Fatalf("%s through a refused target: %d", method, code)
			}
		}
	}
	retries := tb.Counts()["web"].Retries
	if retries == 0 {
		t.Fatal("no request was retried: the dead target was never picked")
	}
	for _, tc := range []struct {
		method string
		body   func() io.Reader
	}{
		{"POST", func() io.Reader { return nil }},
		{"PATCH", func() io.Reader { return nil }},
		{"PUT", func() io.Reader { return strings.NewReader("x") }},
	} {
		failed := 0
		for range 30 {
			code, body := get(t, px.Client(), tc.method, px.URL+"/", tc.body())
			switch code {
			case http.StatusOK:
			case http.StatusBadGateway:
				failed++
				if !strings.Contains(body, "replica dead of service web did not answer: connection refused") {
					t.Errorf("502 body %q", body)
				}
			default:
				t.Fatalf("%s: %d %s", tc.method, code, body)
			}
		}
		if failed == 0 {
			t.Errorf("%s: no request failed; was it retried?", tc.method)
		}
	}
	if got := tb.Counts()["web"].Retries; got != retries {
		t.Errorf("retries went from %d to %d for requests that must not be retried", retries, got)
	}
}

// A target that resets every connection before answering (SO_LINGER 0)
// is retried like a refused one.
func TestHTTPRetryOnReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(make([]byte, 1024))
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		}
	}()
	be := startBackend(t, "live", nil)
	reset := DesiredTarget{TargetKey: TargetKey{Service: "web", ID: "reset", Addr: ln.Addr().String()}, Healthy: true}
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{reset, be.target(true)}})
	for range 40 {
		if code, body := get(t, px.Client(), "GET", px.URL+"/", nil); code != http.StatusOK || body != "live" {
			t.Fatalf("GET through a resetting target: %d %q", code, body)
		}
	}
	if tb.Counts()["web"].Retries == 0 {
		t.Fatal("the resetting target was never picked")
	}
	failed := 0
	for range 30 {
		if code, _ := get(t, px.Client(), "POST", px.URL+"/", nil); code == http.StatusBadGateway {
			failed++
		}
	}
	if failed == 0 {
		t.Error("a POST to a resetting target was retried")
	}
}

// Streams reach the client as they are written, not when the handler
// finishes: server-sent events, and a body of known length written slowly
// (ReverseProxy flushes event streams and bodies without a length by
// itself; the last kind within FlushInterval, 1 ms).
func TestHTTPStreamsFlushAtOnce(t *testing.T) {
	for _, contentType := range []string{"text/event-stream", "application/x-ndjson"} {
		t.Run(contentType, func(t *testing.T) {
			release := make(chan struct{})
			be := startBackend(t, "stream", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", contentType)
				if contentType != "text/event-stream" {
					w.Header().Set("Content-Length", "27")
				}
				_, _ = io.WriteString(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				<-release
				_, _ = io.WriteString(w, "data: second\n\n")
			})
			tb := NewTable(nil)
			px := startProxy(t, tb)
			tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{be.target(true)}})
			// If the proxy holds the first event, not even the headers
			// arrive: the handler is released after 2 s so that the test
			// fails instead of hanging.
			var timedOut atomic.Bool
			releaseOnce := sync.OnceFunc(func() { close(release) })
			timer := time.AfterFunc(2*time.Second, func() { timedOut.Store(true); releaseOnce() })
			defer timer.Stop()
			resp, err := px.Client().Get(px.URL + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			r := bufio.NewReader(resp.Body)
			line, err := r.ReadString('\n')
			if err != nil || line != "data: first\n" {
				t.Fatalf("first line %q, %v", line, err)
			}
			if timedOut.Load() {
				t.Fatal("the first event arrived only after the handler finished")
			}
			if n := tb.InFlight(be.target(true).TargetKey); n != 1 {
				t.Errorf("an open stream counts %d in flight, want 1", n)
			}
			releaseOnce()
			rest, _ := io.ReadAll(r)
			if !strings.Contains(string(rest), "data: second") {
				t.Errorf("rest of stream %q", rest)
			}
		})
	}
}

// A WebSocket upgrade passes through, the connection echoes both ways,
// and counts in flight until it closes.
func TestHTTPWebSocketUpgrade(t *testing.T) {
	be := startBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "not an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		_, _ = io.Copy(conn, rw) // echo
	})
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{be.target(true)}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(px.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, msg := range []string{"hello", "again"} {
		_, _ = io.WriteString(conn, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q, %v; want %q", buf, err, msg)
		}
	}
	key := be.target(true).TargetKey
	if n := tb.InFlight(key); n != 1 {
		t.Errorf("an open WebSocket counts %d in flight, want 1", n)
	}
	_ = conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for tb.InFlight(key) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the closed WebSocket still counts in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c := tb.Counts()["web"]; c.Status1xx != 1 {
		t.Errorf("counts = %+v, want one 1xx", c)
	}
}

// The heart of issue 8: targets drained and replaced, then killed
// abruptly, under continuous load with keep-alive and with a new
// connection per request, GET and POST (which is never retried, so no
// retry can hide a request sent to a dead target): zero failures.
func TestHTTPDrainAndReplaceUnderLoadDropsNothing(t *testing.T) {
	tb := NewTable(nil)
	px := startProxy(t, tb)
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{a.target(true), b.target(true)}})

	keepAlive := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer keepAlive.CloseIdleConnections()
	ctx, stop := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for i := range 8 {
		client := keepAlive
		if i%2 == 1 {
			client = fresh
		}
		method := "GET"
		if i%4 >= 2 {
			method = "POST"
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				var body io.Reader
				if method == "POST" {
					body = strings.NewReader("payload")
				}
				req, _ := http.NewRequest(method, px.URL+"/?slow=1", body)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
					continue
				}
				ok.Add(1)
			}
		})
	}
	replace := func(old *backend, keep, next *backend) {
		time.Sleep(300 * time.Millisecond)
		ch := tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{keep.target(true), next.target(true)}})
		if len(ch.Drain) != 1 || ch.Drain[0] != old.target(true).TargetKey {
			t.Errorf("Drain = %v, want %s", ch.Drain, old.name)
		}
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tb.Drain(dctx, old.target(true).TargetKey); err != nil {
			t.Errorf("drain %s: %v", old.name, err)
		}
		servedAtDrain := old.served.Load()
		_ = old.srv.Close() // exits abruptly: listener and connections gone
		time.Sleep(300 * time.Millisecond)
		if got := old.served.Load(); got != servedAtDrain {
			t.Errorf("%s served %d requests after it was drained", old.name, got-servedAtDrain)
		}
	}
	c := startBackend(t, "c", nil)
	replace(a, b, c)
	d := startBackend(t, "d", nil)
	replace(b, c, d)
	stop()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed; first: %v", failed.Load(), ok.Load()+failed.Load(), firstFailure.Load())
	}
	if ok.Load() < 200 {
		t.Fatalf("only %d requests in the run: the load was too thin to prove anything", ok.Load())
	}
	for _, be := range []*backend{a, b, c, d} {
		if be.served.Load() == 0 {
			t.Errorf("backend %s served nothing", be.name)
		}
	}
	t.Logf("%d requests, 0 failed; served a=%d b=%d c=%d d=%d", ok.Load(), a.served.Load(), b.served.Load(), c.served.Load(), d.served.Load())
}

// Without the drain (the container killed while in the pools), the same
// load does fail: the test above can fail.
func TestHTTPKillWithoutDrainFails(t *testing.T) {
	tb := NewTable(nil)
	px := startProxy(t, tb)
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{a.target(true), b.target(true)}})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	ctx, stop := context.WithCancel(context.Background())
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := client.Post(px.URL+"/?slow=1", "text/plain", strings.NewReader("x"))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	_ = a.srv.Close()
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	if failed.Load() == 0 {
		t.Fatal("killing a target in the pools failed no request; the drain test proves nothing")
	}
}

// A slow request in flight holds the drain; it completes with 200 and
// then Drain returns.
func TestHTTPDrainWaitsForSlowRequest(t *testing.T) {
	release := make(chan struct{})
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "done")
	})
	tb := NewTable(nil)
	px := startProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{slow.target(true)}})
	answer := make(chan string, 1)
	go func() {
		resp, err := px.Client().Get(px.URL + "/")
		if err != nil {
			answer <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	key := slow.target(true).TargetKey
	for deadline := time.Now().Add(5 * time.Second); tb.InFlight(key) != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the target")
		}
	}
	tb.Apply(Desired{Routes: []Route{webRoute}})
	// New requests get the 503 at once: nothing healthy is left.
	if code, _ := get(t, px.Client(), "GET", px.URL+"/", nil); code != http.StatusServiceUnavailable {
		t.Errorf("a new request while the only target drains: %d, want 503", code)
	}
	drained := make(chan error, 1)
	go func() { drained <- tb.Drain(context.Background(), key) }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a slow request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if got := <-answer; got != "200 done" {
		t.Fatalf("the slow request answered %q", got)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the slow request")
	}
}

// Two ingress entries of one service on different container ports are two
// pools: each listen port reaches its own container port.
func TestHTTPRoutesByContainerPort(t *testing.T) {
	api, admin := startBackend(t, "api", nil), startBackend(t, "admin", nil)
	tb := NewTable(nil)
	srv80 := httptest.NewServer(tb.HTTPHandler(80))
	defer srv80.Close()
	srv81 := httptest.NewServer(tb.HTTPHandler(81))
	defer srv81.Close()
	tb.Apply(Desired{
		Routes: []Route{
			{Listen: 80, Protocol: HTTP, Path: "/", Service: "web", Port: 8080},
			{Listen: 81, Protocol: HTTP, Path: "/", Service: "web", Port: 9090},
		},
		Targets: []DesiredTarget{
			{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "r1", Addr: api.addr}, Healthy: true},
			{TargetKey: TargetKey{Service: "web", Port: 9090, ID: "r1", Addr: admin.addr}, Healthy: true},
		},
	})
	for range 10 {
		if _, body := get(t, srv80.Client(), "GET", srv80.URL+"/", nil); body != "api" {
			t.Fatalf("port 80 answered %q, want api", body)
		}
		if _, body := get(t, srv81.Client(), "GET", srv81.URL+"/", nil); body != "admin" {
			t.Fatalf("port 81 answered %q, want admin", body)
		}
	}
}
