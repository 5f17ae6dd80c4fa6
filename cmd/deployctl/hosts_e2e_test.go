package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
)

// hostsSpec is webSpec with a short progress deadline, so a release that
// cannot be placed fails within seconds.
func hostsSpec(image string, replicas int) string {
	return fmt.Sprintf(`service: web
image: %s
replicas: %d
resources: { cpus: 0.2, memory: 32M, pids: 32 }
healthcheck:
  http: { path: /healthz, port: 8080 }
  interval: 500ms
  timeout: 500ms
  retries: 2
update:
  parallelism: 1
  monitor: 1s
  progress_deadline: 3s
stop_grace_period: 1s
`, image, replicas)
}

// Issue 17 on real processes and the real engine, one dev server (one
// host): a drained host takes nothing, so a first release fails; the same
// spec again says --force exists; after `host activate`, `apply --force`
// retries it and it runs. Draining the only host with replicas says they
// cannot move and keeps them running; `host rm` of a host that is up is
// refused; `host ls` shows all of it.
func TestCLIHostDrainAndApplyForce(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	host := s.hostID
	waitFor(t, 30*time.Second, "the host registered", func() bool {
		return strings.Contains(s.cli(t, "", "host", "ls").stdout, host)
	})

	r := mustCLI(t, s, 0, "", "host", "drain", host)
	if !strings.Contains(r.stdout, "host "+host+" drained: no replica left") {
		t.Fatalf("drain of an empty host:\n%s", r.stdout)
	}
	mustCLI(t, s, 0, "", "host", "drain", host) // a repeat is fine
	if st := mustCLI(t, s, 0, "", "cluster", "status").stdout; !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(host) + `\s+ready\s+drain\s`).MatchString(st) {
		t.Fatalf("cluster status does not show %s draining:\n%s", host, st)
	}

	spec := hostsSpec(env.refs["v1"], 2)
	r = mustCLI(t, s, 4, spec, "apply", "-")
	if !strings.Contains(r.stdout+r.stderr, "draining") {
		t.Fatalf("a first release on a drained host, output does not say why:\n%s\n%s", r.stdout, r.stderr)
	}
	r = mustCLI(t, s, 0, "", "host", "activate", host)
	if !strings.Contains(r.stdout, "active") {
		t.Fatalf("activate:\n%s", r.stdout)
	}
	r = mustCLI(t, s, 4, spec, "apply", "-")
	if !strings.Contains(r.stdout, "unchanged") || !strings.Contains(r.stderr, "apply --force") {
		t.Fatalf("the same spec on a failed service must say --force exists:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	r = mustCLI(t, s, 0, spec, "apply", "--force", "-")
	if !strings.Contains(r.stdout, "revision 2 stored") || !strings.Contains(r.stdout, "done: revision 2 is healthy on 2/2 replicas") {
		t.Fatalf("apply --force:\n%s", r.stdout)
	}
	h := mustHistory(t, s, "web")
	if len(h) != 2 || !strings.Contains(h[1].Cause, "retry of revision 1") || h[1].Digest != h[0].Digest {
		t.Fatalf("history %+v, want revision 2 retrying revision 1 at its digest", h)
	}

	before := runningContainers(t, host)
	if len(before) != 2 {
		t.Fatalf("%d containers running, want 2", len(before))
	}
	r = mustCLI(t, s, 1, "", "host", "drain", host)
	if !strings.Contains(r.stderr, "cannot be drained now") || !strings.Contains(r.stderr, "cannot move") {
		t.Fatalf("drain of the only host with replicas:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	if after := runningContainers(t, host); !sameSet(after, before) {
		t.Fatalf("running %v after a drain that cannot move them, want %v kept", after, before)
	}
	r = mustCLI(t, s, 0, "", "host", "ls")
	if !strings.Contains(r.stdout, "drain") || !strings.Contains(r.stdout, "web: 2 replicas cannot move") {
		t.Fatalf("host ls:\n%s", r.stdout)
	}
	r = mustCLI(t, s, 1, "", "host", "rm", host)
	if !strings.Contains(r.stderr, "is up") {
		t.Fatalf("rm of a host that is up:\n%s", r.stderr)
	}
	mustCLI(t, s, 1, "", "host", "rm", "no-such-host")
	mustCLI(t, s, 0, "", "host", "activate", host)
	if st := mustStatus(t, s, "web"); st.Replicas.Healthy != 2 {
		t.Fatalf("status after activate: %+v", st.Replicas)
	}
}

// Drain across three servers, each with its host, on the real engine: a
// host's replicas move to the other hosts (each replacement healthy before
// the drained one stops), none is left on it and three stay healthy. rm is
// refused while the host is up; once its server is gone and it is down,
// rm forgets it: it leaves cluster status and host ls. The other servers'
// hosts keep serving.
func TestClusterHostDrainAndRemove(t *testing.T) {
	needEngine(t)
	c := mustStartCluster(t, 3, "--host-ttl", "2s", "--host-down-grace", "2s")
	c.mustReadyHosts(t, 3)
	if r := c.cli(t, c.nodes, webSpec(env.refs["v1"], 3, ""), "apply", "-"); r.code != 0 {
		t.Fatalf("apply: %d %s %s", r.code, r.stdout, r.stderr)
	}
	leader := c.mustLeader(10 * time.Second)
	var drained *clusterNode
	for _, nd := range c.nodes {
		if nd != leader {
			drained = nd
			break
		}
	}
	runningOn := func(host string) (on, healthy int) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.client().Status(ctx, "web", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range st.Instances {
			if in.Desired == "running" && in.Host == host {
				on++
			}
		}
		return on, st.Replicas.Healthy
	}
	if on, _ := runningOn(drained.hostID); on != 1 {
		t.Fatalf("%d replicas on %s before the drain, want 1 (spread)", on, drained.hostID)
	}
	r := c.cli(t, c.nodes, "", "host", "drain", drained.hostID)
	if r.code != 0 || !strings.Contains(r.stdout, "drained: no replica left") {
		t.Fatalf("host drain: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if on, healthy := runningOn(drained.hostID); on != 0 || healthy != 3 {
		t.Fatalf("after the drain: %d replicas on %s, %d healthy; want 0 and 3", on, drained.hostID, healthy)
	}
	if running := runningContainers(t, drained.hostID); len(running) != 0 {
		waitFor(t, 30*time.Second, "the drained host's container gone", func() bool { return len(runningContainers(t, drained.hostID)) == 0 })
	}
	if r := c.cli(t, c.nodes, "", "host", "rm", drained.hostID); r.code != 1 || !strings.Contains(r.stderr, "is up") {
		t.Fatalf("rm of a host that is up: %d\n%s", r.code, r.stderr)
	}

	c.kill(drained, syscall.SIGKILL)
	rest := slices.DeleteFunc(slices.Clone(c.nodes), func(nd *clusterNode) bool { return nd == drained })
	waitFor(t, 60*time.Second, "the host removed", func() bool {
		return c.cli(t, rest, "", "host", "rm", drained.hostID).code == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.client(rest...).Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.Hosts {
		if h.ID == drained.hostID {
			t.Fatalf("%s still in cluster status after host rm: %+v", h.ID, st.Hosts)
		}
	}
	if r := c.cli(t, rest, "", "host", "ls"); strings.Contains(r.stdout, drained.hostID) {
		t.Fatalf("host ls after rm:\n%s", r.stdout)
	}
	if _, healthy := runningOn(""); healthy != 3 {
		t.Fatalf("%d healthy after the removal, want 3", healthy)
	}

	// A server that leaves the cluster stops being a host: its host is
	// drained at once (its replicas move to the last host) and forgotten
	// once it is down. The dead voter goes first, so two voters remain.
	if r := c.cli(t, rest, "", "cluster", "remove", drained.id); r.code != 0 {
		t.Fatalf("cluster remove: %d %s %s", r.code, r.stdout, r.stderr)
	}
	stay := c.mustLeader(20 * time.Second)
	var leaver *clusterNode
	for _, nd := range rest {
		if nd != stay {
			leaver = nd
		}
	}
	if on, _ := runningOn(leaver.hostID); on == 0 {
		t.Fatalf("no replica on %s before it leaves: the test proves nothing", leaver.hostID)
	}
	if r := c.cli(t, []*clusterNode{leaver}, "", "cluster", "leave"); r.code != 0 {
		t.Fatalf("cluster leave: %d %s %s", r.code, r.stdout, r.stderr)
	}
	waitFor(t, 90*time.Second, "the leaver's replicas moved to the last host", func() bool {
		on, healthy := runningOn(leaver.hostID)
		return on == 0 && healthy == 3
	})
	c.kill(leaver, syscall.SIGKILL)
	waitFor(t, 60*time.Second, "the leaver's host forgotten", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.client(stay).Cluster(ctx)
		if err != nil {
			return false
		}
		return !slices.ContainsFunc(st.Hosts, func(h wire.HostInfo) bool { return h.ID == leaver.hostID })
	})
}
