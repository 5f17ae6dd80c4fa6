package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// organization is the subject O of every certificate the package issues.
const organization = "deployctl"

// authority is a loaded CA: its certificate and signing key.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// issued is one certificate and its private key, PEM-encoded.
type issued struct {
	certPEM []byte
	keyPEM  []byte
}

// Init creates a new cluster CA in opts.Dir with a certificate for every
// node in opts.Nodes and one for the CLI. It refuses (ErrCAExists) when the
// directory already holds ca.pem or ca-key.pem. Names and hosts are checked
// before anything is written; if writing fails part-way, the files this
// call wrote are removed again so it can simply be re-run.
func Init(opts InitOptions) (Result, error) {
	if opts.Dir == "" {
		return Result{}, errors.New("pki: InitOptions.Dir is required")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	// Node and agent files share the directory (NAME.pem), so a name may
	// appear once across both lists.
	seen := make(map[string]bool, len(opts.Nodes)+len(opts.Agents))
	for _, node := range append(slices.Clip(opts.Nodes), opts.Agents...) {
		if err := ValidateNodeName(node); err != nil {
			return Result{}, err
		}
		if seen[node] {
			return Result{}, fmt.Errorf("pki: name %q given twice (node and agent names share the directory): %w", node, ErrBadName)
		}
		seen[node] = true
	}
	if _, _, err := hostSANs(opts.Hosts); err != nil {
		return Result{}, err
	}
	for _, name := range []string{CACertFile, CAKeyFile} {
		if err := refuseExistingCA(filepath.Join(opts.Dir, name)); err != nil {
			return Result{}, err
		}
	}

	// Everything is generated before the first write, so a failure to
	// generate leaves no trace on disk.
	issuedAt := now()
	ca, caFiles, err := newAuthority(issuedAt)
	if err != nil {
		return Result{}, err
	}
	nodeFiles := make([]issued, len(opts.Nodes))
	for i, node := range opts.Nodes {
		tmpl, err := nodeTemplate(node, opts.Hosts)
		if err != nil {
			return Result{}, err
		}
		if nodeFiles[i], err = ca.issue(tmpl, issuedAt); err != nil {
			return Result{}, err
		}
	}
	agentFiles := make([]issued, len(opts.Agents))
	for i, host := range opts.Agents {
		if agentFiles[i], err = ca.issue(agentTemplate(host), issuedAt); err != nil {
			return Result{}, err
		}
	}
	clientFiles, err := ca.issue(clientTemplate(), issuedAt)
	if err != nil {
		return Result{}, err
	}

	if err := ensureDir(opts.Dir); err != nil {
		return Result{}, err
	}
	w := &fileWriter{}
	// The CA files are created exclusively: if another Init raced this one,
	// the loser fails instead of replacing the winner's CA.
	w.exclusive(filepath.Join(opts.Dir, CAKeyFile), caFiles.keyPEM, keyMode)
	w.exclusive(filepath.Join(opts.Dir, CACertFile), caFiles.certPEM, certMode)
	for i, node := range opts.Nodes {
		w.pair(NodeFiles(opts.Dir, node), nodeFiles[i])
	}
	for i, host := range opts.Agents {
		w.pair(NodeFiles(opts.Dir, host), agentFiles[i])
	}
	w.pair(ClientFiles(opts.Dir), clientFiles)
	if len(opts.Nodes) > 0 {
		doc := nodeHostsDoc{Hosts: map[string][]string{}}
		for _, node := range opts.Nodes {
			hosts, _ := nextHosts(node, nil, nil, HostChange{Add: opts.Hosts}) // checked above
			doc.Hosts[node] = hosts
		}
		w.atomic(filepath.Join(opts.Dir, NodeHostsFile), doc.encode(), certMode)
	}
	if w.err != nil {
		w.removeWritten()
		return Result{}, w.err
	}
	return Result{Dir: opts.Dir, Files: w.written}, nil
}

// IssueNode is IssueNodeHosts adding hosts to the node's names.
func IssueNode(dir, node string, hosts []string) (Result, error) {
	return IssueNodeHosts(dir, node, HostChange{Add: hosts})
}

// IssueNodeHosts issues a certificate for node from the CA in dir (ca.pem
// and ca-key.pem), with the SANs Init gives a node plus its hosts: those
// recorded for it in NodeHostsFile and those on its current certificate in
// dir, plus change.Add, minus change.Remove. It adds a node to an existing
// cluster or, when node's files exist, replaces them: that is how a node
// certificate is rotated, and a rotation keeps the addresses the node is
// reached at. Files are replaced by rename, so a running
// ServerConfig/PeerConfig picks up the new pair on its next handshake. The
// certificate expires at the latest with the CA. Result.Names lists the
// names it is valid for.
func IssueNodeHosts(dir, node string, change HostChange) (Result, error) {
	if err := ValidateNodeName(node); err != nil {
		return Result{}, err
	}
	doc, err := readNodeHosts(dir)
	if err != nil {
		return Result{}, err
	}
	hosts, err := nextHosts(node, doc.Hosts[node], certHosts(NodeFiles(dir, node).Cert, node), change)
	if err != nil {
		return Result{}, err
	}
	tmpl, err := nodeTemplate(node, hosts)
	if err != nil {
		return Result{}, err
	}
	doc.Hosts[node] = hosts
	res, err := issueFromDir(dir, tmpl, NodeFiles(dir, node), time.Now(), func(w *fileWriter) {
		w.atomic(filepath.Join(dir, NodeHostsFile), doc.encode(), certMode)
	})
	res.Names = certNames(tmpl)
	return res, err
}

// certNames lists a template's DNS and IP SANs.
func certNames(tmpl *x509.Certificate) []string {
	names := slices.Clone(tmpl.DNSNames)
	for _, ip := range tmpl.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// IssueAgent issues an agent certificate for host from the CA in dir and
// writes it as HOST.pem / HOST-key.pem (replacing existing ones: rotation).
// It carries client authentication only and the role agent/HOST, so it can
// call the agent endpoints for HOST and nothing else: it can neither serve
// the API nor speak raft.
func IssueAgent(dir, host string) (Result, error) {
	if err := ValidateNodeName(host); err != nil {
		return Result{}, err
	}
	return issueFromDir(dir, agentTemplate(host), NodeFiles(dir, host), time.Now())
}

// IssueClient issues a new CLI certificate (client.pem, client-key.pem)
// from the CA in dir, replacing the old one: how the client certificate is
// rotated before it expires.
func IssueClient(dir string) (Result, error) {
	return issueFromDir(dir, clientTemplate(), ClientFiles(dir), time.Now())
}

// issueFromDir signs tmpl with dir's CA and writes the pair to files, then
// runs each of also (further files that go with the pair).
func issueFromDir(dir string, tmpl *x509.Certificate, files Files, now time.Time, also ...func(*fileWriter)) (Result, error) {
	ca, err := loadAuthority(dir, now)
	if err != nil {
		return Result{}, err
	}
	pair, err := ca.issue(tmpl, now)
	if err != nil {
		return Result{}, err
	}
	w := &fileWriter{}
	w.pair(files, pair)
	for _, f := range also {
		f(w)
	}
	if w.err != nil {
		// Nothing is removed: a rename that succeeded replaced a file that
		// belonged to the node before, and the old content is gone anyway.
		return Result{}, w.err
	}
	return Result{Dir: dir, Files: w.written}, nil
}

func refuseExistingCA(path string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return fmt.Errorf("pki: %s already exists: use another --dir, or delete it to start a new CA (every certificate the old CA signed stops being trusted); to add a node to this CA, issue a node certificate instead: %w", path, ErrCAExists)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("pki: check for an existing CA: %w", err)
	}
}

// newAuthority generates a CA key and its self-signed certificate. The CA
// may sign leaves only (path length 0): deployctl never uses intermediates.
func newAuthority(now time.Time) (authority, issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return authority{}, issued{}, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return authority{}, issued{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "deployctl cluster CA", Organization: []string{organization}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return authority{}, issued{}, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return authority{}, issued{}, fmt.Errorf("pki: parse new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return authority{}, issued{}, err
	}
	return authority{cert: cert, key: key}, issued{certPEM: encodeCert(der), keyPEM: keyPEM}, nil
}

// issue signs tmpl with a fresh P-256 key. It fills in the serial, the
// validity (cut short at the CA's expiry) and the basic constraints.
func (ca authority) issue(tmpl *x509.Certificate, now time.Time) (issued, error) {
	if !now.Before(ca.cert.NotAfter) {
		return issued{}, fmt.Errorf("pki: the CA expired on %s: create a new CA with Init in another directory: %w",
			ca.cert.NotAfter.UTC().Format(time.RFC3339), ErrBadFiles)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issued{}, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return issued{}, err
	}
	leaf := *tmpl
	leaf.SerialNumber = serial
	leaf.NotBefore = now.Add(-Backdate)
	leaf.NotAfter = now.Add(LeafValidity)
	if leaf.NotAfter.After(ca.cert.NotAfter) {
		leaf.NotAfter = ca.cert.NotAfter
	}
	leaf.BasicConstraintsValid = true
	leaf.IsCA = false
	// ECDSA keys sign; they never encipher keys, so DigitalSignature only.
	leaf.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, &leaf, ca.cert, key.Public(), ca.key)
	if err != nil {
		return issued{}, fmt.Errorf("pki: sign certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return issued{}, err
	}
	return issued{certPEM: encodeCert(der), keyPEM: keyPEM}, nil
}

// nodeTemplate is a node's certificate: usable as a server (the API, raft
// accepting) and as a client (raft dialing its peers). Its SANs cover the
// node name, loopback, and hosts. node must already be validated.
func nodeTemplate(node string, hosts []string) (*x509.Certificate, error) {
	ips, names, err := hostSANs(hosts)
	if err != nil {
		return nil, err
	}
	dnsNames := []string{node, "localhost"}
	for _, name := range names {
		if !slices.Contains(dnsNames, name) {
			dnsNames = append(dnsNames, name)
		}
	}
	ipAddrs := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	for _, ip := range ips {
		if !slices.ContainsFunc(ipAddrs, ip.Equal) {
			ipAddrs = append(ipAddrs, ip)
		}
	}
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: node, Organization: []string{organization}},
		DNSNames:    dnsNames,
		IPAddresses: ipAddrs,
		URIs:        []*url.URL{RoleURI(Identity{Role: RoleServer, Name: node})},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, nil
}

// agentTemplate is an agent-only host's certificate, role agent/HOST. It
// authenticates the agent to the servers, and its proxy to other hosts'
// proxies on both ends of a hop (server authentication for its hop
// listener, which is checked by chain and role, not by host name). It can
// never serve the API or speak raft: both demand role server. host must
// already be validated.
func agentTemplate(host string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: host, Organization: []string{organization}},
		URIs:        []*url.URL{RoleURI(Identity{Role: RoleAgent, Name: host})},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
}

// clientTemplate is the CLI's certificate: client authentication only, so
// that it can never pose as a server or a raft peer; role operator.
func clientTemplate() *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: ClientCommonName, Organization: []string{organization}},
		URIs:        []*url.URL{RoleURI(Identity{Role: RoleOperator})},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// newSerial draws a serial uniformly from [1, 2^128): unpredictable serials
// keep a chosen-prefix collision from being aimed at a future certificate,
// and RFC 5280 wants them positive.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		serial, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: draw serial number: %w", err)
		}
		if serial.Sign() > 0 {
			return serial, nil
		}
	}
}

// loadAuthority reads the CA certificate and key from dir. A missing file
// is ErrNoCA; anything else wrong with them is ErrBadFiles.
func loadAuthority(dir string, now time.Time) (authority, error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return authority{}, caReadError(certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return authority{}, caReadError(keyPath, err)
	}
	key, err := decodeKey(keyPEM)
	if err != nil {
		return authority{}, fmt.Errorf("pki: %s: %w: %w", keyPath, err, ErrBadFiles)
	}
	certs, err := decodeCerts(certPEM)
	if err != nil {
		return authority{}, fmt.Errorf("pki: %s: %w: %w", certPath, err, ErrBadFiles)
	}
	// ca.pem may hold several CAs (trusting an old and a new one during a
	// CA change); the one that signs is the one matching the key.
	for _, cert := range certs {
		if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(key.Public()) {
			if !cert.IsCA {
				return authority{}, fmt.Errorf("pki: %s is not a CA certificate: %w", certPath, ErrBadFiles)
			}
			if !now.Before(cert.NotAfter) {
				return authority{}, fmt.Errorf("pki: the CA in %s expired on %s: create a new CA with Init in another directory: %w",
					certPath, cert.NotAfter.UTC().Format(time.RFC3339), ErrBadFiles)
			}
			return authority{cert: cert, key: key}, nil
		}
	}
	return authority{}, fmt.Errorf("pki: %s does not belong to the certificate in %s: restore the key written with that CA: %w", keyPath, certPath, ErrBadFiles)
}

func caReadError(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pki: %s not found: create the CA first (tls init) or point at the directory that holds it: %w: %w", path, ErrNoCA, err)
	}
	return fmt.Errorf("pki: read %s: %w: %w", path, ErrBadFiles, err)
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// decodeKey reads the first private key in data: PKCS #8 as written here,
// or SEC 1 ("EC PRIVATE KEY") as other tools write.
func decodeKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T cannot sign", key)
		}
		return signer, nil
	}
}

// decodeCerts parses every CERTIFICATE block in data; there must be one.
func decodeCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}
