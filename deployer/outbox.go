package deployer

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// outbox holds replica changes not yet sent, the newest per replica, in
// the order they first appeared. The loop puts, the reporter takes.
type outbox struct {
	mu      sync.Mutex
	pending map[string]state.StatusReport
	order   []string
	wake    chan struct{}
	// engine is what the loop last read of the engine; every report carries
	// it (the controller writes it to raft only when it changes).
	engine *state.EngineFeatures
	// index is the Index of the assignment set the loop acts on; every
	// report carries it (state.HostReport.AssignmentIndex).
	index uint64
}

// setIndex records the index of the assignment set the loop took.
func (o *outbox) setIndex(i uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.index = max(o.index, i)
}

// assignmentIndex is the index for the next report.
func (o *outbox) assignmentIndex() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.index
}

// setEngine records the engine's features for the next reports.
func (o *outbox) setEngine(info EngineInfo) {
	if !info.Reported {
		return
	}
	f := state.EngineFeatures{Userns: info.Userns, AppArmor: info.AppArmor, SELinux: info.SELinux, Seccomp: info.Seccomp, Rootless: info.Rootless, Version: info.Version}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.engine = &f
}

func (o *outbox) engineFeatures() *state.EngineFeatures {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.engine == nil {
		return nil
	}
	f := *o.engine
	return &f
}

func newOutbox() *outbox {
	return &outbox{
		pending: map[string]state.StatusReport{},
		wake:    make(chan struct{}, 1),
	}
}

func (o *outbox) put(r state.StatusReport) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.pending[r.ReplicaID]; !ok {
		o.order = append(o.order, r.ReplicaID)
	}
	o.pending[r.ReplicaID] = r
}

// poke wakes the reporter if anything is pending.
func (o *outbox) poke() {
	o.mu.Lock()
	n := len(o.pending)
	o.mu.Unlock()
	if n == 0 {
		return
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take empties the outbox into one batch.
func (o *outbox) take() []state.StatusReport {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.order) == 0 {
		return nil
	}
	batch := make([]state.StatusReport, 0, len(o.order))
	for _, id := range o.order {
		batch = append(batch, o.pending[id])
	}
	o.pending = map[string]state.StatusReport{}
	o.order = nil
	return batch
}

// putBack returns an unsent batch; a replica with a newer change queued
// since keeps the newer one.
func (o *outbox) putBack(batch []state.StatusReport) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var requeued []string
	for _, r := range batch {
		if _, newer := o.pending[r.ReplicaID]; newer {
			continue
		}
		o.pending[r.ReplicaID] = r
		requeued = append(requeued, r.ReplicaID)
	}
	o.order = append(requeued, o.order...)
}

// backoff doubles a retry delay from minRetryDelay up to maxRetryDelay.
type backoff struct{ delay time.Duration }

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) next() time.Duration {
	if b.delay == 0 {
		b.delay = minRetryDelay
	} else {
		b.delay = min(b.delay*2, maxRetryDelay)
	}
	return b.delay
}

// nextAfter is the delay before retrying a call that failed with err:
// next, but while servers answer without a leader (an election, a new
// leader catching up) never more than wire.ElectionRetryMax, jittered
// between half and all of it so a fleet of agents does not retry in step.
// An agent thus reaches a new leader within that of its election, where
// doubling to maxRetryDelay would leave it waiting seconds.
func (b *backoff) nextAfter(err error) time.Duration {
	d := b.next()
	if !wire.Retryable(err) || errors.Is(err, wire.ErrUnreachable) || d <= wire.ElectionRetryMax/2 {
		return d
	}
	b.delay = min(b.delay, wire.ElectionRetryMax)
	half := b.delay / 2
	return half + rand.N(b.delay-half+1)
}

func (b *backoff) reset() { b.delay = 0 }

// sleepCtx waits d or until ctx ends; false means ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
