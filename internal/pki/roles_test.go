package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// mustIssueCustom signs tmpl with the CA in dir and writes it as name's
// files: certificates deployctl itself never makes (from an older version,
// or with usages and role that do not belong together).
func mustIssueCustom(t *testing.T, dir, name string, tmpl *x509.Certificate) Files {
	t.Helper()
	ca, err := loadAuthority(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.issue(tmpl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files := NodeFiles(dir, name)
	w := &fileWriter{}
	w.pair(files, pair)
	if w.err != nil {
		t.Fatal(w.err)
	}
	return files
}

// preRolesNode is a node certificate as deployctl made it before roles.
func preRolesNode(name string) *x509.Certificate {
	tmpl, _ := nodeTemplate(name, nil)
	tmpl.URIs = nil
	return tmpl
}

func TestInitWritesOneRolePerCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(InitOptions{Dir: dir, Nodes: []string{"n1", "n2"}, Agents: []string{"h1"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file string
		want Identity
		ext  []x509.ExtKeyUsage
	}{
		{NodeFiles(dir, "n1").Cert, Identity{RoleServer, "n1"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{NodeFiles(dir, "n2").Cert, Identity{RoleServer, "n2"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{NodeFiles(dir, "h1").Cert, Identity{RoleAgent, "h1"}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}},
		{ClientFiles(dir).Cert, Identity{RoleOperator, ""}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	}
	for _, tt := range tests {
		cert := mustParseCert(t, tt.file)
		got, err := IdentityOf(cert)
		if err != nil || got != tt.want {
			t.Errorf("%s: identity %v, %v; want %v", tt.file, got, err, tt.want)
		}
		if !slices.Equal(cert.ExtKeyUsage, tt.ext) {
			t.Errorf("%s: usages %v, want %v", tt.file, cert.ExtKeyUsage, tt.ext)
		}
		if fromFile, err := IdentityOfFile(tt.file); err != nil || fromFile != tt.want {
			t.Errorf("IdentityOfFile(%s) = %v, %v", tt.file, fromFile, err)
		}
	}
	if got := RoleURI(Identity{RoleAgent, "h1"}).String(); got != "deployctl://role/agent/h1" {
		t.Errorf("RoleURI = %s", got)
	}

	// An agent name may not reuse a node's files.
	_, err := Init(InitOptions{Dir: t.TempDir(), Nodes: []string{"n1"}, Agents: []string{"n1"}})
	if !errors.Is(err, ErrBadName) {
		t.Errorf("node and agent both n1: %v, want ErrBadName", err)
	}
}

func TestIssueAgentIsClientOnly(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1"}, nil)
	if _, err := IssueAgent(dir, "h9"); err != nil {
		t.Fatal(err)
	}
	agent := NodeFiles(dir, "h9")
	if id, err := IdentityOfFile(agent.Cert); err != nil || id != (Identity{RoleAgent, "h9"}) {
		t.Fatalf("identity %v, %v", id, err)
	}
	if _, err := ClientConfig(agent.CA, agent.Cert, agent.Key); err != nil {
		t.Errorf("an agent certificate is a client: %v", err)
	}
	if _, err := ServerConfig(agent.CA, agent.Cert, agent.Key); !errors.Is(err, ErrBadFiles) {
		t.Errorf("ServerConfig with an agent certificate: %v, want ErrBadFiles", err)
	}
	if _, err := PeerConfig(agent.CA, agent.Cert, agent.Key); !errors.Is(err, ErrBadFiles) {
		t.Errorf("PeerConfig with an agent certificate: %v, want ErrBadFiles", err)
	}
	if _, err := IssueAgent(dir, "client"); !errors.Is(err, ErrBadName) {
		t.Errorf("agent named client: %v, want ErrBadName", err)
	}
}

// TestPeerConfigRefusesEveryNonServerRole: raft takes server certificates
// only. The usages are not enough: an agent certificate that somehow
// carried ServerAuth+ClientAuth, and a node certificate from before roles,
// are refused on both sides of the connection.
func TestPeerConfigRefusesEveryNonServerRole(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1", "n2"}, nil)
	if _, err := IssueAgent(dir, "h1"); err != nil {
		t.Fatal(err)
	}
	agentWithNodeUsages := preRolesNode("h2")
	agentWithNodeUsages.URIs = []*url.URL{RoleURI(Identity{RoleAgent, "h2"})}
	mustIssueCustom(t, dir, "h2", agentWithNodeUsages)
	mustIssueCustom(t, dir, "old", preRolesNode("old"))
	pool := mustCAPool(t, NodeFiles(dir, "n1").CA)

	addr, results := startTLSServer(t, mustPeerConfig(t, NodeFiles(dir, "n1")))
	// Agent certificates (h1, and h2 made by hand) have the usages (an
	// agent's proxy serves hops) but not the role; old has no role at all.
	for name, want := range map[string]string{"h1": "role", "h2": "role", "old": "role"} {
		t.Run("listener refuses "+name, func(t *testing.T) {
			dialer := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "n1",
				Certificates: []tls.Certificate{mustKeyPair(t, NodeFiles(dir, name))}}
			if _, err := dialTLS(t, addr, dialer); err == nil {
				t.Error("dialer got through")
			}
			if server := receive(t, results); server.err == nil || !strings.Contains(server.err.Error(), want) {
				t.Errorf("listener: %v, want a refusal naming the %s", server.err, want)
			}
		})
	}
	t.Run("dialer refuses a listener with an agent role", func(t *testing.T) {
		addr, results := startTLSServer(t, &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert,
			Certificates: []tls.Certificate{mustKeyPair(t, NodeFiles(dir, "h2"))}})
		if _, err := dialTLS(t, addr, mustPeerConfig(t, NodeFiles(dir, "n2"))); !errors.Is(err, ErrPeerNotTrusted) {
			t.Errorf("dial: %v, want ErrPeerNotTrusted", err)
		}
		receive(t, results)
	})
	t.Run("two servers still talk", func(t *testing.T) {
		if _, err := dialTLS(t, addr, mustPeerConfig(t, NodeFiles(dir, "n2"))); err != nil {
			t.Fatal(err)
		}
		if server := receive(t, results); server.err != nil {
			t.Fatal(server.err)
		}
	})
}

// TestPreRolesCertificatesRefused: a certificate issued before roles
// existed loads nowhere, with the fix in the error.
func TestPreRolesCertificatesRefused(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1"}, nil)
	old := mustIssueCustom(t, dir, "old", preRolesNode("old"))
	for name, build := range map[string]func(ca, cert, key string, opts ...Option) (*tls.Config, error){
		"ServerConfig": ServerConfig, "ClientConfig": ClientConfig, "PeerConfig": PeerConfig,
	} {
		_, err := build(old.CA, old.Cert, old.Key)
		if !errors.Is(err, ErrBadFiles) || !errors.Is(err, ErrNoRole) || !strings.Contains(err.Error(), "re-issue") {
			t.Errorf("%s: %v, want ErrBadFiles+ErrNoRole telling to re-issue", name, err)
		}
	}
	if _, err := IdentityOf(mustParseCert(t, old.Cert)); !errors.Is(err, ErrNoRole) {
		t.Errorf("IdentityOf: %v", err)
	}
}

func TestIdentityOfRefusesAmbiguousOrForeignRoles(t *testing.T) {
	cert := func(cn string, uris ...string) *x509.Certificate {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
		for _, u := range uris {
			parsed, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, parsed)
		}
		return c
	}
	bad := map[string]*x509.Certificate{
		"no role":              cert("h1"),
		"two roles":            cert("h1", "deployctl://role/agent/h1", "deployctl://role/operator"),
		"name is not the CN":   cert("h1", "deployctl://role/agent/h2"),
		"unknown role":         cert("h1", "deployctl://role/admin/h1"),
		"operator with a name": cert("x", "deployctl://role/operator/x"),
		"agent without a name": cert("", "deployctl://role/agent"),
		"other authority":      cert("h1", "deployctl://evil/agent/h1"),
		"query":                cert("h1", "deployctl://role/agent/h1?x=1"),
		"bad name":             cert("H1", "deployctl://role/agent/H1"),
	}
	for name, c := range bad {
		if id, err := IdentityOf(c); !errors.Is(err, ErrNoRole) && !errors.Is(err, ErrBadName) {
			t.Errorf("%s: %v, %v; want refused", name, id, err)
		}
	}
	// Other URIs (e.g. a SPIFFE id) do not disturb the role.
	if id, err := IdentityOf(cert("h1", "spiffe://example/x", "deployctl://role/agent/h1")); err != nil || id != (Identity{RoleAgent, "h1"}) {
		t.Errorf("with a foreign URI: %v, %v", id, err)
	}
	for _, s := range []string{"", "operator/x", "server", "root/n1", "agent/../n1"} {
		if _, err := ParseIdentity(s); err == nil {
			t.Errorf("ParseIdentity(%q) accepted", s)
		}
	}
}

// TestProxyConfigAdmitsHostsNotOperators: a hop between two hosts' proxies
// takes an agent or a server certificate on both ends; the operator's
// client certificate (client authentication only, role operator) is
// refused by the listener, so holding the CLI's certificate does not open
// a path to every replica.
func TestProxyConfigAdmitsHostsNotOperators(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1"}, nil)
	for _, h := range []string{"h1", "h2"} {
		if _, err := IssueAgent(dir, h); err != nil {
			t.Fatal(err)
		}
	}
	proxyConfig := func(f Files) *tls.Config {
		t.Helper()
		cfg, err := ProxyConfig(f.CA, f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	addr, results := startTLSServer(t, proxyConfig(NodeFiles(dir, "h1")))
	for _, peer := range []string{"h2", "n1"} {
		if _, err := dialTLS(t, addr, proxyConfig(NodeFiles(dir, peer))); err != nil {
			t.Errorf("%s -> h1: %v, want a hop", peer, err)
		}
		if server := receive(t, results); server.err != nil {
			t.Errorf("h1 refused %s: %v", peer, server.err)
		}
	}
	pool := mustCAPool(t, NodeFiles(dir, "n1").CA)
	operator := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, InsecureSkipVerify: true,
		Certificates: []tls.Certificate{mustKeyPair(t, ClientFiles(dir))}}
	_, _ = dialTLS(t, addr, operator)
	if server := receive(t, results); !errors.Is(server.err, ErrPeerNotTrusted) && (server.err == nil || !strings.Contains(server.err.Error(), "role")) {
		t.Errorf("h1 accepted the operator's certificate: %v", server.err)
	}
	if _, err := ProxyConfig(ClientFiles(dir).CA, ClientFiles(dir).Cert, ClientFiles(dir).Key); !errors.Is(err, ErrBadFiles) {
		t.Errorf("ProxyConfig with the operator's certificate: %v, want ErrBadFiles", err)
	}
}
