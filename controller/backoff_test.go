package controller

import (
	"slices"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

func TestRestartBackoff(t *testing.T) {
	c := &Controller{}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	failed := func(slot int) []state.Replica {
		return []state.Replica{{ID: "x", Slot: slot, Status: state.ReplicaStatus{State: state.ReplicaFailed}}}
	}
	// The first failure of a slot is replaced at once.
	if got := c.holdRestarts("web", []int{0}, failed(0), nil, now); !slices.Equal(got, []int{0}) {
		t.Fatalf("first failure held: %v", got)
	}
	// The second waits 2s, the third 4s; other slots are not held.
	if got := c.holdRestarts("web", []int{0, 1}, failed(0), nil, now); !slices.Equal(got, []int{1}) {
		t.Fatalf("second failure: starts %v, want slot 0 held", got)
	}
	if at, ok := c.nextRestart(now); !ok || !at.Equal(now.Add(2*time.Second)) {
		t.Fatalf("next restart %v %v, want in 2s", at, ok)
	}
	if got := c.holdRestarts("web", []int{0}, nil, nil, now.Add(2*time.Second)); !slices.Equal(got, []int{0}) {
		t.Fatalf("after the back-off: %v, want slot 0 started", got)
	}
	c.holdRestarts("web", nil, failed(0), nil, now.Add(3*time.Second))
	if at, _ := c.nextRestart(now.Add(3 * time.Second)); !at.Equal(now.Add(7 * time.Second)) {
		t.Fatalf("third failure waits until %v, want 4s after it", at)
	}
	// A replica healthy for a minute forgives the slot.
	healthy := []state.Replica{{Slot: 0, Status: state.ReplicaStatus{State: state.ReplicaHealthy, HealthySince: now.Add(3 * time.Second)}}}
	later := now.Add(5 * time.Minute)
	c.holdRestarts("web", nil, nil, healthy, later)
	if got := c.holdRestarts("web", []int{0}, failed(0), nil, later); !slices.Equal(got, []int{0}) {
		t.Fatalf("after a healthy minute the next failure is replaced at once: %v", got)
	}
}
