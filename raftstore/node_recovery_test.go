package raftstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Two of three servers gone for good: an operator writes peers.json with
// the survivor alone, and the survivor leads again with its state.
func TestRecoverFromPeersJSON(t *testing.T) {
	c := mustCluster(t, 3, nil)
	mustApplyOnLeader(t, "a", c.nodes...)
	mustApplyOnLeader(t, "b", c.nodes...)
	survivor := c.nodes[0]
	mustEventually(t, "survivor has both entries", func() bool { return len(c.fsms[0].Items()) == 2 })
	addr := survivor.Addr()
	for _, n := range c.nodes {
		mustClose(t, n)
	}
	peers := fmt.Sprintf(`[{"id": %q, "address": %q, "non_voter": false}]`, survivor.ID(), addr)
	peersFile := filepath.Join(c.dirs[0], "raft", "peers.json")
	if err := os.WriteFile(peersFile, []byte(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	fsm := &listFSM{}
	cfg := testConfig(survivor.ID(), c.dirs[0], fsm)
	cfg.BindAddr = addr
	n := mustOpen(t, cfg)
	defer mustClose(t, n)
	if id := mustWaitForLeader(t, n); id != survivor.ID() {
		t.Fatalf("leader %q after recovery, want %s", id, survivor.ID())
	}
	if _, err := os.Stat(peersFile); !os.IsNotExist(err) {
		t.Fatalf("peers.json left in place: %v", err)
	}
	mustApply(t, n, "c")
	if got := fsm.Items(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("state after recovery %v, want [a b c]", got)
	}
	if servers := mustServers(t, n); len(servers) != 1 {
		t.Fatalf("configuration after recovery %+v, want the survivor alone", servers)
	}
}
