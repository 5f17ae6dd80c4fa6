// Package pki is deployctl's cluster certificate authority and the mutual-TLS
// configurations built on it.
//
// Init creates a private CA plus one certificate per server node, one per
// agent-only host and one for the CLI; IssueNode, IssueAgent and
// IssueClient issue more from an existing CA (new nodes, rotation). Every
// certificate carries one role (operator, server/NODE, agent/HOST) as a URI
// SAN, which IdentityOf reads back from a verified leaf. ServerConfig, ClientConfig and PeerConfig turn those files
// into *tls.Config values that trust only the cluster CA, speak only TLS 1.3
// and re-read their certificate from disk when it is replaced. See DESIGN.md.
package pki

import (
	"errors"
	"path/filepath"
	"time"
)

// Sentinel errors. Every error the package returns for one of these
// conditions wraps the sentinel and names the file or name at fault.
var (
	// ErrCAExists: Init found a CA in the directory and will not replace it,
	// because replacing it would silently invalidate every certificate the
	// old CA signed.
	ErrCAExists = errors.New("a cluster CA already exists")
	// ErrNoCA: IssueNode/IssueAgent/IssueClient found no CA (ca.pem and ca-key.pem) in
	// the directory.
	ErrNoCA = errors.New("no cluster CA")
	// ErrBadName: a node name or a host is not acceptable.
	ErrBadName = errors.New("bad name")
	// ErrBadFiles: certificate or key files are unreadable, malformed, do not
	// belong together, are not signed by the CA, are outside their validity
	// period, or lack the usage the configuration needs.
	ErrBadFiles = errors.New("bad certificate files")
)

// Validity periods. A leaf is short enough that a leaked key stops working
// on its own within a release cycle or two, the CA long enough that a
// cluster is not forced to re-key every node at once. There is no
// revocation (see DESIGN.md), so the leaf validity is the window a stolen
// node or client key stays usable.
const (
	// CAValidity is how long the cluster CA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity is how long node and client certificates are valid. A
	// leaf never outlives the CA that signs it: IssueNode cuts it short at
	// the CA's expiry.
	LeafValidity = 2 * 365 * 24 * time.Hour
	// Backdate is subtracted from "now" for NotBefore, so a certificate is
	// accepted at once by machines whose clocks run somewhat behind the one
	// that issued it.
	Backdate = time.Hour
)

// ClientCommonName is the subject CN of the CLI's client certificate.
const ClientCommonName = "deployctl-client"

// File names inside a PKI directory. Node files are NODE.pem and
// NODE-key.pem (see NodeFiles).
const (
	CACertFile     = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ClientCertFile = "client.pem"
	ClientKeyFile  = "client-key.pem"
)

// Files are the three paths a TLS configuration needs: the CA certificate
// to trust, and the certificate and key to present.
type Files struct {
	CA   string
	Cert string
	Key  string
}

// NodeFiles returns the paths of node's files in dir. It does not validate
// node; IssueNode and Init do.
func NodeFiles(dir, node string) Files {
	return Files{
		CA:   filepath.Join(dir, CACertFile),
		Cert: filepath.Join(dir, node+".pem"),
		Key:  filepath.Join(dir, node+"-key.pem"),
	}
}

// ClientFiles returns the paths of the CLI's files in dir.
func ClientFiles(dir string) Files {
	return Files{
		CA:   filepath.Join(dir, CACertFile),
		Cert: filepath.Join(dir, ClientCertFile),
		Key:  filepath.Join(dir, ClientKeyFile),
	}
}

// InitOptions configures Init.
type InitOptions struct {
	// Dir receives the files. Created 0700 when missing.
	Dir string
	// Nodes are the server node names; each gets NODE.pem and NODE-key.pem
	// with the role server/NODE.
	Nodes []string
	// Agents are agent-only host names; each gets HOST.pem and HOST-key.pem
	// with the role agent/HOST (client authentication only).
	Agents []string
	// Hosts are extra subject alternative names put on every node
	// certificate: IP addresses become IP SANs, anything else a DNS SAN.
	Hosts []string
	// Now is the issuing time; nil means time.Now.
	Now func() time.Time
}

// Result lists the files an operation wrote, in the order written.
type Result struct {
	Dir   string
	Files []string
	// Names are the DNS names and IPs a node certificate is valid for
	// (IssueNodeHosts only).
	Names []string
}
