package raftstore

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// ErrHasState refuses to bootstrap a node that holds raft state: it already
// belongs to a cluster, and bootstrapping it again could form a second one.
var ErrHasState = errors.New("raft state exists; a node that holds state is never bootstrapped")

// HadState reports whether raft state existed on disk when the node opened.
func (n *Node) HadState() bool { return n.hadState }

// BootstrapServers starts a new cluster whose first configuration is the
// given voters (this node among them). The caller guarantees that every
// server in the list agrees (see the cluster formation in cmd/deployctl):
// bootstrapping with the same list on several nodes is harmless, raft
// refuses the second call on a node that already has state.
func (n *Node) BootstrapServers(servers []Server) error {
	if n.hadState {
		return ErrHasState
	}
	cfg := raft.Configuration{}
	self := false
	for _, s := range servers {
		if s.ID == n.id {
			self = true
		}
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address)})
	}
	if !self {
		return fmt.Errorf("raftstore: bootstrap list does not contain this node %s", n.id)
	}
	if err := n.raft.BootstrapCluster(cfg).Error(); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("%w: %v", ErrHasState, err)
		}
		return fmt.Errorf("raftstore: bootstrap: %w", err)
	}
	n.bootstrapped = true
	n.logger.Info("bootstrapped cluster", "servers", len(servers))
	return nil
}
