package raftstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/deployctl/deployctl/raftstore/state"
)

// ErrHasRaftState refuses to restore into a data directory that already
// holds raft state: restore writes a fresh store, never over another.
var ErrHasRaftState = errors.New("the data directory already holds raft state")

// RestoreOptions say where and as which server a backup becomes a raft
// store.
type RestoreOptions struct {
	// DataDir is the server's --data-dir; DATA/raft must not hold state.
	DataDir string
	// NodeID and RaftAddr are the one server of the new configuration:
	// the --node-id and the raft address (--raft-advertise, else
	// --raft-addr) the server will be started with.
	NodeID   string
	RaftAddr string
	Logger   hclog.Logger // nil: no logging
}

// RestoreResult says what a restore wrote.
type RestoreResult struct {
	// Index is the raft index of the snapshot written (the backup's).
	Index uint64
	// SnapshotDir is the raft snapshot's directory.
	SnapshotDir string
	// DroppedServers are the old cluster's server records, left out: the
	// new servers register themselves when they start and join.
	DroppedServers []string
	// SecretKeyIDs are the key-encryption keys the secrets are sealed
	// with: the server needs that key file to open them.
	SecretKeyIDs []string
}

// RestoreBackup writes a fresh raft store in opts.DataDir from a verified
// backup: one raft snapshot holding the backup's state, whose
// configuration is this server alone. A server opened on it (Open, with
// or without Bootstrap: it holds state, so it is never bootstrapped)
// elects itself and serves the state; other servers then join it as
// usual. It relies on nothing of the old cluster: its servers' records
// are dropped, and the snapshot starts a new raft history at term 1 and
// the backup's index (every index recorded in the state stays below the
// new entries', so the state's guards keep working).
func RestoreBackup(b *Backup, opts RestoreOptions) (RestoreResult, error) {
	switch {
	case opts.DataDir == "":
		return RestoreResult{}, errors.New("raftstore restore: the data directory is required")
	case opts.NodeID == "":
		return RestoreResult{}, errors.New("raftstore restore: the node id is required")
	case opts.RaftAddr == "":
		return RestoreResult{}, errors.New("raftstore restore: the raft address is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	raftDir := filepath.Join(opts.DataDir, "raft")
	if err := checkNoRaftState(raftDir); err != nil {
		return RestoreResult{}, err
	}
	store, err := b.Decode()
	if err != nil {
		return RestoreResult{}, err
	}
	index := store.View().Index()
	if index == 0 {
		return RestoreResult{}, fmt.Errorf("%w: it holds no raft index (an empty state)", ErrBadBackup)
	}
	res := RestoreResult{Index: index}
	for _, s := range store.View().Servers() {
		if err := store.ApplyDeregisterServer(index, state.DeregisterServerCmd{ID: s.ID}); err != nil {
			return res, fmt.Errorf("drop the record of server %s: %w", s.ID, err)
		}
		res.DroppedServers = append(res.DroppedServers, s.ID)
	}
	res.SecretKeyIDs = SecretKeyIDs(store.View())

	// 0700 as Open makes it: the state holds every declared service.
	if err := os.MkdirAll(filepath.Join(raftDir, "snapshots"), 0o700); err != nil {
		return res, fmt.Errorf("raftstore restore: create %s: %w", raftDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, snapshotsRetained, logger.Named("snapshots"))
	if err != nil {
		return res, fmt.Errorf("raftstore restore: open snapshot store: %w", err)
	}
	// The snapshot's metadata encodes its voters through a transport;
	// every raft transport encodes a peer as its address.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(opts.RaftAddr))
	defer trans.Close()
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(opts.NodeID), Address: raft.ServerAddress(opts.RaftAddr),
	}}}
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, conf, index, trans)
	if err != nil {
		return res, fmt.Errorf("raftstore restore: create snapshot: %w", err)
	}
	if _, err := store.View().WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return res, fmt.Errorf("raftstore restore: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return res, fmt.Errorf("raftstore restore: finish snapshot: %w", err)
	}
	res.SnapshotDir = filepath.Join(raftDir, "snapshots", sink.ID())
	return res, nil
}

// checkNoRaftState refuses a raft directory with anything in it but an
// empty snapshots directory (what a first Open leaves before any write
// is still state: raft.db).
func checkNoRaftState(raftDir string) error {
	entries, err := os.ReadDir(raftDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftstore restore: read %s: %w", raftDir, err)
	}
	var held []string
	for _, e := range entries {
		if e.IsDir() && e.Name() == "snapshots" {
			snaps, err := os.ReadDir(filepath.Join(raftDir, e.Name()))
			if err != nil {
				return fmt.Errorf("raftstore restore: read %s: %w", filepath.Join(raftDir, e.Name()), err)
			}
			for _, s := range snaps {
				held = append(held, filepath.Join("snapshots", s.Name()))
			}
			continue
		}
		held = append(held, e.Name())
	}
	if len(held) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s holds %s; restore writes a fresh raft store and never replaces one: give an empty --data-dir, or move %s away first (stop the server that uses it)",
		ErrHasRaftState, raftDir, strings.Join(held, ", "), raftDir)
}

// SecretKeyIDs lists the key-encryption keys a state's secrets are sealed
// with (sorted): a server needs that key file to open them.
func SecretKeyIDs(view *state.Tables) []string {
	keys := map[string]bool{}
	for _, sec := range view.Secrets() {
		for _, v := range sec.Versions {
			keys[v.Sealed.KeyID] = true
		}
	}
	ids := make([]string, 0, len(keys))
	for k := range keys {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	return ids
}
