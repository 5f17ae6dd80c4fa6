package pki

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// sanNames lists a certificate file's DNS and IP SANs.
func sanNames(t *testing.T, path string) []string {
	t.Helper()
	return certNames(mustParseCert(t, path))
}

// Issue 17: a rotation without --hosts kept only loopback and the node
// became unreachable. The hosts of init and of the current certificate
// stay; --hosts adds; removal is explicit.
func TestRotationKeepsNodeHosts(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1", "n2"}, []string{"10.0.0.1", "n.example"})
	n1 := NodeFiles(dir, "n1").Cert
	want := []string{"n1", "localhost", "n.example", "127.0.0.1", "::1", "10.0.0.1"}
	if got := sanNames(t, n1); !slices.Equal(got, want) {
		t.Fatalf("after init: %v, want %v", got, want)
	}

	// Rotation as the guide says it, without --hosts.
	res, err := IssueNodeHosts(dir, "n1", HostChange{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sanNames(t, n1); !slices.Equal(got, want) || !slices.Equal(res.Names, want) {
		t.Errorf("rotated without --hosts: %v (reported %v), want %v", got, res.Names, want)
	}

	// --hosts adds; a host put on the certificate by hand (another tool)
	// is kept too even when nodes.json does not list it.
	if _, err := IssueNodeHosts(dir, "n1", HostChange{Add: []string{"10.0.0.11"}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, NodeHostsFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := IssueNodeHosts(dir, "n1", HostChange{}); err != nil {
		t.Fatal(err)
	}
	want = []string{"n1", "localhost", "n.example", "127.0.0.1", "::1", "10.0.0.1", "10.0.0.11"}
	if got := sanNames(t, n1); !slices.Equal(got, want) {
		t.Errorf("after --hosts and with nodes.json gone: %v, want %v", got, want)
	}

	// Removal is explicit and sticks at the next rotation.
	if _, err := IssueNodeHosts(dir, "n1", HostChange{Remove: []string{"10.0.0.1", "N.Example"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := IssueNodeHosts(dir, "n1", HostChange{}); err != nil {
		t.Fatal(err)
	}
	want = []string{"n1", "localhost", "127.0.0.1", "::1", "10.0.0.11"}
	if got := sanNames(t, n1); !slices.Equal(got, want) {
		t.Errorf("after --remove-host: %v, want %v", got, want)
	}
	// n2 was never touched and keeps init's hosts.
	if got := sanNames(t, NodeFiles(dir, "n2").Cert); !slices.Contains(got, "10.0.0.1") {
		t.Errorf("n2 lost init's hosts: %v", got)
	}
}

func TestRemoveHostRefusals(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1"}, []string{"10.0.0.1"})
	before := mustReadFile(t, NodeFiles(dir, "n1").Cert)
	for _, r := range []string{"10.0.0.9", "localhost", "127.0.0.1", "n1"} {
		_, err := IssueNodeHosts(dir, "n1", HostChange{Remove: []string{r}})
		if !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), r) {
			t.Errorf("remove %s: %v, want ErrBadName naming it", r, err)
		}
	}
	if !slices.Equal(before, mustReadFile(t, NodeFiles(dir, "n1").Cert)) {
		t.Error("a refused removal replaced the certificate")
	}
	if err := os.WriteFile(filepath.Join(dir, NodeHostsFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := IssueNodeHosts(dir, "n1", HostChange{}); !errors.Is(err, ErrBadFiles) || !strings.Contains(err.Error(), NodeHostsFile) {
		t.Errorf("broken %s: %v, want ErrBadFiles naming it", NodeHostsFile, err)
	}
}

// A server refuses a certificate that does not cover its advertised
// address, at build time and on reload, keeping the old one and saying
// why once; a good rotation is taken and reported.
func TestReloadRefusesCertificateNotCoveringAdvertisedAddress(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1"}, []string{"127.0.0.3"})
	files := NodeFiles(dir, "n1")
	var mu sync.Mutex
	var reports []error
	cfgs, err := ServerNodeConfigs(files.CA, files.Cert, files.Key, MustCover("127.0.0.3", "0.0.0.0", ""), OnReload(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, err)
	}))
	if err != nil {
		t.Fatal(err)
	}
	served := func() *tls.Certificate {
		t.Helper()
		c, err := cfgs.API.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := served()

	// A bad rotation: the address is removed.
	if _, err := IssueNodeHosts(dir, "n1", HostChange{Remove: []string{"127.0.0.3"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := served(); got != first {
			t.Fatal("a certificate without the advertised address was taken on reload")
		}
	}
	mu.Lock()
	if len(reports) != 1 || !errors.Is(reports[0], ErrNotCovered) || !strings.Contains(reports[0].Error(), "127.0.0.3") {
		t.Errorf("reports %v, want one ErrNotCovered naming 127.0.0.3", reports)
	}
	mu.Unlock()
	// The same refusal at build time, when starting on such a certificate.
	if _, err := ServerNodeConfigs(files.CA, files.Cert, files.Key, MustCover("127.0.0.3")); !errors.Is(err, ErrNotCovered) {
		t.Errorf("build on a certificate without the address: %v, want ErrNotCovered", err)
	}

	// A good rotation is taken by the API, raft and client sides alike.
	if _, err := IssueNodeHosts(dir, "n1", HostChange{Add: []string{"127.0.0.3"}}); err != nil {
		t.Fatal(err)
	}
	next := served()
	if next == first || !slices.ContainsFunc(next.Leaf.IPAddresses, net.ParseIP("127.0.0.3").Equal) {
		t.Fatal("the good rotation was not taken")
	}
	peer, err := cfgs.Peer.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || peer != next {
		t.Errorf("raft side serves another pair (%v)", err)
	}
	mu.Lock()
	if len(reports) != 2 || reports[1] != nil {
		t.Errorf("reports %v, want the refusal then one nil (reloaded)", reports)
	}
	mu.Unlock()
}
