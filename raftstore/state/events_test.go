package state

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"
)

func eventTypes(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Type)
	}
	return out
}

// A release's life, as the FSM applies it, records its events in order,
// with gapless Seq numbers, without a command of their own; a report that
// repeats what is recorded records nothing.
func TestEventsDerivedFromCommands(t *testing.T) {
	s := NewStore()
	mustApplyRevision(t, s, 1, ApplyRevisionCmd{Now: t0, Revision: rev("web", "sha256:a")})
	svc, _ := s.View().Service("web")
	step := RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
		Create: []Replica{{ID: "r1", Service: "web", Slot: 0, Revision: 1, Fingerprint: "fpsha256:a", Host: "h1"}}}
	if err := s.ApplyRolloutStep(2, step); err != nil {
		t.Fatal(err)
	}
	report := func(index uint64, st, cid, msg string) {
		t.Helper()
		if err := s.ApplyHostReport(index, HostReportCmd{Now: t0.Add(time.Duration(index) * time.Second),
			Report: HostReport{Host: "h1", Reports: []StatusReport{{ReplicaID: "r1", State: st, ContainerID: cid, Message: msg}}}}); err != nil {
			t.Fatal(err)
		}
	}
	report(3, ReplicaStarting, "", "")
	report(4, ReplicaStarting, "c0ffee", "")
	report(5, ReplicaStarting, "c0ffee", "") // a repeat: nothing
	report(6, ReplicaHealthy, "c0ffee", "")
	report(7, ReplicaUnhealthy, "c0ffee", "GET /health: 500 Internal Server Error")
	report(8, ReplicaFailed, "c0ffee", "exited with code 3")
	report(9, ReplicaStopped, "", "")
	svc, _ = s.View().Service("web")
	if err := s.ApplyRolloutStep(10, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
		Remove: []string{"r1"}, Outcome: &RevisionOutcome{Number: 1, State: RevisionPaused, Message: "1 replica failed"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplySetHostState(11, SetHostStateCmd{Now: t0.Add(time.Minute), Host: "h1", State: HostDown, ExpectSeenAt: t0.Add(9 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	report(12, ReplicaStopped, "", "") // the host is back; r1 is gone
	mustApplyRevision(t, s, 13, ApplyRevisionCmd{Now: t0, ExpectCurrent: 1, PreviousOutcome: RevisionRolledBack, PreviousMessage: "rolled back: 1 replica failed",
		Revision: rev("web", "sha256:b")})

	view := s.View()
	got := view.Events(0)
	want := []string{EventRevisionStored, EventReplicaPlaced, EventHostUp, EventReplicaStarted, EventReplicaHealthy, EventReplicaUnhealthy,
		EventReplicaFailed, EventReplicaStopped, EventRolloutPaused, EventHostDown, EventHostUp, EventRolledBack, EventRevisionStored}
	if !slices.Equal(eventTypes(got), want) {
		t.Fatalf("events %v\nwant %v", eventTypes(got), want)
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	if got[5].Message != "GET /health: 500 Internal Server Error" || got[5].Replica != "r1" || got[5].Host != "h1" || got[5].Slot == nil {
		t.Fatalf("unhealthy event %+v: want the probe's answer, the replica, its host and slot", got[5])
	}
	if got[11].Revision != 1 || got[11].Message != "rolled back: 1 replica failed" {
		t.Fatalf("rolled_back event %+v: want revision 1 and why", got[11])
	}
	if after := view.Events(11); len(after) != 2 || after[0].Seq != 12 {
		t.Fatalf("events after 11: %+v", after)
	}
	// The removed replica is kept for ps -a with its last error.
	ended := view.EndedReplicas("web")
	if len(ended) != 1 || ended[0].ID != "r1" || ended[0].Status.LastError != "exited with code 3" || ended[0].Status.State != ReplicaStopped {
		t.Fatalf("ended replicas %+v", ended)
	}
}

// The ring keeps the last MaxEvents events; the ended replicas of a
// service the last MaxEndedPerService; both survive a snapshot.
func TestEventRingBoundsAndSnapshot(t *testing.T) {
	s := NewStore()
	var index uint64
	for i := 0; i < MaxEvents+250; i += 50 {
		index++
		var batch []Event
		for j := range 50 {
			batch = append(batch, Event{Type: EventLeaderElected, Time: t0, Message: fmt.Sprint(i + j + 1)})
		}
		if err := s.ApplyRecordEvents(index, RecordEventsCmd{Events: batch}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ApplyRecordEvents(index+1, RecordEventsCmd{Events: []Event{{Time: t0}}}); err == nil {
		t.Fatal("an event without a type was recorded")
	}
	index++
	mustApplyRevision(t, s, index, ApplyRevisionCmd{Now: t0, Revision: rev("web", "sha256:a")})
	for i := range MaxEndedPerService + 5 {
		svc, _ := s.View().Service("web")
		id := fmt.Sprintf("r%03d", i)
		index++
		if err := s.ApplyRolloutStep(index, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
			Create: []Replica{{ID: id, Service: "web", Revision: 1, Fingerprint: "fpsha256:a", Host: "h1"}}}); err != nil {
			t.Fatal(err)
		}
		svc, _ = s.View().Service("web")
		index++
		if err := s.ApplyRolloutStep(index, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex, Remove: []string{id}}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(view *Tables) {
		t.Helper()
		es := view.Events(0)
		last := view.EventSeq()
		if len(es) != MaxEvents || es[0].Seq != last-MaxEvents+1 || es[len(es)-1].Seq != last {
			t.Fatalf("%d events from %d to %d, last seq %d; want the last %d", len(es), es[0].Seq, es[len(es)-1].Seq, last, MaxEvents)
		}
		ended := view.EndedReplicas("web")
		if len(ended) != MaxEndedPerService || ended[0].ID != "r005" || ended[len(ended)-1].ID != fmt.Sprintf("r%03d", MaxEndedPerService+4) {
			t.Fatalf("%d ended replicas from %s; want the newest %d", len(ended), ended[0].ID, MaxEndedPerService)
		}
	}
	check(s.View())
	var buf bytes.Buffer
	if _, err := s.View().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored := NewStore()
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	check(restored.View())
	// Numbering goes on after a restore.
	if err := restored.ApplyRecordEvents(index+1, RecordEventsCmd{Events: []Event{{Type: EventLeaderElected, Time: t0}}}); err != nil {
		t.Fatal(err)
	}
	if es := restored.View().Events(s.View().EventSeq()); len(es) != 1 || es[0].Seq != s.View().EventSeq()+1 {
		t.Fatalf("after a restore: %+v", es)
	}
	// A purge forgets the service's ended replicas.
	svc, _ := restored.View().Service("web")
	if err := restored.ApplyDeleteService(index+2, DeleteServiceCmd{Now: t0, Service: "web"}); err != nil {
		t.Fatal(err)
	}
	svc, _ = restored.View().Service("web")
	if err := restored.ApplyRolloutStep(index+3, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex, Purge: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(restored.View().EndedReplicas("web")); n != 0 {
		t.Fatalf("%d ended replicas after the purge", n)
	}
}
