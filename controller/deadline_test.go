package controller

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// TestRolloutThatCannotBePlacedEndsAtItsDeadline: a release whose replica
// no host can take (here: no host at all) used to wait forever, because
// starting the same batch again on every pass counted as progress. It ends
// at its progress deadline and rolls back, as any stalled rollout does.
func TestRolloutThatCannotBePlacedEndsAtItsDeadline(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	ctx := context.Background()
	v1 := specFor(ref)
	v1.Replicas = 0
	if _, err := n.ctrl.Apply(ctx, v1, "k1"); err != nil {
		t.Fatal(err)
	}
	waitForState(t, n, "revision 1 succeeded", func(v *state.Tables) bool {
		r, _ := v.Revision("web", 1)
		return r.State == state.RevisionSucceeded
	})
	v2 := specFor(ref)
	v2.Replicas = 1
	v2.Update.ProgressDeadline = time.Second
	if _, err := n.ctrl.Apply(ctx, v2, "k2"); err != nil {
		t.Fatal(err)
	}
	waitForState(t, n, "revision 2 rolled back", func(v *state.Tables) bool {
		r, _ := v.Revision("web", 2)
		return r.State == state.RevisionRolledBack
	})
	rev2, _ := n.store.View().Revision("web", 2)
	if !strings.Contains(rev2.Message, "progress deadline") {
		t.Fatalf("revision 2 message %q, want the progress deadline named", rev2.Message)
	}
	svc, _ := n.store.View().Service("web")
	if rev3, ok := n.store.View().Revision("web", 3); !ok || svc.Current != 3 || rev3.Cause != "rollback" && !strings.Contains(rev3.Cause, "rollback") {
		t.Fatalf("current %d, revision 3 %+v: want the automatic rollback", svc.Current, rev3)
	}
}

// TestRolloutStampedByAFastClockEndsAtItsDeadline: the rollout's times are
// stamped by the clock of the leader that stored the revision. A leader
// whose clock runs 25 hours ahead stores a release; the clock comes back
// (a new leader, or the step undone). The deadline is measured from the
// moment the stamp is seen in the future, not 25 hours later (found by the
// chaos suite's clock steps).
func TestRolloutStampedByAFastClockEndsAtItsDeadline(t *testing.T) {
	var mu sync.Mutex
	skew := time.Duration(0)
	n := mustStartNodeWith(t, func(c *Config) {
		c.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return time.Now().Add(skew)
		}
	})
	setSkew := func(d time.Duration) { mu.Lock(); skew = d; mu.Unlock() }
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	ctx := context.Background()
	v1 := specFor(ref)
	v1.Replicas = 0
	if _, err := n.ctrl.Apply(ctx, v1, "k1"); err != nil {
		t.Fatal(err)
	}
	waitForState(t, n, "revision 1 succeeded", func(v *state.Tables) bool {
		r, _ := v.Revision("web", 1)
		return r.State == state.RevisionSucceeded
	})
	setSkew(25 * time.Hour)
	v2 := specFor(ref)
	v2.Replicas = 1
	v2.Update.ProgressDeadline = time.Second
	if _, err := n.ctrl.Apply(ctx, v2, "k2"); err != nil {
		t.Fatal(err)
	}
	waitForState(t, n, "revision 2's rollout stamped by the fast clock", func(v *state.Tables) bool {
		svc, _ := v.Service("web")
		return svc.Rollout != nil && svc.Rollout.Revision == 2 && svc.Rollout.StartedAt.After(time.Now().Add(time.Hour))
	})
	setSkew(0)
	waitForState(t, n, "revision 2 rolled back", func(v *state.Tables) bool {
		r, _ := v.Revision("web", 2)
		return r.State == state.RevisionRolledBack
	})
}
