package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrPeerNotTrusted is what PeerConfig's connection check returns (inside
// the handshake error) when the other side's certificate is not a node
// certificate of the cluster CA.
var ErrPeerNotTrusted = errors.New("peer certificate not trusted")

// role is what a configuration needs from its own certificate.
type role struct {
	name   string
	usages []x509.ExtKeyUsage // the certificate must carry every one
	fix    string             // what to pass instead, for error messages
	// roles the certificate's deployctl role must be one of.
	roles []Role
}

func serverRole() role {
	return role{"server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "pass a node certificate (NODE.pem)", []Role{RoleServer}}
}

func clientRole() role {
	return role{"client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "pass client.pem, an agent or a node certificate",
		[]Role{RoleOperator, RoleServer, RoleAgent}}
}

func peerRole() role {
	return role{"raft peer", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, "pass a node certificate (NODE.pem)", []Role{RoleServer}}
}

// ServerConfig is the TLS configuration of a server's API listener. It
// speaks TLS 1.3 only and requires a client certificate that chains to the
// CA in caFile (system roots are not consulted), which both client.pem and
// node certificates do. certFile/keyFile are checked now (ErrBadFiles) and
// re-read on the first handshake after either file changes, so a rotated
// certificate is served without a restart.
func ServerConfig(caFile, certFile, keyFile string, opts ...Option) (*tls.Config, error) {
	pool, source, err := newCertSource(caFile, certFile, keyFile, serverRole(), opts)
	if err != nil {
		return nil, err
	}
	return serverConfigFrom(pool, source), nil
}

func serverConfigFrom(pool *x509.CertPool, source *certSource) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      pool,
		GetCertificate: source.forServer,
	}
}

// ClientConfig is the TLS configuration of the CLI (or any API client). It
// trusts only the CA in caFile and presents certFile/keyFile, re-read
// when they change. The server's certificate is checked against the host
// name or IP dialled, as usual: the address the CLI is given must be among
// the node certificate's SANs (the node name, localhost, loopback, and the
// hosts given at issue time). Set ServerName on the result to verify
// against another name.
func ClientConfig(caFile, certFile, keyFile string, opts ...Option) (*tls.Config, error) {
	pool, source, err := newCertSource(caFile, certFile, keyFile, clientRole(), opts)
	if err != nil {
		return nil, err
	}
	return clientConfigFrom(pool, source), nil
}

func clientConfigFrom(pool *x509.CertPool, source *certSource) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              pool,
		GetClientCertificate: source.forClient,
	}
}

// PeerConfig is the TLS configuration raft uses for both accepting and
// dialing peer connections, with a node's own certificate. On either side
// the other end must present a node certificate: one that chains to the CA
// in caFile and carries both ServerAuth and ClientAuth, so the CLI's
// client certificate cannot speak raft.
//
// The peer's host name is not checked: raft dials whatever address a peer
// advertised (usually IP:port), and every certificate the cluster CA signs
// for a node is a cluster member anyway. The chain check therefore runs in
// VerifyConnection, with the standard client-side check (which would
// demand the dialled IP among the SANs) switched off through
// InsecureSkipVerify. Callers need not set ServerName. See DESIGN.md.
func PeerConfig(caFile, certFile, keyFile string, opts ...Option) (*tls.Config, error) {
	pool, source, err := newCertSource(caFile, certFile, keyFile, peerRole(), opts)
	if err != nil {
		return nil, err
	}
	return peerConfigFrom(pool, source), nil
}

func peerConfigFrom(pool *x509.CertPool, source *certSource) *tls.Config {
	return mutualConfig(pool, source, func(state tls.ConnectionState) error {
		return verifyNodePeer(state, pool)
	})
}

// NodeConfigs are a server's three TLS configurations: its API listener
// (as ServerConfig), raft (as PeerConfig) and its calls to other servers'
// APIs (as ClientConfig).
type NodeConfigs struct {
	API, Peer, Client *tls.Config
}

// ServerNodeConfigs builds a server's NodeConfigs on one certificate
// source, checked as a raft peer's (which a server certificate must be):
// a rotated certificate is taken, or refused, by all three at once, and a
// refusal is reported once (see OnReload).
func ServerNodeConfigs(caFile, certFile, keyFile string, opts ...Option) (NodeConfigs, error) {
	pool, source, err := newCertSource(caFile, certFile, keyFile, peerRole(), opts)
	if err != nil {
		return NodeConfigs{}, err
	}
	return NodeConfigs{API: serverConfigFrom(pool, source), Peer: peerConfigFrom(pool, source), Client: clientConfigFrom(pool, source)}, nil
}

// ErrNotCovered: a certificate is not valid for an address its owner
// advertises (see MustCover). It comes wrapped together with ErrBadFiles.
var ErrNotCovered = errors.New("certificate does not cover an advertised address")

// Option adds a requirement or an observer to a configuration's
// certificate source.
type Option func(*sourceOptions)

type sourceOptions struct {
	covers   []string
	onReload func(error)
}

// MustCover requires the certificate to be valid (x509 name matching) for
// each host: the addresses its owner advertises, which other servers dial
// and verify. A certificate that is not is refused at build time and on
// every reload (the previous one is kept). Empty and unspecified hosts
// (0.0.0.0, ::) are skipped: they name no address to check.
func MustCover(hosts ...string) Option {
	return func(o *sourceOptions) {
		for _, h := range hosts {
			if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
				continue
			}
			if !slices.Contains(o.covers, h) {
				o.covers = append(o.covers, h)
			}
		}
	}
}

// OnReload is told of every reload of the certificate files after the
// first load: nil when a new pair is in use, else why the new files were
// refused (the previous pair keeps serving). A refusal is reported once
// per state of the files, not at every handshake.
func OnReload(fn func(err error)) Option {
	return func(o *sourceOptions) { o.onReload = fn }
}

// mutualConfig serves and dials with source's certificate and checks the
// other end with verify on both sides. Not insecure: verify checks the
// chain; only the host name check is skipped (peers advertise IP:port).
func mutualConfig(pool *x509.CertPool, source *certSource, verify func(tls.ConnectionState) error) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetCertificate:       source.forServer,
		GetClientCertificate: source.forClient,
		ClientAuth:           tls.RequireAndVerifyClientCert,
		ClientCAs:            pool,
		InsecureSkipVerify:   true,
		VerifyConnection:     verify,
	}
}

func proxyRole() role {
	return role{"proxy", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		"pass the host's agent certificate (deployctl tls add-node HOST --role agent; re-issue one made before proxies) or a node certificate", []Role{RoleServer, RoleAgent}}
}

// ProxyConfig is the TLS configuration of a host's proxy on both ends of a
// hop (one host's proxy sending a request to another's replicas): the
// other end must present a certificate of the cluster CA with role server
// or agent; an operator's client certificate cannot open a hop. As for
// raft, the host name is not checked (hosts advertise IP:port); the chain
// and the role are, in VerifyConnection.
func ProxyConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, source, err := newCertSource(caFile, certFile, keyFile, proxyRole(), nil)
	if err != nil {
		return nil, err
	}
	return mutualConfig(pool, source, func(state tls.ConnectionState) error {
		return verifyPeer(state, pool, "proxy", RoleServer, RoleAgent)
	}), nil
}

// verifyNodePeer accepts the connection when the peer's certificate chains
// to roots and is a node certificate (ServerAuth and ClientAuth).
func verifyNodePeer(state tls.ConnectionState, roots *x509.CertPool) error {
	return verifyPeer(state, roots, "raft", RoleServer)
}

// verifyPeer accepts the connection when the peer's certificate chains to
// roots, carries ServerAuth and ClientAuth, and has one of roles.
func verifyPeer(state tls.ConnectionState, roots *x509.CertPool, what string, roles ...Role) error {
	if len(state.PeerCertificates) == 0 {
		return fmt.Errorf("pki: %s peer presented no certificate: %w", what, ErrPeerNotTrusted)
	}
	leaf := state.PeerCertificates[0]
	intermediates := x509.NewCertPool()
	for _, cert := range state.PeerCertificates[1:] {
		intermediates.AddCert(cert)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("pki: %s peer certificate %q: %w: %w", what, leaf.Subject.CommonName, ErrPeerNotTrusted, err)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("pki: %s peer certificate %q is not a node certificate (no client authentication usage): %w",
			what, leaf.Subject.CommonName, ErrPeerNotTrusted)
	}
	// The usages alone would admit any certificate made with them; the role
	// is what says "raft member". An agent or operator certificate never
	// carries it, and one from before roles is refused here too.
	id, err := IdentityOf(leaf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPeerNotTrusted, err)
	}
	if !slices.Contains(roles, id.Role) {
		return fmt.Errorf("pki: %s peer certificate %q has role %s; only %v certificates may: %w",
			what, leaf.Subject.CommonName, id, roles, ErrPeerNotTrusted)
	}
	return nil
}

// certSource hands out a certificate/key pair, re-reading the files when
// they change. The cache key is each file's identity (inode), mtime and
// size: a replacement by rename is always seen, an in-place rewrite as
// soon as its mtime or size differs.
type certSource struct {
	certFile, keyFile, caFile string
	roots                     *x509.CertPool
	role                      role
	opts                      sourceOptions
	now                       func() time.Time

	mu       sync.Mutex
	certInfo fs.FileInfo // stat of certFile when current was loaded
	keyInfo  fs.FileInfo
	current  *tls.Certificate
	// refusedCert and refusedKey are the stats of the files last refused
	// on reload: the refusal is reported once for them.
	refusedCert, refusedKey fs.FileInfo
}

// newCertSource loads the CA pool and the pair, failing with ErrBadFiles
// when either is unusable for r or opts.
func newCertSource(caFile, certFile, keyFile string, r role, opts []Option) (*x509.CertPool, *certSource, error) {
	pool, err := loadCAPool(caFile)
	if err != nil {
		return nil, nil, err
	}
	source := &certSource{certFile: certFile, keyFile: keyFile, caFile: caFile, roots: pool, role: r, now: time.Now}
	for _, o := range opts {
		o(&source.opts)
	}
	if _, err := source.certificate(); err != nil {
		return nil, nil, err
	}
	return pool, source, nil
}

func (s *certSource) forServer(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.certificate()
}

func (s *certSource) forClient(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.certificate()
}

// certificate returns the pair for a handshake. When the files changed but
// the new pair does not load (most likely caught mid-rotation: new key
// renamed in, new certificate not yet), the previous pair is kept while it
// is still valid, and loading is retried on the next handshake.
func (s *certSource) certificate() (*tls.Certificate, error) {
	// Stat before reading: if the files change after the stat, the next
	// stat differs and the pair is read again.
	certInfo, certErr := os.Stat(s.certFile)
	keyInfo, keyErr := os.Stat(s.keyFile)

	s.mu.Lock()
	defer s.mu.Unlock()
	if certErr == nil && keyErr == nil && s.current != nil &&
		unchanged(s.certInfo, certInfo) && unchanged(s.keyInfo, keyInfo) {
		return s.current, nil
	}
	now := s.now()
	pair, err := loadKeyPair(s.caFile, s.certFile, s.keyFile, s.roots, s.role, now)
	if err == nil {
		err = checkCovers(s.certFile, pair.Leaf, s.opts.covers)
	}
	if err != nil {
		if s.current != nil && now.Before(s.current.Leaf.NotAfter) {
			if s.opts.onReload != nil && !(unchanged(s.refusedCert, certInfo) && unchanged(s.refusedKey, keyInfo)) {
				s.refusedCert, s.refusedKey = certInfo, keyInfo
				s.opts.onReload(err)
			}
			return s.current, nil
		}
		return nil, err
	}
	reloaded := s.current != nil
	s.current, s.certInfo, s.keyInfo = pair, certInfo, keyInfo
	if reloaded && s.opts.onReload != nil {
		s.opts.onReload(nil)
	}
	return pair, nil
}

// checkCovers refuses a certificate that is not valid for every host.
func checkCovers(certFile string, leaf *x509.Certificate, hosts []string) error {
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			return fmt.Errorf("pki: %s is not valid for %s, an address this server advertises (it names %s): other servers could not reach it; re-issue it with that address (deployctl tls add-node %s --role server --hosts %s): %w: %w",
				certFile, h, strings.Join(certNames(leaf), ", "), leaf.Subject.CommonName, h, ErrNotCovered, ErrBadFiles)
		}
	}
	return nil
}

func unchanged(before, now fs.FileInfo) bool {
	return before != nil && now != nil && os.SameFile(before, now) &&
		before.ModTime().Equal(now.ModTime()) && before.Size() == now.Size()
}

// loadCAPool reads every certificate in caFile into a pool. Each must be a
// CA certificate: a leaf passed as the CA is a configuration mistake that
// would otherwise surface only as failed handshakes.
func loadCAPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA certificate: %w (point the CA option at the cluster's %s, readable by this user): %w", err, CACertFile, ErrBadFiles)
	}
	certs, err := decodeCerts(data)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate %s: %w: %w", caFile, err, ErrBadFiles)
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		if !cert.IsCA {
			return nil, fmt.Errorf("pki: %s holds %q, which is not a CA certificate: point the CA option at the cluster's %s: %w",
				caFile, cert.Subject.CommonName, CACertFile, ErrBadFiles)
		}
		pool.AddCert(cert)
	}
	return pool, nil
}

// loadKeyPair reads and checks a certificate and its key: they must parse,
// belong together, be valid at now, chain to roots, and carry r's usages.
func loadKeyPair(caFile, certFile, keyFile string, roots *x509.CertPool, r role, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read %s certificate: %w (check the path and that this user may read it): %w", r.name, err, ErrBadFiles)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read %s key: %w (check the path and that this user may read it): %w", r.name, err, ErrBadFiles)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s and %s are not a certificate and its key (%w): pass the key file written together with the certificate: %w",
			certFile, keyFile, err, ErrBadFiles)
	}
	leaf := pair.Leaf // parsed by X509KeyPair since Go 1.23
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("pki: %s is not valid before %s (is this machine's clock right?): %w",
			certFile, leaf.NotBefore.UTC().Format(time.RFC3339), ErrBadFiles)
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("pki: %s expired on %s: issue a new one from the cluster CA: %w",
			certFile, leaf.NotAfter.UTC().Format(time.RFC3339), ErrBadFiles)
	}
	intermediates := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: parse chain certificate: %w: %w", certFile, err, ErrBadFiles)
		}
		intermediates.AddCert(cert)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, // usages are checked below, each one required
	})
	if err != nil {
		return nil, fmt.Errorf("pki: %s is not signed by the CA in %s (%w): use a certificate issued by that CA, or point the CA option at the CA that issued it: %w",
			certFile, caFile, err, ErrBadFiles)
	}
	for _, usage := range r.usages {
		if !slices.Contains(leaf.ExtKeyUsage, usage) {
			return nil, fmt.Errorf("pki: %s cannot be used as a %s certificate (it lacks the %s usage): %s: %w",
				certFile, r.name, usageName(usage), r.fix, ErrBadFiles)
		}
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w: %w", certFile, err, ErrBadFiles)
	}
	if !slices.Contains(r.roles, id.Role) {
		return nil, fmt.Errorf("pki: %s has role %s and cannot be used as a %s certificate: %s: %w",
			certFile, id, r.name, r.fix, ErrBadFiles)
	}
	return &pair, nil
}

func usageName(usage x509.ExtKeyUsage) string {
	switch usage {
	case x509.ExtKeyUsageServerAuth:
		return "server authentication"
	case x509.ExtKeyUsageClientAuth:
		return "client authentication"
	default:
		return fmt.Sprintf("extended key usage %d", usage)
	}
}
