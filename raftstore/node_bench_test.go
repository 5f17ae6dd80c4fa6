package raftstore

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// BenchmarkApply measures one committed and applied command on a
// single-node cluster (bolt fsync included).
func BenchmarkApply(b *testing.B) {
	n, _ := mustSingleLeader(b, b.TempDir())
	ctx := context.Background()
	cmd := []byte("benchmark-command")
	for b.Loop() {
		if _, err := n.Apply(ctx, cmd); err != nil {
			b.Fatalf("Apply: %v", err)
		}
	}
}

// BenchmarkFailover measures, with the default raft timeouts (raftstore's
// DefaultHeartbeatTimeout and siblings, what zero means), the time from
// closing the leader of a 3-node in-process cluster until one of the two
// survivors becomes leader. Cluster setup is not timed. Run with e.g.
// -benchtime=5x for an average over several failovers.
func BenchmarkFailover(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := mustCluster(b, 3, func(cfg *Config) {
			cfg.Logger = hclog.NewNullLogger()
			cfg.HeartbeatTimeout = 0
			cfg.ElectionTimeout = 0
			cfg.LeaderLeaseTimeout = 0
			cfg.CommitTimeout = 0
		})
		leader := mustLeaderAmong(b, c.nodes...)
		// Subscribe before the failover; the first value is each
		// survivor's current state (false).
		var survivors []<-chan bool
		for _, n := range c.nodes {
			if n != leader {
				ch := n.LeaderCh()
				if got, _ := mustReceive(b, ch); got {
					b.Fatalf("follower %s reports leadership", n.ID())
				}
				survivors = append(survivors, ch)
			}
		}

		b.StartTimer()
		start := time.Now()
		if err := leader.Close(); err != nil {
			b.Fatalf("Close leader: %v", err)
		}
		waitForAnyLeadership(b, survivors...)
		total += time.Since(start)
		b.StopTimer()

		for _, n := range c.nodes {
			_ = n.Close()
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
}

// waitForAnyLeadership returns once one of chs reports true.
func waitForAnyLeadership(b *testing.B, chs ...<-chan bool) {
	b.Helper()
	timeout := time.After(time.Minute)
	merged := make(chan bool, len(chs))
	done := make(chan struct{})
	defer close(done)
	for _, ch := range chs {
		go func() {
			for {
				select {
				case v, ok := <-ch:
					if !ok {
						return
					}
					if v {
						merged <- true
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	select {
	case <-merged:
	case <-timeout:
		b.Fatal("no survivor became leader within a minute")
	}
}
