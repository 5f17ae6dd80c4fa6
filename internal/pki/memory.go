package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"
)

// Authority is a cluster CA loaded from a directory `tls init` wrote, for
// a process that holds the CA key and issues certificates in memory (the
// hollow hosts of internal/hollow: one agent certificate per simulated
// host, never written to disk). Holding ca-key.pem is holding the whole
// cluster; only the operator who made it has it.
type Authority struct {
	ca    authority
	roots *x509.CertPool
}

// LoadAuthority reads ca.pem and ca-key.pem from dir (ErrNoCA when either
// is missing, ErrBadFiles when unusable).
func LoadAuthority(dir string) (*Authority, error) {
	ca, err := loadAuthority(dir, time.Now())
	if err != nil {
		return nil, err
	}
	roots, err := loadCAPool(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	return &Authority{ca: ca, roots: roots}, nil
}

// AgentClientConfig issues an agent certificate for host (role agent/HOST,
// as IssueAgent writes it) with a fresh key, in memory, and returns the
// client TLS configuration that presents it and trusts the cluster CA.
// The servers treat it exactly like a certificate from `tls add-node HOST
// --role agent`: it may fetch assignments and report for HOST only.
func (a *Authority) AgentClientConfig(host string) (*tls.Config, error) {
	if err := ValidateNodeName(host); err != nil {
		return nil, err
	}
	pair, err := a.ca.issue(agentTemplate(host), time.Now())
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(pair.certPEM, pair.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: load the issued pair for %q: %w", host, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: a.roots, Certificates: []tls.Certificate{cert}}, nil
}
