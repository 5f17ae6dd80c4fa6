package controller

import (
	"fmt"
	"slices"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// Restart back-off for replicas that keep failing outside a rollout. In a
// rollout a failure counts against max_failure_ratio and ends it; in the
// steady state a failed replica is replaced, and an image that crashes at
// once would otherwise be replaced as fast as it fails, churning
// containers and raft writes. The back-off doubles per failure of the same
// slot (1s, 2s, 4s ... up to a minute) and resets once a replica of the
// slot has been healthy for a minute. It lives in the leader's memory: a
// new leader starts it afresh, which costs at most one quick replacement.
const (
	restartBackoffMin   = time.Second
	restartBackoffMax   = time.Minute
	restartBackoffReset = time.Minute
)

type slotKey struct {
	service string
	slot    int
}

type slotBackoff struct {
	failures int
	until    time.Time
}

// holdRestarts removes from starts the steady-state slots still in back-off
// and records the replacements it lets through. failed are the replicas
// this step stops because they failed.
func (c *Controller) holdRestarts(svc string, starts []int, failed []state.Replica, replicas []state.Replica, now time.Time) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backoff == nil {
		c.backoff = map[slotKey]*slotBackoff{}
	}
	// A slot whose replica stayed healthy long enough is forgiven.
	for _, r := range replicas {
		if r.Status.State == state.ReplicaHealthy && now.Sub(r.Status.HealthySince) >= restartBackoffReset {
			delete(c.backoff, slotKey{svc, r.Slot})
		}
	}
	for _, r := range failed {
		k := slotKey{svc, r.Slot}
		b := c.backoff[k]
		if b == nil {
			b = &slotBackoff{}
			c.backoff[k] = b
		}
		wait := min(restartBackoffMin<<min(b.failures, 10), restartBackoffMax)
		b.failures++
		if b.failures > 1 {
			// The first failure is replaced at once; repeated ones wait.
			b.until = now.Add(wait)
		}
	}
	return slices.DeleteFunc(slices.Clone(starts), func(slot int) bool {
		b := c.backoff[slotKey{svc, slot}]
		return b != nil && now.Before(b.until)
	})
}

// nextRestart is the earliest end of a back-off still running.
func (c *Controller) nextRestart(now time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, b := range c.backoff {
		if b.until.After(now) && (next.IsZero() || b.until.Before(next)) {
			next = b.until
		}
	}
	return next, !next.IsZero()
}

// backoffNote says why a slot waits, for the service's message.
func backoffNote(held []int) string {
	return fmt.Sprintf("slots %v keep failing: their replacement waits (restart back-off)", held)
}
