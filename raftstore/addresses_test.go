package raftstore

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/deployctl/deployctl/raftstore/state"
)

// addressLog creates services before and after service addresses are
// turned on, purges one and creates another: indexes are the positions
// in the log, from 1.
func addressLog(t *testing.T) [][]byte {
	t.Helper()
	apply := func(svc string) []byte {
		return mustEncode(t, CmdApplyRevision, state.ApplyRevisionCmd{Now: t0, Revision: testRevision(svc, "sha256:"+svc)})
	}
	return [][]byte{
		apply("web"), // 1: before addresses: none
		apply("api"), // 2
		mustEncode(t, CmdAssignAddresses, state.AssignAddressesCmd{}), // 3: api .1, web .2 (name order)
		apply("db"), // 4: .3
		mustEncode(t, CmdDeleteService, state.DeleteServiceCmd{Now: t0, Service: "api"}),                                                  // 5
		mustEncode(t, CmdRolloutStep, state.RolloutStepCmd{Now: t0, Service: "api", ExpectCurrent: 1, ExpectModifyIndex: 5, Purge: true}), // 6: .1 is free again
		apply("cache"), // 7: .1, the lowest free
		mustEncode(t, CmdApplyRevision, state.ApplyRevisionCmd{Now: t0, ExpectCurrent: 1, Revision: testRevision("web", "sha256:web2")}), // 8: web keeps .2
		mustEncode(t, CmdAssignAddresses, state.AssignAddressesCmd{}),                                                                    // 9: nothing to do
	}
}

func vips(v *state.Tables) map[string]string {
	out := map[string]string{}
	for _, s := range v.Services() {
		out[s.Name] = s.VIP
	}
	return out
}

func TestFSMAssignsServiceAddresses(t *testing.T) {
	f := NewFSM(state.NewStore())
	log := addressLog(t)
	for i, res := range applyAll(t, f, log[:2]) {
		if err, ok := res.(error); ok {
			t.Fatalf("entry %d: %v", i+1, err)
		}
	}
	if got := vips(f.Store().View()); got["web"] != "" || got["api"] != "" || f.Store().View().AddressesOn() {
		t.Fatalf("before addresses are on: %v", got)
	}
	for i, e := range log[2:] {
		if res := f.Apply(&raft.Log{Index: uint64(i + 3), Type: raft.LogCommand, Data: e}); res != nil {
			if err, ok := res.(error); ok {
				t.Fatalf("entry %d: %v", i+3, err)
			}
		}
	}
	want := map[string]string{"web": "198.18.0.2", "db": "198.18.0.3", "cache": "198.18.0.1"}
	got := vips(f.Store().View())
	if len(got) != len(want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	for svc, vip := range want {
		if got[svc] != vip {
			t.Errorf("%s: address %q, want %q (all: %v)", svc, got[svc], vip, got)
		}
	}
}

// The same log gives the same addresses on every server, whether it
// replays the whole log or restores a snapshot taken at any entry and
// applies the rest.
func TestFSMAddressesReplayAndSnapshot(t *testing.T) {
	log := addressLog(t)
	whole := NewFSM(state.NewStore())
	applyAll(t, whole, log)
	again := NewFSM(state.NewStore())
	applyAll(t, again, log)
	final := mustSnapshotBytes(t, whole)
	if !bytes.Equal(final, mustSnapshotBytes(t, again)) {
		t.Fatal("the same log replayed gave another state")
	}
	if !bytes.Contains(final, []byte(`"vip":"198.18.0.1"`)) || !bytes.Contains(final, []byte(`"addresses":true`)) {
		t.Fatalf("the snapshot lacks the addresses: %s", final)
	}
	for cut := 1; cut < len(log); cut++ {
		head := NewFSM(state.NewStore())
		applyAll(t, head, log[:cut])
		restored := NewFSM(state.NewStore())
		if err := restored.Restore(io.NopCloser(bytes.NewReader(mustSnapshotBytes(t, head)))); err != nil {
			t.Fatal(err)
		}
		for i, e := range log[cut:] {
			restored.Apply(&raft.Log{Index: uint64(cut + i + 1), Type: raft.LogCommand, Data: e})
		}
		if got := mustSnapshotBytes(t, restored); !bytes.Equal(got, final) {
			t.Fatalf("snapshot after entry %d, then the rest: another state\n%s\nwant\n%s", cut, got, final)
		}
	}
}

// Turning addresses on is a command of FSM version 2: the leader writes
// it only once every server runs a build that knows it.
func TestAssignAddressesIsGated(t *testing.T) {
	f, _ := recordingFSM()
	members := func() ([]string, error) { return []string{"n1", "n2"}, nil }
	cmd := mustEncode(t, CmdAssignAddresses, state.AssignAddressesCmd{})
	for i, s := range []state.ServerInfo{{ID: "n1", Version: FSMVersion}, {ID: "n2"}} {
		s.RaftAddr, s.APIAddr = s.ID+":1", s.ID+":2"
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: mustEncode(t, CmdRegisterServer, state.RegisterServerCmd{Server: s})})
	}
	if err := f.Admit(cmd, members); !errors.Is(err, ErrVersionGate) || !strings.Contains(err.Error(), "n2 (version 1)") {
		t.Fatalf("Admit = %v, want ErrVersionGate naming n2", err)
	}
	f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: mustEncode(t, CmdRegisterServer,
		state.RegisterServerCmd{Server: state.ServerInfo{ID: "n2", RaftAddr: "n2:1", APIAddr: "n2:2", Version: 2}})})
	if err := f.Admit(cmd, members); err != nil {
		t.Fatalf("Admit with every server at version 2: %v", err)
	}
}
