package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/testca"
)

func mustPair(t *testing.T, ca *testca.CA, names ...string) (*tls.Certificate, *big.Int) {
	t.Helper()
	leaf, err := ca.Issue(names...)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &pair, leaf.Serial
}

func TestPickCertificate(t *testing.T) {
	ca, err := testca.New("test")
	if err != nil {
		t.Fatal(err)
	}
	exact, _ := mustPair(t, ca, "a.example.com")
	wild, _ := mustPair(t, ca, "*.example.com")
	any, _ := mustPair(t, ca, "default")
	certs := []HostCertificate{{"a.example.com", exact}, {"*.example.com", wild}, {"", any}}
	for _, tt := range []struct {
		name string
		want *tls.Certificate
	}{
		{"a.example.com", exact}, {"A.Example.COM.", exact}, {"b.example.com", wild},
		{"x.b.example.com", any}, {"other.org", any}, {"", any}, {"localhost", any},
	} {
		if got, err := pickCertificate(certs, tt.name); err != nil || got != tt.want {
			t.Errorf("server name %q: got %v, %v", tt.name, got, err)
		}
	}
	// Without an any-host entry: the port's only certificate, or none.
	if got, err := pickCertificate(certs[:1], "other.org"); err != nil || got != exact {
		t.Errorf("one certificate, another name: %v, %v", got, err)
	}
	if _, err := pickCertificate(certs[:2], "other.org"); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("two certificates, a name neither covers: %v, want ErrNoCertificate", err)
	}
	if _, err := pickCertificate(nil, "a.example.com"); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("no certificate: %v, want ErrNoCertificate", err)
	}
}

// A rotation swaps the certificate of a listening port under a client
// loop: every request succeeds (new connections and a kept-alive one
// opened before the swap), and handshakes after the swap present the new
// certificate's serial.
func TestCertificateSwapDropsNothing(t *testing.T) {
	ca, err := testca.New("test")
	if err != nil {
		t.Fatal(err)
	}
	v1, serial1 := mustPair(t, ca, "shop.example.com")
	v2, serial2 := mustPair(t, ca, "shop.example.com")
	var certs Certificates
	const port = 443
	certs.Set(map[int][]HostCertificate{port: {{"shop.example.com", v1}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "not over TLS", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})}
	go func() { _ = srv.Serve(tls.NewListener(ln, certs.ServerConfig(port))) }()
	defer srv.Close()
	url := "https://" + ln.Addr().String() + "/"
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "shop.example.com"}
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS, DisableKeepAlives: true}}
	kept := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
	get := func(c *http.Client) (*big.Int, error) {
		resp, err := c.Get(url)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || string(body) != "ok" {
			return nil, errors.Join(err, errors.New(resp.Status+" "+string(body)))
		}
		return resp.TLS.PeerCertificates[0].SerialNumber, nil
	}
	if s, err := get(kept); err != nil || s.Cmp(serial1) != 0 {
		t.Fatalf("before the swap: serial %v, %v", s, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var failures, requests atomic.Int64
	var sawNew atomic.Bool
	var wg sync.WaitGroup
	for i := range 4 {
		client := fresh
		if i == 0 {
			client = kept
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				s, err := get(client)
				requests.Add(1)
				switch {
				case err != nil:
					failures.Add(1)
					t.Errorf("request: %v", err)
				case s.Cmp(serial2) == 0:
					sawNew.Store(true)
				case s.Cmp(serial1) != 0:
					t.Errorf("served serial %v, neither version's", s)
				}
			}
		})
	}
	// Polls, not timed assertions: each waits for the loop to get there.
	until := func(done func() bool) {
		for !done() && failures.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	until(func() bool { return requests.Load() >= 50 })
	certs.Set(map[int][]HostCertificate{port: {{"shop.example.com", v2}}})
	until(sawNew.Load)
	after := requests.Load()
	until(func() bool { return requests.Load() >= after+50 })
	cancel()
	wg.Wait()
	if failures.Load() != 0 || !sawNew.Load() {
		t.Fatalf("%d of %d requests failed; new certificate served: %v", failures.Load(), requests.Load(), sawNew.Load())
	}
	// The connection kept alive since before the swap still serves, on
	// the certificate it was opened with; a new one gets the new.
	if s, err := get(kept); err != nil || s.Cmp(serial1) != 0 {
		t.Errorf("kept-alive connection after the swap: serial %v (want the old %v), %v", s, serial1, err)
	}
	if s, err := get(fresh); err != nil || s.Cmp(serial2) != 0 {
		t.Errorf("new connection after the swap: serial %v (want %v), %v", s, serial2, err)
	}
}
