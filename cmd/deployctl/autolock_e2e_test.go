package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
)

// mustKeyFile makes a key file with `deployctl secret key generate` and
// returns its path and key id.
func mustKeyFile(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	out, err := exec.Command(env.bin, "secret", "key", "generate", "--out", path).CombinedOutput()
	if err != nil {
		t.Fatalf("secret key generate: %v\n%s", err, out)
	}
	key, err := secretbox.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), key.ID()) {
		t.Fatalf("generate does not print the key id %s: %s", key.ID(), out)
	}
	return path, key.ID()
}

// secretsNotes is what cluster status says of each server's key.
func (c *testCluster) secretsNotes(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.client().Cluster(ctx)
	if err != nil {
		return nil
	}
	notes := map[string]string{}
	for _, n := range st.Nodes {
		notes[n.ID] = n.Secrets
	}
	return notes
}

func (c *testCluster) waitNote(t *testing.T, nd *clusterNode, prefix string) {
	t.Helper()
	waitFor(t, 30*time.Second, nd.id+" secrets: "+prefix, func() bool {
		return strings.HasPrefix(c.secretsNotes(t)[nd.id], prefix)
	})
}

// TestSecretAutolockUnlockRotateAgentOnly is issue 13's key management on
// real processes: three --autolock servers (no key on disk) and an
// agent-only host (`deployctl agent` with its agent certificate).
//   - Servers start sealed and say so (cluster status, log); a create is
//     refused with 503 sealed naming `cluster unlock`; the first unlock
//     chooses the key, another key is refused (403) and the server stays
//     sealed.
//   - The agent-only host receives the secret for its replica over TLS.
//   - A restarted server is sealed again; meanwhile the others serve (a
//     new version reaches the replica, status works), it refuses the
//     replica's secrets itself, a wrong key is refused; once unlocked it
//     delivers.
//   - Rotation re-wraps every version under a new key and gives it to
//     every server; values are still delivered; the old key unlocks
//     nothing; a server started with the old key file reports the
//     mismatch until given the new key, which rewrites its file.
func TestSecretAutolockUnlockRotateAgentOnly(t *testing.T) {
	needEngine(t)
	keys := t.TempDir()
	key1, id1 := mustKeyFile(t, keys, "k1")
	key2, _ := mustKeyFile(t, keys, "k2")
	key3, id3 := mustKeyFile(t, keys, "k3")
	secretsDir := filepath.Join(t.TempDir(), "secrets")
	c := mustStartCluster(t, 3, "--no-agent", "--autolock")
	for _, nd := range c.nodes {
		c.waitNote(t, nd, "sealed")
		if !strings.Contains(nd.log.String(), "sealed (--autolock)") {
			t.Fatalf("%s does not log that it is sealed", nd.id)
		}
	}
	if r := c.cli(t, c.nodes, "sealed?", "secret", "create", "api-token", "-"); r.code == 0 || !strings.Contains(r.stderr, "deployctl cluster unlock") {
		t.Fatalf("create on sealed servers: %d %s", r.code, r.stderr)
	}

	// First unlock chooses the key; another key is then refused.
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	unlock := func(nd *clusterNode, keyFile string) cliResult {
		return c.cli(t, c.nodes, "", "cluster", "unlock", "--server", nd.httpAddr, "--key-file", keyFile)
	}
	if r := unlock(n1, key1); r.code != 0 || !strings.Contains(r.stdout, "unsealed with key "+id1) {
		t.Fatalf("unlock n1: %d %s %s", r.code, r.stdout, r.stderr)
	}
	c.waitNote(t, n1, "key "+id1)
	if r := unlock(n2, key2); r.code == 0 || !strings.Contains(r.stderr, id1) {
		t.Fatalf("unlock n2 with another key: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(c.secretsNotes(t)[n2.id], "sealed") {
		t.Fatal("n2 is not sealed after a wrong key")
	}
	// The key from stdin, never from a flag's value.
	raw1, _ := os.ReadFile(key1)
	for _, nd := range []*clusterNode{n2, n3} {
		r := c.cli(t, c.nodes, string(raw1), "cluster", "unlock", "--server", nd.httpAddr)
		if r.code != 0 {
			t.Fatalf("unlock %s: %d %s", nd.id, r.code, r.stderr)
		}
		c.waitNote(t, nd, "key "+id1)
	}
	v1 := randomValue(t, "autolock-")
	if r := c.cli(t, c.nodes, v1, "secret", "create", "api-token", "-"); r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.stderr)
	}

	// An agent-only host gets the value for its replica over TLS.
	hostID := env.runID + "-autolock-agent"
	if out, err := exec.Command(env.bin, "tls", "add-node", hostID, "--role", "agent", "--dir", c.tlsDir).CombinedOutput(); err != nil {
		t.Fatalf("tls add-node: %v\n%s", err, out)
	}
	agentCert, agentKey := filepath.Join(c.tlsDir, hostID+".pem"), filepath.Join(c.tlsDir, hostID+"-key.pem")
	t.Cleanup(func() { unmountAll(filepath.Join(secretsDir, hostID)) })
	c.startAgentOnlyHost(t, hostID, []string{"--tls-ca", filepath.Join(c.tlsDir, "ca.pem"), "--tls-cert", agentCert, "--tls-key", agentKey},
		"--label", "zone=b", "--secrets-dir", secretsDir)
	if r := c.cli(t, c.nodes, webSpec(env.refs["v1"], 1, "secrets: [api-token]\n"), "apply", "-"); r.code != 0 {
		t.Fatalf("apply: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	replicaReads := func(want string) string {
		t.Helper()
		st, err := c.client().Status(context.Background(), "web", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range st.Instances {
			if in.Current && in.ContainerID != "" && in.Host == hostID {
				code, out := execIn(t, in.ContainerID, "-cat", "/run/secrets/api-token")
				if code != 0 || out != "mode 0400 uid 10001 gid 10001\n"+want {
					t.Fatalf("the replica on %s reads %q (exit %d), want %q", hostID, out, code, want)
				}
				return in.ID
			}
		}
		t.Fatalf("no replica of web on %s: %+v", hostID, st.Instances)
		return ""
	}
	replica := replicaReads(v1)

	// The agent's own certificate, for direct requests to one server.
	agentTLS, err := pki.ClientConfig(filepath.Join(c.tlsDir, "ca.pem"), agentCert, agentKey)
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(nd *clusterNode) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := wire.NewTLSClient([]string{nd.httpAddr}, agentTLS).AgentSecrets(ctx, hostID, replica)
		if err != nil {
			return "", err
		}
		if len(got.Secrets) != 1 {
			t.Fatalf("secrets of %s: %+v", replica, got)
		}
		return string(got.Secrets[0].Value), nil
	}

	// A restarted follower is sealed again; the others keep serving.
	leader := c.mustLeader(10 * time.Second)
	f := n3
	if f == leader {
		f = n2
	}
	c.kill(f, syscall.SIGTERM)
	c.start(f)
	c.waitNote(t, f, "sealed")
	if !strings.Contains(f.log.String(), "sealed (--autolock)") {
		t.Fatalf("the restarted %s does not log that it is sealed", f.id)
	}
	if _, err := fetch(f); !errors.Is(err, wire.ErrSealed) || !strings.Contains(err.Error(), "deployctl cluster unlock") {
		t.Fatalf("a sealed server delivering: %v", err)
	}
	if r := c.cli(t, []*clusterNode{f}, "x", "secret", "create", "api-token", "-"); r.code == 0 || !strings.Contains(r.stderr, "sealed") {
		t.Fatalf("create through the sealed server: %d %s", r.code, r.stderr)
	}
	if got, err := fetch(leader); err != nil || got != v1 {
		t.Fatalf("the leader while %s is sealed: %q %v", f.id, got, err)
	}
	v2 := randomValue(t, "second-")
	if r := c.cli(t, c.nodes, v2, "secret", "create", "api-token", "-"); r.code != 0 {
		t.Fatalf("create v2: %d %s", r.code, r.stderr)
	}
	if r := c.cli(t, c.nodes, "", "apply", "--refresh", "web"); r.code != 0 {
		t.Fatalf("refresh while %s is sealed: %d\n%s\n%s", f.id, r.code, r.stdout, r.stderr)
	}
	replica = replicaReads(v2)
	if r := unlock(f, key2); r.code == 0 || !strings.Contains(r.stderr, id1) {
		t.Fatalf("wrong key on the restarted server: %d %s", r.code, r.stderr)
	}
	if _, err := fetch(f); !errors.Is(err, wire.ErrSealed) {
		t.Fatalf("after a wrong key %s delivers: %v", f.id, err)
	}
	if r := unlock(f, key1); r.code != 0 {
		t.Fatalf("unlock %s: %d %s", f.id, r.code, r.stderr)
	}
	if got, err := fetch(f); err != nil || got != v2 {
		t.Fatalf("%s after unlock: %q %v", f.id, got, err)
	}

	// Rotation: every version re-wrapped, the key given to every server.
	r := c.cli(t, c.nodes, "", "secret", "rotate-key", "--new-key-file", key3)
	if r.code != 0 || !strings.Contains(r.stdout, "rotated: 2 secret versions wrapped with key "+id3) ||
		strings.Count(r.stdout, "unsealed with key "+id3) != 2 {
		t.Fatalf("rotate-key: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var info wire.SecretInfo
	r = c.cli(t, c.nodes, "", "secret", "inspect", "api-token", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || len(info.Versions) != 2 {
		t.Fatalf("inspect: %v %s", err, r.stdout)
	}
	for _, v := range info.Versions {
		if v.KeyID != id3 {
			t.Fatalf("version %d wrapped with %s after the rotation", v.Version, v.KeyID)
		}
	}
	for _, nd := range c.nodes {
		c.waitNote(t, nd, "key "+id3)
		waitFor(t, 10*time.Second, nd.id+" to compact its log after the rotation", func() bool {
			return strings.Contains(nd.log.String(), "raft log compacted after the key rotation")
		})
		if got, err := fetch(nd); err != nil || got != v2 {
			t.Fatalf("through %s after rotation: %q %v", nd.id, got, err)
		}
		if r := unlock(nd, key1); r.code == 0 || !strings.Contains(r.stderr, id3) {
			t.Fatalf("the old key on %s after rotation: %d %s", nd.id, r.code, r.stderr)
		}
	}
	v3 := randomValue(t, "third-")
	if r := c.cli(t, c.nodes, v3, "secret", "create", "api-token", "-"); r.code != 0 {
		t.Fatalf("create after rotation: %d %s", r.code, r.stderr)
	}
	if r := c.cli(t, c.nodes, "", "apply", "--refresh", "web"); r.code != 0 {
		t.Fatalf("refresh after rotation: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	replicaReads(v3)

	// A server started with the old key in a file says so, and takes the
	// new key (into its file) with unlock.
	leader = c.mustLeader(10 * time.Second)
	f = n3
	if f == leader {
		f = n2
	}
	oldFile := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(oldFile, raw1, 0o600); err != nil {
		t.Fatal(err)
	}
	c.kill(f, syscall.SIGTERM)
	c.extra = slices.DeleteFunc(slices.Clone(c.extra), func(s string) bool { return s == "--autolock" })
	f.flags = []string{"--secrets-key-file", oldFile}
	c.start(f)
	c.waitNote(t, f, "key "+id1+", not the cluster's "+id3)
	waitFor(t, 10*time.Second, f.id+" to log the mismatch", func() bool {
		return strings.Contains(f.log.String(), "is not the cluster's "+id3)
	})
	if r := unlock(f, key3); r.code != 0 || !strings.Contains(r.stdout, "written to "+oldFile) {
		t.Fatalf("giving %s the new key: %d %s %s", f.id, r.code, r.stdout, r.stderr)
	}
	c.waitNote(t, f, "key "+id3)
	if k, err := secretbox.LoadKeyFile(oldFile); err != nil || k.ID() != id3 {
		t.Fatalf("%s's key file after unlock: %v", f.id, err)
	}
	for _, nd := range c.nodes {
		c.kill(nd, syscall.SIGTERM)
		mustNotHoldFiles(t, nd.dataDir, v1, v2, v3)
		mustNotHold(t, "the log of "+nd.id, []byte(nd.log.String()), v1, v2, v3)
		mustNotUseKey(t, nd.dataDir, id1)
	}
}

// mustNotUseKey fails when a live record of a server's data directory (a
// raft log entry in bolt, a snapshot) holds a value wrapped with key id:
// a sealed value names its key as "key_id":"ID". Pages bolt freed are
// not records (docs/secrets.md says what they may still hold).
func mustNotUseKey(t *testing.T, dataDir, id string) {
	t.Helper()
	needle := []byte(`"key_id":"` + id + `"`)
	db, err := bbolt.Open(filepath.Join(dataDir, "raft", "raft.db"), 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	entries := 0
	err = db.View(func(tx *bbolt.Tx) error {
		logs := tx.Bucket([]byte("logs"))
		if logs == nil {
			return nil
		}
		return logs.ForEach(func(k, v []byte) error {
			entries++
			if bytes.Contains(v, needle) {
				return fmt.Errorf("raft log entry %x holds a value wrapped with key %s", k, id)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("%s: %v", dataDir, err)
	}
	snaps := 0
	_ = filepath.WalkDir(filepath.Join(dataDir, "raft", "snapshots"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		snaps++
		if bytes.Contains(data, needle) {
			t.Fatalf("snapshot file %s holds a value wrapped with key %s", path, id)
		}
		return nil
	})
	if snaps == 0 {
		t.Fatalf("%s holds no snapshot after the rotation (%d log entries)", dataDir, entries)
	}
}
