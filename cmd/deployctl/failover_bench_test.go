package main

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLeaderFailover kills -9 the leader of a three-server cluster
// (127.0.0.1, mutual TLS, no agents) and measures the time until a new
// leader answers cluster status through the survivors: the write outage a
// leader crash costs, with hashicorp/raft's default 1s heartbeat and
// election timeouts. Restarting the old leader and waiting for three
// healthy voters again is outside the timer.
func BenchmarkLeaderFailover(b *testing.B) {
	b.StopTimer() // only the failovers are timed
	c := mustStartCluster(b, 3, "--no-agent")
	var total time.Duration
	for i := 0; i < b.N; i++ {
		leader := mustHealthyCluster(b, c)
		var survivors []*clusterNode
		for _, nd := range c.nodes {
			if nd != leader {
				survivors = append(survivors, nd)
			}
		}
		cl := c.client(survivors...)
		b.StartTimer()

		start := time.Now()
		c.kill(leader, syscall.SIGKILL)
		deadline := start.Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cl.Cluster(ctx)
			cancel()
			if err == nil && st.Leader != "" && st.Leader != leader.id {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("no new leader within 30s of killing %s (last: %+v, %v)", leader.id, st, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		total += time.Since(start)

		b.StopTimer()
		c.start(leader)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
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
