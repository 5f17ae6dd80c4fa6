package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/specs"
)

// TestUnplaceableBatchIsNotProgress: a batch whose starts no host could
// take is started again on every pass; that is not progress, so a rollout
// stalled past its deadline rolls back instead of waiting forever. Without
// Unplaceable the same input counts the restart as progress.
func TestUnplaceableBatchIsNotProgress(t *testing.T) {
	rev1 := revision(1, "fp1", 1)
	rev2 := revision(2, "fp2", 1, func(u *specs.Update) { u.ProgressDeadline = 30 * time.Second })
	in := Input{
		Now:      t0,
		Service:  rolloutService(2, 1), // last progress a minute ago
		Target:   rev2,
		Replicas: healthySet(rev1, "old", 1),
	}
	placed := Decide(in)
	if placed.Outcome != Continue || !placed.Progress || len(placed.Start) != 1 {
		t.Fatalf("a batch that can be placed: %+v, want it started as progress", placed)
	}
	in.Unplaceable = placed.Start
	stalled := Decide(in)
	if stalled.Outcome != Rollback || !strings.Contains(stalled.Reason, "progress deadline") {
		t.Fatalf("a batch no host can take, a minute after the last progress with a 30s deadline: outcome %q reason %q, want a rollback naming the deadline", stalled.Outcome, stalled.Reason)
	}
}
