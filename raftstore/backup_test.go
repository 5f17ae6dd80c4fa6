package raftstore

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/raftstore/state"
)

// sourceState is an old cluster's state: services and revisions,
// replicas, a host, a policy, three registered servers and a sealed
// secret (what a backup must carry).
func sourceState(t *testing.T) (*FSM, *secretbox.Key) {
	t.Helper()
	f, fatals := recordingFSM()
	applyAll(t, f, testLog(t))
	k, err := secretbox.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	next := f.Store().View().Index() + 1
	for i, id := range []string{"n2", "n3"} {
		f.Apply(&raft.Log{Index: next + uint64(i), Type: raft.LogCommand, Data: mustEncode(t, CmdRegisterServer,
			state.RegisterServerCmd{Server: state.ServerInfo{ID: id, RaftAddr: id + ":1", APIAddr: id + ":2", Version: FSMVersion}})})
	}
	if res := f.Apply(&raft.Log{Index: next + 2, Type: raft.LogCommand, Data: sealedPut(t, k, "db", 1, "the-value")}); res != nil {
		t.Fatalf("put secret: %v", res)
	}
	if len(*fatals) > 0 {
		t.Fatalf("fatal entries: %+v", *fatals)
	}
	return f, k
}

func mustBackup(t *testing.T, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	meta := BackupMeta{FSMVersion: FSMVersion, Index: f.Store().View().Index(), Term: 7, Node: "n1", Created: t0}
	if err := WriteBackup(&buf, meta, f.Store().View()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A backup reads back whole; a truncated or altered one is refused with
// what is wrong, before anything is decoded.
func TestBackupRefusesTruncatedOrCorruptFiles(t *testing.T) {
	f, _ := sourceState(t)
	data := mustBackup(t, f)
	b, err := ReadBackup(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ReadBackup of a whole file: %v", err)
	}
	if b.Meta.Index != f.Store().View().Index() || b.Meta.Term != 7 || b.Meta.FSMVersion != FSMVersion || b.Meta.Node != "n1" {
		t.Fatalf("meta = %+v", b.Meta)
	}
	store, err := b.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := store.View().Secret("db"); !ok || len(store.View().Revisions("web")) != 2 {
		t.Fatalf("decoded state lacks the secret or web's revisions")
	}

	// Cut anywhere: refused as truncated.
	for _, n := range []int{0, 5, len(backupMagic) + 3, len(data) / 2, len(data) - 40, len(data) - 1} {
		_, err := ReadBackup(bytes.NewReader(data[:n]))
		if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("cut at %d of %d bytes: %v, want a truncated file refused", n, len(data), err)
		}
	}
	// One byte changed in the metadata, in the state, or in the
	// checksum: refused as corrupt.
	metaAt := len(backupMagic) + bytes.Index(data[len(backupMagic):], []byte(`"index":`)) + len(`"index":`)
	stateAt := bytes.Index(data, []byte(`"services"`)) + 2
	sumAt := len(data) - 10
	for name, at := range map[string]int{"metadata": metaAt, "state": stateAt, "checksum": sumAt} {
		bad := bytes.Clone(data)
		bad[at] = flipDigitOrLetter(bad[at])
		_, err := ReadBackup(bytes.NewReader(bad))
		if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("a byte of the %s changed: %v, want a corrupt file refused", name, err)
		}
	}
	// Not a snapshot at all.
	if _, err := ReadBackup(strings.NewReader("services:\n  - web\n")); !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), "snapshot save") {
		t.Errorf("a YAML file: %v", err)
	}
	// A snapshot of a newer FSM: read, but not decoded.
	var newer bytes.Buffer
	if err := WriteBackup(&newer, BackupMeta{FSMVersion: FSMVersion + 1, Index: 3}, f.Store().View()); err != nil {
		t.Fatal(err)
	}
	nb, err := ReadBackup(&newer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nb.Decode(); !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), "FSM version "+strconv.Itoa(FSMVersion+1)) {
		t.Errorf("a newer FSM version: %v", err)
	}
}

// flipDigitOrLetter changes a byte to another of the same kind, so JSON
// and hex stay well formed and only the checksum can tell.
func flipDigitOrLetter(c byte) byte {
	switch {
	case c >= '0' && c <= '8':
		return c + 1
	case c == '9':
		return '0'
	case c >= 'a' && c <= 'e':
		return c + 1
	}
	return 'a'
}

// Restore never writes over raft state, and says which files it found.
func TestRestoreRefusesADataDirWithRaftState(t *testing.T) {
	f, _ := sourceState(t)
	b, err := ReadBackup(bytes.NewReader(mustBackup(t, f)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "raft", "snapshots", "3-40-123"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raft", "raft.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := RestoreOptions{DataDir: dir, NodeID: "r1", RaftAddr: "127.0.0.1:7071"}
	_, err = RestoreBackup(b, opts)
	if !errors.Is(err, ErrHasRaftState) || !strings.Contains(err.Error(), "raft.db") || !strings.Contains(err.Error(), filepath.Join("snapshots", "3-40-123")) {
		t.Fatalf("restore over raft state: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "raft", "raft.db")); string(data) != "x" {
		t.Fatal("the existing raft.db was touched")
	}
	// A data dir holding other files (the copied key file) and an empty
	// raft layout is fresh.
	fresh := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fresh, "raft", "snapshots"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fresh, "secrets.key"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts.DataDir = fresh
	if _, err := RestoreBackup(b, opts); err != nil {
		t.Fatalf("restore into an empty layout: %v", err)
	}
	// Once restored, the same directory is refused.
	if _, err := RestoreBackup(b, opts); !errors.Is(err, ErrHasRaftState) {
		t.Fatalf("second restore into the same dir: %v", err)
	}
}

// A restored data dir opens as the leader of a one-server cluster at a
// new address, with the whole state (the old servers' records dropped),
// keeps applying, and a second server joining gets the state.
func TestRestoredStoreLeadsAloneAndGrows(t *testing.T) {
	f, k := sourceState(t)
	src := f.Store().View()
	b, err := ReadBackup(bytes.NewReader(mustBackup(t, f)))
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeLoopbackAddr(t)
	res, err := RestoreBackup(b, RestoreOptions{DataDir: dir, NodeID: "r1", RaftAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	if res.Index != src.Index() || strings.Join(res.DroppedServers, ",") != "n1,n2,n3" || strings.Join(res.SecretKeyIDs, ",") != k.ID() {
		t.Fatalf("restore result %+v", res)
	}

	store := state.NewStore()
	cfg := testConfig("r1", dir, NewFSM(store))
	cfg.BindAddr, cfg.Bootstrap = addr, true // as `server --bootstrap-expect 1`
	n := mustOpen(t, cfg)
	if id := mustWaitForLeader(t, n); id != "r1" {
		t.Fatalf("leader %q, want r1", id)
	}
	if !n.HadState() || n.bootstrapped {
		t.Fatal("the restored node was bootstrapped instead of starting from its snapshot")
	}
	if s := mustServers(t, n); len(s) != 1 || s[0].ID != "r1" || s[0].Address != addr || !s[0].Voter {
		t.Fatalf("configuration %+v, want r1 alone at %s", s, addr)
	}
	view := store.View()
	if len(view.Servers()) != 0 {
		t.Fatalf("old server records kept: %+v", view.Servers())
	}
	sec, ok := view.Secret("db")
	if !ok {
		t.Fatal("secret lost")
	}
	if v, err := k.Open(sec.Versions[0].Sealed, state.SecretAAD("db", 1)); err != nil || string(v) != "the-value" {
		t.Fatalf("secret after restore: %q %v", v, err)
	}
	if got, want := len(view.Revisions("web")), len(src.Revisions("web")); got != want {
		t.Fatalf("web has %d revisions, want %d", got, want)
	}
	if p, ok := view.Policy(); !ok || p.Version != 1 {
		t.Fatalf("policy after restore: %+v %v", p, ok)
	}
	// New entries follow the backup's index.
	ctx := boundedContext(t)
	reg := mustEncode(t, CmdRegisterServer, state.RegisterServerCmd{Server: state.ServerInfo{ID: "r1", RaftAddr: addr, APIAddr: "127.0.0.1:1", Version: FSMVersion}})
	if _, err := n.Apply(ctx, reg); err != nil {
		t.Fatal(err)
	}
	if store.View().Index() <= src.Index() {
		t.Fatalf("index %d after a write, want above the backup's %d", store.View().Index(), src.Index())
	}

	// A fresh server joins and receives the state.
	joinStore := state.NewStore()
	j := mustOpen(t, testConfig("r2", t.TempDir(), NewFSM(joinStore)))
	if err := n.AddVoter(ctx, "r2", j.Addr()); err != nil {
		t.Fatal(err)
	}
	mustEventually(t, "the joined server holds the secret and the new registration", func() bool {
		_, hasSecret := joinStore.View().Secret("db")
		_, hasR1 := joinStore.View().Server("r1")
		return hasSecret && hasR1
	})
}

// The schedule snapshots a quiet log far below raft's threshold.
func TestScheduledSnapshotBelowThreshold(t *testing.T) {
	fsm := &listFSM{}
	cfg := testConfig("n1", t.TempDir(), fsm)
	cfg.Bootstrap = true
	cfg.SnapshotThreshold = 1 << 20
	cfg.SnapshotSchedule = 100 * time.Millisecond
	n := mustOpen(t, cfg)
	mustWaitForLeader(t, n)
	mustApply(t, n, "a")
	// The leader's applied index follows the Apply's answer shortly.
	mustEventually(t, "the entry counted as applied", func() bool { return n.AppliedIndex() > 0 })
	applied := n.AppliedIndex()
	snapshotIndex := func() uint64 {
		i, _ := strconv.ParseUint(n.Stats()["last_snapshot_index"], 10, 64)
		return i
	}
	mustEventually(t, "a scheduled snapshot at the applied index", func() bool { return snapshotIndex() >= applied })
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(cfg.DataDir, "raft"), 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := snaps.List()
	if err != nil || len(list) == 0 || list[0].Index < applied {
		t.Fatalf("snapshots on disk %+v %v, want one at index >= %d", list, err, applied)
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
