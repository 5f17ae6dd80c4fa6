package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Role is what a certificate may do in the cluster. It is written into the
// certificate as a URI SAN (see RoleURI) and read back from the verified
// leaf by IdentityOf on every API request and every raft connection.
type Role string

// The roles. See DESIGN.md, "Roles".
const (
	// RoleOperator is the CLI: the whole API except speaking for a host.
	RoleOperator Role = "operator"
	// RoleServer is a raft member: raft, forwarding, membership for its own
	// node id, and the agent endpoints for the host named like the node.
	RoleServer Role = "server"
	// RoleAgent is a host agent: the agent endpoints for its host only.
	RoleAgent Role = "agent"
)

// roleScheme and roleHost make the URI SAN: deployctl://role/operator,
// deployctl://role/server/NODE, deployctl://role/agent/HOST.
const (
	roleScheme = "deployctl"
	roleHost   = "role"
)

// ErrNoRole: a certificate of the cluster CA carries no deployctl role URI
// (it was issued before roles existed) or an unreadable one. Such a
// certificate is refused everywhere: it must be re-issued.
var ErrNoRole = errors.New("certificate carries no deployctl role")

// Identity is who a certificate speaks for: a role and, for servers and
// agents, the node or host name it was issued to (empty for operators).
type Identity struct {
	Role Role   `json:"role"`
	Name string `json:"name,omitempty"`
}

// String is "operator", "server/n1" or "agent/h1".
func (id Identity) String() string {
	if id.Name == "" {
		return string(id.Role)
	}
	return string(id.Role) + "/" + id.Name
}

// ParseIdentity reads the form String writes. It is used for the header
// a server forwards its caller's identity in.
func ParseIdentity(s string) (Identity, error) {
	role, name, _ := strings.Cut(s, "/")
	id := Identity{Role: Role(role), Name: name}
	if err := id.validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

func (id Identity) validate() error {
	switch id.Role {
	case RoleOperator:
		if id.Name != "" {
			return fmt.Errorf("pki: role %q takes no name (got %q): %w", id.Role, id.Name, ErrNoRole)
		}
		return nil
	case RoleServer, RoleAgent:
		if err := ValidateNodeName(id.Name); err != nil {
			return fmt.Errorf("pki: role %q: %w", id.Role, err)
		}
		return nil
	}
	return fmt.Errorf("pki: unknown role %q (want operator, server or agent): %w", id.Role, ErrNoRole)
}

// RoleURI is the URI SAN that carries id in a certificate.
func RoleURI(id Identity) *url.URL {
	path := "/" + string(id.Role)
	if id.Name != "" {
		path += "/" + id.Name
	}
	return &url.URL{Scheme: roleScheme, Host: roleHost, Path: path}
}

// IdentityOf reads the role from a certificate the TLS stack has already
// verified against the cluster CA. It must carry exactly one deployctl://
// role URI; for servers and agents its name must also be the subject CN.
// A certificate without one (issued by a deployctl before roles) is
// refused with ErrNoRole and the fix: re-issue it.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("pki: no certificate: %w", ErrNoRole)
	}
	var found []Identity
	for _, u := range cert.URIs {
		if u.Scheme != roleScheme {
			continue
		}
		if u.Host != roleHost || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return Identity{}, fmt.Errorf("pki: certificate %q: malformed role URI %q: %w", cert.Subject.CommonName, u.String(), ErrNoRole)
		}
		id, err := ParseIdentity(strings.TrimPrefix(u.Path, "/"))
		if err != nil {
			return Identity{}, fmt.Errorf("pki: certificate %q: role URI %q: %w", cert.Subject.CommonName, u.String(), err)
		}
		found = append(found, id)
	}
	switch {
	case len(found) == 0:
		return Identity{}, fmt.Errorf("pki: certificate %q has no deployctl role (issued before roles existed): re-issue it from the cluster CA with `deployctl tls add-node NAME --role server|agent` or `deployctl tls client`: %w",
			cert.Subject.CommonName, ErrNoRole)
	case len(found) > 1:
		return Identity{}, fmt.Errorf("pki: certificate %q carries %d role URIs; a certificate has exactly one role: %w", cert.Subject.CommonName, len(found), ErrNoRole)
	}
	id := found[0]
	if id.Name != "" && id.Name != cert.Subject.CommonName {
		return Identity{}, fmt.Errorf("pki: certificate %q names %s in its role URI, not its subject: %w", cert.Subject.CommonName, id, ErrNoRole)
	}
	return id, nil
}

// IdentityOfFile reads the identity of the first certificate in a PEM
// file, for commands that want to know what their own certificate may do
// before they use it (the chain is verified when the TLS config loads it).
func IdentityOfFile(certFile string) (Identity, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return Identity{}, fmt.Errorf("pki: read %s: %w: %w", certFile, err, ErrBadFiles)
	}
	certs, err := decodeCerts(data)
	if err != nil {
		return Identity{}, fmt.Errorf("pki: %s: %w: %w", certFile, err, ErrBadFiles)
	}
	return IdentityOf(certs[0])
}
