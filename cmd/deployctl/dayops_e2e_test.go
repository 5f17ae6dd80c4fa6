package main

// Issue 17, points 2 to 4, on real server processes with mutual TLS and
// real raft on loopback TCP: certificate rotation that keeps a node
// reachable, configuration refusals, diagnosis without a leader. The
// servers run with --no-agent: nothing here touches Docker.

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/pki"
)

// servedSerial makes a fresh TLS connection to nd's API as server from
// would (with from's node certificate, verifying nd's certificate against
// the address dialled, as forwarding and joining do) and returns the
// serial of the certificate nd served.
func (c *testCluster) servedSerial(from, nd *clusterNode) (*big.Int, error) {
	files := pki.NodeFiles(c.tlsDir, from.id)
	cfg, err := pki.ClientConfig(files.CA, files.Cert, files.Key)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + nd.httpAddr + "/v1/health")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("health: HTTP %d", resp.StatusCode)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber, nil
}

func (c *testCluster) fileSerial(t *testing.T, nd *clusterNode) *big.Int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.tlsDir, nd.id+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s.pem holds no PEM block", nd.id)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber
}

// Rotation as docs/cluster.md says it (add-node without --hosts) keeps the
// node's address, and the node stays reachable by the other servers; a
// certificate without the address is refused on reload, logged, and the
// node keeps serving the previous one (issue 17 point 2).
func TestClusterDayOpsRotation(t *testing.T) {
	c := mustStartClusterOn(t, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, "--no-agent")
	n1, n3 := c.nodes[0], c.nodes[2]
	first, err := c.servedSerial(n1, n3)
	if err != nil {
		t.Fatalf("n3 not reachable before rotation: %v", err)
	}

	// The good rotation: no --hosts.
	out, err := exec.Command(env.bin, "tls", "add-node", n3.id, "--role", "server", "--dir", c.tlsDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "127.0.0.4") {
		t.Fatalf("add-node without --hosts: %v\n%s (want 127.0.0.4 among its names)", err, out)
	}
	rotated := c.fileSerial(t, n3)
	waitFor(t, 20*time.Second, "n3 serving the rotated certificate to n1", func() bool {
		got, err := c.servedSerial(n1, n3)
		return err == nil && got.Cmp(rotated) == 0
	})
	if rotated.Cmp(first) == 0 || !strings.Contains(n3.log.String(), "certificate reloaded") {
		t.Fatalf("no rotation took place (serial %v, log has reload: %v)", rotated, strings.Contains(n3.log.String(), "certificate reloaded"))
	}

	// A bad one: the node's own address removed.
	out, err = exec.Command(env.bin, "tls", "add-node", n3.id, "--role", "server", "--dir", c.tlsDir, "--remove-host", "127.0.0.4").CombinedOutput()
	if err != nil || strings.Contains(string(out), "127.0.0.4") {
		t.Fatalf("add-node --remove-host: %v\n%s", err, out)
	}
	bad := c.fileSerial(t, n3)
	waitFor(t, 20*time.Second, "n3 to refuse the certificate without its address", func() bool {
		_, _ = c.servedSerial(n1, n3) // handshakes make it look at the files
		log := n3.log.String()
		return strings.Contains(log, "refused the new certificate files") && strings.Contains(log, "not valid for 127.0.0.4")
	})
	for range 3 {
		got, err := c.servedSerial(n1, n3)
		if err != nil {
			t.Fatalf("n3 unreachable after a bad certificate was written: %v", err)
		}
		if got.Cmp(rotated) != 0 || got.Cmp(bad) == 0 {
			t.Fatalf("n3 serves serial %v, want the previous good %v (bad one %v)", got, rotated, bad)
		}
	}
	// The cluster works through n3, and n3 was refused once, not at every
	// handshake.
	var r cliResult
	waitFor(t, 30*time.Second, "cluster status via n3 with three healthy voters", func() bool {
		r = c.cli(t, []*clusterNode{n3}, "", "cluster", "status")
		return r.code == 0 && strings.Count(r.stdout, "true") == 6
	})
	if n := strings.Count(n3.log.String(), "refused the new certificate files"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once", n)
	}
}

// The configuration refusals on the real binary, and a server restarted
// from a shell set up for the CLI (issue 17 point 3).
func TestClusterDayOpsConfig(t *testing.T) {
	c := mustStartCluster(t, 1, "--no-agent")
	nd := c.nodes[0]
	dir := t.TempDir()
	serverOnce := func(env []string, args ...string) cliResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, needBinary(t), append([]string{"server"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var res cliResult
		out, err := cmd.Output()
		res.stdout = string(out)
		if ee, ok := err.(*exec.ExitError); ok {
			res.code, res.stderr = ee.ExitCode(), string(ee.Stderr)
		} else if err != nil {
			t.Fatal(err)
		}
		return res
	}
	tlsFiles := pki.NodeFiles(c.tlsDir, nd.id)
	client := pki.ClientFiles(c.tlsDir)

	// A typo in the file: refused with file, line and the closest key.
	typo := filepath.Join(dir, "typo.yaml")
	writeFile(t, typo, "node-id: "+nd.id+"\ndata-dir: "+filepath.Join(dir, "d1")+"\nbootstrap-expect: 3\n"+
		"tls-ca: "+tlsFiles.CA+"\njoins: [127.0.0.1:1, 127.0.0.1:2]\n")
	r := serverOnce(nil, "--config", typo)
	if r.code != ExitUsage || !strings.Contains(r.stderr, typo+`:5: unknown key "joins"; did you mean join?`) {
		t.Errorf("typo in the file: %d %q", r.code, r.stderr)
	}
	// --bootstrap-expect 3 without --join.
	r = serverOnce(nil, "--node-id", nd.id, "--data-dir", filepath.Join(dir, "d2"), "--bootstrap-expect", "3",
		"--tls-ca", tlsFiles.CA, "--tls-cert", tlsFiles.Cert, "--tls-key", tlsFiles.Key)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--bootstrap-expect 3 needs --join") {
		t.Errorf("--bootstrap-expect 3 alone: %d %q", r.code, r.stderr)
	}
	// A wrong file in the server's own variable: the error names it.
	r = serverOnce([]string{"DEPLOYCTL_SERVER_TLS_CERT=" + client.Cert, "DEPLOYCTL_SERVER_TLS_KEY=" + client.Key},
		"--node-id", nd.id, "--data-dir", filepath.Join(dir, "d3"), "--bootstrap-expect", "1", "--no-agent", "--tls-ca", tlsFiles.CA,
		"--http-addr", freeAddr(t), "--raft-addr", freeAddr(t))
	if r.code == 0 || !strings.Contains(r.stderr, "--tls-cert from variable DEPLOYCTL_SERVER_TLS_CERT") {
		t.Errorf("client.pem in DEPLOYCTL_SERVER_TLS_CERT: %d %q", r.code, r.stderr)
	}

	// The case: the shell exported DEPLOYCTL_TLS_* for the CLI and
	// the server restarts from it on its config file. It ignores them.
	c.kill(nd, syscall.SIGTERM)
	conf := filepath.Join(dir, "server.yaml")
	writeFile(t, conf, strings.Join([]string{
		"node-id: " + nd.id, "data-dir: " + nd.dataDir, "http-addr: " + nd.httpAddr, "raft-addr: " + nd.raftAddr,
		"bootstrap-expect: 1", "no-agent: true",
		"tls-ca: " + tlsFiles.CA, "tls-cert: " + tlsFiles.Cert, "tls-key: " + tlsFiles.Key, ""}, "\n"))
	c.run(nd, []string{"server", "--config", conf}, []string{
		"DEPLOYCTL_TLS_CA=" + client.CA, "DEPLOYCTL_TLS_CERT=" + client.Cert, "DEPLOYCTL_TLS_KEY=" + client.Key})
	if leader := c.mustLeader(30 * time.Second); leader != nd {
		t.Fatalf("leader %s", leader.id)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// With two of three servers down, `cluster status` says there is no
// leader and what the reachable server reports, and exits 1; `apply`
// gives up after the leader wait with that message (issue 17 point 4).
func TestClusterDayOpsNoLeader(t *testing.T) {
	c := mustStartCluster(t, 3, "--no-agent")
	spec := "service: web\nimage: nginx:1.27\n"
	survivor := c.nodes[0]
	// Every server registered (its API address known), then two go.
	waitFor(t, 30*time.Second, "three healthy voters", func() bool {
		r := c.cli(t, c.nodes, "", "cluster", "status")
		return r.code == 0 && strings.Count(r.stdout, "true") == 6
	})
	for _, nd := range c.nodes[1:] {
		c.kill(nd, syscall.SIGKILL)
	}

	var rep noLeaderReport
	var r cliResult
	survivorState := func() string {
		for _, s := range rep.Servers {
			if s.Health != nil {
				return s.Health.State
			}
		}
		return ""
	}
	waitFor(t, 30*time.Second, "cluster status to report no leader", func() bool {
		r = c.cli(t, c.nodes, "", "cluster", "status", "-o", "json")
		rep = noLeaderReport{}
		// A leader that lost its quorum steps down after its lease.
		return r.code == ExitError && strings.Contains(r.stderr, "no leader") && json.Unmarshal([]byte(r.stdout), &rep) == nil &&
			(survivorState() == "follower" || survivorState() == "candidate")
	})
	if strings.Contains(r.stderr, "connection refused") {
		t.Errorf("the error is the refused connection, not the missing leader: %s", r.stderr)
	}
	if rep.Leader != "" || len(rep.Servers) != 3 {
		t.Fatalf("report %+v, want no leader and three servers", rep)
	}
	reached := 0
	for _, s := range rep.Servers {
		if s.Health == nil {
			if s.Error == "" || s.ID == "" {
				t.Errorf("%s: want the member's id and the error, got %+v", s.Addr, s)
			}
			continue
		}
		reached++
		h := s.Health
		if h.ID != survivor.id || h.Leader != "" || h.Term == 0 || h.LastLogIndex == 0 || len(h.Members) != 3 {
			t.Errorf("survivor reports %+v, want no leader, a term, an index and three members", h)
		}
	}
	if reached != 1 {
		t.Errorf("%d servers answered, want the survivor only", reached)
	}

	// The table, given only the survivor's address: it learns the others
	// from the survivor and lists them unreachable.
	r = c.cli(t, []*clusterNode{survivor}, "", "cluster", "status")
	if r.code != ExitError || !strings.Contains(r.stdout, "no leader") || !strings.Contains(r.stdout, survivor.id) ||
		!strings.Contains(r.stdout, c.nodes[1].id) || !strings.Contains(r.stdout, c.nodes[2].id) ||
		strings.Count(r.stdout, "unreachable  -") != 2 || !strings.Contains(r.stderr, "no leader") {
		t.Errorf("table via the survivor: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// apply gives up after the default leader wait, saying why.
	r = c.cli(t, c.nodes, spec, "apply", "-")
	if r.code != ExitError || !strings.Contains(r.stderr, "no leader") || !strings.Contains(r.stderr, "gave up after 10s") {
		t.Errorf("apply without a leader: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = c.cli(t, c.nodes, spec, "apply", "-", "--leader-wait", "1s")
	if r.code != ExitError || !strings.Contains(r.stderr, "gave up after 1s") {
		t.Errorf("apply --leader-wait 1s: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
