package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up the cluster's state (save) and start a new cluster from a backup (restore)",
	}
	cmd.AddCommand(newSnapshotSaveCmd(g), newSnapshotRestoreCmd(g))
	return cmd
}

// snapshotSummary is what save and restore report about a backup.
type snapshotSummary struct {
	File       string    `json:"file"`
	Index      uint64    `json:"index"`
	Term       uint64    `json:"term"`
	FSMVersion int       `json:"fsm_version"`
	Node       string    `json:"node"`
	Created    time.Time `json:"created"`
	SHA256     string    `json:"sha256"`
	Bytes      int64     `json:"bytes"`
	Services   int       `json:"services"`
	Revisions  int       `json:"revisions"`
	Secrets    int       `json:"secrets"`
	Policy     int       `json:"policy_version"`
	// SecretKeyIDs are the key-encryption keys the secrets are sealed with.
	SecretKeyIDs []string `json:"secret_key_ids"`
}

func summarize(file string, size int64, b *raftstore.Backup, view *state.Tables) snapshotSummary {
	s := snapshotSummary{File: file, Index: b.Meta.Index, Term: b.Meta.Term, FSMVersion: b.Meta.FSMVersion, Node: b.Meta.Node,
		Created: b.Meta.Created, SHA256: b.SHA256, Bytes: size, Secrets: len(view.Secrets()), SecretKeyIDs: raftstore.SecretKeyIDs(view)}
	for _, svc := range view.Services() {
		s.Services++
		s.Revisions += len(view.Revisions(svc.Name))
	}
	if p, ok := view.Policy(); ok {
		s.Policy = p.Version
	}
	return s
}

func (s snapshotSummary) line() string {
	return fmt.Sprintf("index %d (term %d) from %s at %s, FSM version %d: %d services, %d revisions, %d secrets, policy version %d; %d bytes, sha256 %s",
		s.Index, s.Term, s.Node, s.Created.Format(time.RFC3339), s.FSMVersion, s.Services, s.Revisions, s.Secrets, s.Policy, s.Bytes, s.SHA256)
}

func newSnapshotSaveCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Write a consistent backup of the cluster's state, taken on the leader, to FILE",
		Long: `save asks the leader (through any server at --addr) for its state: every
service, revision, replica, host, the policy and the secrets (sealed: their
ciphertext only), as of one raft index, including every write acknowledged
before the command started. Operator certificate.

The file carries its metadata (raft index, term, FSM version, leader, time)
and a SHA-256 checksum, and is written atomically with mode 0600: a
temporary file next to FILE, checked, then renamed. A transfer cut short
leaves nothing at FILE.

The secrets' key-encryption key is not in the file: keep a copy of a
server's key file (DATA-DIR/secrets.key, or --secrets-key-file) apart from
the backups. Restore with 'deployctl snapshot restore'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			sum, err := saveSnapshot(ctx, g, args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), sum, func(w io.Writer) {
				fmt.Fprintf(w, "saved %s: %s\n", sum.File, sum.line())
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long")
	return cmd
}

// saveSnapshot streams the leader's backup into a temporary file next to
// file, verifies it, and renames it into place.
func saveSnapshot(ctx context.Context, g *globals, file string) (snapshotSummary, error) {
	dir, base := filepath.Split(file)
	if base == "" {
		return snapshotSummary{}, exitWith(ExitUsage, fmt.Errorf("FILE %q names a directory: give a file name, e.g. %sdeployctl-%s.snap", file, dir, time.Now().UTC().Format("20060102-150405")))
	}
	if dir == "" {
		dir = "."
	}
	// CreateTemp makes it 0600: it holds the secrets' ciphertext.
	tmp, err := os.CreateTemp(dir, "."+base+".partial-*")
	if err != nil {
		return snapshotSummary{}, exitWith(ExitError, fmt.Errorf("create a temporary file next to %s: %w", file, err))
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := g.client().Snapshot(ctx, tmp); err != nil {
		return snapshotSummary{}, clientErr(fmt.Errorf("snapshot save (nothing written to %s): %w", file, err))
	}
	if err := tmp.Sync(); err != nil {
		return snapshotSummary{}, exitWith(ExitError, fmt.Errorf("write %s: %w", tmp.Name(), err))
	}
	size, _ := tmp.Seek(0, io.SeekCurrent)
	if err := tmp.Close(); err != nil {
		return snapshotSummary{}, exitWith(ExitError, fmt.Errorf("write %s: %w", tmp.Name(), err))
	}
	b, err := raftstore.ReadBackupFile(tmp.Name())
	if err != nil {
		return snapshotSummary{}, exitWith(ExitError, fmt.Errorf("the snapshot received is not usable, nothing written to %s: %w", file, err))
	}
	store, err := b.Decode()
	if err != nil {
		return snapshotSummary{}, exitWith(ExitError, fmt.Errorf("the snapshot received does not decode, nothing written to %s: %w", file, err))
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return snapshotSummary{}, exitWith(ExitError, fmt.Errorf("move the snapshot to %s: %w", file, err))
	}
	keep = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename survives a crash
		d.Close()
	}
	return summarize(file, size, b, store.View()), nil
}

func newSnapshotRestoreCmd(g *globals) *cobra.Command {
	var dataDir, nodeID, raftAddr, keyFile string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR --node-id ID [--raft-addr ADDR]",
		Short: "Write a new one-server raft store from a backup, for a server to start on (offline)",
		Long: `restore checks FILE (its checksum, then its state) and writes into DIR/raft a
fresh raft store holding the backup's state, whose configuration is one
server: ID at ADDR. It runs offline, on the machine of the new server,
before that server starts, and refuses a DIR whose raft/ directory already
holds anything (naming it).

Then start the server on DIR with the same node id and raft address, as a
cluster of one:

  deployctl server --node-id ID --data-dir DIR --raft-addr ADDR \
    --bootstrap-expect 1 --tls-ca ... --tls-cert ID.pem --tls-key ID-key.pem

It leads at once with every service, revision, policy and secret of the
backup; nothing of the old cluster is needed (its servers' records are
dropped; the new servers register when they start). Add servers with
--join as usual. Secrets open only with the key-encryption key they were
sealed with: copy the old servers' key file to DIR/secrets.key (or pass the
server --secrets-key-file). restore refuses a key file at DIR/secrets.key (or
--secrets-key-file) that is not that key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" || nodeID == "" {
				return exitWith(ExitUsage, errors.New("--data-dir and --node-id are required: the new server's data directory and node id"))
			}
			if err := pki.ValidateNodeName(nodeID); err != nil {
				return exitWith(ExitUsage, fmt.Errorf("--node-id: %w", err))
			}
			if err := checkRaftAdvertise(raftAddr); err != nil {
				return exitWith(ExitUsage, err)
			}
			b, err := raftstore.ReadBackupFile(args[0])
			if err != nil {
				return exitWith(ExitError, err)
			}
			store, err := b.Decode()
			if err != nil {
				return exitWith(ExitError, fmt.Errorf("%s: %w", args[0], err))
			}
			fi, err := os.Stat(args[0])
			if err != nil {
				return exitWith(ExitError, err)
			}
			sum := summarize(args[0], fi.Size(), b, store.View())
			keyNote, err := checkRestoreKey(dataDir, keyFile, sum.SecretKeyIDs)
			if err != nil {
				return exitWith(ExitError, err)
			}
			res, err := raftstore.RestoreBackup(b, raftstore.RestoreOptions{DataDir: dataDir, NodeID: nodeID, RaftAddr: raftAddr})
			if err != nil {
				return exitWith(ExitError, err)
			}
			out := struct {
				snapshotSummary
				DataDir        string   `json:"data_dir"`
				NodeID         string   `json:"node_id"`
				RaftAddr       string   `json:"raft_addr"`
				DroppedServers []string `json:"dropped_servers"`
				Secrets        string   `json:"secrets_key"`
			}{sum, dataDir, nodeID, raftAddr, res.DroppedServers, keyNote}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				fmt.Fprintf(w, "restored %s into %s: %s\n", args[0], res.SnapshotDir, sum.line())
				fmt.Fprintf(w, "raft configuration: %s at %s, alone; old servers' records dropped: %s\n", nodeID, raftAddr, strings.Join(res.DroppedServers, ", "))
				fmt.Fprintf(w, "secrets: %s\n", keyNote)
				fmt.Fprintf(w, "start it: deployctl server --node-id %s --data-dir %s --raft-addr %s --bootstrap-expect 1 (and its TLS flags); then start new servers with --join\n",
					nodeID, dataDir, raftAddr)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the new server's data directory (its raft/ must be empty or absent)")
	f.StringVar(&nodeID, "node-id", "", "the new server's node id (its certificate's name)")
	f.StringVar(&raftAddr, "raft-addr", "127.0.0.1:7071", "the raft address the new server advertises: its --raft-advertise, else its --raft-addr")
	f.StringVar(&keyFile, "secrets-key-file", "", "the key file the server will use (default DATA-DIR/secrets.key): checked against the secrets' key when it exists")
	return cmd
}

// checkRaftAdvertise refuses a raft address peers could not dial.
func checkRaftAdvertise(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" {
		return fmt.Errorf("--raft-addr %q: want the HOST:PORT the new server advertises to its peers, e.g. 10.0.0.4:7071", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("--raft-addr %q: peers cannot dial %s; give the address they reach the new server at", addr, host)
	}
	return nil
}

// checkRestoreKey compares the key file the server will use, when it
// exists, with the keys the secrets are sealed with, and says what to do.
func checkRestoreKey(dataDir, keyFile string, want []string) (string, error) {
	if keyFile == "" {
		keyFile = filepath.Join(dataDir, "secrets.key")
	}
	if len(want) == 0 {
		return "none in the backup", nil
	}
	key, err := secretbox.LoadKeyFile(keyFile)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("sealed with key %s: copy the old servers' key file to %s before starting the server (without it the server makes a new key and cannot open them)",
			strings.Join(want, ", "), keyFile), nil
	}
	if err != nil {
		return "", fmt.Errorf("--secrets-key-file %s: %w", keyFile, err)
	}
	if !slices.Contains(want, key.ID()) {
		return "", fmt.Errorf("%s is key %s, but the backup's secrets are sealed with %s: the server could not open them; copy the old servers' key file there (or pass --secrets-key-file)",
			keyFile, key.ID(), strings.Join(want, ", "))
	}
	return fmt.Sprintf("sealed with key %s, which %s holds", key.ID(), keyFile), nil
}

// The servers' snapshot settings (issue 17): raft's default threshold of
// 8,192 entries left a data dir without any snapshot after days of normal
// use. 1,024 entries and 5 minutes keep one recent at the cost of writing
// the state (kilobytes to a few megabytes) that often at most.
const (
	defaultSnapshotInterval  = 5 * time.Minute
	defaultSnapshotThreshold = 1024
)

func checkSnapshotSettings(cfg serverConfig) error {
	if cfg.SnapshotInterval < 0 {
		return fmt.Errorf("--snapshot-interval %s: want a duration such as 5m, or 0 for no scheduled snapshots", cfg.SnapshotInterval)
	}
	if cfg.SnapshotThreshold == 0 {
		return fmt.Errorf("--snapshot-threshold 0: want a number of log entries, at least 1 (default %d)", defaultSnapshotThreshold)
	}
	return nil
}
