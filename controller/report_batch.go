package controller

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// reportBatcher is the leader's group commit of agent reports (issue 12):
// the reports that arrive while one raft write is in flight go together in
// the next (state.HostReportsCmd), so 1,000 agents reporting make a few
// entries a second instead of one each. A report's request still waits
// for its own write to commit, as before.
type reportBatcher struct {
	mu      sync.Mutex
	pending []pendingReport
	// flushing: a goroutine is writing batches; it stops once pending is
	// empty.
	flushing bool
}

type pendingReport struct {
	cmd  state.HostReportCmd
	done chan error
}

// maxReportsPerEntry bounds one entry (about 500 bytes a report).
const maxReportsPerEntry = 256

// reportWriteTimeout bounds one batch's raft write.
const reportWriteTimeout = 10 * time.Second

// submitReport writes cmd in the next batch and returns its outcome.
func (c *Controller) submitReport(ctx context.Context, cmd state.HostReportCmd) error {
	done := make(chan error, 1)
	b := &c.reports
	b.mu.Lock()
	b.pending = append(b.pending, pendingReport{cmd: cmd, done: done})
	if !b.flushing {
		b.flushing = true
		go c.flushReports()
	}
	b.mu.Unlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushReports writes batches until nothing is pending.
func (c *Controller) flushReports() {
	b := &c.reports
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxReportsPerEntry)
		batch := b.pending[:n:n]
		b.pending = b.pending[n:]
		if n == 0 {
			b.pending = nil
			b.flushing = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		c.writeReports(batch)
	}
}

// writeReports writes one batch: a single report as CmdHostReport (every
// version knows it), several as CmdHostReports, or one by one while a
// server of the cluster is too old for it (the version gate).
func (c *Controller) writeReports(batch []pendingReport) {
	ctx, cancel := context.WithTimeout(context.Background(), reportWriteTimeout)
	defer cancel()
	if len(batch) > 1 {
		cmd := state.HostReportsCmd{Reports: make([]state.HostReportCmd, len(batch))}
		for i, p := range batch {
			cmd.Reports[i] = p.cmd
		}
		_, err := c.apply(ctx, raftstore.CmdHostReports, cmd)
		if !errors.Is(err, raftstore.ErrVersionGate) {
			for _, p := range batch {
				p.done <- err
			}
			return
		}
	}
	var wg sync.WaitGroup
	for _, p := range batch {
		wg.Go(func() {
			_, err := c.apply(ctx, raftstore.CmdHostReport, p.cmd)
			p.done <- err
		})
	}
	wg.Wait()
}
