package main

// Issue 10 on the real engine: ps (with the failed replicas of a bad
// release under -a), logs -f across a rollout on three hosts, a host whose
// agent cannot be reached named on stderr, events across a leader kill.

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

func TestCLIPsShowsFailedReplicasAfterRollback(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 2, ""), "apply", "-")
	mustCLI(t, s, 3, webSpec(env.refs["broken"], 2, ""), "apply", "-")

	// Without -a: the replicas the service has, all of the rollback's
	// revision (3) or adopted from revision 1, healthy.
	var now wire.PsView
	if err := json.Unmarshal([]byte(mustCLI(t, s, 0, "", "ps", "web", "-o", "json").stdout), &now); err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, r := range now.Replicas {
		if r.Ended || r.Revision == 2 && r.Desired == "running" {
			t.Fatalf("ps without -a: %+v", now.Replicas)
		}
		if r.Desired == "running" && r.State == "healthy" && r.Health == "healthy" && r.ContainerID != "" && !r.Since.IsZero() {
			running++
		}
	}
	if running != 2 {
		t.Fatalf("ps: %d running healthy replicas, want 2: %+v", running, now.Replicas)
	}
	// With -a: the bad release's replicas, ended, with the probe's answer,
	// under the slot they served.
	var all wire.PsView
	waitFor(t, 60*time.Second, "the bad release's replicas in ps -a", func() bool {
		r := s.cli(t, "", "ps", "web", "-a", "-o", "json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &all) != nil {
			return false
		}
		return slices.ContainsFunc(all.Replicas, func(r wire.ReplicaRow) bool { return r.Ended && r.Revision == 2 })
	})
	for _, r := range all.Replicas {
		if r.Ended && r.Revision == 2 && !strings.Contains(r.Error, "health check failed") {
			t.Fatalf("ended replica of revision 2 without the probe's answer: %+v", r)
		}
	}
	table := mustCLI(t, s, 0, "", "ps", "web", "-a").stdout
	if !strings.Contains(table, `\_ `) || !strings.Contains(table, "health check failed") || !strings.HasPrefix(table, "SLOT") {
		t.Fatalf("ps -a table:\n%s", table)
	}
	t.Logf("ps -a:\n%s", table)
}

// logsFollower is a `deployctl logs -f` process this test started.
type logsFollower struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
}

func TestClusterObserve(t *testing.T) {
	needEngine(t)
	c := mustStartClusterWith(t, 3, func(i int) []string {
		return []string{"--ingress-addr", "127.0.0.1", "--proxy-addr", freeAddr(t)}
	}, "--host-ttl", "3s", "--host-down-grace", "10m")
	c.mustReadyHosts(t, 3)
	// One replica a host, so that every host runs one of each release.
	const onePerHost = "placement:\n  max_per_host: 1\n"
	if r := c.cli(t, c.nodes, webSpec(env.refs["v1"], 3, onePerHost), "apply", "-"); r.code != 0 {
		t.Fatalf("apply v1: %d %s %s", r.code, r.stdout, r.stderr)
	}
	tlsArgs := []string{"--addr", c.joinList(), "--tls-ca", filepath.Join(c.tlsDir, "ca.pem"),
		"--tls-cert", filepath.Join(c.tlsDir, "client.pem"), "--tls-key", filepath.Join(c.tlsDir, "client-key.pem")}

	// logs -f through a rollout to v1.1: the v1 replicas' lines first, then
	// the new replicas' as they start, on every host; the old ones end.
	f := &logsFollower{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	f.cmd = exec.Command(env.bin, append(tlsArgs, "logs", "web", "-f", "--timestamps")...)
	f.cmd.Stdout, f.cmd.Stderr = f.stdout, f.stderr
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	followed := make(chan error, 1)
	go func() { followed <- f.cmd.Wait() }()
	t.Cleanup(func() {
		if f.cmd.ProcessState == nil {
			_ = f.cmd.Process.Kill()
			<-followed
		}
	})
	hostsWith := func(text string) map[string]bool {
		hosts := map[string]bool{}
		sc := bufio.NewScanner(strings.NewReader(f.stdout.String()))
		for sc.Scan() {
			prefix, line, ok := strings.Cut(sc.Text(), " | ")
			if ok && strings.Contains(line, text) {
				hosts[prefix[strings.LastIndex(prefix, "@")+1:]] = true
			}
		}
		return hosts
	}
	waitFor(t, 60*time.Second, "v1's start line from three hosts", func() bool { return len(hostsWith("webapp v1 listening")) == 3 })
	if r := c.cli(t, c.nodes, webSpec(env.refs["v11"], 3, onePerHost), "apply", "-"); r.code != 0 {
		t.Fatalf("apply v1.1: %d %s %s", r.code, r.stdout, r.stderr)
	}
	waitFor(t, 60*time.Second, "v1.1's start line from three hosts, and v1's replicas shutting down", func() bool {
		return len(hostsWith("webapp v1.1 listening")) == 3 && len(hostsWith("signal received, shutting down")) == 3
	})
	for _, line := range strings.Split(strings.TrimSpace(f.stdout.String()), "\n") {
		ts, _, _ := strings.Cut(line, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Fatalf("--timestamps line without a time: %q", line)
		}
	}
	if err := f.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := <-followed; err != nil {
		t.Fatalf("logs -f after Ctrl-C: %v\nstderr: %s", err, f.stderr.String())
	}
	t.Logf("logs -f:\n%s", tail(f.stdout.String(), 12))

	// Events before the leader's kill: the rollouts.
	var before []state.Event
	waitFor(t, 30*time.Second, "both rollouts' success in the events", func() bool {
		r := c.cli(t, c.nodes, "", "events", "--service", "web", "-o", "json")
		before = decodeEvents(t, r.stdout)
		n := 0
		for _, e := range before {
			if e.Type == state.EventRolloutSucceeded {
				n++
			}
		}
		return r.code == 0 && n == 2
	})
	for _, want := range []string{state.EventRevisionStored, state.EventReplicaPlaced, state.EventReplicaStarted, state.EventReplicaHealthy, state.EventReplicaStopped} {
		if !slices.ContainsFunc(before, func(e state.Event) bool { return e.Type == want }) {
			t.Errorf("no %s event before the kill", want)
		}
	}

	// kill -9 the leader: the events from before are still listed, and
	// the new leader's election is among them.
	leader := c.mustLeader(10 * time.Second)
	var rest []*clusterNode
	for _, nd := range c.nodes {
		if nd != leader {
			rest = append(rest, nd)
		}
	}
	c.kill(leader, syscall.SIGKILL)
	newLeader := c.mustLeader(30 * time.Second)
	var after []state.Event
	waitFor(t, 30*time.Second, "the new leader's election in the events", func() bool {
		r := c.cli(t, rest, "", "events", "-o", "json")
		after = decodeEvents(t, r.stdout)
		return r.code == 0 && slices.ContainsFunc(after, func(e state.Event) bool {
			return e.Type == state.EventLeaderElected && strings.HasPrefix(e.Message, newLeader.id)
		})
	})
	for _, e := range before {
		if !slices.ContainsFunc(after, func(a state.Event) bool { return a.Seq == e.Seq && a.Type == e.Type && a.Replica == e.Replica }) {
			t.Fatalf("event %+v from before the kill is gone after it", e)
		}
	}
	table := c.cli(t, rest, "", "events", "--service", "web")
	if table.code != 0 || !strings.HasPrefix(table.stdout, "TIME") || !strings.Contains(table.stdout, "rollout_succeeded") {
		t.Fatalf("events table: %d\n%s\n%s", table.code, table.stdout, table.stderr)
	}
	t.Logf("events:\n%s", tail(table.stdout, 15))

	// The killed server's agent is gone: its host is named on stderr, the
	// other two hosts' replicas are printed.
	logs := c.cli(t, rest, "", "logs", "web")
	if logs.code != 0 {
		t.Fatalf("logs with a host down: %d\n%s", logs.code, logs.stderr)
	}
	if !strings.Contains(logs.stderr, "host "+leader.hostID) {
		t.Fatalf("logs stderr does not name the unreachable host %s:\n%s", leader.hostID, logs.stderr)
	}
	got := map[string]bool{}
	for _, line := range strings.Split(logs.stdout, "\n") {
		if prefix, text, ok := strings.Cut(line, " | "); ok && strings.Contains(text, "webapp v1.1 listening") {
			got[prefix[strings.LastIndex(prefix, "@")+1:]] = true
		}
	}
	if len(got) != 2 || got[leader.hostID] {
		t.Fatalf("logs with %s down: lines from %v, want the two others\n%s", leader.hostID, got, logs.stdout)
	}
	t.Logf("logs with %s down:\nstderr: %sstdout:\n%s", leader.hostID, logs.stderr, logs.stdout)
}

func decodeEvents(t *testing.T, out string) []state.Event {
	t.Helper()
	var es []state.Event
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e state.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("events -o json: a line is not one object: %q: %v", line, err)
		}
		es = append(es, e)
	}
	return es
}
