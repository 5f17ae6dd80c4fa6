package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// cluster is two independent PKI directories: "dir" is the cluster under
// test, "foreign" another cluster whose certificates must never be trusted.
type cluster struct {
	dir, foreign string
}

func newCluster(t *testing.T) cluster {
	t.Helper()
	c := cluster{dir: t.TempDir(), foreign: t.TempDir()}
	mustInit(t, c.dir, []string{"n1", "n2"}, nil)
	mustInit(t, c.foreign, []string{"n1", "n2"}, nil)
	return c
}

func TestServerAcceptsClientOverTLS13(t *testing.T) {
	c := newCluster(t)
	addr, results := startTLSServer(t, mustServerConfig(t, NodeFiles(c.dir, "n1")))

	state, err := dialTLS(t, addr, mustClientConfig(t, ClientFiles(c.dir)))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	server := receive(t, results)
	if server.err != nil {
		t.Fatalf("server: %v", server.err)
	}
	if state.Version != tls.VersionTLS13 || server.state.Version != tls.VersionTLS13 {
		t.Errorf("negotiated %x/%x, want TLS 1.3", state.Version, server.state.Version)
	}
	if cn := state.PeerCertificates[0].Subject.CommonName; cn != "n1" {
		t.Errorf("client saw server %q, want n1", cn)
	}
	if server.peerCN() != ClientCommonName {
		t.Errorf("server saw client %q, want %q", server.peerCN(), ClientCommonName)
	}
	if len(server.state.VerifiedChains) == 0 {
		t.Error("server did not verify the client's chain")
	}
}

func TestServerRefusesUntrustedClients(t *testing.T) {
	c := newCluster(t)
	clientFiles := ClientFiles(c.dir)
	trustCA := mustCAPool(t, clientFiles.CA)

	tls12Only := mustClientConfig(t, clientFiles).Clone()
	tls12Only.MinVersion = tls.VersionTLS12
	tls12Only.MaxVersion = tls.VersionTLS12

	tests := []struct {
		name string
		cfg  *tls.Config
		// serverErr checks the server's handshake error beyond "not nil".
		serverErr func(error) bool
	}{
		{
			name:      "no client certificate",
			cfg:       &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: trustCA},
			serverErr: func(err error) bool { return strings.Contains(err.Error(), "didn't provide a certificate") },
		},
		{
			name: "client certificate from another CA",
			cfg: &tls.Config{
				MinVersion:   tls.VersionTLS13,
				RootCAs:      trustCA, // trusts the server, so only the server can refuse
				Certificates: []tls.Certificate{mustKeyPair(t, ClientFiles(c.foreign))},
			},
			serverErr: func(err error) bool { return errors.As(err, new(x509.UnknownAuthorityError)) },
		},
		{
			name:      "TLS 1.2 only",
			cfg:       tls12Only,
			serverErr: func(err error) bool { return strings.Contains(err.Error(), "unsupported versions") },
		},
	}
	addr, results := startTLSServer(t, mustServerConfig(t, NodeFiles(c.dir, "n1")))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := dialTLS(t, addr, tt.cfg); err == nil {
				t.Error("client got through")
			}
			server := receive(t, results)
			if server.err == nil {
				t.Fatal("server accepted the handshake")
			}
			if !tt.serverErr(server.err) {
				t.Errorf("server refused for an unexpected reason: %v", server.err)
			}
		})
	}
}

func TestServerRefusesPlainTCP(t *testing.T) {
	c := newCluster(t)
	addr, results := startTLSServer(t, mustServerConfig(t, NodeFiles(c.dir, "n1")))

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioSafetyNet))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: n1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(conn) // the server closes; a reset is fine too
	if strings.Contains(string(reply), "ok") {
		t.Errorf("plain client got %q", reply)
	}
	server := receive(t, results)
	if !errors.As(server.err, new(tls.RecordHeaderError)) {
		t.Errorf("server: %v, want a record header error", server.err)
	}
}

// TestHTTPServerOverMutualTLS is the shape the API takes: an http.Server
// with ServerConfig, the CLI's http.Client with ClientConfig.
func TestHTTPServerOverMutualTLS(t *testing.T) {
	c := newCluster(t)
	var handled atomic.Int32
	server := &http.Server{
		TLSConfig: mustServerConfig(t, NodeFiles(c.dir, "n1")),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handled.Add(1)
			_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
		}),
		ReadHeaderTimeout: ioSafetyNet,
		ErrorLog:          log.New(io.Discard, "", 0), // the refused plain request is expected
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- server.ServeTLS(listener, "", "") }()
	t.Cleanup(func() {
		_ = server.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	addr := listener.Addr().String()

	transport := &http.Transport{TLSClientConfig: mustClientConfig(t, ClientFiles(c.dir))}
	t.Cleanup(transport.CloseIdleConnections)
	body, status, err := get(t, &http.Client{Transport: transport}, "https://"+addr+"/")
	if err != nil || status != http.StatusOK || body != ClientCommonName {
		t.Fatalf("HTTPS with the client certificate: status %d body %q err %v", status, body, err)
	}

	plain := &http.Transport{}
	t.Cleanup(plain.CloseIdleConnections)
	_, status, err = get(t, &http.Client{Transport: plain}, "http://"+addr+"/")
	if err != nil || status != http.StatusBadRequest {
		t.Errorf("plain HTTP request: status %d err %v, want net/http's 400 for HTTP on an HTTPS port", status, err)
	}
	if got := handled.Load(); got != 1 {
		t.Errorf("handler ran %d times, want once (for the TLS client only)", got)
	}
}

func get(t *testing.T, client *http.Client, url string) (string, int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode, err
}

func TestClientRefusesServerOfAnotherCA(t *testing.T) {
	c := newCluster(t)
	addr, results := startTLSServer(t, mustServerConfig(t, NodeFiles(c.foreign, "n1")))
	_, err := dialTLS(t, addr, mustClientConfig(t, ClientFiles(c.dir)))
	if !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Errorf("client: %v, want an unknown authority error", err)
	}
	if server := receive(t, results); server.err == nil {
		t.Error("handshake completed on the server side")
	}
}

func TestPeerConfigBothWays(t *testing.T) {
	c := newCluster(t)
	n1 := mustPeerConfig(t, NodeFiles(c.dir, "n1"))
	n2 := mustPeerConfig(t, NodeFiles(c.dir, "n2"))
	n1Addr, n1Results := startTLSServer(t, n1)
	n2Addr, n2Results := startTLSServer(t, n2)

	// The same config value listens and dials, as in raft's stream layer.
	tests := []struct {
		name       string
		dialer     *tls.Config
		addr       string
		results    <-chan handshake
		dialerCN   string
		listenerCN string
	}{
		{"n2 dials n1", n2, n1Addr, n1Results, "n2", "n1"},
		{"n1 dials n2", n1, n2Addr, n2Results, "n1", "n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, err := dialTLS(t, tt.addr, tt.dialer)
			if err != nil {
				t.Fatalf("dialer: %v", err)
			}
			server := receive(t, tt.results)
			if server.err != nil {
				t.Fatalf("listener: %v", server.err)
			}
			if cn := state.PeerCertificates[0].Subject.CommonName; cn != tt.listenerCN {
				t.Errorf("dialer saw %q, want %q", cn, tt.listenerCN)
			}
			if server.peerCN() != tt.dialerCN {
				t.Errorf("listener saw %q, want %q", server.peerCN(), tt.dialerCN)
			}
			if state.Version != tls.VersionTLS13 {
				t.Errorf("version %x, want TLS 1.3", state.Version)
			}
		})
	}

	// Raft dials advertised addresses that need not be among the SANs.
	t.Run("address not in the SANs", func(t *testing.T) {
		dialer := n2.Clone()
		dialer.ServerName = "not-a-san.example"
		if _, err := dialTLS(t, n1Addr, dialer); err != nil {
			t.Fatalf("dialer: %v", err)
		}
		if server := receive(t, n1Results); server.err != nil {
			t.Fatalf("listener: %v", server.err)
		}
	})
}

func TestPeerConfigRefusesNonMembers(t *testing.T) {
	c := newCluster(t)
	n1Files := NodeFiles(c.dir, "n1")
	trustCA := mustCAPool(t, n1Files.CA)

	t.Run("listener refuses", func(t *testing.T) {
		tests := []struct {
			name   string
			dialer *tls.Config
		}{
			{"the CLI's client certificate", &tls.Config{
				MinVersion:   tls.VersionTLS13,
				RootCAs:      trustCA,
				Certificates: []tls.Certificate{mustKeyPair(t, ClientFiles(c.dir))},
			}},
			{"a node of another CA", &tls.Config{
				MinVersion:         tls.VersionTLS13,
				InsecureSkipVerify: true, // only the listener's decision is under test
				Certificates:       []tls.Certificate{mustKeyPair(t, NodeFiles(c.foreign, "n2"))},
			}},
			{"no certificate", &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: trustCA}},
		}
		addr, results := startTLSServer(t, mustPeerConfig(t, n1Files))
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := dialTLS(t, addr, tt.dialer); err == nil {
					t.Error("dialer got through")
				}
				if server := receive(t, results); server.err == nil {
					t.Error("listener accepted the peer")
				}
			})
		}
	})

	t.Run("dialer refuses", func(t *testing.T) {
		tests := []struct {
			name     string
			listener *tls.Config
		}{
			{"a listener with the CLI's client certificate", &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{mustKeyPair(t, ClientFiles(c.dir))},
				ClientAuth:   tls.RequireAnyClientCert,
			}},
			{"a node of another CA", mustPeerConfig(t, NodeFiles(c.foreign, "n1"))},
		}
		dialer := mustPeerConfig(t, NodeFiles(c.dir, "n2"))
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				addr, results := startTLSServer(t, tt.listener)
				_, err := dialTLS(t, addr, dialer)
				if !errors.Is(err, ErrPeerNotTrusted) {
					t.Errorf("dialer: %v, want ErrPeerNotTrusted", err)
				}
				if server := receive(t, results); server.err == nil {
					t.Error("handshake completed on the listener's side")
				}
			})
		}
	})
}

func TestConfigsRefuseBadFiles(t *testing.T) {
	c := newCluster(t)
	expired := t.TempDir()
	threeYearsAgo := time.Now().Add(-3 * 365 * 24 * time.Hour)
	if _, err := Init(InitOptions{Dir: expired, Nodes: []string{"n1"}, Now: func() time.Time { return threeYearsAgo }}); err != nil {
		t.Fatal(err)
	}
	n1, n2, client := NodeFiles(c.dir, "n1"), NodeFiles(c.dir, "n2"), ClientFiles(c.dir)
	foreignN1 := NodeFiles(c.foreign, "n1")
	builders := map[string]func(ca, cert, key string, opts ...Option) (*tls.Config, error){
		"ServerConfig": ServerConfig, "ClientConfig": ClientConfig, "PeerConfig": PeerConfig,
	}

	tests := []struct {
		name     string
		builder  string
		files    Files
		wantOK   bool
		mentions []string // the error must name these
	}{
		{"node pair as server", "ServerConfig", n1, true, nil},
		{"node pair as client", "ClientConfig", n1, true, nil},
		{"node pair as peer", "PeerConfig", n1, true, nil},
		{"client pair as client", "ClientConfig", client, true, nil},
		{"mismatched key", "ServerConfig", Files{n1.CA, n1.Cert, n2.Key}, false, []string{n1.Cert, n2.Key}},
		{"mismatched key, peer", "PeerConfig", Files{n1.CA, n1.Cert, n2.Key}, false, []string{n1.Cert, n2.Key}},
		{"missing certificate", "ClientConfig", Files{n1.CA, filepath.Join(c.dir, "nope.pem"), n1.Key}, false, []string{"nope.pem"}},
		{"missing key", "ServerConfig", Files{n1.CA, n1.Cert, filepath.Join(c.dir, "nope-key.pem")}, false, []string{"nope-key.pem"}},
		{"missing CA", "PeerConfig", Files{filepath.Join(c.dir, "none.pem"), n1.Cert, n1.Key}, false, []string{"none.pem"}},
		{"key file as CA", "ServerConfig", Files{n1.Key, n1.Cert, n1.Key}, false, []string{n1.Key}},
		{"leaf as CA", "ServerConfig", Files{n2.Cert, n1.Cert, n1.Key}, false, []string{n2.Cert}},
		{"pair from another CA", "ServerConfig", Files{n1.CA, foreignN1.Cert, foreignN1.Key}, false, []string{foreignN1.Cert, n1.CA, "not signed by the CA"}},
		{"client pair as server", "ServerConfig", client, false, []string{client.Cert, "server authentication"}},
		{"client pair as peer", "PeerConfig", client, false, []string{client.Cert, "server authentication"}},
		{"expired pair", "ServerConfig", NodeFiles(expired, "n1"), false, []string{"expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := builders[tt.builder](tt.files.CA, tt.files.Cert, tt.files.Key)
			if tt.wantOK {
				if err != nil || cfg == nil {
					t.Fatalf("%s: %v", tt.builder, err)
				}
				return
			}
			if !errors.Is(err, ErrBadFiles) {
				t.Fatalf("%s: %v, want ErrBadFiles", tt.builder, err)
			}
			for _, want := range tt.mentions {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestServerCertificateRotation(t *testing.T) {
	c := newCluster(t)
	n1 := NodeFiles(c.dir, "n1")
	addr, results := startTLSServer(t, mustServerConfig(t, n1))
	client := mustClientConfig(t, ClientFiles(c.dir))

	servedSerial := func() string {
		t.Helper()
		state, err := dialTLS(t, addr, client)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		if server := receive(t, results); server.err != nil {
			t.Fatalf("server: %v", server.err)
		}
		return state.PeerCertificates[0].SerialNumber.String()
	}

	original := mustParseCert(t, n1.Cert).SerialNumber.String()
	if got := servedSerial(); got != original {
		t.Fatalf("served serial %s, want %s from %s", got, original, n1.Cert)
	}

	mustIssueNode(t, c.dir, "n1", nil)
	rotated := mustParseCert(t, n1.Cert).SerialNumber.String()
	if rotated == original {
		t.Fatal("IssueNode did not replace n1.pem")
	}
	if got := servedSerial(); got != rotated {
		t.Errorf("after rotation the server presented serial %s, want the new %s", got, rotated)
	}
}

// A rotation caught half-way (new key, old certificate) must not take the
// server down: it keeps the last good pair until the files agree again.
func TestRotationKeepsLastGoodPairWhileFilesDisagree(t *testing.T) {
	c := newCluster(t)
	n1 := NodeFiles(c.dir, "n1")
	addr, results := startTLSServer(t, mustServerConfig(t, n1))
	client := mustClientConfig(t, ClientFiles(c.dir))
	servedSerial := func() string {
		t.Helper()
		state, err := dialTLS(t, addr, client)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		if server := receive(t, results); server.err != nil {
			t.Fatalf("server: %v", server.err)
		}
		return state.PeerCertificates[0].SerialNumber.String()
	}
	original := mustParseCert(t, n1.Cert).SerialNumber.String()

	mustReplaceFile(t, n1.Key, mustReadFile(t, NodeFiles(c.dir, "n2").Key))
	if got := servedSerial(); got != original {
		t.Errorf("with mismatched files the server presented %s, want the last good %s", got, original)
	}

	mustIssueNode(t, c.dir, "n1", nil)
	rotated := mustParseCert(t, n1.Cert).SerialNumber.String()
	if got := servedSerial(); got != rotated {
		t.Errorf("once the files agreed again the server presented %s, want %s", got, rotated)
	}
}

// The dialing side of PeerConfig (GetClientCertificate) follows rotation
// too.
func TestPeerClientCertificateRotation(t *testing.T) {
	c := newCluster(t)
	addr, results := startTLSServer(t, mustPeerConfig(t, NodeFiles(c.dir, "n1")))
	n2 := NodeFiles(c.dir, "n2")
	dialer := mustPeerConfig(t, n2)
	presentedSerial := func() string {
		t.Helper()
		if _, err := dialTLS(t, addr, dialer); err != nil {
			t.Fatalf("dialer: %v", err)
		}
		server := receive(t, results)
		if server.err != nil {
			t.Fatalf("listener: %v", server.err)
		}
		return server.state.PeerCertificates[0].SerialNumber.String()
	}

	if got, want := presentedSerial(), mustParseCert(t, n2.Cert).SerialNumber.String(); got != want {
		t.Fatalf("n2 presented %s, want %s", got, want)
	}
	mustIssueNode(t, c.dir, "n2", nil)
	if got, want := presentedSerial(), mustParseCert(t, n2.Cert).SerialNumber.String(); got != want {
		t.Errorf("after rotation n2 presented %s, want %s", got, want)
	}
}
