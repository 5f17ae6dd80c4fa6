package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/testca"
)

// createSecretWhenReady stores a version of a secret from a file, waiting
// out the version gate of a server that has just started ("not
// registered yet").
func createSecretWhenReady(t *testing.T, s *devServer, name string, value []byte) {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, value, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := s.cli(t, "", "secret", "create", name, "-f", file)
		if r.code == 0 && strings.Contains(r.stdout, "stored") {
			return
		}
		if !strings.Contains(r.stderr, "not registered yet") || time.Now().After(deadline) {
			t.Fatalf("secret create %s: %d %s %s", name, r.code, r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pemBody is the first base64 line of a PEM block: what a copy of the
// value escaped into JSON or a log line would still show.
func pemBody(p []byte) string {
	lines := strings.Split(string(p), "\n")
	return lines[1]
}

// TestCLIIngressTLSRotationDropsNothing is issue 13 point 5's proof on the
// real engine: a service's ingress terminates TLS at the proxy with a
// certificate and key held as secrets (a CA made by the test verifies
// it); rotating them (new versions, apply --refresh) under a client loop
// fails no request and changes the served serial; the key is in no file
// of the data directory, no docker inspect, no API answer and not in the
// server's debug log.
func TestCLIIngressTLSRotationDropsNothing(t *testing.T) {
	needEngine(t)
	s := mustStartServerArgs(t, e2eServerArgs()...)
	ca, err := testca.New("deployctl e2e test ca")
	if err != nil {
		t.Fatal(err)
	}
	v1, err := ca.Issue("shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := ca.Issue("shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	createSecretWhenReady(t, s, "shop-cert", v1.CertPEM)
	createSecretWhenReady(t, s, "shop-key", v1.KeyPEM)
	listen := freePort(t)
	spec := webSpec(env.refs["v1"], 2, fmt.Sprintf("ingress:\n  - {listen: %d, port: 8080, host: shop.example.com, tls: {cert: shop-cert, key: shop-key}}\n", listen))
	// The key of another certificate is refused at apply, naming the field.
	createSecretWhenReady(t, s, "wrong-key", v2.KeyPEM)
	wrong := strings.Replace(spec, "key: shop-key", "key: wrong-key", 1)
	if r := mustCLI(t, s, 2, wrong, "apply", "-"); !strings.Contains(r.stderr, "ingress[0].tls") || !strings.Contains(r.stderr, "not the certificate's private key") {
		t.Fatalf("apply with a key of another certificate: %s", r.stderr)
	}
	mustCLI(t, s, 0, "", "secret", "rm", "wrong-key")
	mustCLI(t, s, 0, spec, "apply", "-")

	url := fmt.Sprintf("https://127.0.0.1:%d/", listen)
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "shop.example.com"}
	get := func(c *http.Client) (*big.Int, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Host = "shop.example.com" // the route's host; the address is loopback
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "webapp v1") {
			return nil, fmt.Errorf("%s %q %v", resp.Status, body, err)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber, nil
	}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS, DisableKeepAlives: true}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		serial, err := get(fresh)
		if err == nil {
			if serial.Cmp(v1.Serial) != 0 {
				t.Fatalf("served serial %v, want version 1's %v", serial, v1.Serial)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the https ingress port never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Plain http on the https port is refused by the TLS handshake.
	if resp, err := http.Get(strings.Replace(url, "https", "http", 1)); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain http on the https port answered 200")
		}
	}

	var ok, failed atomic.Int64
	var sawNew atomic.Bool
	var firstFailure atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS, DisableKeepAlives: i%2 == 1}}
		wg.Go(func() {
			for ctx.Err() == nil {
				serial, err := get(client)
				switch {
				case err != nil:
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				case serial.Cmp(v2.Serial) == 0:
					sawNew.Store(true)
					ok.Add(1)
				default:
					ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// Rotation: new versions, then apply --refresh. The revision changes,
	// the containers do not (the certificate is not part of them).
	before := runningOf(t, s, "web")
	createSecretWhenReady(t, s, "shop-cert", v2.CertPEM)
	createSecretWhenReady(t, s, "shop-key", v2.KeyPEM)
	if r := mustCLI(t, s, 0, "", "outdated"); !strings.Contains(r.stdout, "shop-cert") || !strings.Contains(r.stdout, "shop-key") {
		t.Fatalf("outdated does not name the new certificate:\n%s", r.stdout)
	}
	mustCLI(t, s, 0, "", "apply", "--refresh", "web")
	deadline = time.Now().Add(30 * time.Second)
	for !sawNew.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("the new certificate was never served (first failure: %v)", firstFailure.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for after := ok.Load(); ok.Load() < after+100 && failed.Load() == 0; {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across the rotation (first: %v)", failed.Load(), failed.Load()+ok.Load(), firstFailure.Load())
	}
	if serial, err := get(fresh); err != nil || serial.Cmp(v2.Serial) != 0 {
		t.Fatalf("after the rotation a new connection got serial %v, %v; want version 2's %v", serial, err, v2.Serial)
	}
	if after := runningOf(t, s, "web"); !slices.Equal(slices.Sorted(slices.Values(after)), slices.Sorted(slices.Values(before))) {
		t.Errorf("the rotation replaced containers: %v -> %v", before, after)
	}
	t.Logf("requests across the rotation: %d ok, %d failed", ok.Load(), failed.Load())

	// The keys are nowhere but in memory.
	keys := []string{string(v1.KeyPEM), string(v2.KeyPEM), pemBody(v1.KeyPEM), pemBody(v2.KeyPEM)}
	for _, id := range runningOf(t, s, "web") {
		inspect, err := env.docker.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(inspect)
		mustNotHold(t, "docker inspect "+short(id), raw, keys...)
	}
	for _, args := range [][]string{{"status", "web"}, {"history", "web"}, {"services"}, {"secret", "ls"},
		{"secret", "inspect", "shop-key"}, {"outdated"}, {"audit"}, {"cluster", "status"}} {
		r := mustCLI(t, s, 0, "", append(args, "-o", "json")...)
		mustNotHold(t, "deployctl "+strings.Join(args, " "), []byte(r.stdout+r.stderr), keys...)
	}
	mustCLI(t, s, 0, "", "rm", "web")
	s.stop()
	if n := mustNotHoldFiles(t, s.dataDir, keys...); n < 2 {
		t.Fatalf("only %d files in the data dir", n)
	}
	mustNotHold(t, "the server log", []byte(s.log.String()), keys...)
	if !strings.Contains(s.log.String(), "ingress certificate loaded") {
		t.Fatal("the debug log does not show the proxy loading the certificate: is it the server's log?")
	}
}
