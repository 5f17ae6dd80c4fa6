package deployer

import (
	"fmt"
	"testing"

	"github.com/deployctl/deployctl/internal/wire"
)

// TestBackoffDuringElection: an agent whose calls find no leader retries
// at most wire.ElectionRetryMax apart (jittered, never under half of it),
// so it reaches a new leader within that of its election; a controller
// that does not answer at all is still retried with the full doubling.
func TestBackoffDuringElection(t *testing.T) {
	noLeader := fmt.Errorf("assignments: %w", wire.ErrNoLeader)
	b := newBackoff()
	for i := range 50 {
		d := b.nextAfter(noLeader)
		if d > wire.ElectionRetryMax || (i >= 2 && d < wire.ElectionRetryMax/2) {
			t.Fatalf("retry %d after no leader: %s, want %s..%s", i, d, wire.ElectionRetryMax/2, wire.ElectionRetryMax)
		}
	}
	unreachable := fmt.Errorf("assignments: %w", wire.ErrUnreachable)
	b.reset()
	var d = b.nextAfter(unreachable)
	for range 10 {
		d = b.nextAfter(unreachable)
	}
	if d != maxRetryDelay {
		t.Fatalf("after 11 unreachable tries: %s, want %s", d, maxRetryDelay)
	}
	// Back to "no leader": short again at once.
	if d := b.nextAfter(noLeader); d > wire.ElectionRetryMax {
		t.Fatalf("no leader after unreachable: %s, want at most %s", d, wire.ElectionRetryMax)
	}
}
