package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/deployctl/deployctl/raftstore"
)

// raftTimeouts are the server's raft timeouts. Their meaning and the
// trade-off of the defaults are in raftstore (DefaultHeartbeatTimeout) and
// docs/cluster.md ("Failover and raft timeouts").
type raftTimeouts struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
}

// minRaftTimeout is hashicorp/raft's floor for the heartbeat, election and
// lease timeouts.
const minRaftTimeout = 5 * time.Millisecond

func bindRaftTimeoutFlags(f *pflag.FlagSet) {
	f.Duration("raft-heartbeat-timeout", raftstore.DefaultHeartbeatTimeout, "a follower that hears nothing from the leader for this long starts an election; failover takes about 1-3 times this (raise it, with --raft-election-timeout and --raft-leader-lease-timeout, on a WAN or hosts with long pauses)")
	f.Duration("raft-election-timeout", raftstore.DefaultElectionTimeout, "a candidate without a majority tries again after 1-2 times this (at least --raft-heartbeat-timeout)")
	f.Duration("raft-leader-lease-timeout", raftstore.DefaultLeaderLeaseTimeout, "a leader out of contact with a quorum for this long steps down (at most --raft-heartbeat-timeout)")
	f.Duration("raft-commit-timeout", raftstore.DefaultCommitTimeout, "how long an idle leader waits before telling followers the commit index")
}

func readRaftTimeouts(v *viper.Viper) raftTimeouts {
	return raftTimeouts{
		Heartbeat: v.GetDuration("raft-heartbeat-timeout"), Election: v.GetDuration("raft-election-timeout"),
		LeaderLease: v.GetDuration("raft-leader-lease-timeout"), Commit: v.GetDuration("raft-commit-timeout"),
	}
}

// check refuses timeouts hashicorp/raft would refuse, naming the flags at
// fault and the fix; it also returns their keys.
func (r raftTimeouts) check() ([]string, error) {
	for _, t := range []struct {
		key string
		d   time.Duration
		min time.Duration
	}{
		{"raft-heartbeat-timeout", r.Heartbeat, minRaftTimeout},
		{"raft-election-timeout", r.Election, minRaftTimeout},
		{"raft-leader-lease-timeout", r.LeaderLease, minRaftTimeout},
		{"raft-commit-timeout", r.Commit, time.Millisecond},
	} {
		if t.d < t.min {
			return []string{t.key}, fmt.Errorf("--%s %s: want a duration of at least %s, e.g. 500ms", t.key, t.d, t.min)
		}
	}
	if r.Election < r.Heartbeat {
		return []string{"raft-election-timeout", "raft-heartbeat-timeout"}, fmt.Errorf("--raft-election-timeout %s is shorter than --raft-heartbeat-timeout %s: raise it to at least %s (raise them together)", r.Election, r.Heartbeat, r.Heartbeat)
	}
	if r.LeaderLease > r.Heartbeat {
		return []string{"raft-leader-lease-timeout", "raft-heartbeat-timeout"}, fmt.Errorf("--raft-leader-lease-timeout %s is longer than --raft-heartbeat-timeout %s: lower it to at most %s, or raise the heartbeat timeout", r.LeaderLease, r.Heartbeat, r.Heartbeat)
	}
	return nil, nil
}
