package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInitWritesFilesWithModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki") // missing: Init creates it
	result := mustInit(t, dir, []string{"n1", "n2", "n3"}, nil)

	want := map[string]fs.FileMode{
		"ca.pem": 0o644, "ca-key.pem": 0o600,
		"n1.pem": 0o644, "n1-key.pem": 0o600,
		"n2.pem": 0o644, "n2-key.pem": 0o600,
		"n3.pem": 0o644, "n3-key.pem": 0o600,
		"client.pem": 0o644, "client-key.pem": 0o600,
		NodeHostsFile: 0o644,
	}
	if result.Dir != dir {
		t.Errorf("Result.Dir = %q, want %q", result.Dir, dir)
	}
	var reported []string
	for _, path := range result.Files {
		reported = append(reported, filepath.Base(path))
		if filepath.Dir(path) != dir {
			t.Errorf("Result lists %s, outside %s", path, dir)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, entry := range entries {
		onDisk = append(onDisk, entry.Name())
	}
	var wantNames []string
	for name := range want {
		wantNames = append(wantNames, name)
	}
	slices.Sort(reported)
	slices.Sort(onDisk)
	slices.Sort(wantNames)
	if !slices.Equal(reported, wantNames) {
		t.Errorf("Result.Files = %v, want %v", reported, wantNames)
	}
	if !slices.Equal(onDisk, wantNames) { // no temporary files left behind either
		t.Errorf("directory holds %v, want %v", onDisk, wantNames)
	}
	for name, mode := range want {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, info.Mode().Perm(), mode)
		}
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", info.Mode().Perm())
	}
}

func TestInitCertificateContents(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1", "n2"}, []string{"10.0.0.7", "fd00::7", "Nodes.Example.com", "n1"})
	ca := mustParseCert(t, filepath.Join(dir, CACertFile))
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA=%v valid=%v MaxPathLen=%d zero=%v, want a CA limited to signing leaves",
			ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA key usage %v lacks certificate signing", ca.KeyUsage)
	}

	tests := []struct {
		file     string
		cn       string
		usages   []x509.ExtKeyUsage
		dnsNames []string
		ips      []string
	}{
		{
			file:     "n1.pem",
			cn:       "n1",
			usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			dnsNames: []string{"n1", "localhost", "nodes.example.com"}, // "n1" given twice appears once
			ips:      []string{"127.0.0.1", "::1", "10.0.0.7", "fd00::7"},
		},
		{
			file:     "n2.pem",
			cn:       "n2",
			usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			dnsNames: []string{"n2", "localhost", "nodes.example.com", "n1"},
			ips:      []string{"127.0.0.1", "::1", "10.0.0.7", "fd00::7"},
		},
		{
			file:   "client.pem",
			cn:     ClientCommonName,
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cert := mustParseCert(t, filepath.Join(dir, tt.file))
			if cert.Subject.CommonName != tt.cn {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tt.cn)
			}
			if !slices.Equal(cert.ExtKeyUsage, tt.usages) {
				t.Errorf("ExtKeyUsage = %v, want %v", cert.ExtKeyUsage, tt.usages)
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v, want digital signature only", cert.KeyUsage)
			}
			if !slices.Equal(cert.DNSNames, tt.dnsNames) {
				t.Errorf("DNS SANs = %v, want %v", cert.DNSNames, tt.dnsNames)
			}
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.ips) {
				t.Errorf("IP SANs = %v, want %v", ips, tt.ips)
			}
			pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != elliptic.P256() {
				t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
			}
			if cert.SignatureAlgorithm != x509.ECDSAWithSHA256 {
				t.Errorf("signature algorithm %v, want ECDSA-SHA256", cert.SignatureAlgorithm)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: tt.usages}); err != nil {
				t.Errorf("does not verify against ca.pem: %v", err)
			}
		})
	}
	for _, key := range []string{"ca-key.pem", "n1-key.pem", "client-key.pem"} {
		signer, err := decodeKey(mustReadFile(t, filepath.Join(dir, key)))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if ecKey, ok := signer.(*ecdsa.PrivateKey); !ok || ecKey.Curve != elliptic.P256() {
			t.Errorf("%s holds %T, want an ECDSA P-256 key", key, signer)
		}
	}
}

func TestInitValidityFollowsNow(t *testing.T) {
	now := time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)
	dir := t.TempDir()
	if _, err := Init(InitOptions{Dir: dir, Nodes: []string{"n1"}, Now: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file     string
		validity time.Duration
	}{
		{CACertFile, CAValidity},
		{"n1.pem", LeafValidity},
		{ClientCertFile, LeafValidity},
	}
	for _, tt := range tests {
		cert := mustParseCert(t, filepath.Join(dir, tt.file))
		if !cert.NotBefore.Equal(now.Add(-Backdate)) || !cert.NotAfter.Equal(now.Add(tt.validity)) {
			t.Errorf("%s valid %v to %v, want %v to %v", tt.file, cert.NotBefore, cert.NotAfter, now.Add(-Backdate), now.Add(tt.validity))
		}
	}
}

func TestSerialsAreRandom128Bit(t *testing.T) {
	seen := map[string]string{}
	for _, dir := range []string{t.TempDir(), t.TempDir()} {
		mustInit(t, dir, []string{"n1", "n2", "n3"}, nil)
		for _, file := range []string{"ca.pem", "n1.pem", "n2.pem", "n3.pem", "client.pem"} {
			path := filepath.Join(dir, file)
			serial := mustParseCert(t, path).SerialNumber
			// A uniform 128-bit draw has fewer than 65 bits with
			// probability 2^-64: short serials mean a counter or a
			// truncated draw.
			if serial.Sign() <= 0 || serial.BitLen() <= 64 || serial.BitLen() > 128 {
				t.Errorf("%s: serial %x (%d bits), want a positive random 128-bit number", path, serial, serial.BitLen())
			}
			if other, dup := seen[serial.String()]; dup {
				t.Errorf("%s and %s share serial %x", path, other, serial)
			}
			seen[serial.String()] = path
		}
	}
}

func TestInitRefusesExistingCA(t *testing.T) {
	tests := []struct {
		name    string
		remove  string // file deleted before the second Init ("" = none)
		blaming string // file the error must name
	}{
		{"both CA files", "", CACertFile},
		{"only the CA key", CACertFile, CAKeyFile},
		{"only the CA certificate", CAKeyFile, CACertFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			mustInit(t, dir, []string{"n1"}, nil)
			if tt.remove != "" {
				if err := os.Remove(filepath.Join(dir, tt.remove)); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshotDir(t, dir)

			_, err := Init(InitOptions{Dir: dir, Nodes: []string{"n1", "n2"}})
			if !errors.Is(err, ErrCAExists) {
				t.Fatalf("second Init: %v, want ErrCAExists", err)
			}
			if msg := err.Error(); !strings.Contains(msg, filepath.Join(dir, tt.blaming)) || !strings.Contains(msg, "--dir") || !strings.Contains(msg, "delete") {
				t.Errorf("error %q should name %s and say to use another --dir or delete it", msg, tt.blaming)
			}
			if after := snapshotDir(t, dir); !maps.Equal(before, after) {
				t.Error("the refused Init changed the directory")
			}
		})
	}
}

func TestInitRefusesBadNames(t *testing.T) {
	tests := []struct {
		name  string
		nodes []string
		hosts []string
	}{
		{"empty node", []string{""}, nil},
		{"upper case", []string{"Node1"}, nil},
		{"underscore", []string{"n_1"}, nil},
		{"space", []string{"n 1"}, nil},
		{"path", []string{"../n1"}, nil},
		{"slash", []string{"a/b"}, nil},
		{"leading dash", []string{"-n1"}, nil},
		{"trailing dot", []string{"n1."}, nil},
		{"double dot", []string{"n1..x"}, nil},
		{"label too long", []string{strings.Repeat("a", 64)}, nil},
		{"IP as node name", []string{"10.0.0.1"}, nil},
		{"collides with ca.pem", []string{"ca"}, nil},
		{"collides with client.pem", []string{"client"}, nil},
		{"collides with a key file", []string{"n1", "n1-key"}, nil},
		{"duplicate", []string{"n1", "n2", "n1"}, nil},
		{"bad host", []string{"n1"}, []string{"not a host"}},
		{"empty host", []string{"n1"}, []string{""}},
		{"host with underscore", []string{"n1"}, []string{"a_b.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			_, err := Init(InitOptions{Dir: dir, Nodes: tt.nodes, Hosts: tt.hosts})
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("Init(%q, hosts %q): %v, want ErrBadName", tt.nodes, tt.hosts, err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Init wrote %s before refusing (stat: %v)", dir, err)
			}
		})
	}
}

func TestValidateNodeNameAccepts(t *testing.T) {
	for _, name := range []string{"n1", "a", "node-1.dc1", "0", strings.Repeat("a", 63), "web.example.com"} {
		if err := ValidateNodeName(name); err != nil {
			t.Errorf("ValidateNodeName(%q): %v", name, err)
		}
	}
}

func TestIssueNodeAddsToExistingCA(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1"}, []string{"10.0.0.1"})
	caBefore := mustReadFile(t, filepath.Join(dir, CACertFile))

	result, err := IssueNode(dir, "n4", []string{"10.0.0.4", "n4.example"})
	if err != nil {
		t.Fatal(err)
	}
	files := NodeFiles(dir, "n4")
	if want := []string{files.Key, files.Cert, filepath.Join(dir, NodeHostsFile)}; !slices.Equal(result.Files, want) {
		t.Errorf("Result.Files = %v, want %v", result.Files, want)
	}
	if !bytes.Equal(caBefore, mustReadFile(t, filepath.Join(dir, CACertFile))) {
		t.Error("IssueNode changed ca.pem")
	}
	for path, mode := range map[string]fs.FileMode{files.Cert: 0o644, files.Key: 0o600} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, info.Mode().Perm(), mode)
		}
	}
	cert := mustParseCert(t, files.Cert)
	if !slices.Equal(cert.DNSNames, []string{"n4", "localhost", "n4.example"}) {
		t.Errorf("DNS SANs %v", cert.DNSNames)
	}
	if !slices.ContainsFunc(cert.IPAddresses, net.ParseIP("10.0.0.4").Equal) {
		t.Errorf("IP SANs %v lack 10.0.0.4", cert.IPAddresses)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got != LeafValidity+Backdate {
		t.Errorf("validity %v, want %v", got, LeafValidity+Backdate)
	}

	// The new node is a full member: it and n1 accept each other.
	addr, results := startTLSServer(t, mustPeerConfig(t, NodeFiles(dir, "n1")))
	if _, err := dialTLS(t, addr, mustPeerConfig(t, files)); err != nil {
		t.Fatalf("n4 dialing n1: %v", err)
	}
	if got := receive(t, results); got.err != nil || got.peerCN() != "n4" {
		t.Errorf("n1 saw %q, err %v; want n4 accepted", got.peerCN(), got.err)
	}
}

func TestIssueNodeErrors(t *testing.T) {
	withCA := t.TempDir()
	mustInit(t, withCA, []string{"n1"}, nil)
	otherCA := t.TempDir()
	mustInit(t, otherCA, nil, nil)
	mismatched := t.TempDir()
	for _, source := range []struct{ from, name string }{{withCA, CACertFile}, {otherCA, CAKeyFile}} {
		if err := os.WriteFile(filepath.Join(mismatched, source.name), mustReadFile(t, filepath.Join(source.from, source.name)), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		dir   string
		node  string
		hosts []string
		want  error
	}{
		{"no CA", t.TempDir(), "n2", nil, ErrNoCA},
		{"CA key from another CA", mismatched, "n2", nil, ErrBadFiles},
		{"bad node name", withCA, "N2", nil, ErrBadName},
		{"bad host", withCA, "n2", []string{"bad host"}, ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := IssueNode(tt.dir, tt.node, tt.hosts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("IssueNode: %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(NodeFiles(tt.dir, tt.node).Cert); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a certificate was written despite the error (stat: %v)", err)
			}
		})
	}
}

func TestIssueClientReplacesClientCert(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, []string{"n1"}, nil)
	before := mustParseCert(t, filepath.Join(dir, ClientCertFile))
	if _, err := IssueClient(dir); err != nil {
		t.Fatal(err)
	}
	after := mustParseCert(t, filepath.Join(dir, ClientCertFile))
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Error("IssueClient left the old certificate in place")
	}
	if after.Subject.CommonName != ClientCommonName || !slices.Equal(after.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("new client certificate: CN %q usages %v", after.Subject.CommonName, after.ExtKeyUsage)
	}
	// The new pair is consistent and accepted.
	mustClientConfig(t, ClientFiles(dir))
}

// snapshotDir maps each file name in dir to its content.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := map[string]string{}
	for _, entry := range entries {
		snapshot[entry.Name()] = string(mustReadFile(t, filepath.Join(dir, entry.Name())))
	}
	return snapshot
}
