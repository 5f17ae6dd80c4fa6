package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The servers' snapshot settings: defaults, flag, variable and file, and
// the values refused.
func TestServerSnapshotSettings(t *testing.T) {
	cfg, err := mustServerConfig(t, []string{"--dev"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SnapshotInterval != 5*time.Minute || cfg.SnapshotThreshold != 1024 {
		t.Fatalf("defaults: every %s or %d entries, want 5m0s and 1024", cfg.SnapshotInterval, cfg.SnapshotThreshold)
	}
	file := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(file, []byte("snapshot-interval: 90s\nsnapshot-threshold: 64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = mustServerConfig(t, []string{"--dev"}, file); err != nil || cfg.SnapshotInterval != 90*time.Second || cfg.SnapshotThreshold != 64 {
		t.Fatalf("from the file: %s %d %v", cfg.SnapshotInterval, cfg.SnapshotThreshold, err)
	}
	t.Setenv("DEPLOYCTL_SNAPSHOT_THRESHOLD", "200")
	if cfg, err = mustServerConfig(t, []string{"--dev", "--snapshot-interval", "0"}, file); err != nil || cfg.SnapshotInterval != 0 || cfg.SnapshotThreshold != 200 {
		t.Fatalf("flag and variable over the file: %s %d %v", cfg.SnapshotInterval, cfg.SnapshotThreshold, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dev", "--snapshot-interval", "-1m"}, "--snapshot-interval -1m0s"},
		{[]string{"--dev", "--snapshot-threshold", "0"}, "--snapshot-threshold 0"},
	} {
		if _, err := mustServerConfig(t, c.args, ""); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
