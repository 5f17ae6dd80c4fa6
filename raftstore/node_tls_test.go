package raftstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func mustCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// mustPeerCert issues a certificate valid as both TLS server and client for
// 127.0.0.1, as every raft peer is both.
func (ca *testCA) mustPeerCert(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// mutualTLS is the shape of config the node expects: one config for both
// sides, presenting cert and requiring peers to present one from trusted.
func mutualTLS(cert tls.Certificate, trusted *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      trusted,
		ClientCAs:    trusted,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

func TestTLSClusterReplicates(t *testing.T) {
	ca := mustCA(t, "deployctl test CA")
	c := mustCluster(t, 2, func(cfg *Config) {
		cfg.TLS = mutualTLS(ca.mustPeerCert(t, cfg.NodeID), ca.pool)
	})
	leader := mustApplyOnLeader(t, "over-tls", c.nodes...)
	mustConverge(t, []string{"over-tls"}, c.fsms...)

	// The raft port really speaks TLS.
	dialer := &net.Dialer{Timeout: waitBound}
	conn, err := tls.DialWithDialer(dialer, "tcp", leader.Addr(), mutualTLS(ca.mustPeerCert(t, "probe"), ca.pool))
	if err != nil {
		t.Fatalf("TLS handshake with the raft port of %s: %v", leader.ID(), err)
	}
	_ = conn.Close()
}

func TestTLSRejectsUntrustedPeers(t *testing.T) {
	ca := mustCA(t, "cluster CA")
	foreign := mustCA(t, "foreign CA")
	server, err := newStreamLayer("127.0.0.1:0", "", mutualTLS(ca.mustPeerCert(t, "server"), ca.pool))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	go func() {
		// Drive the server side of handshakes the way the transport
		// does: the handshake runs on the first read.
		for {
			conn, err := server.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = conn.Read(make([]byte, 1))
			}()
		}
	}()

	tests := []struct {
		name   string
		client *tls.Config
		check  func(t *testing.T, dialErr, readErr error)
	}{
		{
			name:   "trusted peer (control)",
			client: mutualTLS(ca.mustPeerCert(t, "client"), ca.pool),
			check: func(t *testing.T, dialErr, readErr error) {
				if dialErr != nil || !errors.Is(readErr, io.EOF) {
					t.Errorf("trusted peer: dial error %v, read error %v; want nil and EOF", dialErr, readErr)
				}
			},
		},
		{
			name:   "server not trusted by client",
			client: mutualTLS(ca.mustPeerCert(t, "client"), foreign.pool),
			check: func(t *testing.T, dialErr, _ error) {
				var verifyErr *tls.CertificateVerificationError
				if !errors.As(dialErr, &verifyErr) {
					t.Errorf("dial error = %v, want a certificate verification error", dialErr)
				}
			},
		},
		{
			// TLS 1.3 clients finish their handshake before the server
			// checks the client certificate: the rejection arrives as
			// an alert on the first read.
			name:   "client certificate from a foreign CA",
			client: mutualTLS(foreign.mustPeerCert(t, "client"), ca.pool),
			check: func(t *testing.T, dialErr, readErr error) {
				if dialErr != nil {
					t.Fatalf("dial error = %v, want the handshake to complete on the client side", dialErr)
				}
				if readErr == nil || !strings.Contains(readErr.Error(), "remote error: tls") {
					t.Errorf("read error = %v, want a TLS alert from the server", readErr)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := &streamLayer{tlsConfig: tt.client, conns: map[*trackedConn]struct{}{}}
			conn, dialErr := client.Dial(raft.ServerAddress(server.Addr().String()), 5*time.Second)
			var readErr error
			if dialErr == nil {
				defer conn.Close()
				if err := conn.SetDeadline(time.Now().Add(waitBound)); err != nil {
					t.Fatal(err)
				}
				// The server reads one byte, then closes.
				if _, err := conn.Write([]byte{0}); err != nil {
					readErr = err
				} else {
					_, readErr = conn.Read(make([]byte, 1))
				}
			}
			tt.check(t, dialErr, readErr)
		})
	}
}
