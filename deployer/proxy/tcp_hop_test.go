package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/pki"
)

// TCP hops use a real container port: the hop headers name it.
var dbHopRoute = Route{Listen: 5432, Protocol: TCP, Service: "db", Port: 5432}

func dbTarget(id, addr string, hop bool) DesiredTarget {
	return DesiredTarget{TargetKey: TargetKey{Service: "db", Port: 5432, ID: id, Addr: addr, Hop: hop}, Healthy: true}
}

// hostTLS makes a cluster CA and the proxy TLS configurations of hosts
// (agent certificates, pki.ProxyConfig), as the agents use on both ends of
// a hop.
func hostTLS(t *testing.T, hosts ...string) map[string]*tls.Config {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Nodes: []string{"n1"}, Agents: hosts}); err != nil {
		t.Fatal(err)
	}
	out := map[string]*tls.Config{}
	for _, h := range hosts {
		f := pki.NodeFiles(dir, h)
		cfg, err := pki.ProxyConfig(f.CA, f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		out[h] = cfg
	}
	return out
}

// startHopListener serves tb's hop handler as the agent does (TLS when
// cfg is set, BaseContext ending with the test), with short read and
// write timeouts: a spliced connection must outlive them.
func startHopListener(t *testing.T, tb *Table, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: tb.HopHandler(), ReadHeaderTimeout: time.Second,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { cancel(); _ = srv.Close(); <-done })
	return ln.Addr().String()
}

// twoHosts: host B's table behind a mutual-TLS hop listener, with
// replica "b" of db at replicaB (none when ""); host A's table with a tcp
// ingress port, whose targets are B's replica through B's proxy and
// aTargets.
type twoHosts struct {
	a, b       *Table
	ingressA   string
	hopB       string
	bTargetKey TargetKey
}

func startTwoHosts(t *testing.T, replicaB string, aTargets ...DesiredTarget) *twoHosts {
	t.Helper()
	certs := hostTLS(t, "ha", "hb")
	h := &twoHosts{b: NewTable(nil)}
	t.Cleanup(h.b.Close)
	h.hopB = startHopListener(t, h.b, certs["hb"])
	if replicaB != "" {
		d := dbTarget("b", replicaB, false)
		h.bTargetKey = d.TargetKey
		h.b.Apply(Desired{Routes: []Route{dbHopRoute}, Targets: []DesiredTarget{d}})
	}
	h.a = NewTableWith(Options{HopTLSConfig: certs["ha"]})
	t.Cleanup(h.a.Close)
	h.ingressA = startTCPProxy(t, h.a)
	h.a.Apply(Desired{Routes: []Route{dbHopRoute}, Targets: append([]DesiredTarget{dbTarget("b", h.hopB, true)}, aTargets...)})
	return h
}

// TestTCPHopReachesBothHosts: a tcp route on host A balances over A's own
// replica and B's, which it reaches through B's hop listener over mutual
// TLS; lines go both ways on a connection through the hop.
func TestTCPHopReachesBothHosts(t *testing.T) {
	echoB := startEcho(t, "b")
	echoA := startEcho(t, "a")
	h := startTwoHosts(t, echoB.ln.Addr().String(), dbTarget("a", echoA.ln.Addr().String(), false))
	seen := map[string]int{}
	for i := range 40 {
		c := dialLine(t, h.ingressA)
		got, err := c.ask("one")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		name, _, _ := strings.Cut(got, ":")
		if again, err := c.ask("two"); err != nil || again != name+":two" {
			t.Fatalf("second line on connection %d: %q, %v; want %s:two", i, again, err, name)
		}
		_ = c.Close()
		seen[name]++
	}
	if seen["a"] == 0 || seen["b"] == 0 || len(seen) != 2 {
		t.Fatalf("answers by replica: %v; want both a (local) and b (through B's proxy)", seen)
	}
	if n := h.a.Counts()["db"].Retries; n != 0 {
		t.Errorf("%d retries with every target up", n)
	}
}

// TestTCPHopHalfClose: a half-close passes through the hop both ways (TLS
// close_notify carries it between the proxies): a client that shuts its
// write side still reads the whole answer, and a replica that shuts its
// own first still reads what the client sends after.
func TestTCPHopHalfClose(t *testing.T) {
	// serveOne runs replica on the first connection to a new listener.
	serveOne := func(t *testing.T, replica func(c *net.TCPConn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			replica(c.(*net.TCPConn))
		}()
		return ln.Addr().String()
	}
	dial := func(t *testing.T, addr string) *net.TCPConn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c.(*net.TCPConn)
	}

	t.Run("client first", func(t *testing.T) {
		h := startTwoHosts(t, serveOne(t, func(c *net.TCPConn) {
			body, _ := io.ReadAll(c) // until the client's half-close
			_, _ = io.WriteString(c, strings.ToUpper(string(body)))
		}))
		c := dial(t, h.ingressA)
		_, _ = io.WriteString(c, "shout")
		_ = c.CloseWrite()
		if got, err := io.ReadAll(c); err != nil || string(got) != "SHOUT" {
			t.Fatalf("answer after the client's half-close: %q, %v", got, err)
		}
	})
	t.Run("replica first", func(t *testing.T) {
		late := make(chan string, 1)
		h := startTwoHosts(t, serveOne(t, func(c *net.TCPConn) {
			_, _ = io.WriteString(c, "bye")
			_ = c.CloseWrite()
			rest, _ := io.ReadAll(c)
			late <- string(rest)
		}))
		c := dial(t, h.ingressA)
		if got, err := io.ReadAll(c); err != nil || string(got) != "bye" {
			t.Fatalf("until the replica's half-close: %q, %v", got, err)
		}
		if _, err := io.WriteString(c, "after"); err != nil {
			t.Fatalf("writing after the replica's half-close: %v", err)
		}
		_ = c.CloseWrite()
		select {
		case got := <-late:
			if got != "after" {
				t.Fatalf("the replica read %q after its half-close, want %q", got, "after")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the replica never read the client's last bytes")
		}
	})
}

// TestTCPHopServerSpeaksFirst: a replica that greets before the client
// says anything (as SMTP or MySQL servers do) is heard through the hop,
// even when the greeting arrives with the hop's 101 in one read.
func TestTCPHopServerSpeaksFirst(t *testing.T) {
	greeter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = greeter.Close() })
	go func() {
		for {
			c, err := greeter.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "220 b ready\n")
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	// A fake hop host that sends the 101 and the greeting in one write.
	fake, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	go func() {
		for {
			c, err := fake.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+UpgradeTCPHop+"\r\n\r\n220 fake ready\n")
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()

	// The fake hop host behind plain hops (as under --dev); B's real
	// proxy, whose 101 and the greeting usually come in separate reads.
	plainA := NewTable(nil)
	plainA.Apply(Desired{Routes: []Route{dbHopRoute}, Targets: []DesiredTarget{dbTarget("f", fake.Addr().String(), true)}})
	for _, tc := range []struct{ name, ingress, want string }{
		{"one read", startTCPProxy(t, plainA), "220 fake ready"},
		{"real hop", startTwoHosts(t, greeter.Addr().String()).ingressA, "220 b ready"},
	} {
		c := dialLine(t, tc.ingress)
		got, err := c.r.ReadString('\n')
		_ = c.Close()
		if err != nil || strings.TrimSuffix(got, "\n") != tc.want {
			t.Errorf("%s: greeting %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestTCPHopRetriedWhenHopHostCannotTakeIt: when B has no healthy replica,
// no tcp route (its view lags A's), or its replica refuses, B answers 503
// with HeaderHopUnavailable and A sends the connection to another target
// (its own replica): no connection fails.
func TestTCPHopRetriedWhenHopHostCannotTakeIt(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, b *Table)
	}{
		{"no healthy replica", func(t *testing.T, b *Table) {
			d := dbTarget("b", startEcho(t, "b").ln.Addr().String(), false)
			d.Healthy = false
			b.Apply(Desired{Routes: []Route{dbHopRoute}, Targets: []DesiredTarget{d}})
		}},
		{"no tcp route", func(t *testing.T, b *Table) {
			// The pool exists for an http route only: no raw hop to it.
			b.Apply(Desired{Routes: []Route{{Listen: 80, Protocol: HTTP, Path: "/", Service: "db", Port: 5432}},
				Targets: []DesiredTarget{dbTarget("b", startEcho(t, "b").ln.Addr().String(), false)}})
		}},
		{"replica refuses", func(t *testing.T, b *Table) {
			keepPicking(b) // every connection meets the refusal, not an ejection
			b.Apply(Desired{Routes: []Route{dbHopRoute}, Targets: []DesiredTarget{dbTarget("b", refusedAddr(t), false)}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			echoA := startEcho(t, "a")
			h := startTwoHosts(t, "", dbTarget("a", echoA.ln.Addr().String(), false))
			tc.setup(t, h.b)
			for i := range 30 {
				c := dialLine(t, h.ingressA)
				got, err := c.ask("x")
				_ = c.Close()
				if err != nil || got != "a:x" {
					t.Fatalf("connection %d: %q, %v; want a:x", i, got, err)
				}
			}
			if h.a.Counts()["db"].Retries == 0 {
				t.Error("no retry counted: B was never tried, the test proves nothing")
			}
			if cur := h.a.Current(); slices.ContainsFunc(cur.Targets, func(c CurrentTarget) bool { return c.Ejected }) {
				t.Errorf("A ejected a target: B's proxy was up, only unable to take the connection: %+v", cur.Targets)
			}
		})
	}
}

// TestTCPHopDrainWaitsForSplicedConnection: a connection through B's hop
// listener counts in flight on B's replica (and on A's hop target) until
// it closes, so B's Drain waits for it; the connection outlives the hop
// server's read and write timeouts.
func TestTCPHopDrainWaitsForSplicedConnection(t *testing.T) {
	echoB := startEcho(t, "b")
	h := startTwoHosts(t, echoB.ln.Addr().String())
	conn := dialLine(t, h.ingressA)
	defer conn.Close()
	if got, err := conn.ask("hello"); err != nil || got != "b:hello" {
		t.Fatalf("through the hop: %q, %v", got, err)
	}
	hopKey := dbTarget("b", h.hopB, true).TargetKey
	if a, b := h.a.InFlight(hopKey), h.b.InFlight(h.bTargetKey); a != 1 || b != 1 {
		t.Fatalf("in flight: %d on A's hop target, %d on B's replica; want 1 and 1", a, b)
	}
	drained := make(chan error, 1)
	go func() { drained <- h.b.Drain(context.Background(), h.bTargetKey) }()
	time.Sleep(300 * time.Millisecond) // past the hop server's timeouts
	select {
	case err := <-drained:
		t.Fatalf("B's Drain returned (%v) with a connection open through the hop", err)
	default:
	}
	if got, err := conn.ask("still"); err != nil || got != "b:still" {
		t.Fatalf("the open connection while B drains: %q, %v", got, err)
	}
	_ = conn.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("B's Drain did not return after the connection closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.a.InFlight(hopKey) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("A's hop target still has %d in flight after the connection closed", h.a.InFlight(hopKey))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTCPHopListenerNeedsClientCertificate: without a cluster certificate
// a connection to the hop listener is refused in the TLS handshake and
// reaches no replica.
func TestTCPHopListenerNeedsClientCertificate(t *testing.T) {
	echoB := startEcho(t, "b")
	h := startTwoHosts(t, echoB.ln.Addr().String())
	c, err := tls.Dial("tcp", h.hopB, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}) //nolint:gosec // the test is the server's check
	if err == nil {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "+UpgradeTCPHop+"\r\n"+
			HeaderHopService+": db\r\n"+HeaderHopPort+": 5432\r\n\r\n")
		_, err = bufio.NewReader(c).ReadString('\n')
	}
	if err == nil {
		t.Fatal("the hop listener answered a client without a certificate")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %v; want a TLS alert about the missing certificate", err)
	}
	if n := echoB.accepted.Load(); n != 0 {
		t.Fatalf("B's replica accepted %d connections from a client without a certificate", n)
	}
}

// TestTCPHopFlushesBytesSentWithTheRequest: bytes a sender writes right
// after its upgrade request (read along with it by the hop listener's
// server) reach the replica first.
func TestTCPHopFlushesBytesSentWithTheRequest(t *testing.T) {
	echoB := startEcho(t, "b")
	b := NewTable(nil)
	b.Apply(Desired{Routes: []Route{dbHopRoute}, Targets: []DesiredTarget{dbTarget("b", echoB.ln.Addr().String(), false)}})
	hop := startHopListener(t, b, nil)
	c, err := net.Dial("tcp", hop)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "+UpgradeTCPHop+"\r\n"+
		HeaderHopService+": db\r\n"+HeaderHopPort+": 5432\r\n\r\nearly\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	if got, err := br.ReadString('\n'); err != nil || got != "b:early\n" {
		t.Fatalf("the bytes sent with the request: %q, %v", got, err)
	}
}

// TestIngressRefusesTCPHopUpgrade: an ingress port refuses a request
// naming the TCP hop upgrade (400), even when its target is another
// host's proxy that would otherwise open a raw connection for it: the
// upgrade is for hosts' proxies only. The replica sees nothing.
func TestIngressRefusesTCPHopUpgrade(t *testing.T) {
	var hits atomic.Int64
	web := startBackend(t, "web", func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	b := NewTable(nil)
	// B routes the same pool over tcp too: the hop would be served.
	b.Apply(Desired{Routes: []Route{hopRoute, {Listen: 9000, Protocol: TCP, Service: "web", Port: 8080}}, Targets: []DesiredTarget{hopTarget(web)}})
	hop := startHopListener(t, b, nil)
	a := NewTable(nil)
	a.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "web", Addr: hop, Hop: true}, Healthy: true},
	}})
	px := startProxy(t, a)
	for _, upgrade := range []string{UpgradeTCPHop, "websocket, Deployctl-TCP"} {
		req, _ := http.NewRequest(http.MethodGet, px.URL+"/", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", upgrade)
		req.Header.Set(HeaderHopService, "web")
		req.Header.Set(HeaderHopPort, "8080")
		resp, err := px.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close() // a 101's body would be the raw connection: not read
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Upgrade %q on an ingress port: %d; want 400", upgrade, resp.StatusCode)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the replica got %d requests", n)
	}
	if code, body := get(t, px.Client(), http.MethodGet, px.URL+"/", nil); code != http.StatusOK {
		t.Fatalf("a plain request through the same hop: %d %q", code, body)
	}
}

// TestHopTLSConfigAloneCarriesHTTPHops: Options.HopTLSConfig without a
// Transport is enough for HTTP hops too (the default transport gets it),
// with the cluster's certificates on both ends.
func TestHopTLSConfigAloneCarriesHTTPHops(t *testing.T) {
	certs := hostTLS(t, "ha", "hb")
	b1 := startBackend(t, "b1", nil)
	hostB := NewTable(nil)
	hostB.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{hopTarget(b1)}})
	hop := startHopListener(t, hostB, certs["hb"])
	hostA := NewTableWith(Options{HopTLSConfig: certs["ha"]})
	hostA.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "b1", Addr: hop, Hop: true}, Healthy: true},
	}})
	px := startProxy(t, hostA)
	if code, body := get(t, px.Client(), http.MethodGet, px.URL+"/", nil); code != http.StatusOK || body != "b1" {
		t.Fatalf("HTTP hop with HopTLSConfig only: %d %q, want 200 b1", code, body)
	}
}
