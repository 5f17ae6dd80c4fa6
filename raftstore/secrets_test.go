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
