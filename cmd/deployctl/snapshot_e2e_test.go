package main

// Issue 17's backup proof on real processes: three TLS servers under a
// load of applies and policy writes, a `snapshot save` taken meanwhile,
// then the whole cluster lost; the backup restored onto a new server
// (new node id, addresses and data dir) that comes up alone with every
// service, revision, policy version and secret, opens the secret for a
// replica, and grows back to three servers that keep the state.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
)

// snapshotLoad writes to the cluster until stopped: new revisions of
// service "load" (replicas 0: stored, never placed) and policy versions,
// each remembered once acknowledged.
type snapshotLoad struct {
	mu sync.Mutex
	// revisions and policies are the acknowledged writes, in order:
	// revision numbers, and policy version -> the value it carries.
	revisions []int
	policies  map[int]string
	// started counts writes sent (acknowledged or not).
	startedApplies, startedPolicies int
	errs                            []error
}

func (l *snapshotLoad) counts() (applies, policies, startedApplies, startedPolicies int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.revisions), len(l.policies), l.startedApplies, l.startedPolicies
}

func (l *snapshotLoad) run(ctx context.Context, c *wire.Client, wg *sync.WaitGroup) {
	// A write is never cut short by the stop (its outcome would be
	// unknown); each is bounded on its own.
	write := func(fn func(context.Context) error) error {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return fn(wctx)
	}
	fail := func(err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.errs = append(l.errs, err)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 1; ctx.Err() == nil; i++ {
			spec := fmt.Sprintf("service: load\nimage: %s\nreplicas: 0\nenv: { WRITE: \"%d\" }\n", env.refs["v1"], i)
			l.mu.Lock()
			l.startedApplies++
			l.mu.Unlock()
			var out wire.ApplyOutcome
			if err := write(func(ctx context.Context) (err error) { out, err = c.Apply(ctx, []byte(spec)); return err }); err != nil {
				fail(fmt.Errorf("apply load %d: %w", i, err))
				return
			}
			l.mu.Lock()
			l.revisions = append(l.revisions, out.Revision)
			l.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for i := 1; ctx.Err() == nil; i++ {
			var p *policy.Policy
			if err := write(func(ctx context.Context) (err error) { p, err = c.Policy(ctx); return err }); err != nil {
				fail(fmt.Errorf("read policy: %w", err))
				return
			}
			value := fmt.Sprintf("/srv/snapshot-load/%d", i)
			p.VolumePrefixes = []string{value}
			l.mu.Lock()
			l.startedPolicies++
			l.mu.Unlock()
			var v int
			if err := write(func(ctx context.Context) (err error) { v, err = c.SetPolicy(ctx, p); return err }); err != nil {
				fail(fmt.Errorf("set policy %d: %w", i, err))
				return
			}
			l.mu.Lock()
			l.policies[v] = value
			l.mu.Unlock()
		}
	}()
}

// mustCount fails the test at the load's first error, else returns
// counts().
func (l *snapshotLoad) mustCount(t *testing.T) (applies, policies, startedApplies, startedPolicies int) {
	t.Helper()
	l.mu.Lock()
	errs := l.errs
	l.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("load writes failed: %v", errs)
	}
	return l.counts()
}

// stableHistory is what a revision keeps for good: what was applied and
// when (its state moves on with the rollout).
type stableHistory struct {
	Revision             int
	Image, Digest, Cause string
	Replicas             int
	CreatedAt            time.Time
}

func historyOf(t *testing.T, c *wire.Client, svc string) []stableHistory {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := c.History(ctx, svc)
	if err != nil {
		t.Fatalf("history %s: %v", svc, err)
	}
	out := make([]stableHistory, len(h))
	for i, e := range h {
		out[i] = stableHistory{e.Revision, e.Image, e.Digest, e.Cause, e.Replicas, e.CreatedAt.UTC()}
	}
	return out
}

// secretsOf is `secret ls` without the uses, which follow the rollouts.
func secretsOf(t *testing.T, c *wire.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := c.Secrets(ctx)
	if err != nil {
		t.Fatalf("secret ls: %v", err)
	}
	for i := range list {
		list[i].Uses = nil
	}
	data, _ := json.Marshal(list)
	return string(data)
}

func TestSnapshotBackupRestoreGrow(t *testing.T) {
	needEngine(t) // the images; the old cluster runs no agent, the restored server does
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "kek", "secrets.key")
	if _, _, err := secretbox.LoadOrCreateKeyFile(keyFile, rand.Reader); err != nil {
		t.Fatal(err)
	}
	old := mustStartCluster(t, 3, "--no-agent", "--secrets-key-file", keyFile)
	oc := old.client()
	ctx := context.Background()

	// The state to carry: a secret with two versions and one more, a
	// service using it (two revisions), another service, a policy.
	good := randomValue(t, "good-")
	waitFor(t, 30*time.Second, "the servers to register FSM version 3 (secrets)", func() bool {
		_, err := oc.CreateSecret(ctx, "db-password", []byte(good))
		return err == nil
	})
	for _, v := range []string{"token-1", "token-2"} {
		if _, err := oc.CreateSecret(ctx, "api-token", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	web := func(image string) []byte {
		s := webSpec(image, 1, "env: { WEBAPP_REQUIRE_SECRET: \"/run/secrets/db-password:good-\" }\nsecrets: [db-password]\n")
		return []byte(strings.Replace(s, "progress_deadline: 1m", "progress_deadline: 10m", 1))
	}
	for _, spec := range [][]byte{
		web(env.refs["v11"]), web(env.refs["v1"]),
		[]byte("service: api\nimage: " + env.refs["v1"] + "\nreplicas: 0\n"),
		[]byte("service: api\nimage: " + env.refs["v11"] + "\nreplicas: 0\n"),
	} {
		if _, err := oc.Apply(ctx, spec); err != nil {
			t.Fatalf("apply: %v\n%s", err, spec)
		}
	}

	// The load runs before, during and after the save.
	load := &snapshotLoad{policies: map[int]string{}}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadDone sync.WaitGroup
	load.run(loadCtx, old.client(), &loadDone)
	defer func() { stopLoad(); loadDone.Wait() }()
	waitFor(t, 30*time.Second, "load writes before the save", func() bool {
		a, p, _, _ := load.mustCount(t)
		return a >= 3 && p >= 3
	})
	ackedApplies, ackedPolicies, _, _ := load.counts()
	backup := filepath.Join(dir, "backups", "cluster.snap")
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		t.Fatal(err)
	}
	r := old.cli(t, old.nodes, "", "snapshot", "save", backup, "-o", "json")
	_, _, sentApplies, sentPolicies := load.counts()
	if r.code != 0 {
		t.Fatalf("snapshot save: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var saved snapshotSummary
	if err := json.Unmarshal([]byte(r.stdout), &saved); err != nil {
		t.Fatalf("save output: %v\n%s", err, r.stdout)
	}
	waitFor(t, 30*time.Second, "load writes after the save", func() bool {
		a, p, _, _ := load.mustCount(t)
		return a >= sentApplies+2 && p >= sentPolicies+2
	})
	stopLoad()
	loadDone.Wait()
	if len(load.errs) > 0 {
		t.Fatalf("load writes failed: %v", load.errs)
	}
	t.Logf("saved %s; load acknowledged %d applies and %d policies before the save, had sent %d and %d when it ended",
		saved.line(), ackedApplies, ackedPolicies, sentApplies, sentPolicies)
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v, want mode 0600", fi, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(backup)); len(entries) != 1 {
		t.Fatalf("backup dir holds %v, want the backup alone (no temporary file left)", entries)
	}
	if saved.Services != 3 || saved.Secrets != 2 || saved.Index == 0 || saved.FSMVersion == 0 {
		t.Fatalf("save summary %+v", saved)
	}

	// What the old cluster holds now, to compare with once restored.
	wantWeb, wantAPI := historyOf(t, oc, "web"), historyOf(t, oc, "api")
	wantLoad := historyOf(t, oc, "load")
	wantSecrets := secretsOf(t, oc)
	mustNotHoldFile(t, backup, good)

	// A truncated copy is refused at restore, naming the problem.
	truncated := filepath.Join(dir, "truncated.snap")
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	if r := old.cli(t, nil, "", "snapshot", "restore", truncated, "--data-dir", scratch, "--node-id", "x1", "--raft-addr", "127.0.0.1:7999"); r.code != 1 || !strings.Contains(r.stderr, "truncated") {
		t.Fatalf("restore of a truncated file: %d\n%s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(scratch); len(entries) != 0 {
		t.Fatalf("a refused restore wrote %v", entries)
	}

	// The whole old cluster is lost.
	for _, nd := range old.nodes {
		old.kill(nd, syscall.SIGKILL)
	}
	// Restoring onto an old server's data dir is refused, naming what is there.
	if r := old.cli(t, nil, "", "snapshot", "restore", backup, "--data-dir", old.nodes[0].dataDir, "--node-id", "x1", "--raft-addr", "127.0.0.1:7999"); r.code != 1 || !strings.Contains(r.stderr, "raft.db") {
		t.Fatalf("restore over raft state: %d\n%s", r.code, r.stderr)
	}

	// A new server: its own id, certificate, addresses and data dir, the
	// operator's copy of the key file, and its own agent.
	fresh := &testCluster{t: t, tlsDir: old.tlsDir}
	fresh.cleanupOnExit()
	secretsDir := filepath.Join(dir, "secrets")
	ids := []string{env.runID + "-snap-r1", env.runID + "-snap-r2", env.runID + "-snap-r3"}
	for _, id := range ids {
		if out, err := exec.Command(env.bin, "tls", "add-node", id, "--role", "server", "--dir", old.tlsDir).CombinedOutput(); err != nil {
			t.Fatalf("tls add-node %s: %v\n%s", id, err, out)
		}
	}
	r1 := fresh.addNode(ids[0], "--secrets-dir", secretsDir)
	t.Cleanup(func() { unmountAll(filepath.Join(secretsDir, r1.hostID)) })
	copyKeyFile(t, keyFile, filepath.Join(r1.dataDir, "secrets.key"))
	r = old.cli(t, nil, "", "snapshot", "restore", backup, "--data-dir", r1.dataDir, "--node-id", r1.id, "--raft-addr", r1.raftAddr)
	if r.code != 0 || !strings.Contains(r.stdout, "which "+filepath.Join(r1.dataDir, "secrets.key")+" holds") {
		t.Fatalf("snapshot restore: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	fresh.start(r1) // --bootstrap-expect 1, --join itself
	if leader := fresh.mustLeader(30 * time.Second); leader != r1 {
		t.Fatalf("leader %s, want %s", leader.id, r1.id)
	}
	if !strings.Contains(r1.log.String(), "raft state found, not bootstrapping") {
		t.Fatalf("the restored server did not start from its snapshot:\n%s", tail(r1.log.String(), 30))
	}
	nc := fresh.client()

	// Every service, revision, policy version and secret of the backup.
	if got := historyOf(t, nc, "web"); fmt.Sprint(got) != fmt.Sprint(wantWeb) {
		t.Fatalf("web history after restore\n got %v\nwant %v", got, wantWeb)
	}
	if got := historyOf(t, nc, "api"); fmt.Sprint(got) != fmt.Sprint(wantAPI) {
		t.Fatalf("api history after restore\n got %v\nwant %v", got, wantAPI)
	}
	if got := secretsOf(t, nc); got != wantSecrets {
		t.Fatalf("secrets after restore\n got %s\nwant %s", got, wantSecrets)
	}
	// The load: a prefix of what the old cluster stored, holding every
	// write acknowledged before the save began and none sent after it
	// ended; the policy is a version the load wrote, with its value.
	gotLoad := historyOf(t, nc, "load")
	if len(gotLoad) < ackedApplies || len(gotLoad) > sentApplies || fmt.Sprint(gotLoad) != fmt.Sprint(wantLoad[:len(gotLoad)]) {
		t.Fatalf("load history after restore: %d revisions (acknowledged before the save %d, sent by its end %d)\n got %v\nwant a prefix of %v",
			len(gotLoad), ackedApplies, sentApplies, gotLoad, wantLoad)
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	p, err := nc.Policy(pctx)
	pcancel()
	if err != nil {
		t.Fatal(err)
	}
	if want, ok := load.policies[p.Version]; !ok || p.Version < ackedPolicies || p.Version > sentPolicies || len(p.VolumePrefixes) != 1 || p.VolumePrefixes[0] != want {
		t.Fatalf("policy after restore: version %d %v (acknowledged before the save %d, sent by its end %d; that version carried %q)",
			p.Version, p.VolumePrefixes, ackedPolicies, sentPolicies, want)
	}
	t.Logf("restored: load revision %d of %d, policy version %d", len(gotLoad), len(wantLoad), p.Version)
	// The secret opens with the same key: web's replica runs on the new
	// server's host, healthy only when it reads the secret's value.
	waitFor(t, 90*time.Second, "web healthy on the restored server", func() bool {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := nc.Status(sctx, "web", 0, 0)
		return err == nil && st.Replicas.Healthy == 1 && st.RevisionState == "succeeded"
	})
	st, err := nc.Status(ctx, "web", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range st.Instances {
		if in.Current && in.ContainerID != "" {
			if code, out := execIn(t, in.ContainerID, "-cat", "/run/secrets/db-password"); code != 0 || !strings.HasSuffix(out, "\n"+good) {
				t.Fatalf("the secret in web's replica: exit %d %q", code, out)
			}
		}
	}

	// Grown back to three: two new servers join as usual (--join, no
	// --bootstrap-expect: the last value given counts).
	for _, id := range ids[1:] {
		nd := fresh.addNode(id, "--no-agent", "--bootstrap-expect", "0")
		copyKeyFile(t, keyFile, filepath.Join(nd.dataDir, "secrets.key"))
	}
	for _, nd := range fresh.nodes[1:] {
		fresh.start(nd)
	}
	waitFor(t, 60*time.Second, "three healthy voters", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		cs, err := nc.Cluster(cctx)
		if err != nil || len(cs.Nodes) != 3 {
			return false
		}
		for _, n := range cs.Nodes {
			if !n.Healthy || !n.Voter {
				return false
			}
		}
		return true
	})
	// They hold the state: with the restored server gone, the two elect a
	// leader and serve it.
	fresh.kill(r1, syscall.SIGKILL)
	rest := fresh.client(fresh.nodes[1:]...)
	fresh.mustLeader(30 * time.Second)
	waitFor(t, 30*time.Second, "the joined servers to serve the restored state", func() bool {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		h, err := rest.History(sctx, "load")
		return err == nil && len(h) == len(gotLoad)
	})
	if got := secretsOf(t, rest); got != wantSecrets {
		t.Fatalf("secrets on the joined servers\n got %s\nwant %s", got, wantSecrets)
	}
	if got := historyOf(t, rest, "api"); fmt.Sprint(got) != fmt.Sprint(wantAPI) {
		t.Fatalf("api history on the joined servers\n got %v\nwant %v", got, wantAPI)
	}
}

// copyKeyFile copies the operator's key file to a new server's data dir.
func copyKeyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// mustNotHoldFile fails when the file holds value in any of its forms.
func mustNotHoldFile(t *testing.T, path, value string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mustNotHold(t, path, data, value)
}
