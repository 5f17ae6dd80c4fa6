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
	line, err := stopOutcome(ctx, service)
	if line != "" {
		fmt.Fprintln(w, line)
	}
	return err
}

// stopOutcome is the closing line and the exit of a wait whose context
// ended: Ctrl-C detaches, a timeout is an error; both exit 5.
func stopOutcome(ctx context.Context, service string) (string, error) {
	if errors.Is(context.Cause(ctx), errDetached) {
		return fmt.Sprintf("detached: the rollout goes on; follow it with `deployctl status %s`", service), exitWith(ExitTimeout, nil)
	}
	return "", exitWith(ExitTimeout, fmt.Errorf("timed out waiting; the rollout goes on; follow it with `deployctl status %s`", service))
}

// rolloutObserver is what follows a rollout on screen: the plain progress
// lines (plainObserver) or the live view (liveView). followRevision feeds
// both the same observations and decides the exit alone.
type rolloutObserver interface {
	// status is each answer about the service while revision following
	// is followed (the first one is the background of the rollout).
	status(st wire.ServiceStatus, following int)
	// lostContact and reconnected bracket a time the servers did not answer.
	lostContact(err error)
	reconnected()
	// rollingBack: revision failed was rolled back automatically by
	// revision next, which is followed from now on.
	rollingBack(failed, next int, why string)
	// finish is the end: the closing line ("" when the exit's error says
	// it) before followRevision returns exit.
	finish(line string, exit error)
}

// followRevision follows a revision's rollout until it ends, telling obs
// each step, and returns the exit code of its outcome. If the revision is
// rolled back automatically, it follows the rollback.
func followRevision(parent context.Context, c *wire.Client, service string, revision int, timeout time.Duration, obs rolloutObserver) error {
	ctx, cancel := context.WithTimeoutCause(parent, timeout, context.DeadlineExceeded)
	defer cancel()
	stop := func() error {
		line, err := stopOutcome(ctx, service)
		obs.finish(line, err)
		return err
	}
	fail := func(err error) error {
		err = clientErr(err)
		obs.finish("", err)
		return err
	}
	following, rolledBack := revision, false
	var index uint64
	lostContact, wait := false, statusWait
	for {
		st, err := c.Status(ctx, service, index, wait)
		if err != nil {
			if ctx.Err() != nil {
				return stop()
			}
			if wire.Retryable(err) {
				if !lostContact {
					obs.lostContact(err)
					lostContact = true
				}
				select {
				case <-ctx.Done():
					return stop()
				case <-time.After(wire.ElectionRetryMax): // a new leader is found within this of its election
				}
				index = 0
				continue
			}
			return fail(err)
		}
		if lostContact {
			obs.reconnected()
			lostContact = false
		}
		index = st.Index
		obs.status(st, following)
		_, wait = trafficWait(st, following)

		if st.Revision != following {
			next, why, err := whyMoved(ctx, c, service, following, st.Revision)
			if err != nil {
				if ctx.Err() != nil {
					return stop()
				}
				if wire.Retryable(err) {
					index = 0
					time.Sleep(wire.ElectionRetryMax)
					continue
				}
				return fail(err)
			}
			if next == 0 {
				err := exitWith(ExitError, fmt.Errorf("revision %d was superseded by revision %d (%s)", following, st.Revision, why))
				obs.finish("", err)
				return err
			}
			obs.rollingBack(following, next, why)
			following, rolledBack = next, true
			continue
		}
		if ended, line, err := rolloutOutcome(st, rolledBack, service); ended {
			obs.finish(line, err)
			return err
		}
	}
}

// rolloutOutcome tells whether st, an answer about the followed revision,
// shows its rollout ended, and then the closing line and the exit: 0 done,
// 3 rolled back, 4 paused or failed.
func rolloutOutcome(st wire.ServiceStatus, rolledBack bool, service string) (bool, string, error) {
	switch st.RevisionState {
	case state.RevisionSucceeded:
		if rolledBack {
			return true, fmt.Sprintf("rolled back: revision %d is healthy on %d/%d replicas (digest %s)", st.Revision, st.Replicas.Healthy, st.Replicas.Desired, st.Digest),
				exitWith(ExitRolledBack, nil)
		}
		return true, fmt.Sprintf("done: revision %d is healthy on %d/%d replicas (digest %s)", st.Revision, st.Replicas.Healthy, st.Replicas.Desired, st.Digest), nil
	case state.RevisionPaused:
		return true, "", exitWith(ExitPaused, fmt.Errorf("revision %d paused: %s; fix and apply again, or `deployctl rollback %s`", st.Revision, st.Message, service))
	case state.RevisionFailed:
		what := "revision"
		if rolledBack {
			what = "rollback revision"
		}
		return true, "", exitWith(ExitPaused, fmt.Errorf("%s %d failed: %s; the service needs a human: see `deployctl status %s`", what, st.Revision, st.Message, service))
	}
	return false, "", nil
}

// plainObserver prints one line per step: the output when stdout is not
// a terminal, with --plain, NO_COLOR or TERM=dumb.
type plainObserver struct {
	w           io.Writer
	seen        map[string]wire.InstanceView
	started     bool
	lastMsg     string
	lastTraffic string
}

func newPlainObserver(w io.Writer) *plainObserver {
	return &plainObserver{w: w, seen: map[string]wire.InstanceView{}}
}

func (p *plainObserver) status(st wire.ServiceStatus, following int) {
	if !p.started {
		// Replicas that ran before this revision are the background,
		// not steps of its rollout: note them without printing.
		seedEvents(p.seen, st, following)
		p.started = true
	}
	printEvents(p.w, p.seen, st)
	if st.Message != "" && st.Message != p.lastMsg {
		fmt.Fprintf(p.w, "  waiting: %s\n", st.Message)
	}
	p.lastMsg = st.Message
	trafficLine, _ := trafficWait(st, following)
	if trafficLine != "" && trafficLine != p.lastTraffic {
		fmt.Fprintf(p.w, "  %s\n", trafficLine)
	}
	p.lastTraffic = trafficLine
}

func (p *plainObserver) lostContact(err error) {
	fmt.Fprintf(p.w, "  lost contact with the servers (%v); retrying\n", err)
}

func (p *plainObserver) reconnected() { fmt.Fprintln(p.w, "  reconnected") }

func (p *plainObserver) rollingBack(failed, next int, why string) {
	fmt.Fprintf(p.w, "revision %d failed: %s\n", failed, why)
	fmt.Fprintf(p.w, "rolling back: revision %d restores the previous good revision\n", next)
}

func (p *plainObserver) finish(line string, _ error) {
	if line != "" {
		fmt.Fprintln(p.w, line)
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
