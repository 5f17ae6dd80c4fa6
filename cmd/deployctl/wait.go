package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// statusWait is how long one blocking status query may wait on the server.
const statusWait = 20 * time.Second

// errDetached marks a wait ended by Ctrl-C: the rollout is not cancelled.
var errDetached = errors.New("detached")

// interruptContext is cancelled by SIGINT or SIGTERM with errDetached as
// its cause: the waiting CLI goes away, the rollout in the cluster does not.
func interruptContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel(errDetached)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// stopWaiting turns the end of a wait's context into exit code 5.
func stopWaiting(ctx context.Context, w io.Writer, service string) error {
	if errors.Is(context.Cause(ctx), errDetached) {
		fmt.Fprintf(w, "detached: the rollout goes on; follow it with `deployctl status %s`\n", service)
		return exitWith(ExitTimeout, nil)
	}
	return exitWith(ExitTimeout, fmt.Errorf("timed out waiting; the rollout goes on; follow it with `deployctl status %s`", service))
}

// waitForRevision follows a revision's rollout, printing one line per
// step, until it ends, and returns the exit code of its outcome. If the
// revision is rolled back automatically, it follows the rollback.
func waitForRevision(parent context.Context, c *wire.Client, w io.Writer, service string, revision int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeoutCause(parent, timeout, context.DeadlineExceeded)
	defer cancel()
	following, rolledBack := revision, false
	var index uint64
	seen := map[string]wire.InstanceView{}
	lastMsg, lostContact := "", false
	lastTraffic, wait := "", statusWait
	for {
		st, err := c.Status(ctx, service, index, wait)
		if err != nil {
			if ctx.Err() != nil {
				return stopWaiting(ctx, w, service)
			}
			if wire.Retryable(err) {
				if !lostContact {
					fmt.Fprintf(w, "  lost contact with the servers (%v); retrying\n", err)
					lostContact = true
				}
				select {
				case <-ctx.Done():
					return stopWaiting(ctx, w, service)
				case <-time.After(wire.ElectionRetryMax): // a new leader is found within this of its election
				}
				index = 0
				continue
			}
			return clientErr(err)
		}
		if lostContact {
			fmt.Fprintln(w, "  reconnected")
			lostContact = false
		}
		if index == 0 && len(seen) == 0 {
			// Replicas that ran before this revision are the background,
			// not steps of its rollout: note them without printing.
			seedEvents(seen, st, following)
		}
		index = st.Index
		printEvents(w, seen, st)
		if st.Message != "" && st.Message != lastMsg {
			fmt.Fprintf(w, "  waiting: %s\n", st.Message)
		}
		lastMsg = st.Message
		var trafficLine string
		if trafficLine, wait = trafficWait(st, following); trafficLine != "" && trafficLine != lastTraffic {
			fmt.Fprintf(w, "  %s\n", trafficLine)
		}
		lastTraffic = trafficLine

		if st.Revision != following {
			next, why, err := whyMoved(ctx, c, service, following, st.Revision)
			if err != nil {
				if ctx.Err() != nil {
					return stopWaiting(ctx, w, service)
				}
				if wire.Retryable(err) {
					index = 0
					time.Sleep(wire.ElectionRetryMax)
					continue
				}
				return clientErr(err)
			}
			if next == 0 {
				return exitWith(ExitError, fmt.Errorf("revision %d was superseded by revision %d (%s)", following, st.Revision, why))
			}
			fmt.Fprintf(w, "revision %d failed: %s\n", following, why)
			fmt.Fprintf(w, "rolling back: revision %d restores the previous good revision\n", next)
			following, rolledBack = next, true
			continue
		}
		switch st.RevisionState {
		case state.RevisionSucceeded:
			if rolledBack {
				fmt.Fprintf(w, "rolled back: revision %d is healthy on %d/%d replicas (digest %s)\n", st.Revision, st.Replicas.Healthy, st.Replicas.Desired, st.Digest)
				return exitWith(ExitRolledBack, nil)
			}
			fmt.Fprintf(w, "done: revision %d is healthy on %d/%d replicas (digest %s)\n", st.Revision, st.Replicas.Healthy, st.Replicas.Desired, st.Digest)
			return nil
		case state.RevisionPaused:
			return exitWith(ExitPaused, fmt.Errorf("revision %d paused: %s; fix and apply again, or `deployctl rollback %s`", st.Revision, st.Message, service))
		case state.RevisionFailed:
			what := "revision"
			if rolledBack {
				what = "rollback revision"
			}
			return exitWith(ExitPaused, fmt.Errorf("%s %d failed: %s; the service needs a human: see `deployctl status %s`", what, st.Revision, st.Message, service))
		}
	}
}

// whyMoved explains why the service's current revision is no longer the
// one followed: an automatic rollback of it (returns the rollback revision)
// or a newer apply (returns 0).
func whyMoved(ctx context.Context, c *wire.Client, service string, following, current int) (int, string, error) {
	hist, err := c.History(ctx, service)
	if err != nil {
		return 0, "", err
	}
	reason := ""
	for _, h := range hist {
		if h.Revision == following {
			reason = h.Message
		}
	}
	for _, h := range hist {
		if h.Revision == current {
			if h.RollbackOf == following {
				if reason == "" {
					reason = h.Cause
				}
				return current, reason, nil
			}
			return 0, h.Cause, nil
		}
	}
	return 0, "unknown cause", nil
}

// seedEvents records the replicas of a first status silently, except those
// of revision show, whose progress the user is waiting for.
func seedEvents(seen map[string]wire.InstanceView, st wire.ServiceStatus, show int) {
	for _, in := range st.Instances {
		if in.Revision != show {
			seen[in.ID] = in
		}
	}
}

// printEvents prints what changed in the replicas since the last status.
func printEvents(w io.Writer, seen map[string]wire.InstanceView, st wire.ServiceStatus) {
	now := map[string]bool{}
	for _, in := range st.Instances {
		now[in.ID] = true
		old, known := seen[in.ID]
		seen[in.ID] = in
		label := fmt.Sprintf("  slot %d: replica %s (revision %d)", in.Slot, short(in.ID), in.Revision)
		switch {
		case !known:
			if in.Desired == state.DesiredRunning {
				fmt.Fprintf(w, "%s placed on host %s\n", label, in.Host)
			}
		case old.Desired != in.Desired && in.Desired == state.DesiredStopped:
			fmt.Fprintf(w, "%s stopping\n", label)
		}
		if (!known && in.State != state.ReplicaPending) || (known && old.State != in.State) {
			line := fmt.Sprintf("%s %s", label, in.State)
			if in.Message != "" {
				line += ": " + in.Message
			}
			fmt.Fprintln(w, line)
		}
	}
	for id, in := range seen {
		if !now[id] {
			delete(seen, id)
			fmt.Fprintf(w, "  slot %d: replica %s (revision %d) removed\n", in.Slot, short(in.ID), in.Revision)
		}
	}
}

// waitForRemoval waits until a removed service is gone.
func waitForRemoval(parent context.Context, c *wire.Client, w io.Writer, service string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeoutCause(parent, timeout, context.DeadlineExceeded)
	defer cancel()
	var index uint64
	seen := map[string]wire.InstanceView{}
	for {
		st, err := c.Status(ctx, service, index, statusWait)
		switch {
		case errors.Is(err, controller.ErrNotFound):
			fmt.Fprintf(w, "%s: removed\n", service)
			return nil
		case err != nil && ctx.Err() != nil:
			return stopWaiting(ctx, w, service)
		case wire.Retryable(err):
			index = 0
			select {
			case <-ctx.Done():
				return stopWaiting(ctx, w, service)
			case <-time.After(wire.ElectionRetryMax): // a new leader is found within this of its election
			}
			continue
		case err != nil:
			return clientErr(err)
		}
		if index == 0 {
			seedEvents(seen, st, 0)
		}
		index = st.Index
		printEvents(w, seen, st)
	}
}
