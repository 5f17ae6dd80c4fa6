package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/deployctl/deployctl/controller/rollout"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// Run drives rollouts while this node leads, until ctx ends. It wakes on
// every state change and on a tick (monitor windows and deadlines pass with
// time, not with writes). Every write it makes is guarded by the service
// record it was decided on, so a write whose outcome a lost leadership left
// unknown is never applied twice: the next leader decides again from state.
func (c *Controller) Run(ctx context.Context) error {
	ticker := time.NewTicker(c.cfg.Tick)
	defer ticker.Stop()
	// wake fires at the next moment a decision can change with time alone
	// (a monitor window closing, a batch delay ending, a deadline passing),
	// so a rollout does not wait for the next tick at each batch.
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	leading := false
	// The ingress table follows the state while agents wait for it.
	followCtx, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() { defer close(followed); c.ingress.follow(followCtx) }()
	// A server that cannot open the cluster's secrets says so in its log.
	watched := make(chan struct{})
	go func() { defer close(watched); c.watchSecretsKey(followCtx) }()
	// Events no command carries are written, batched, while this runs.
	flushed := make(chan struct{})
	go func() { defer close(flushed); c.flushEvents(followCtx) }()
	defer func() { stopFollow(); <-followed; <-watched; <-flushed }()
	for {
		view, changed := c.cfg.Store.Watch()
		isLeader := c.cfg.Raft.IsLeader()
		switch {
		case isLeader && !leading:
			// A new leader first applies everything committed before it
			// decides anything: its view must include the old leader's writes.
			if err := c.cfg.Raft.Barrier(ctx); err != nil {
				c.log.Warn("barrier after election failed; retrying", "error", err)
				break
			}
			leading = true
			c.ingress.reset()
			c.traffic.reset()
			c.mu.Lock()
			c.addresses = addressAttempt{}
			c.mu.Unlock()
			c.markLeading(c.cfg.Now())
			c.recordEvent(state.Event{Type: state.EventLeaderElected, Message: c.cfg.Raft.ID() + " leads"})
			c.ready.Store(true)
			c.log.Info("leading: driving rollouts")
			continue
		case !isLeader && leading:
			leading = false
			c.ready.Store(false)
			c.mu.Lock()
			clear(c.rollbackChecks)
			c.mu.Unlock()
			// Another leader counts from zero: figures kept here would be
			// stale by the time this node leads again.
			c.traffic.reset()
			c.log.Info("no longer leading")
		case isLeader:
			c.checkHosts(ctx, view)
			c.enableAddresses(ctx, view)
			c.reconcileAll(ctx, view)
			c.traffic.prune(view)
			now := c.cfg.Now()
			at, ok := nextTimedChange(view, now)
			if restart, held := c.nextRestart(now); held && (!ok || restart.Before(at)) {
				at, ok = restart, true
			}
			if ok {
				wake.Reset(max(at.Sub(now), time.Millisecond))
			}
		}
		select {
		case <-ctx.Done():
			c.ready.Store(false)
			return nil
		case <-changed:
		case <-ticker.C:
		case <-wake.C:
		case <-c.kick:
		}
	}
}

// reconcileAll makes one decision per service. Decisions are made one
// after the other against one view and one cluster load (placement sees
// the starts decided before it), and their raft writes are then in flight
// together, up to maxStepsInFlight: raft appends concurrent commands in
// one batch, where writing them one by one cost a commit round each (at
// 100 services in rollout a pass took 100 round trips, issue 12). Steps
// of different services are independent, and each is guarded by its
// service's ModifyIndex.
func (c *Controller) reconcileAll(ctx context.Context, view *state.Tables) {
	load := newClusterLoad(view)
	if pol, err := c.Policy(); err == nil {
		load.requireUserns = pol.RequireUserns
	}
	sem := make(chan struct{}, maxStepsInFlight)
	var wg sync.WaitGroup
	for _, svc := range view.Services() {
		if ctx.Err() != nil {
			break
		}
		commit, err := c.decideService(ctx, view, load, svc)
		if err != nil {
			c.noteStepError(svc.Name, err)
			continue
		}
		if commit == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := commit(); err != nil {
				c.noteStepError(svc.Name, err)
			}
		})
	}
	wg.Wait()
}

// maxStepsInFlight bounds the rollout steps one pass has in raft at once.
const maxStepsInFlight = 64

// noteStepError logs a step that was not applied.
func (c *Controller) noteStepError(service string, err error) {
	if errors.Is(err, ErrConflict) || errors.Is(err, ErrNotLeader) {
		c.log.Debug("step not applied; deciding again", "service", service, "error", err)
		return
	}
	c.log.Warn("rollout step failed", "service", service, "error", err)
}

// decideService decides one service's next step against view, updating
// load with the starts it places, and returns the write of that step and
// what follows it (nil: nothing to write).
func (c *Controller) decideService(ctx context.Context, view *state.Tables, load *clusterLoad, svc state.Service) (func() error, error) {
	now := c.cfg.Now()
	replicas := view.ServiceReplicas(svc.Name)
	step := state.RolloutStepCmd{Now: now, Service: svc.Name, ExpectCurrent: svc.Current, ExpectModifyIndex: svc.ModifyIndex}

	if svc.State == state.ServiceRemoving {
		for _, r := range replicas {
			if r.Desired == state.DesiredStopped && confirmedStopped(r) {
				step.Remove = append(step.Remove, r.ID)
			}
		}
		if len(step.Remove) == len(replicas) {
			step.Purge = true
		} else if len(step.Remove) == 0 {
			return nil, nil
		}
		return func() error {
			_, err := c.apply(ctx, raftstore.CmdRolloutStep, step)
			if err == nil && step.Purge {
				c.log.Info("service removed", "service", svc.Name)
			}
			return err
		}, nil
	}

	target, ok := view.Revision(svc.Name, svc.Current)
	if !ok {
		return nil, fmt.Errorf("%w: service %s has no revision %d", ErrNotFound, svc.Name, svc.Current)
	}
	// A rollout's times were stamped by the clock of the leader that wrote
	// them. One in this leader's future (its clock is behind that one's,
	// or was stepped back) would hold the progress deadline off by the
	// difference, hours after a clock step: measure from now instead, and
	// write that down.
	clamped := false
	if svc.Rollout != nil && svc.Rollout.State == state.RolloutInProgress {
		cp := *svc.Rollout
		for _, t := range []*time.Time{&cp.StartedAt, &cp.LastProgressAt, &cp.BatchDoneAt} {
			if t.After(now) {
				*t, clamped = now, true
			}
		}
		if clamped {
			svc.Rollout = &cp
		}
	}
	// The figures the release is judged by come in like placement facts:
	// Decide never looks anything up.
	in := rollout.Input{Now: now, Service: svc, Target: target, Replicas: replicas,
		Traffic: c.traffic.input(svc.Name, target.Number), FromFingerprint: fromFingerprint(view, svc), Draining: load.draining}
	d := rollout.Decide(in)
	if svc.Rollout == nil || svc.Rollout.State != state.RolloutInProgress {
		var failed []state.Replica
		for _, r := range replicas {
			if slices.Contains(d.Stop, r.ID) && (r.Status.State == state.ReplicaFailed || r.Status.State == state.ReplicaUnhealthy) {
				failed = append(failed, r)
			}
		}
		if allowed := c.holdRestarts(svc.Name, d.Start, failed, replicas, now); len(allowed) != len(d.Start) {
			c.log.Debug(backoffNote(d.Start), "service", svc.Name)
			d.Start = allowed
		}
	}

	var ro *state.Rollout
	var verdict rollbackCheck // an automatic rollback's admission
	if svc.Rollout != nil {
		cp := *svc.Rollout
		ro = &cp
	}
	changed := clamped || len(d.Stop) > 0 || len(d.Remove) > 0
	step.Stop, step.Remove = d.Stop, d.Remove

	inRollout := ro != nil && ro.State == state.RolloutInProgress
	var reasons []string
	if len(d.Start) > 0 {
		var hosts map[int]string
		// placeStarts may decide again: a start-first slot without room
		// is replaced stop-first in place (controller/rollout).
		d, hosts, reasons = load.placeStarts(in, d, target.Spec)
		step.Stop = d.Stop
		changed = changed || len(d.Stop) > 0
		if len(d.Start) > 0 && len(hosts) == 0 {
			// Nothing could be placed: no batch started. Committing the
			// decision's progress would start the same batch again at once,
			// a write storm, and hide the stall from the progress deadline.
			d.Progress, d.BatchDone = false, false
		}
		for _, slot := range d.Start {
			host, ok := hosts[slot]
			if !ok {
				continue
			}
			step.Create = append(step.Create, state.Replica{
				ID: c.cfg.NewID(), Service: svc.Name, Slot: slot, Revision: target.Number,
				Fingerprint: target.Fingerprint, Host: host,
			})
			changed = true
		}
	}
	if !inRollout {
		// Steady state has no message: what could not be placed (a drained
		// host's replicas with nowhere to go) is kept for `host ls`.
		c.noteUnplaced(svc.Name, reasons)
	}
	if inRollout && d.Outcome == rollout.Continue {
		// The message says why the rollout is slower than asked: slots
		// replaced in place, slots that cannot be placed.
		if msg := strings.Join(slices.Concat(d.Waiting, reasons), "; "); msg != ro.Message {
			ro.Message = msg
			changed = true
		}
	}

	if inRollout {
		if !slices.Equal(d.InPlace, ro.InPlace) {
			ro.InPlace = d.InPlace
			changed = true
		}
		if !sameCanary(d.Canary, ro.Canary) {
			ro.Canary = d.Canary
			changed = true
		}
		if d.Failures != ro.Failures {
			ro.Failures = d.Failures
			changed = true
		}
		if d.Progress {
			ro.LastProgressAt = now
			changed = true
		}
		if d.BatchDone {
			ro.BatchDoneAt = now
			changed = true
		}
		switch d.Outcome {
		case rollout.Succeeded:
			ro.State, ro.Message = state.RolloutSucceeded, ""
			step.ServiceState = state.ServiceRunning
			step.LastGood = target.Number
			step.Outcome = &state.RevisionOutcome{Number: target.Number, State: state.RevisionSucceeded}
			changed = true
		case rollout.Paused:
			ro.State, ro.Message = state.RolloutPaused, d.Reason
			step.ServiceState = state.ServicePaused
			step.Outcome = &state.RevisionOutcome{Number: target.Number, State: state.RevisionPaused, Message: d.Reason}
			changed = true
		case rollout.Failed:
			ro.State, ro.Message = state.RolloutFailed, d.Reason
			step.ServiceState = state.ServiceFailed
			step.Outcome = &state.RevisionOutcome{Number: target.Number, State: state.RevisionFailed, Message: d.Reason}
			changed = true
		case rollout.Rollback:
			// The revision to restore must pass today's policy, signature
			// and scan rules. The check may ask registries, so it runs off
			// the loop: until it ends nothing is written (the next pass
			// decides the same), and its verdict goes into the command.
			if restore, ok := view.Revision(svc.Name, svc.Rollout.From); ok {
				verdict = c.rollbackVerdict(ctx, svc, restore)
			} else {
				verdict = rollbackCheck{done: true, err: fmt.Errorf("%w: revision %d is gone", ErrNoRollbackTarget, svc.Rollout.From)}
			}
			if !verdict.done {
				c.log.Debug("automatic rollback waits for its admission", "service", svc.Name, "to", svc.Rollout.From)
				return nil, nil
			}
			if verdict.err != nil {
				// Refused: the release fails and stays failed; nothing of
				// the old revision is started, and a human decides.
				reason := fmt.Sprintf("%s; no automatic rollback: %s", d.Reason, oneLine(verdict.err))
				d.Outcome, d.Reason = rollout.Failed, reason
				ro.State, ro.Message = state.RolloutFailed, reason
				step.ServiceState = state.ServiceFailed
				step.Outcome = &state.RevisionOutcome{Number: svc.Current, State: state.RevisionFailed, Message: reason}
			} else {
				ro.Message = d.Reason
			}
			changed = true
		}
		step.Rollout = ro
	}
	if !changed {
		return nil, nil
	}
	if inRollout {
		// The figures ride on a step written anyway (a batch, the canary's
		// end, the outcome): keeping them costs no write of its own.
		if w, ok := c.traffic.window(svc.Name, target.Number); ok {
			step.Traffic = w.revisionTraffic(target.Traffic)
		}
	}
	return func() error { return c.commitStep(ctx, svc, target, step, d, verdict, now) }, nil
}

// commitStep writes a decided step and does what its outcome asks: the
// automatic rollback's own revision, logs and counts.
func (c *Controller) commitStep(ctx context.Context, svc state.Service, target state.Revision, step state.RolloutStepCmd, d rollout.Decision, verdict rollbackCheck, now time.Time) error {
	inRollout := svc.Rollout != nil && svc.Rollout.State == state.RolloutInProgress
	if _, err := c.apply(ctx, raftstore.CmdRolloutStep, step); err != nil {
		return err
	}
	if verdict.done && d.Outcome == rollout.Failed {
		c.forgetRollbackCheck(svc.Name)
	}
	for _, e := range d.Events {
		c.log.Debug(e, "service", svc.Name, "revision", target.Number)
	}
	if inRollout && d.Outcome != rollout.Rollback {
		c.countRolloutEnd(d.Outcome, now.Sub(svc.Rollout.StartedAt))
	}
	switch d.Outcome {
	case rollout.Succeeded:
		c.log.Info("rollout succeeded", "service", svc.Name, "revision", target.Number)
	case rollout.Paused, rollout.Failed:
		c.log.Warn("rollout "+string(d.Outcome), "service", svc.Name, "revision", target.Number, "reason", d.Reason)
	case rollout.Rollback:
		if err := c.autoRollback(ctx, svc.Name, d.Reason, verdict); err != nil {
			return err
		}
		c.countRolloutEnd(d.Outcome, now.Sub(svc.Rollout.StartedAt))
		c.forgetRollbackCheck(svc.Name)
	}
	return nil
}

// autoRollback restores the rollout's From revision after a failure. It
// re-reads the service: the step just applied moved its ModifyIndex.
// verdict is the admission of the revision it restores.
func (c *Controller) autoRollback(ctx context.Context, name, reason string, verdict rollbackCheck) error {
	view := c.cfg.Store.View()
	svc, ok := view.Service(name)
	if !ok || svc.Rollout == nil || svc.Rollout.From == 0 {
		return fmt.Errorf("%w: %s has no revision to roll back to", ErrNoRollbackTarget, name)
	}
	cur, _ := view.Revision(name, svc.Current)
	target, ok := view.Revision(name, svc.Rollout.From)
	if !ok {
		return fmt.Errorf("%w: revision %d of %s is gone", ErrNoRollbackTarget, svc.Rollout.From, name)
	}
	if !verdict.done || verdict.err != nil || verdict.key.target != target.Number || verdict.key.current != cur.Number {
		return fmt.Errorf("%w: the admission of revision %d of %s is not for this rollback; deciding again", ErrConflict, target.Number, name)
	}
	cause := fmt.Sprintf("automatic rollback of %d to %d", cur.Number, target.Number)
	c.log.Warn("rolling back", "service", name, "from", cur.Number, "to", target.Number, "reason", reason)
	_, err := c.storeRollback(ctx, svc, cur, target, verdict.adm, cause, reason, "")
	return err
}

// sameCanary compares two canary records by value.
func sameCanary(a, b *state.CanaryState) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Slots, b.Slots) && a.StartedAt.Equal(b.StartedAt) && a.Promoted == b.Promoted &&
		a.EndedAt.Equal(b.EndedAt) && a.Ended == b.Ended
}

// nextTimedChange returns the earliest future moment at which a rollout's
// decision changes with time alone: a healthy replica's monitor window
// closing, a batch delay ending, a canary's duration ending, or a
// progress deadline passing.
func nextTimedChange(t *state.Tables, now time.Time) (time.Time, bool) {
	var next time.Time
	consider := func(at time.Time) {
		if at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	for _, svc := range t.Services() {
		ro := svc.Rollout
		if ro == nil || ro.State != state.RolloutInProgress {
			continue
		}
		rev, ok := t.Revision(svc.Name, svc.Current)
		if !ok {
			continue
		}
		u := rev.Spec.Update
		if !ro.BatchDoneAt.IsZero() {
			consider(ro.BatchDoneAt.Add(u.Delay))
		}
		if u.ProgressDeadline > 0 {
			consider(ro.LastProgressAt.Add(u.ProgressDeadline))
		}
		replicas := t.ServiceReplicas(svc.Name)
		for _, r := range replicas {
			if r.Fingerprint == rev.Fingerprint && r.Status.State == state.ReplicaHealthy && !r.Status.HealthySince.IsZero() {
				consider(r.Status.HealthySince.Add(u.Monitor))
			}
		}
		if ro.Canary.Running() {
			if at, ok := rollout.CanaryDue(rollout.Input{Now: now, Service: svc, Target: rev, Replicas: replicas, FromFingerprint: fromFingerprint(t, svc)}); ok {
				consider(at)
			}
		}
	}
	return next, !next.IsZero()
}

// confirmedStopped reports whether the agent has confirmed a replica is
// not running (or it never started), or its host is down past the grace
// period (lost: its agent removes the container as an orphan if it comes
// back), so its record can go.
func confirmedStopped(r state.Replica) bool {
	switch r.Status.State {
	case state.ReplicaStopped, state.ReplicaFailed, state.ReplicaPending, state.ReplicaLost:
		return true
	}
	return false
}
