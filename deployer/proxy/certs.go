package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// ErrNoCertificate: a TLS handshake on an ingress port named a server
// name that no certificate of that port covers.
var ErrNoCertificate = errors.New("proxy: no certificate for this server name")

// HostCertificate is the certificate an https ingress port serves for one
// route host: "" (any name), an exact name, or "*.parent" (one label).
type HostCertificate struct {
	Host        string
	Certificate *tls.Certificate
}

// Certificates holds the certificates of the https ingress ports, by
// listen port (issue 13, point 5). Set replaces them all at once; a
// handshake reads them without a lock (GetCertificate), so a rotation
// takes effect at the next handshake while the listener and the
// connections already open stay as they are: nothing is dropped.
// Certificates and keys are in memory only.
type Certificates struct {
	byPort atomic.Pointer[map[int][]HostCertificate]
}

// Set installs the certificates of every https port (ports left out have
// none). The caller must not change the slices afterwards.
func (c *Certificates) Set(byPort map[int][]HostCertificate) {
	c.byPort.Store(&byPort)
}

// Get returns the certificates of a port, as last Set.
func (c *Certificates) Get(port int) []HostCertificate {
	if m := c.byPort.Load(); m != nil {
		return (*m)[port]
	}
	return nil
}

// ServerConfig is the TLS configuration of an https ingress port: TLS 1.2
// or later, HTTP/1.1 (so upgrades such as WebSocket pass as on a plain
// port), the certificate chosen per handshake by its server name (SNI).
func (c *Certificates) ServerConfig(port int) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pickCertificate(c.Get(port), hello.ServerName)
		},
	}
}

// pickCertificate chooses as routes choose hosts: the exact name, then a
// wildcard one label up, then the any-host entry; a client that sends no
// name, or a name none covers, gets the port's certificate when the port
// has only one, else the handshake fails (a wrong certificate is no
// better than none, and says less).
func pickCertificate(certs []HostCertificate, serverName string) (*tls.Certificate, error) {
	name := strings.TrimSuffix(strings.ToLower(serverName), ".")
	wildcard := ""
	if _, parent, ok := strings.Cut(name, "."); ok && parent != "" {
		wildcard = "*." + parent
	}
	for _, want := range []string{name, wildcard, ""} {
		if i := slices.IndexFunc(certs, func(h HostCertificate) bool { return h.Host == want && h.Certificate != nil }); i >= 0 {
			return certs[i].Certificate, nil
		}
	}
	distinct := map[*tls.Certificate]bool{}
	for _, h := range certs {
		if h.Certificate != nil {
			distinct[h.Certificate] = true
		}
	}
	if len(distinct) == 1 {
		for cert := range distinct {
			return cert, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoCertificate, serverName)
}
