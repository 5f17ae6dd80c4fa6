package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/deployctl/deployctl/controller/rollout"
	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// Traffic figures (issue 15): every host's agent sends what its proxy sent
// to each replica on that host (POST /v1/agent/traffic, deltas, about once
// a second); the leader sums them per service for the rollout in progress,
// in memory. They are observations in volume, like heartbeats: never raft
// entries one by one. The loop hands the sums to rollout.Decide, and writes
// their summary into the revision with the steps it makes anyway.

// trafficBook holds, per service, the figures of its rollout in progress
// since this leader began counting. Leader memory: an election loses them
// and the new leader counts from zero, so evidence a release had gathered
// must be gathered again (a judged rollout waits for min_requests anew).
type trafficBook struct {
	mu      sync.Mutex
	windows map[string]*trafficWindow
}

// trafficWindow is one rollout's figures: its target revision's own
// replicas (new) and the service's others (old).
type trafficWindow struct {
	revision int
	since    time.Time
	updated  time.Time
	new, old traffic.Figures
}

func newTrafficBook() *trafficBook { return &trafficBook{windows: map[string]*trafficWindow{}} }

// record adds a host's report. Each entry counts for the service of its
// replica, and only while that service has a rollout in progress; an
// entry for a replica that is not on the reporting host is dropped and
// counted in foreign (a host speaks for its own replicas only), one for a
// replica that no longer exists is dropped silently (it was just removed).
func (b *trafficBook) record(view *state.Tables, rep wire.TrafficReport, now time.Time) (foreign int, foreignID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Sorted, so that the first foreign entry named is the same on a replay.
	ids := make([]string, 0, len(rep.Replicas))
	for id := range rep.Replicas {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r, ok := view.Replica(id)
		if !ok {
			continue
		}
		if r.Host != rep.Host {
			foreign++
			if foreignID == "" {
				foreignID = id
			}
			continue
		}
		svc, ok := view.Service(r.Service)
		if !ok || svc.Rollout == nil || svc.Rollout.State != state.RolloutInProgress {
			continue
		}
		w := b.windows[svc.Name]
		if w == nil || w.revision != svc.Current {
			w = &trafficWindow{revision: svc.Current, since: now}
			b.windows[svc.Name] = w
		}
		if r.Revision == svc.Current {
			w.new.Add(rep.Replicas[id])
		} else {
			w.old.Add(rep.Replicas[id])
		}
		w.updated = now
	}
	return foreign, foreignID
}

// window returns a copy of the figures of service's rollout to revision,
// sharing nothing with the book (the next report adds to its histograms).
func (b *trafficBook) window(service string, revision int) (trafficWindow, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.windows[service]
	if w == nil || w.revision != revision {
		return trafficWindow{}, false
	}
	cp := *w
	cp.new.Latency = maps.Clone(w.new.Latency)
	cp.old.Latency = maps.Clone(w.old.Latency)
	return cp, true
}

// input is what rollout.Decide gets for service's rollout to revision.
func (b *trafficBook) input(service string, revision int) *rollout.Traffic {
	w, ok := b.window(service, revision)
	if !ok {
		return nil
	}
	return &rollout.Traffic{New: w.new.Summary(), Old: w.old.Summary()}
}

// prune forgets the windows of services without a rollout in progress at
// their window's revision: they are kept with the revision by then.
func (b *trafficBook) prune(view *state.Tables) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, w := range b.windows {
		svc, ok := view.Service(name)
		if !ok || svc.Rollout == nil || svc.Rollout.State != state.RolloutInProgress || svc.Current != w.revision {
			delete(b.windows, name)
		}
	}
}

// reset forgets everything: leadership was lost (or just won).
func (b *trafficBook) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.windows)
}

// revisionTraffic is what a rollout step stores with the revision: the
// summaries of the window, or nil when there is nothing new to store.
// Stored figures are replaced only by figures over at least as many
// requests: after an election the new leader counts from zero, and its
// first figures must not erase the longer window its predecessor stored.
func (w trafficWindow) revisionTraffic(stored *state.RevisionTraffic) *state.RevisionTraffic {
	if w.new.Empty() && w.old.Empty() {
		return nil
	}
	rt := &state.RevisionTraffic{New: w.new.Summary(), UpdatedAt: w.updated}
	if !w.old.Empty() {
		old := w.old.Summary()
		rt.Old = &old
	}
	if stored != nil {
		if stored.New.Requests > rt.New.Requests || (stored.New == rt.New && sameSummary(stored.Old, rt.Old)) {
			return nil
		}
	}
	return rt
}

func sameSummary(a, b *traffic.Summary) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// maxTrafficReplicas bounds the entries of one report: a host runs far
// fewer replicas, and the leader keeps nothing per entry anyway (the body
// is bounded by maxBody too).
const maxTrafficReplicas = 4096

// RecordTraffic takes a host's traffic report on the leader and reports
// how many entries were dropped for naming another host's replica.
func (c *Controller) RecordTraffic(rep wire.TrafficReport) (int, error) {
	if !c.Ready() {
		return 0, c.notLeader()
	}
	foreign, first := c.traffic.record(c.cfg.Store.View(), rep, c.cfg.Now())
	if foreign > 0 {
		c.log.Warn("traffic entries dropped: their replicas are not assigned to the reporting host",
			"host", rep.Host, "dropped", foreign, "first", first)
	}
	return foreign, nil
}

// checkTrafficReport refuses a report whose figures cannot be true, naming
// the entry: more errors or answered latencies than requests.
func checkTrafficReport(rep wire.TrafficReport) error {
	if len(rep.Replicas) > maxTrafficReplicas {
		return fmt.Errorf("replicas: %d entries, at most %d per report", len(rep.Replicas), maxTrafficReplicas)
	}
	for id, f := range rep.Replicas {
		if f.Errors > f.Requests {
			return fmt.Errorf("replicas[%q].errors: %d is more than its %d requests", id, f.Errors, f.Requests)
		}
		var answered uint64
		for b, n := range f.Latency {
			if b < 0 || b >= traffic.NumBuckets {
				return fmt.Errorf("replicas[%q].latency: bucket %d is not one of 0 to %d", id, b, traffic.NumBuckets-1)
			}
			answered += n
			if answered < n || answered > f.Requests {
				return fmt.Errorf("replicas[%q].latency: more answered requests than its %d requests", id, f.Requests)
			}
		}
	}
	return nil
}

func (a *API) postTraffic(w http.ResponseWriter, r *http.Request) {
	var rep wire.TrafficReport
	if !decodeJSON(w, r, &rep) || !hostParam(w, "host", rep.Host) {
		return
	}
	// The figures are a host's testimony about its own replicas: only its
	// own certificate may send them.
	if !speaksFor(w, r, rep.Host) {
		return
	}
	if err := checkTrafficReport(rep); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
		return
	}
	if _, err := a.c.RecordTraffic(rep); err != nil {
		a.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// errNoCanary is a promote with no canary to end: a conflict with the
// service's state, named in the message.
var errNoCanary = fmt.Errorf("%w: no canary to promote", ErrConflict)

// Promote ends the canary of a service's rollout now (`deployctl
// promote`): the rollout record gets Canary.Promoted, through a rollout
// step guarded like every step by the service record it was read from;
// the loop's next decision ends the canary and starts the next batch. A
// step the loop wrote meanwhile makes the guard refuse: read again and
// retry. Promoting twice is harmless: a canary already promoted answers
// as the first promote did.
func (c *Controller) Promote(ctx context.Context, name string) (wire.ApplyOutcome, error) {
	if !c.Ready() {
		return wire.ApplyOutcome{}, c.notLeader()
	}
	for {
		view := c.cfg.Store.View()
		svc, err := liveService(view, name)
		if err != nil {
			return wire.ApplyOutcome{}, err
		}
		rev, _ := view.Revision(svc.Name, svc.Current)
		out := wire.ApplyOutcome{Service: svc.Name, Revision: rev.Number, Digest: rev.Digest, Ref: rev.Ref}
		ro := svc.Rollout
		switch {
		case ro == nil || ro.State != state.RolloutInProgress:
			return out, fmt.Errorf("%w: service %s has no rollout in progress (it is %s); promote ends the canary of a running rollout", errNoCanary, svc.Name, svc.State)
		case rev.IsRollback():
			return out, fmt.Errorf("%w: revision %d of %s is a rollback, which has no canary", errNoCanary, rev.Number, svc.Name)
		case rev.Spec.Update.Canary == nil:
			return out, fmt.Errorf("%w: revision %d of %s has no update.canary; its rollout goes on by batches without one", errNoCanary, rev.Number, svc.Name)
		case !rollout.JudgedRelease(rev, fromFingerprint(view, svc)):
			return out, fmt.Errorf("%w: revision %d of %s runs the containers of the revision it replaces (only settings or the count changed), so it has no canary", errNoCanary, rev.Number, svc.Name)
		case ro.Canary != nil && ro.Canary.Promoted:
			return out, nil
		case ro.Canary != nil && !ro.Canary.Running():
			return out, fmt.Errorf("%w: the canary of revision %d of %s has ended (%s); the rollout goes on", errNoCanary, rev.Number, svc.Name, ro.Canary.Ended)
		}
		next := *ro
		canary := state.CanaryState{}
		if ro.Canary != nil {
			canary = *ro.Canary
		}
		canary.Promoted = true
		next.Canary = &canary
		_, err = c.apply(ctx, raftstore.CmdRolloutStep, state.RolloutStepCmd{
			Now: c.cfg.Now(), Service: svc.Name, ExpectCurrent: svc.Current, ExpectModifyIndex: svc.ModifyIndex, Rollout: &next,
		})
		if errors.Is(err, ErrConflict) && ctx.Err() == nil {
			continue // the loop wrote a step meanwhile: decide on the new record
		}
		if err != nil {
			return wire.ApplyOutcome{}, fmt.Errorf("promote %s: %w", svc.Name, err)
		}
		c.log.Info("canary promoted", "service", svc.Name, "revision", rev.Number)
		return out, nil
	}
}

func (a *API) promoteService(w http.ResponseWriter, r *http.Request) {
	name, ok := pathService(w, r)
	if !ok {
		return
	}
	out, err := a.c.Promote(r.Context(), name)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// trafficStatus is the figures status shows for svc's current revision:
// the leader's live ones while its rollout runs, else those stored with
// the revision; nil when there are none.
func (c *Controller) trafficStatus(svc state.Service, rev state.Revision, fromFingerprint string) *wire.TrafficStatus {
	judged := rollout.Judged(rev, fromFingerprint)
	if svc.Rollout != nil && svc.Rollout.State == state.RolloutInProgress {
		// A judged rollout shows its (maybe empty) evidence; another only
		// figures that came.
		if w, ok := c.traffic.window(svc.Name, rev.Number); ok || judged != nil {
			st := &wire.TrafficStatus{Revision: rev.Number, New: w.new.Summary(), Live: true, Since: w.since, RollbackOn: judged}
			if !w.old.Empty() {
				old := w.old.Summary()
				st.Old = &old
			}
			if judged != nil && st.New.Requests < uint64(judged.MinRequests) {
				st.Waiting = rollout.WaitingForTraffic(st.New, judged.MinRequests)
			}
			return st
		}
	}
	if rev.Traffic == nil {
		return nil
	}
	return &wire.TrafficStatus{Revision: rev.Number, New: rev.Traffic.New, Old: rev.Traffic.Old, RollbackOn: judged}
}

// withTraffic adds the current revision's figures to a status (views.go
// builds statuses from state alone; the live figures are this leader's).
func (c *Controller) withTraffic(view *state.Tables, st wire.ServiceStatus) wire.ServiceStatus {
	svc, ok := view.Service(st.Service)
	if !ok {
		return st
	}
	if rev, ok := view.Revision(svc.Name, svc.Current); ok {
		st.Traffic = c.trafficStatus(svc, rev, fromFingerprint(view, svc))
	}
	return st
}

// fromFingerprint is the fingerprint of the revision svc's rollout started
// from ("" for a first release, or without a rollout).
func fromFingerprint(view *state.Tables, svc state.Service) string {
	if svc.Rollout == nil || svc.Rollout.From == 0 {
		return ""
	}
	from, _ := view.Revision(svc.Name, svc.Rollout.From)
	return from.Fingerprint
}
