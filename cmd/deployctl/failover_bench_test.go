package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLeaderFailover kills -9 the leader of a three-server cluster
// (separate processes of the built binary, 127.0.0.1, mutual TLS, no
// agents) b.N times and reports, over the kills:
//
//   - elected: kill to "entering leader state" in the new leader's log
//     (raft's detection and election);
//   - ready: election to the new leader's controller driving rollouts
//     (its barrier and loop; writes before it get "not ready");
//   - write: kill to the first write accepted, a policy write sent right
//     after the kill by a CLI client that lists all three servers (the
//     dead one included) and retries as the CLI does;
//   - found: election to that write's answer, the time the client took
//     to find the new leader.
//
// Each as p50 and p99 (nearest rank: with 20 kills, p99 is the worst).
// The "default" cluster runs with the server's default raft timeouts, the
// "raft-1s" one with hashicorp/raft's own defaults (heartbeat and election
// 1 s, lease 500 ms), the values used before, side by side in one run.
// Restarting the old leader and waiting for three healthy voters again is
// outside the timer. Run with -benchtime 20x (make bench-failover).
func BenchmarkLeaderFailover(b *testing.B) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"default", nil},
		{"raft-1s", []string{"--raft-heartbeat-timeout", "1s", "--raft-election-timeout", "1s", "--raft-leader-lease-timeout", "500ms"}},
	} {
		b.Run(tc.name, func(b *testing.B) { benchFailover(b, tc.flags) })
	}
}

func benchFailover(b *testing.B, flags []string) {
	b.StopTimer() // only the failovers are timed
	c := mustStartCluster(b, 3, append([]string{"--no-agent"}, flags...)...)
	var elected, ready, written, found []time.Duration
	for i := 0; i < b.N; i++ {
		leader := mustHealthyCluster(b, c)
		// The CLI's client: every server, the one about to die included,
		// with the CLI's default --leader-wait.
		cl := c.client().WithLeaderWait(10 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := cl.Policy(ctx)
		if err != nil {
			cancel()
			b.Fatalf("read policy: %v", err)
		}
		p.VolumePrefixes = []string{fmt.Sprintf("/srv/failover/%d", i)}
		// Where each survivor's log stands before the kill.
		marks := map[*clusterNode]int{}
		for _, nd := range c.nodes {
			if nd != leader {
				marks[nd] = len(nd.log.String())
			}
		}

		b.StartTimer()
		start := time.Now()
		c.kill(leader, syscall.SIGKILL)
		_, err = cl.SetPolicy(ctx, p)
		wrote := time.Since(start)
		b.StopTimer()
		cancel()
		if err != nil {
			b.Fatalf("kill %d: write after killing %s: %v", i, leader.id, err)
		}

		st, err := cl.Cluster(context.Background())
		if err != nil {
			b.Fatalf("kill %d: cluster status: %v", i, err)
		}
		var next *clusterNode
		for nd := range marks {
			if nd.id == st.Leader {
				next = nd
			}
		}
		if next == nil {
			b.Fatalf("kill %d: leader %q after killing %s is not a survivor", i, st.Leader, leader.id)
		}
		logText := next.log.String()[marks[next]:]
		electedAt, ok := lastLogTime(logText, "entering leader state")
		if !ok {
			b.Fatalf("kill %d: no \"entering leader state\" in %s's log", i, next.id)
		}
		readyAt, ok := lastLogTime(logText, "leading: driving rollouts")
		if !ok {
			b.Fatalf("kill %d: no \"leading: driving rollouts\" in %s's log", i, next.id)
		}
		e := electedAt.Sub(start)
		elected = append(elected, e)
		ready = append(ready, readyAt.Sub(electedAt))
		written = append(written, wrote)
		found = append(found, wrote-e)
		b.Logf("kill %2d: %s elected %4d ms, ready +%4d ms, write %4d ms (found +%4d ms)", i, next.id,
			e.Milliseconds(), readyAt.Sub(electedAt).Milliseconds(), wrote.Milliseconds(), (wrote - e).Milliseconds())

		c.start(leader)
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"elected", elected}, {"ready", ready}, {"write", written}, {"found", found}} {
		b.ReportMetric(float64(percentile(m.d, 50).Milliseconds()), m.name+"-p50-ms")
		b.ReportMetric(float64(percentile(m.d, 99).Milliseconds()), m.name+"-p99-ms")
	}
	b.ReportMetric(0, "ns/op") // the metrics above say it; the mean of all kills does not
}

// lastLogTime returns the hclog timestamp of the last line of text that
// contains what.
func lastLogTime(text, what string) (time.Time, bool) {
	lines := strings.Split(text, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], what) {
			continue
		}
		stamp, _, _ := strings.Cut(lines[i], " ")
		t, err := time.Parse("2006-01-02T15:04:05.000Z0700", stamp)
		if err != nil {
			return time.Time{}, false
		}
		return t, true
	}
	return time.Time{}, false
}

// percentile is the nearest-rank p-th percentile of d.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return s[max(rank, 1)-1]
}

// mustHealthyCluster waits until a leader reports three healthy voters
// and returns it.
func mustHealthyCluster(b *testing.B, c *testCluster) *clusterNode {
	b.Helper()
	var leader *clusterNode
	waitFor(b, 60*time.Second, "three healthy voters", func() bool {
		leader = c.mustLeader(30 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := c.client(leader).Cluster(ctx)
		if err != nil || st.Leader != leader.id || len(st.Nodes) != 3 {
			return false
		}
		for _, n := range st.Nodes {
			if !n.Voter || !n.Healthy {
				return false
			}
		}
		return true
	})
	return leader
}
