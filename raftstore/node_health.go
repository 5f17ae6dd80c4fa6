package raftstore

import "time"

// Health is what a node knows of its own raft state. Every field is local:
// it is answered with or without a leader, which is what an operator needs
// when there is none (`deployctl cluster status` without quorum).
type Health struct {
	// State is Follower, Candidate, Leader or Shutdown.
	State string
	// Term is the node's current term: a term that keeps rising with no
	// leader means elections that never win (no quorum).
	Term uint64
	// LastLogIndex, CommitIndex and AppliedIndex: how far its log goes,
	// what it knows to be committed, what its FSM applied.
	LastLogIndex, CommitIndex, AppliedIndex uint64
	// LastContact is when it last heard from a leader (zero: never since
	// it started; a leader reports now).
	LastContact time.Time
	// LeaderID is the leader it follows, "" when it knows none.
	LeaderID string
}

// Health reports the node's raft state (see Health).
func (n *Node) Health() Health {
	h := Health{
		State: n.raft.State().String(), Term: n.raft.CurrentTerm(),
		LastLogIndex: n.raft.LastIndex(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex(),
		LastContact: n.raft.LastContact(),
	}
	if n.IsLeader() {
		h.LastContact = time.Now()
	}
	h.LeaderID, _ = n.Leader()
	return h
}
