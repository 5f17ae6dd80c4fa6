package pki

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ioSafetyNet bounds every test connection so that a bug shows up as a
// failure instead of a hung test. It is never what a test asserts on.
const ioSafetyNet = 30 * time.Second

// handshake is what the test server saw of one connection.
type handshake struct {
	err   error
	state tls.ConnectionState
}

// peerCN is the common name of the certificate the other side presented.
func (h handshake) peerCN() string {
	if len(h.state.PeerCertificates) == 0 {
		return ""
	}
	return h.state.PeerCertificates[0].Subject.CommonName
}

// startTLSServer listens on loopback and runs the TLS server handshake on
// every accepted connection with cfg, answers "ok\n" on success, and
// reports each handshake on the returned channel in accept order.
func startTLSServer(t *testing.T, cfg *tls.Config) (string, <-chan handshake) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	results := make(chan handshake, 16)
	done := make(chan struct{})
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		_ = listener.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			raw, err := listener.Accept()
			if err != nil {
				return
			}
			_ = raw.SetDeadline(time.Now().Add(ioSafetyNet))
			conn := tls.Server(raw, cfg)
			result := handshake{err: conn.HandshakeContext(t.Context())}
			if result.err == nil {
				result.state = conn.ConnectionState()
				_, result.err = conn.Write([]byte("ok\n"))
			}
			_ = conn.Close()
			select {
			case results <- result:
			case <-stop:
				return
			}
		}
	}()
	return listener.Addr().String(), results
}

// dialTLS connects to addr with cfg the way raft's stream layer does (the
// server name, unless cfg sets one, is the host part of addr) and reads
// the server's "ok". With TLS 1.3 a server refusing the client's
// certificate is seen only at that first read, which is why it is part of
// the dial.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	dialer := &tls.Dialer{Config: cfg}
	conn, err := dialer.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioSafetyNet))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return tls.ConnectionState{}, err
	}
	if line != "ok\n" {
		return tls.ConnectionState{}, errors.New("unexpected greeting " + line)
	}
	return conn.(*tls.Conn).ConnectionState(), nil
}

// receive returns the server's report of the connection just made.
func receive(t *testing.T, results <-chan handshake) handshake {
	t.Helper()
	select {
	case result := <-results:
		return result
	case <-time.After(ioSafetyNet):
		t.Fatal("the server never reported the handshake")
		return handshake{}
	}
}

func mustInit(t *testing.T, dir string, nodes, hosts []string) Result {
	t.Helper()
	result, err := Init(InitOptions{Dir: dir, Nodes: nodes, Hosts: hosts})
	if err != nil {
		t.Fatalf("Init(%s, %v, %v): %v", dir, nodes, hosts, err)
	}
	return result
}

func mustIssueNode(t *testing.T, dir, node string, hosts []string) {
	t.Helper()
	if _, err := IssueNode(dir, node, hosts); err != nil {
		t.Fatalf("IssueNode(%s, %s): %v", dir, node, err)
	}
}

func mustServerConfig(t *testing.T, files Files) *tls.Config {
	t.Helper()
	cfg, err := ServerConfig(files.CA, files.Cert, files.Key)
	if err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	return cfg
}

func mustClientConfig(t *testing.T, files Files) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(files.CA, files.Cert, files.Key)
	if err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	return cfg
}

func mustPeerConfig(t *testing.T, files Files) *tls.Config {
	t.Helper()
	cfg, err := PeerConfig(files.CA, files.Cert, files.Key)
	if err != nil {
		t.Fatalf("PeerConfig: %v", err)
	}
	return cfg
}

// mustKeyPair loads a pair without any of the package's checks, to build
// the misbehaving peers the tests need.
func mustKeyPair(t *testing.T, files Files) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatalf("load key pair: %v", err)
	}
	return pair
}

func mustCAPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	pool, err := loadCAPool(caFile)
	if err != nil {
		t.Fatalf("load CA pool: %v", err)
	}
	return pool
}

func mustParseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	certs, err := decodeCerts(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return certs[0]
}

// mustReplaceFile swaps path's content by rename, as a careful operator
// (or IssueNode) would.
func mustReplaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".replace-tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("rename onto %s: %v", path, err)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return data
}
