package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
)

// secretForms are the spellings of a value the proof searches for: as
// is, base64 (JSON's []byte) and hex.
func secretForms(value string) []string {
	return []string{value, base64.StdEncoding.EncodeToString([]byte(value)), hex.EncodeToString([]byte(value))}
}

// mustNotHold fails when data holds value in any of its forms.
func mustNotHold(t *testing.T, where string, data []byte, values ...string) {
	t.Helper()
	for _, v := range values {
		for _, form := range secretForms(v) {
			if bytes.Contains(data, []byte(form)) {
				t.Fatalf("%s holds a secret value (as %q)", where, form)
			}
		}
	}
}

// mustNotHoldFiles searches every file under dir.
func mustNotHoldFiles(t *testing.T, dir string, values ...string) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		mustNotHold(t, path, data, values...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func randomValue(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// TestSecretDeliveredInMemoryOnly is issue 13's proof on the real engine:
// the value is readable in the container at its target with the mode and
// owner asked for, and nowhere else (the server's data directory: raft
// log, snapshots, stable store, key file; docker inspect; the server log
// at debug level; the API's answers). A used secret cannot be removed. A
// new version that the app rejects rolls back to the previous version by
// itself (exit 3), and the containers keep the old value.
func TestSecretDeliveredInMemoryOnly(t *testing.T) {
	needEngine(t)
	secretsDir := t.TempDir()
	s := mustStartServerArgs(t, append(e2eServerArgs(), "--secrets-dir", secretsDir)...)
	hostDir := filepath.Join(secretsDir, s.hostID)
	t.Cleanup(func() { unmountAll(hostDir) })
	ctx := context.Background()
	good, token, bad := randomValue(t, "good-"), randomValue(t, "token-"), randomValue(t, "bad-")

	// Right after the start: the server registers its FSM version just
	// after it leads, and the create waits for that instead of answering
	// 409 version_gate "not registered yet".
	if r := mustCLI(t, s, 0, good, "secret", "create", "db-password", "-"); !strings.Contains(r.stdout, "version 1 stored") {
		t.Fatalf("create: %s", r.stdout)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, 0, "", "secret", "create", "api-token", "-f", tokenFile)
	// A value is never taken from the command line; an oversized one is refused.
	if r := mustCLI(t, s, 2, "", "secret", "create", "x"); !strings.Contains(r.stderr, "-f FILE") {
		t.Fatalf("create without a value: %s", r.stderr)
	}
	if r := mustCLI(t, s, 2, strings.Repeat("x", wire.MaxSecretSize+1), "secret", "create", "big", "-"); !strings.Contains(r.stderr, "500 KiB") {
		t.Fatalf("oversized value: %s", r.stderr)
	}

	spec := webSpec(env.refs["v1"], 2, `env: { WEBAPP_REQUIRE_SECRET: "/run/secrets/db-password:good-" }
secrets:
  - db-password
  - { name: api-token, target: /etc/app/token, uid: 2000, gid: 10001, mode: 0440 }
`)
	// A spec naming a secret that does not exist: refused, naming it.
	missing := strings.Replace(spec, "- db-password", "- no-such-secret", 1)
	if r := mustCLI(t, s, 2, missing, "apply", "-"); !strings.Contains(r.stderr, "secrets[0].name") || !strings.Contains(r.stderr, "secret create no-such-secret") {
		t.Fatalf("apply with a missing secret: %s", r.stderr)
	}
	mustCLI(t, s, 0, spec, "apply", "-")
	ids := runningOf(t, s, "web")
	if len(ids) != 2 {
		t.Fatalf("running %v, want 2 replicas", ids)
	}
	for _, id := range ids {
		code, out := execIn(t, id, "-cat", "/run/secrets/db-password")
		if code != 0 || out != "mode 0400 uid 10001 gid 10001\n"+good {
			t.Fatalf("db-password in %s: exit %d %q", short(id), code, out)
		}
		code, out = execIn(t, id, "-cat", "/etc/app/token")
		if code != 0 || out != "mode 0440 uid 2000 gid 10001\n"+token {
			t.Fatalf("api-token in %s: exit %d %q", short(id), code, out)
		}
		inspect, err := env.docker.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(inspect)
		mustNotHold(t, "docker inspect "+short(id), raw, good, token)
		for _, m := range inspect.Mounts {
			if strings.HasPrefix(m.Source, secretsDir) && m.RW {
				t.Fatalf("secret mount %s is writable", m.Destination)
			}
		}
	}
	// On the host the values live in a tmpfs per replica.
	var fsStat syscall.Statfs_t
	entries, err := os.ReadDir(hostDir)
	if err != nil || len(entries) != 2 {
		t.Fatalf("secrets dirs of %s: %v %v", hostDir, entries, err)
	}
	for _, e := range entries {
		if err := syscall.Statfs(filepath.Join(hostDir, e.Name()), &fsStat); err != nil || fsStat.Type != 0x01021994 {
			t.Fatalf("%s is not a tmpfs (%x, %v)", e.Name(), fsStat.Type, err)
		}
	}

	// Used: neither the secret nor its version may go.
	if r := mustCLI(t, s, 1, "", "secret", "rm", "db-password"); !strings.Contains(r.stderr, "web revision 1 (version 1, current)") {
		t.Fatalf("rm of a used secret: %s", r.stderr)
	}
	if r := mustCLI(t, s, 1, "", "secret", "rm", "api-token", "--version", "1"); !strings.Contains(r.stderr, "web revision 1") {
		t.Fatalf("rm of a used version: %s", r.stderr)
	}
	r := mustCLI(t, s, 0, "", "secret", "inspect", "db-password")
	if !strings.Contains(r.stdout, "web") || !strings.Contains(r.stdout, "current") {
		t.Fatalf("inspect:\n%s", r.stdout)
	}

	// A new version the app rejects: outdated names it, refresh rolls it
	// out, its replicas fail their checks, and the service rolls back to
	// version 1 by itself.
	mustCLI(t, s, 0, bad, "secret", "create", "db-password", "-")
	if r := mustCLI(t, s, 0, "", "outdated"); !strings.Contains(r.stdout, "secret db-password version 1 pinned, 2 is the latest") {
		t.Fatalf("outdated:\n%s", r.stdout)
	}
	mustCLI(t, s, 3, "", "apply", "--refresh", "web")
	st := mustStatus(t, s, "web")
	if st.Revision != 3 || st.Replicas.Healthy != 2 {
		t.Fatalf("after the rollback: %+v", st)
	}
	for _, id := range runningOf(t, s, "web") {
		if code, out := execIn(t, id, "-cat", "/run/secrets/db-password"); code != 0 || !strings.HasSuffix(out, "\n"+good) {
			t.Fatalf("after the rollback %s holds %q (exit %d), want version 1", short(id), out, code)
		}
	}
	h := mustHistory(t, s, "web")
	if len(h) != 3 || h[1].State != "rolled_back" {
		t.Fatalf("history %+v", h)
	}
	for _, args := range [][]string{{"status", "web"}, {"history", "web"}} {
		r := mustCLI(t, s, 0, "", append(args, "-o", "json")...)
		mustNotHold(t, "deployctl "+strings.Join(args, " "), []byte(r.stdout), good, token, bad)
	}
	// The rejected version is held by nothing once its replicas stopped.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := s.cli(t, "", "secret", "rm", "db-password", "--version", "2")
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rm of the rejected version: %d %s", r.code, r.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Removing the service unmounts its replicas' tmpfs.
	mustCLI(t, s, 0, "", "rm", "web")
	deadline = time.Now().Add(15 * time.Second)
	for {
		entries, _ := os.ReadDir(hostDir)
		if len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("secrets tmpfs left after rm: %v", entries)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Nowhere else: every answer of the API the operator gets, the data
	// directory (raft log and stable store, snapshots if one was taken, the
	// key file; raftstore's TestSecretVersionsAndRemoval searches a
	// snapshot), and the server's debug log.
	for _, args := range [][]string{{"services"}, {"secret", "ls"},
		{"secret", "inspect", "db-password"}, {"secret", "inspect", "api-token"}, {"outdated"}, {"audit"}, {"cluster", "status"}} {
		r := mustCLI(t, s, 0, "", append(args, "-o", "json")...)
		mustNotHold(t, "deployctl "+strings.Join(args, " "), []byte(r.stdout+r.stderr), good, token, bad)
	}
	s.stop()
	if n := mustNotHoldFiles(t, s.dataDir, good, token, bad); n < 2 {
		t.Fatalf("only %d files in the data dir", n)
	}
	mustNotHold(t, "the server log", []byte(s.log.String()), good, token, bad)
	if !strings.Contains(s.log.String(), "secret version stored") {
		t.Fatal("the debug log does not show the secret writes: is it the server's log?")
	}
}

// unmountAll detaches every tmpfs the agent left under dir (its server is
// stopped before its containers are removed), so the temp dir can go.
func unmountAll(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = syscall.Unmount(filepath.Join(dir, e.Name()), syscall.MNT_DETACH)
	}
}

// TestSecretClusterDeliversOnEveryHost: three servers with mutual TLS and
// one key-encryption key file (the operator's copy): a secret reaches the
// replicas on all three hosts, each through its own host's agent, and is
// in no server's data directory, log, or the containers' inspect.
func TestSecretClusterDeliversOnEveryHost(t *testing.T) {
	needEngine(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "kek", "secrets.key")
	// The operator makes the key once and copies it to every server.
	if _, _, err := secretbox.LoadOrCreateKeyFile(keyFile, rand.Reader); err != nil {
		t.Fatal(err)
	}
	secretsDir := filepath.Join(dir, "secrets")
	c := mustStartCluster(t, 3, "--secrets-key-file", keyFile, "--secrets-dir", secretsDir)
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			unmountAll(filepath.Join(secretsDir, nd.hostID))
		}
	})
	c.mustReadyHosts(t, 3)
	value := randomValue(t, "cluster-")
	if r := c.cli(t, c.nodes, value, "secret", "create", "api-token", "-"); r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.stderr)
	}
	spec := webSpec(env.refs["v1"], 3, "placement: { max_per_host: 1 }\nsecrets: [api-token]\n")
	if r := c.cli(t, c.nodes, spec, "apply", "-"); r.code != 0 {
		t.Fatalf("apply: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st, err := c.client().Status(context.Background(), "web", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	for _, in := range st.Instances {
		if !in.Current || in.ContainerID == "" {
			continue
		}
		hosts[in.Host] = true
		code, out := execIn(t, in.ContainerID, "-cat", "/run/secrets/api-token")
		if code != 0 || out != "mode 0400 uid 10001 gid 10001\n"+value {
			t.Fatalf("on %s: exit %d %q", in.Host, code, out)
		}
		inspect, err := env.docker.ContainerInspect(context.Background(), in.ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(inspect)
		mustNotHold(t, "docker inspect on "+in.Host, raw, value)
	}
	if len(hosts) != 3 {
		t.Fatalf("replicas on %v, want 3 hosts", hosts)
	}
	for _, nd := range c.nodes {
		mustNotHoldFiles(t, nd.dataDir, value)
		mustNotHold(t, "the log of "+nd.id, []byte(nd.log.String()), value)
	}
}
