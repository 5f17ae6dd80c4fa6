package raftstore

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/raftstore/state"
)

func sealedPut(t *testing.T, k *secretbox.Key, name string, version int, value string) []byte {
	t.Helper()
	s, err := k.Seal(rand.Reader, []byte(value), state.SecretAAD(name, version))
	if err != nil {
		t.Fatal(err)
	}
	return mustEncode(t, CmdPutSecret, state.PutSecretCmd{Now: t0, Name: name, Version: version, Size: len(value), Sealed: s})
}

// Secrets are commands of FSM version 3: an older server never sees one.
func TestSecretCommandsAreGated(t *testing.T) {
	f, _ := recordingFSM()
	k, _ := secretbox.GenerateKey(rand.Reader)
	members := func() ([]string, error) { return []string{"n1", "n2"}, nil }
	for i, s := range []state.ServerInfo{{ID: "n1", Version: FSMVersion}, {ID: "n2", Version: 2}} {
		s.RaftAddr, s.APIAddr = s.ID+":1", s.ID+":2"
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: mustEncode(t, CmdRegisterServer, state.RegisterServerCmd{Server: s})})
	}
	for _, cmd := range [][]byte{sealedPut(t, k, "db", 1, "x"), mustEncode(t, CmdDeleteSecret, state.DeleteSecretCmd{Name: "db"})} {
		if err := f.Admit(cmd, members); !errors.Is(err, ErrVersionGate) || !strings.Contains(err.Error(), "n2 (version 2)") {
			t.Fatalf("Admit = %v, want ErrVersionGate naming n2", err)
		}
	}
	f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: mustEncode(t, CmdRegisterServer,
		state.RegisterServerCmd{Server: state.ServerInfo{ID: "n2", RaftAddr: "n2:1", APIAddr: "n2:2", Version: 3}})})
	if err := f.Admit(sealedPut(t, k, "db", 1, "x"), members); err != nil {
		t.Fatalf("Admit with every server at version 3: %v", err)
	}
}

// Versions are numbered by the FSM's guard, a version a revision holds is
// never removed, and neither the log nor a snapshot holds the value.
func TestSecretVersionsAndRemoval(t *testing.T) {
	f, fatals := recordingFSM()
	k, _ := secretbox.GenerateKey(rand.Reader)
	const v1, v2 = "first-value-0123456789", "second-value-abcdefghij"
	var log [][]byte
	apply := func(data []byte) any {
		log = append(log, data)
		return f.Apply(&raft.Log{Index: uint64(len(log)), Type: raft.LogCommand, Data: data})
	}
	if res := apply(sealedPut(t, k, "db", 1, v1)); res != nil {
		t.Fatal(res)
	}
	// A second value sealed for version 1 again: refused (the leader
	// raced another create), nothing stored.
	if err, _ := apply(sealedPut(t, k, "db", 1, v2)).(error); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("duplicate version: %v", err)
	}
	if res := apply(sealedPut(t, k, "db", 2, v2)); res != nil {
		t.Fatal(res)
	}
	sec, ok := f.Store().View().Secret("db")
	if !ok || len(sec.Versions) != 2 || sec.NextVersion != 3 || sec.Versions[1].Size != len(v2) {
		t.Fatalf("secret = %+v", sec)
	}
	got, err := k.Open(sec.Versions[1].Sealed, state.SecretAAD("db", 2))
	if err != nil || string(got) != v2 {
		t.Fatalf("open v2: %q %v", got, err)
	}

	// A revision pinning version 1 is current: neither version 1 nor the
	// whole secret may go; version 2 may.
	rev := testRevision("web", "sha256:aa")
	rev.Secrets = []state.SecretPin{{Name: "db", Version: 1}}
	if err, _ := apply(mustEncode(t, CmdApplyRevision, state.ApplyRevisionCmd{Now: t0, Revision: rev})).(error); err != nil {
		t.Fatal(err)
	}
	for _, c := range []state.DeleteSecretCmd{{Name: "db", Version: 1}, {Name: "db"}} {
		err, _ := apply(mustEncode(t, CmdDeleteSecret, c)).(error)
		if !errors.Is(err, state.ErrConflict) || !strings.Contains(err.Error(), "web revision 1 (version 1, current)") {
			t.Fatalf("delete %+v: %v", c, err)
		}
	}
	if res := apply(mustEncode(t, CmdDeleteSecret, state.DeleteSecretCmd{Name: "db", Version: 2})); res != nil {
		t.Fatal(res)
	}
	if err, _ := apply(mustEncode(t, CmdDeleteSecret, state.DeleteSecretCmd{Name: "db", Version: 2})).(error); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("delete a removed version: %v", err)
	}
	// Removed versions are never numbered again.
	if res := apply(sealedPut(t, k, "db", 3, v2)); res != nil {
		t.Fatal(res)
	}
	if len(*fatals) != 0 {
		t.Fatalf("fatal entries: %v", *fatals)
	}

	snap := mustSnapshotBytes(t, f)
	for _, value := range []string{v1, v2} {
		for _, enc := range []string{value, base64.StdEncoding.EncodeToString([]byte(value))} {
			if bytes.Contains(snap, []byte(enc)) {
				t.Fatalf("snapshot holds %q", enc)
			}
			for i, e := range log {
				if bytes.Contains(e, []byte(enc)) {
					t.Fatalf("log entry %d holds %q", i+1, enc)
				}
			}
		}
	}
	// A restored snapshot has the same secrets.
	g := NewFSM(state.NewStore())
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got := mustSnapshotBytes(t, g); !bytes.Equal(got, snap) {
		t.Fatalf("restored snapshot differs:\n%s\nwant\n%s", got, snap)
	}
}

// A key rotation (FSM version 4) re-wraps every version the leader read;
// one created meanwhile makes it a conflict; afterwards only the new key
// may seal, the values open with it, and a snapshot keeps the key id.
func TestRotateSecretsKey(t *testing.T) {
	f, fatals := recordingFSM()
	oldKey, _ := secretbox.GenerateKey(rand.Reader)
	newKey, _ := secretbox.GenerateKey(rand.Reader)
	index := uint64(0)
	apply := func(data []byte) error {
		index++
		err, _ := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(error)
		return err
	}
	for _, s := range []state.ServerInfo{{ID: "n1", Version: FSMVersion}, {ID: "n2", Version: 3}} {
		s.RaftAddr, s.APIAddr = s.ID+":1", s.ID+":2"
		if err := apply(mustEncode(t, CmdRegisterServer, state.RegisterServerCmd{Server: s})); err != nil {
			t.Fatal(err)
		}
	}
	rotateCmd := func(names ...string) []byte {
		cmd := state.RotateSecretsKeyCmd{OldKeyID: oldKey.ID(), NewKeyID: newKey.ID()}
		view := f.Store().View()
		for _, n := range names {
			sec, _ := view.Secret(n)
			for _, v := range sec.Versions {
				re, err := oldKey.Rewrap(v.Sealed, state.SecretAAD(n, v.Version), newKey, rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				cmd.Keys = append(cmd.Keys, state.RewrappedKey{Name: n, Version: v.Version, WrappedKey: re.WrappedKey})
			}
		}
		return mustEncode(t, CmdRotateSecretsKey, cmd)
	}
	if err := f.Admit(rotateCmd(), func() ([]string, error) { return []string{"n1", "n2"}, nil }); !errors.Is(err, ErrVersionGate) {
		t.Fatalf("rotation with n2 at version 3: %v", err)
	}
	for _, p := range [][]byte{sealedPut(t, oldKey, "db", 1, "one"), sealedPut(t, oldKey, "db", 2, "two"), sealedPut(t, oldKey, "api", 1, "three")} {
		if err := apply(p); err != nil {
			t.Fatal(err)
		}
	}
	if id := f.Store().View().SecretsKeyID(); id != oldKey.ID() {
		t.Fatalf("key id before rotation %q, want the values' %s", id, oldKey.ID())
	}
	// The leader read db only; api was created meanwhile: refused whole.
	if err := apply(rotateCmd("db")); !errors.Is(err, state.ErrConflict) || !strings.Contains(err.Error(), "api version 1") {
		t.Fatalf("rotation missing a version: %v", err)
	}
	if sec, _ := f.Store().View().Secret("db"); sec.Versions[0].Sealed.KeyID != oldKey.ID() {
		t.Fatal("a refused rotation changed a version")
	}
	full := rotateCmd("db", "api")
	if err := apply(full); err != nil {
		t.Fatal(err)
	}
	view := f.Store().View()
	if view.SecretsKeyID() != newKey.ID() {
		t.Fatalf("key id after rotation %q", view.SecretsKeyID())
	}
	for name, want := range map[string][]string{"db": {"one", "two"}, "api": {"three"}} {
		sec, _ := view.Secret(name)
		for i, v := range sec.Versions {
			got, err := newKey.Open(v.Sealed, state.SecretAAD(name, v.Version))
			if err != nil || string(got) != want[i] {
				t.Fatalf("%s v%d after rotation: %q %v", name, v.Version, got, err)
			}
			if _, err := oldKey.Open(v.Sealed, state.SecretAAD(name, v.Version)); !errors.Is(err, secretbox.ErrWrongKey) {
				t.Fatalf("%s v%d opens with the old key: %v", name, v.Version, err)
			}
		}
	}
	// The same command again (a retry after a lost answer): nothing changes.
	if err := apply(full); err != nil {
		t.Fatalf("repeated rotation: %v", err)
	}
	// Only the new key may seal now.
	if err := apply(sealedPut(t, oldKey, "db", 3, "late")); !errors.Is(err, state.ErrConflict) || !strings.Contains(err.Error(), newKey.ID()) {
		t.Fatalf("a value sealed with the old key after rotation: %v", err)
	}
	if err := apply(sealedPut(t, newKey, "db", 3, "four")); err != nil {
		t.Fatal(err)
	}
	// A rotation from a key the cluster no longer uses is refused.
	stale := mustEncode(t, CmdRotateSecretsKey, state.RotateSecretsKeyCmd{OldKeyID: oldKey.ID(), NewKeyID: "0123456789abcdef"})
	if err := apply(stale); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("rotation from the old key again: %v", err)
	}
	if len(*fatals) != 0 {
		t.Fatalf("fatal entries: %v", *fatals)
	}
	snap := mustSnapshotBytes(t, f)
	g := NewFSM(state.NewStore())
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if id := g.Store().View().SecretsKeyID(); id != newKey.ID() {
		t.Fatalf("restored key id %q", id)
	}
	if bytes.Contains(snap, []byte(oldKey.ID())) {
		t.Fatal("the snapshot still names the old key")
	}
}
