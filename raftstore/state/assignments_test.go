package state

import (
	"errors"
	"reflect"
	"testing"
)

// TestAssignmentDeltaMatchesTheWholeSet follows one host through
// placements, a status report, a stop and a removal: after each write the
// delta from the previous set, applied to it, must equal the whole set
// (revisions compared by the fields a host uses), and carry only the
// replicas written since.
func TestAssignmentDeltaMatchesTheWholeSet(t *testing.T) {
	s := NewStore()
	mustApplyRevision(t, s, 1, ApplyRevisionCmd{Now: t0, Revision: rev("web", "sha256:a")})
	mustApplyRevision(t, s, 2, ApplyRevisionCmd{Now: t0, Revision: rev("api", "sha256:b")})
	step := func(i uint64, svcName string, cmd RolloutStepCmd) {
		t.Helper()
		svc, _ := s.View().Service(svcName)
		cmd.Now, cmd.Service, cmd.ExpectCurrent, cmd.ExpectModifyIndex = t0, svcName, svc.Current, svc.ModifyIndex
		if err := s.ApplyRolloutStep(i, cmd); err != nil {
			t.Fatal(err)
		}
	}
	held := s.View().AssignmentDelta("h1", 0)
	if held.Base != 0 || len(held.IDs) != 0 {
		t.Fatalf("empty host: %+v", held)
	}
	var set AssignmentSet
	check := func(what string, wantSent int) {
		t.Helper()
		v := s.View()
		d := v.AssignmentDelta("h1", set.Index)
		if len(d.Replicas) != wantSent {
			t.Fatalf("%s: the delta from %d carries %d replicas, want %d: %+v", what, set.Index, len(d.Replicas), wantSent, d.Replicas)
		}
		got, err := d.Apply(set)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		want := v.Assignments("h1")
		for i := range want.Assignments {
			want.Assignments[i].Revision = hostRevision(want.Assignments[i].Revision)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: delta applied gives\n%+v\nthe whole set is\n%+v", what, got, want)
		}
		set = got
	}
	set = AssignmentSet{Host: "h1"}
	step(3, "web", RolloutStepCmd{Create: []Replica{{ID: "w1", Service: "web", Revision: 1, Fingerprint: "fpsha256:a", Host: "h1", Desired: DesiredRunning},
		{ID: "w2", Service: "web", Slot: 1, Revision: 1, Fingerprint: "fpsha256:a", Host: "h2", Desired: DesiredRunning}}})
	check("first placement (from an empty set)", 1)
	step(4, "api", RolloutStepCmd{Create: []Replica{{ID: "a1", Service: "api", Revision: 1, Fingerprint: "fpsha256:b", Host: "h1", Desired: DesiredRunning}}})
	check("a second service placed", 1)
	if err := s.ApplyHostReport(5, HostReportCmd{Now: t0, Report: HostReport{Host: "h1", Reports: []StatusReport{{ReplicaID: "w1", State: ReplicaHealthy}}}}); err != nil {
		t.Fatal(err)
	}
	check("a status report (sent again: harmless)", 1)
	step(6, "web", RolloutStepCmd{Stop: []string{"w1"}})
	check("a replica stopped", 1)
	step(7, "web", RolloutStepCmd{Remove: []string{"w1"}})
	check("a replica deleted", 0)
	if len(set.Assignments) != 1 || set.Assignments[0].Replica.ID != "a1" {
		t.Fatalf("after the delete: %+v", set.Assignments)
	}

	// A delta from another base is refused, and so is one naming a replica
	// the held set lacks.
	d := s.View().AssignmentDelta("h1", set.Index)
	if _, err := d.Apply(AssignmentSet{Host: "h1", Index: set.Index + 1}); !errors.Is(err, ErrDeltaBase) {
		t.Fatalf("delta applied to a set of another index: %v, want ErrDeltaBase", err)
	}
	if _, err := d.Apply(AssignmentSet{Host: "h1", Index: set.Index}); !errors.Is(err, ErrDeltaBase) {
		t.Fatalf("delta applied to a set without its unchanged replica: %v, want ErrDeltaBase", err)
	}
	// A base past the state's index (restored from an older backup): the whole set.
	if d := s.View().AssignmentDelta("h1", 1<<40); d.Base != 0 || len(d.Replicas) != 1 {
		t.Fatalf("base past the index: %+v, want the whole set", d)
	}
}
