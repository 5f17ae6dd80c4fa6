package controller

import (
	"context"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// TestReportWaitsForTheAgentsAssignmentIndex: a report made from an
// assignment set a follower answered is judged once the leader's state
// holds that set's index, not before (its replicas would be unknown and
// dropped as foreign).
func TestReportWaitsForTheAgentsAssignmentIndex(t *testing.T) {
	s := state.NewStore()
	c := &Controller{cfg: Config{Store: s}}
	if err := s.ApplyHostReport(1, state.HostReportCmd{Now: time.Now(), Report: state.HostReport{Host: "h1"}}); err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 1)
	go func() { got <- c.waitApplied(context.Background(), 3).Index() }()
	time.Sleep(50 * time.Millisecond)
	if err := s.ApplyHostReport(2, state.HostReportCmd{Now: time.Now(), Report: state.HostReport{Host: "h1"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case i := <-got:
		t.Fatalf("judged at index %d, before the state held index 3", i)
	case <-time.After(100 * time.Millisecond):
	}
	if err := s.ApplyHostReport(3, state.HostReportCmd{Now: time.Now(), Report: state.HostReport{Host: "h1"}}); err != nil {
		t.Fatal(err)
	}
	if i := <-got; i != 3 {
		t.Fatalf("judged at index %d, want 3", i)
	}
	// An index the state never reaches: judged on what is there after the bound.
	if i := c.waitApplied(context.Background(), 99).Index(); i != 3 {
		t.Fatalf("after the bound: index %d, want 3", i)
	}
	// Agents before AssignmentIndex send 0: judged at once.
	if i := c.waitApplied(context.Background(), 0).Index(); i != 3 {
		t.Fatalf("index 0: %d", i)
	}
}
