package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHopReachesAnotherHostsReplica: host A's proxy has no replica of its
// own; the request goes to host B's hop listener, which passes it to B's
// replica with the X-Forwarded-* headers A set (the client's address, not
// A's), without the hop headers.
func TestHopReachesAnotherHostsReplica(t *testing.T) {
	headers := make(chan http.Header, 1)
	b1 := startBackend(t, "b1", func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header.Clone()
		_, _ = io.WriteString(w, "b1")
	})
	hostB := NewTable(nil)
	hostB.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{hopTarget(b1)}})
	hop := httptest.NewServer(hostB.HopHandler())
	defer hop.Close()

	hostA := NewTable(nil)
	hostA.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "b1", Addr: strings.TrimPrefix(hop.URL, "http://"), Hop: true}, Healthy: true},
	}})
	edge := startProxy(t, hostA)
	req, _ := http.NewRequest(http.MethodGet, edge.URL+"/x", nil)
	req.Host = "shop.example.com"
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // a client's claim: dropped by A
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "b1" {
		t.Fatalf("through the hop: %d %q, want 200 b1", resp.StatusCode, body)
	}
	seen := <-headers
	if got := seen.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For at the replica = %q, want the client's address 127.0.0.1 (as host A saw it)", got)
	}
	if got := seen.Get("X-Forwarded-Host"); got != "shop.example.com" {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	if seen.Get(HeaderHopService) != "" || seen.Get(HeaderHopPort) != "" {
		t.Errorf("hop headers reached the replica: %v", seen)
	}
}

// TestHopDoesNotHopTwice: a hop listener never forwards to another hop,
// even when its own pools list only remote targets; it answers 503 with
// HeaderHopUnavailable, and the sending proxy then tries another target.
func TestHopDoesNotHopTwice(t *testing.T) {
	b2 := startBackend(t, "b2", nil)
	loop := NewTable(nil)
	hopSrv := httptest.NewServer(loop.HopHandler())
	defer hopSrv.Close()
	hopAddr := strings.TrimPrefix(hopSrv.URL, "http://")
	// The hop host only knows a hop target (itself): a loop if it forwarded.
	loop.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "r", Addr: hopAddr, Hop: true}, Healthy: true},
	}})
	code, body := get(t, http.DefaultClient, http.MethodGet, hopSrv.URL+"/", nil)
	if code != http.StatusBadRequest {
		t.Fatalf("hop without headers: %d %q, want 400", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, hopSrv.URL+"/", nil)
	req.Header.Set(HeaderHopService, "web")
	req.Header.Set(HeaderHopPort, "0")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("hop with port 0: %v %v, want 400", resp, err)
	}

	edge := NewTable(nil)
	edge.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "r", Addr: hopAddr, Hop: true}, Healthy: true},
		hopTarget(b2),
	}})
	srv := startProxy(t, edge)
	for i := range 20 {
		code, body := get(t, http.DefaultClient, http.MethodGet, srv.URL+"/", nil)
		if code != http.StatusOK || body != "b2" {
			t.Fatalf("request %d: %d %q, want 200 from b2 (the hop host has no replica of its own)", i, code, body)
		}
	}
	if edge.Counts()["web"].Retries == 0 {
		t.Error("no retry counted: the hop host's 503 was not retried on another target")
	}
}

// TestHopOverMutualTLS: with HopTLS the sending proxy reaches the hop
// listener over https with its client certificate.
func TestHopOverMutualTLS(t *testing.T) {
	b1 := startBackend(t, "b1", nil)
	hostB := NewTable(nil)
	hostB.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{hopTarget(b1)}})
	hop := httptest.NewUnstartedServer(hostB.HopHandler())
	hop.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	hop.StartTLS()
	defer hop.Close()
	var clientCert atomic.Bool
	pool := x509.NewCertPool()
	pool.AddCert(hop.Certificate())
	transport := NewTransport()
	transport.TLSClientConfig = &tls.Config{RootCAs: pool, Certificates: hop.TLS.Certificates,
		VerifyConnection: func(tls.ConnectionState) error { clientCert.Store(true); return nil }}
	hostA := NewTableWith(Options{Transport: transport, HopTLS: true})
	hostA.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "b1", Addr: strings.TrimPrefix(hop.URL, "https://"), Hop: true}, Healthy: true},
	}})
	srv := startProxy(t, hostA)
	code, body := get(t, http.DefaultClient, http.MethodGet, srv.URL+"/", nil)
	if code != http.StatusOK || body != "b1" {
		t.Fatalf("over TLS: %d %q, want 200 b1", code, body)
	}
	if !clientCert.Load() {
		t.Error("the hop did not go over TLS")
	}
}

// hopRoute and hopTarget use a real container port: a hop names it.
var hopRoute = Route{Listen: 80, Protocol: HTTP, Path: "/", Service: "web", Port: 8080}

func hopTarget(b *backend) DesiredTarget {
	d := b.target(true)
	d.Port = 8080
	return d
}
