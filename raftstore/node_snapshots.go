package raftstore

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// snapshotOnSchedule takes a snapshot every period while entries were
// applied since the last one (raft answers ErrNothingNewToSnapshot
// otherwise, which is not worth a log line). Raft's own threshold still
// applies in between: this only makes sure a quiet cluster's data
// directory does not keep a snapshot far older than its state.
func (n *Node) snapshotOnSchedule(period time.Duration) {
	defer close(n.scheduleDone)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-n.closing:
			return
		case <-tick.C:
		}
		err := n.raft.Snapshot().Error()
		switch {
		case err == nil:
			n.logger.Debug("scheduled snapshot taken", "applied_index", n.raft.AppliedIndex())
		case errors.Is(err, raft.ErrNothingNewToSnapshot), errors.Is(err, raft.ErrRaftShutdown):
		default:
			n.logger.Warn("scheduled snapshot failed", "error", err)
		}
	}
}

// Term returns the current raft term as this node knows it.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// warnIfMoved says so when the configuration this node starts from holds
// it at another raft address than the one it advertises (a restore given
// another --raft-addr, a server moved without being removed): peers dial
// the recorded one, and its own join is refused as a move.
func (n *Node) warnIfMoved() {
	future := n.raft.GetConfiguration()
	if future.Error() != nil {
		return
	}
	for _, s := range future.Configuration().Servers {
		if string(s.ID) == n.id && string(s.Address) != n.addr {
			n.logger.Warn("this node is in the raft configuration at another address than it advertises: peers dial that one; start it with that raft address (or restore the snapshot again with this one)",
				"recorded", s.Address, "advertised", n.addr)
		}
	}
}
