package raftstore

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/deployctl/deployctl/raftstore/state"
)

// Drain, activate and remove (issue 17): gated at version 4, idempotent,
// removal refused while the host is up or holds a replica, the same
// state after a snapshot round trip.
func TestHostAvailabilityAndRemoval(t *testing.T) {
	f, fatals := recordingFSM()
	drain := mustEncode(t, CmdSetHostAvailability, state.SetHostAvailabilityCmd{Now: t0, Host: "h1", Availability: state.HostDrain})
	members := func() ([]string, error) { return []string{"n1", "n2"}, nil }
	index := uint64(0)
	apply := func(data []byte) any {
		index++
		return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	}
	for _, e := range testLog(t)[:4] { // h1 with replica r1 of web, healthy
		if res := apply(e); res != nil {
			if _, ok := res.(error); ok {
				t.Fatal(res)
			}
		}
	}
	for _, s := range []state.ServerInfo{{ID: "n1", Version: FSMVersion}, {ID: "n2", Version: 3}} {
		s.RaftAddr, s.APIAddr = s.ID+":1", s.ID+":2"
		apply(mustEncode(t, CmdRegisterServer, state.RegisterServerCmd{Server: s}))
	}
	for _, cmd := range [][]byte{drain, mustEncode(t, CmdRemoveHost, state.RemoveHostCmd{Host: "h1"})} {
		if err := f.Admit(cmd, members); !errors.Is(err, ErrVersionGate) {
			t.Fatalf("Admit with n2 at version 3 = %v, want ErrVersionGate", err)
		}
	}
	if err, _ := apply(mustEncode(t, CmdSetHostAvailability, state.SetHostAvailabilityCmd{Now: t0, Host: "nope", Availability: state.HostDrain})).(error); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("drain of an unknown host = %v, want ErrNotFound", err)
	}
	if err, _ := apply(mustEncode(t, CmdSetHostAvailability, state.SetHostAvailabilityCmd{Now: t0, Host: "h1", Availability: "maybe"})).(error); !errors.Is(err, state.ErrBadRecord) {
		t.Fatalf("availability maybe = %v, want ErrBadRecord", err)
	}
	if res := apply(drain); res != nil {
		t.Fatal(res)
	}
	h, _ := f.Store().View().Host("h1")
	if !h.Draining() || !h.AvailabilitySince.Equal(t0) {
		t.Fatalf("after drain: %+v", h)
	}
	before := f.Store().View().Index()
	apply(drain) // again: nothing changes
	if f.Store().View().Index() != before {
		t.Fatal("a second drain wrote a new state")
	}

	rm := mustEncode(t, CmdRemoveHost, state.RemoveHostCmd{Host: "h1"})
	if err, _ := apply(rm).(error); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("rm of a ready host = %v, want ErrConflict", err)
	}
	apply(mustEncode(t, CmdSetHostState, state.SetHostStateCmd{Now: t0.Add(time.Minute), Host: "h1", State: state.HostDown, ExpectSeenAt: t0.Add(2 * time.Second)}))
	if err, _ := apply(rm).(error); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("rm of a down host still holding r1 = %v, want ErrConflict", err)
	}
	// Past the grace period its replica is lost (replaced elsewhere).
	apply(mustEncode(t, CmdSetHostState, state.SetHostStateCmd{Now: t0.Add(2 * time.Minute), Host: "h1", State: state.HostDown, ExpectSeenAt: t0.Add(2 * time.Second), LoseReplicas: true}))

	// A snapshot here restores to the same drained host.
	restored := NewFSM(state.NewStore())
	if err := restored.Restore(io.NopCloser(bytes.NewReader(mustSnapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	if h, _ := restored.Store().View().Host("h1"); !h.Draining() {
		t.Fatalf("restored host %+v, want draining", h)
	}

	if res := apply(rm); res != nil {
		t.Fatalf("rm of a down host whose replicas are lost: %v", res)
	}
	view := f.Store().View()
	if _, ok := view.Host("h1"); ok {
		t.Fatal("h1 still listed after rm")
	}
	if _, ok := view.Replica("r1"); ok || len(view.HostReplicas("h1")) != 0 {
		t.Fatal("the lost replica's record outlived its host")
	}
	if err, _ := apply(rm).(error); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("rm again = %v, want ErrNotFound", err)
	}
	// The agent coming back makes it a host again, active.
	apply(mustEncode(t, CmdHostReport, state.HostReportCmd{Now: t0.Add(3 * time.Minute), Report: state.HostReport{Host: "h1"}}))
	if h, ok := f.Store().View().Host("h1"); !ok || h.Draining() || h.State != state.HostReady {
		t.Fatalf("h1 back: %+v, %v", h, ok)
	}
	if len(*fatals) != 0 {
		t.Fatalf("fatal calls: %+v", *fatals)
	}
}
