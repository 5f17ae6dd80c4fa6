package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore"
)

// The servers' raft timeouts: defaults, file, variable and flag, and the
// combinations hashicorp/raft would refuse, refused up front with the
// flags named.
func TestServerRaftTimeouts(t *testing.T) {
	cfg, err := mustServerConfig(t, []string{"--dev"}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := raftTimeouts{raftstore.DefaultHeartbeatTimeout, raftstore.DefaultElectionTimeout, raftstore.DefaultLeaderLeaseTimeout, raftstore.DefaultCommitTimeout}
	if cfg.Raft != want {
		t.Fatalf("defaults: %+v, want %+v", cfg.Raft, want)
	}
	// A WAN operator raises them in the config file.
	file := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(file, []byte("raft-heartbeat-timeout: 2s\nraft-election-timeout: 3s\nraft-leader-lease-timeout: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = mustServerConfig(t, []string{"--dev"}, file); err != nil || cfg.Raft.Heartbeat != 2*time.Second || cfg.Raft.Election != 3*time.Second || cfg.Raft.LeaderLease != time.Second {
		t.Fatalf("from the file: %+v %v", cfg.Raft, err)
	}
	t.Setenv("DEPLOYCTL_RAFT_COMMIT_TIMEOUT", "20ms")
	if cfg, err = mustServerConfig(t, []string{"--dev", "--raft-heartbeat-timeout", "1s"}, file); err != nil || cfg.Raft.Heartbeat != time.Second || cfg.Raft.Commit != 20*time.Millisecond {
		t.Fatalf("flag and variable over the file: %+v %v", cfg.Raft, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dev", "--raft-heartbeat-timeout", "1ms"}, "--raft-heartbeat-timeout 1ms: want a duration of at least 5ms"},
		{[]string{"--dev", "--raft-commit-timeout", "0"}, "--raft-commit-timeout 0s"},
		{[]string{"--dev", "--raft-heartbeat-timeout", "2s"}, "--raft-election-timeout 500ms is shorter than --raft-heartbeat-timeout 2s"},
		{[]string{"--dev", "--raft-leader-lease-timeout", "1s"}, "--raft-leader-lease-timeout 1s is longer than --raft-heartbeat-timeout 500ms"},
	} {
		if _, err := mustServerConfig(t, c.args, ""); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %s", c.args, err, c.want)
		}
	}
}
