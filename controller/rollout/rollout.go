// Package rollout decides the next step of a service's rollout. It is a pure
// function: the service record, its target revision, every replica record and
// the time go in; the replicas to start, stop and forget and the rollout's
// outcome come out. The controller applies the Decision through raft, the
// agents act on it, their reports change the replica records, and the next
// call to Decide continues from there. Nothing is remembered between calls:
// whatever must survive (failure count, last progress, end of the last batch)
// is in the Rollout record the caller stores.
package rollout

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Input is everything one decision depends on.
type Input struct {
	Now time.Time
	// Service.Current is the target revision number; Service.Rollout is nil in
	// steady state or has State in_progress, succeeded, failed or paused.
	Service state.Service
	// Target is the revision with Number == Service.Current.
	Target state.Revision
	// Replicas are every replica record of this service, whatever their
	// desired and observed states.
	Replicas []state.Replica
	// NoRoom is what placement found for start-first replacements: the
	// slots whose new replica no host could take while the slot's own
	// replicas (the old one, or one still stopping) hold the room it needs,
	// and where their removal makes that room. The caller learns it by
	// placing the Starts of a Decision, and decides again with it. Decide
	// stays pure: placement facts come in here, never from a lookup.
	NoRoom map[int]NoRoom
	// Unplaceable are the slots whose start no host could take on this
	// pass (the caller placed the Starts of a Decision and nothing fitted).
	// Starting them again is not progress, so the progress deadline runs
	// on: a rollout that can place nothing (no host, a constraint no host
	// meets) ends at its deadline instead of waiting forever.
	Unplaceable []int
	// Draining are the hosts the operator drained (`deployctl host
	// drain`). Another placement fact: in steady state a replica of the
	// target on such a host is moved, start-first (a new replica of its
	// slot starts elsewhere and it stops once that one is done), as a
	// failed one is replaced. A rollout in progress leaves them to its
	// own batches; the steady state after it moves what is left.
	Draining map[string]bool
	// FromFingerprint is the fingerprint of the rollout's From revision
	// ("" for a first release). A release with the same fingerprint runs
	// the containers already judged (only update settings or the count
	// changed, as a scale does): it has no canary and is not judged.
	FromFingerprint string
	// Traffic is what the proxies sent since the rollout began, as the
	// leader sums it in memory (nil: no figures, e.g. just after an
	// election). Like NoRoom it is a fact that comes in: Decide judges it
	// against update.rollback_on and never looks anything up.
	Traffic *Traffic
}

// Traffic are the figures a release is judged by (issue 15).
type Traffic struct {
	// New is what the proxies sent to the target revision's own replicas
	// (those its rollout started): the evidence.
	New traffic.Summary
	// Old is what they sent to the service's other replicas meanwhile,
	// shown beside New in a breach's reason.
	Old traffic.Summary
}

// NoRoom is a start-first replacement that only the slot's own room can
// take.
type NoRoom struct {
	// Host is where the slot's own replicas hold the room; the replacement
	// fits there once they are gone.
	Host string
	// Cause names the room, e.g. "max_per_host 1" or "host port
	// 0.0.0.0:80/tcp".
	Cause string
}

// Outcome is what a step concludes about the rollout as a whole.
type Outcome string

// Outcomes of a step.
const (
	// Continue: keep going.
	Continue Outcome = ""
	// Succeeded: every slot runs the target, healthy for update.monitor, and
	// no other replica is desired running.
	Succeeded Outcome = "succeeded"
	// Rollback: the rollout failed with failure_action rollback, there is a
	// previous good revision (Rollout.From != 0) and the target is not itself
	// a rollback. The caller creates the rollback revision and its rollout.
	Rollback Outcome = "rollback"
	// Paused: the rollout failed with failure_action pause.
	Paused Outcome = "paused"
	// Failed: a rollback revision failed (a rollback is never rolled back),
	// or a rollout failed with nothing to roll back to (From == 0).
	Failed Outcome = "failed"
)

// Decision is the next step. Every list is sorted (slots ascending, IDs
// lexically) so that the same Input always gives the same Decision.
type Decision struct {
	// Start lists the slots that get a new replica of Target; the caller
	// places them and stamps their IDs.
	Start []int
	// Stop lists the replica IDs whose Desired becomes "stopped".
	Stop []string
	// Remove lists the replica IDs to delete from state: desired stopped and
	// observed stopped, failed or pending (the agent has confirmed the stop
	// or never started the container).
	Remove []string
	// Failures is the new value of Rollout.Failures: each newly failed
	// replica of the target is counted once, in the step that stops it.
	Failures int
	// Progress is set when a slot completed or a batch started: the caller
	// sets Rollout.LastProgressAt = Now.
	Progress bool
	// BatchDone is set when the last in-flight slot finished: the caller sets
	// Rollout.BatchDoneAt = Now.
	BatchDone bool
	Outcome   Outcome
	// Reason explains a non-Continue outcome for humans, e.g. "replica web.2
	// (slot 2) unhealthy: HTTP 500 from /healthz (1 failed, 0 allowed for 3
	// replicas)" or "progress deadline 5m0s exceeded: …".
	Reason string
	// Events describe what this step does, one human line each.
	Events []string
	// InPlace is the new value of Rollout.InPlace: the slots this rollout
	// replaces stop-first on their old replica's host because a start-first
	// replacement had no room and none would come. Sorted by slot; nil
	// outside a rollout.
	InPlace []state.InPlaceSlot
	// Pin maps a started slot of InPlace to the host its old replica freed:
	// the caller places it there when that host still takes it.
	Pin map[int]string
	// Waiting holds one line for each slot of InPlace not done yet, e.g.
	// "slot 1: no spare host for start-first (max_per_host 1); replacing
	// stop-first on h2": the caller shows them as the rollout's message.
	// It also holds the canary's line ("canary: 1 replica at 10% for
	// 30s") while it runs, and "waiting for traffic: ..." while the
	// release lacks the requests rollback_on needs. Every line stays the
	// same while its cause lasts, so the message costs no raft write per
	// request counted (live counts are in Events and in the status).
	Waiting []string
	// Canary is the new value of Rollout.Canary: nil for a rollout
	// without one (and outside a rollout), else its batch, promotion and
	// end. The caller stores it when it changed.
	Canary *state.CanaryState
}

// Done reports whether replica r has been healthy for at least monitor at
// now. A healthy replica without a HealthySince stamp is done only when there
// is nothing to monitor: guessing its age could skip the monitor window.
func Done(r state.Replica, monitor time.Duration, now time.Time) bool {
	if r.Status.State != state.ReplicaHealthy {
		return false
	}
	if r.Status.HealthySince.IsZero() {
		return monitor <= 0
	}
	return now.Sub(r.Status.HealthySince) >= monitor
}

// Decide computes the next step for one service. It does not modify in.
func Decide(in Input) Decision {
	p := newPlanner(in)
	p.planRemovals()
	switch {
	case in.Service.Rollout != nil && in.Service.Rollout.State == state.RolloutInProgress:
		p.planRollout()
	case in.Service.State == state.ServiceRunning:
		p.planSteady()
	}
	return p.decision()
}

// slotState is where one slot stands in a rollout.
type slotState int

const (
	slotPending  slotState = iota // needs a replica of the target: waits for a batch
	slotInFlight                  // being replaced: counts against update.parallelism
	// slotMonitoring (start-first only): the new replica passed a probe and
	// serves its update.monitor window. It no longer holds the batch, so the
	// next batch starts (as Swarm does); a failure inside the window still
	// counts, and the old replica keeps running until the window closes.
	slotMonitoring
	slotDone // a done current replica and nothing else running
)

// slotReplicas groups the records of one slot, each list sorted by ID.
type slotReplicas struct {
	index int
	// current are desired running and run the target's fingerprint.
	current []*state.Replica
	// old are desired running and run anything else.
	old []*state.Replica
	// stopped are desired stopped, whatever they run.
	stopped []*state.Replica
	// stopping are the replicas this step stops in this slot.
	stopping []*state.Replica
	// moving (steady state only) are current replicas on a draining host:
	// they run until a replacement elsewhere is done.
	moving []*state.Replica
}

// replicaAction is one replica to stop or remove, with the line that
// explains it.
type replicaAction struct {
	id    string
	event string
}

// planner accumulates one step. Counted failures are kept apart from the
// other actions because a step that fails the rollout still stops the
// replicas it counted (so they are never counted twice) but drops the rest:
// after a failure a human or the rollback decides what happens next.
type planner struct {
	now         time.Time
	service     state.Service
	target      state.Revision
	n           int
	parallelism int
	stopFirst   bool
	// inPlace holds the slots replaced stop-first for lack of room (the
	// rollout record's, plus those this step adds); noRoom is the input's.
	inPlace map[int]state.InPlaceSlot
	noRoom  map[int]NoRoom
	// unplaceable is the input's: starting only these is not progress.
	unplaceable []int
	// judge is the target's update.rollback_on and canarySpec its
	// update.canary, nil when unset and for rollbacks (a rollback is
	// judged by health alone, and has no canary); canary is this step's
	// copy of the rollout's canary record; traffic the input's figures.
	judge      *specs.RollbackOn
	canarySpec *specs.Canary
	canary     *state.CanaryState
	traffic    Traffic
	// newRunning: a replica the rollout started (revision Target.Number)
	// is desired running at the input: from then on the release has a
	// side to judge.
	newRunning bool
	// waiting are the rollout's own waiting lines (canary, evidence).
	waiting []string
	// states is where each slot stands after this step (rollout only).
	states []slotState
	update specs.Update
	// slots[i] holds slot i for i in 0..n-1.
	slots []slotReplicas
	// outside are desired running at a slot outside 0..n-1 (scale down).
	outside []*state.Replica
	// all is every record, sorted by slot then ID. The pointers are into
	// Input.Replicas and only ever read: Decide must not modify its input.
	all []*state.Replica

	failStops []replicaAction
	stops     []replicaAction
	starts    []int
	startLog  []string
	removes   []replicaAction

	failures  int
	progress  bool
	batchDone bool
	outcome   Outcome
	reason    string
	notes     []string
}

func newPlanner(in Input) *planner {
	upd := in.Target.Spec.Update
	n := max(in.Target.Spec.Replicas, 0)
	p := &planner{
		now:     in.Now,
		service: in.Service,
		target:  in.Target,
		n:       n,
		// specs defaults a zero parallelism to 1; an undefaulted spec gets
		// the same conservative reading here.
		parallelism: max(upd.Parallelism, 1),
		stopFirst:   upd.Order == specs.OrderStopFirst,
		update:      upd,
		slots:       make([]slotReplicas, n),
	}
	if in.Service.Rollout != nil {
		p.failures = in.Service.Rollout.Failures
	}
	if ro := in.Service.Rollout; ro != nil && ro.State == state.RolloutInProgress {
		if JudgedRelease(in.Target, in.FromFingerprint) {
			p.judge, p.canarySpec = upd.RollbackOn, upd.Canary
		}
		if ro.Canary != nil {
			c := *ro.Canary
			c.Slots = slices.Clone(ro.Canary.Slots)
			p.canary = &c
		}
	}
	if in.Traffic != nil {
		p.traffic = *in.Traffic
	}
	if ro := in.Service.Rollout; ro != nil && ro.State == state.RolloutInProgress && !p.stopFirst {
		p.noRoom = in.NoRoom
		p.unplaceable = in.Unplaceable
		p.inPlace = map[int]state.InPlaceSlot{}
		for _, ip := range ro.InPlace {
			if ip.Slot >= 0 && ip.Slot < n {
				p.inPlace[ip.Slot] = ip
			}
		}
	}
	for i := range p.slots {
		p.slots[i].index = i
	}
	// Sort pointers, not the records, so that every list built below is in
	// a stable order whatever order the store returned the records in,
	// without copying them.
	replicas := make([]*state.Replica, len(in.Replicas))
	for i := range in.Replicas {
		replicas[i] = &in.Replicas[i]
	}
	slices.SortFunc(replicas, func(a, b *state.Replica) int {
		return cmp.Or(cmp.Compare(a.Slot, b.Slot), cmp.Compare(a.ID, b.ID))
	})
	p.all = replicas
	steady := (in.Service.Rollout == nil || in.Service.Rollout.State != state.RolloutInProgress) && in.Service.State == state.ServiceRunning
	for _, r := range replicas {
		inRange := r.Slot >= 0 && r.Slot < n
		switch {
		case r.Desired == state.DesiredRunning && !inRange:
			p.outside = append(p.outside, r)
		case !inRange:
			// Desired stopped outside the slots: only Remove cares.
		case r.Desired == state.DesiredRunning && r.Fingerprint == in.Target.Fingerprint && steady && in.Draining[r.Host] && !isFailed(r):
			p.slots[r.Slot].moving = append(p.slots[r.Slot].moving, r)
		case r.Desired == state.DesiredRunning && r.Fingerprint == in.Target.Fingerprint:
			p.slots[r.Slot].current = append(p.slots[r.Slot].current, r)
			p.newRunning = p.newRunning || r.Revision == in.Target.Number
		case r.Desired == state.DesiredRunning:
			p.slots[r.Slot].old = append(p.slots[r.Slot].old, r)
		case r.Desired == state.DesiredStopped:
			p.slots[r.Slot].stopped = append(p.slots[r.Slot].stopped, r)
		}
	}
	return p
}

// isFailed reports whether a replica counts as failed.
func isFailed(r *state.Replica) bool {
	return r.Status.State == state.ReplicaFailed || r.Status.State == state.ReplicaUnhealthy
}

// Gone reports whether no container of r runs: the rule Decide uses for
// a replica being stopped, exported so that placement counts the same
// containers as still holding their host.
func Gone(r state.Replica) bool { return isGone(&r) }

// isGone reports whether no container of r runs: it was confirmed stopped,
// it failed (could not start or exited), it was never started (pending, or
// no report at all yet), or its host is down past the grace period (lost:
// nobody will confirm its stop, and the host's agent removes it as an
// orphan if it comes back).
func isGone(r *state.Replica) bool {
	switch r.Status.State {
	case state.ReplicaStopped, state.ReplicaFailed, state.ReplicaPending, state.ReplicaLost, "":
		return true
	}
	return false
}

// planRemovals forgets replicas whose stop the agent has confirmed, in every
// mode: they no longer hold anything on their host.
func (p *planner) planRemovals() {
	for _, r := range p.all {
		if r.Desired == state.DesiredStopped && isGone(r) {
			p.removes = append(p.removes, replicaAction{r.ID,
				fmt.Sprintf("remove replica %s (slot %d, revision %d): %s", r.ID, r.Slot, r.Revision, stateWord(r))})
		}
	}
}

// planSteady keeps every slot filled with a replica of the target once the
// service runs: it replaces failed replicas, fills empty slots, stops the
// replicas of removed slots, and stops old replicas whose slot has a done
// replacement (start-first, so a replacement never costs capacity).
func (p *planner) planSteady() {
	p.stopOutside()
	for i := range p.slots {
		s := &p.slots[i]
		var live []*state.Replica
		for _, c := range s.current {
			if isFailed(c) {
				p.stop(c, symptom(c)+"; replace it")
				continue
			}
			live = append(live, c)
		}
		if keeper, ok := p.firstDone(live); ok {
			p.retireOthers(s, live, keeper)
			for _, m := range s.moving {
				p.stop(m, fmt.Sprintf("moved off draining host %s: replaced by replica %s", m.Host, keeper.ID))
			}
		}
		if len(live) == 0 && len(s.moving) > 1 {
			// Two draining hosts in a row (a replacement placed on a host
			// drained since): one replica of the slot is enough until a
			// host can take it; keep the first done one.
			keep, ok := p.firstDone(s.moving)
			if !ok {
				keep = s.moving[0]
			}
			for _, m := range s.moving {
				if m.ID != keep.ID {
					p.stop(m, fmt.Sprintf("duplicate of replica %s (both on draining hosts)", keep.ID))
				}
			}
			s.moving = []*state.Replica{keep}
		}
		switch {
		case len(live) == 0 && len(s.moving) > 0:
			p.start(i, fmt.Sprintf("replica %s is on draining host %s: moving it", s.moving[0].ID, s.moving[0].Host))
		case len(live) == 0:
			p.start(i, "no replica of the target")
		}
	}
}

// planRollout advances a rollout in progress by one step.
func (p *planner) planRollout() {
	ro := p.service.Rollout
	recorded := ro.LastProgressAt
	if recorded.IsZero() {
		recorded = ro.StartedAt
	}
	p.stopOutside()
	// The canary ends (or not) before the slots settle: its slots keep
	// their old replicas until it does.
	p.advanceCanary()

	states := make([]slotState, p.n)
	inFlightBefore := 0
	var firstFailure *state.Replica
	for i := range p.slots {
		s := &p.slots[i]
		if p.wasInFlight(s, recorded) {
			inFlightBefore++
		}
		var live []*state.Replica
		for _, c := range s.current {
			if !isFailed(c) {
				live = append(live, c)
				continue
			}
			// Counting and stopping in the same step is what makes each
			// failure count once: a stopped replica is never current again.
			p.failures++
			s.stopping = append(s.stopping, c)
			if firstFailure == nil {
				firstFailure = c
			}
			p.failStops = append(p.failStops, replicaAction{c.ID,
				fmt.Sprintf("stop replica %s (slot %d, revision %d): %s; failure %d, %d allowed",
					c.ID, c.Slot, c.Revision, symptom(c), p.failures, p.allowedFailures())})
		}
		states[i] = p.settle(s, live, recorded)
	}

	if allowed := p.allowedFailures(); p.failures > allowed {
		var reason string
		if firstFailure != nil {
			reason = fmt.Sprintf("%s (%d failed, %d allowed for %d replicas)",
				describeFailure(firstFailure), p.failures, allowed, p.n)
		} else {
			reason = fmt.Sprintf("%d replicas failed, %d allowed for %d replicas",
				p.failures, allowed, p.n)
		}
		p.fail(reason)
		return
	}
	if reason, breached := p.breach(); breached {
		p.fail(reason)
		return
	}

	inFlightAfter := countState(states, slotInFlight)
	// A batch ends in the step that leaves no slot in flight after some slot
	// was in flight at its input. Done is judged against LastProgressAt (see
	// wasInFlight), so a slot that became done by the passage of time alone
	// still counts as in flight at the input that first sees it done.
	p.batchDone = inFlightBefore > 0 && inFlightAfter == 0
	batchDoneAt := ro.BatchDoneAt
	if p.batchDone {
		batchDoneAt = p.now
		p.notes = append(p.notes, "batch done")
	}
	delayOver := batchDoneAt.IsZero() || !p.now.Before(batchDoneAt.Add(p.update.Delay))
	switch {
	case inFlightAfter == 0 && delayOver:
		p.startBatch(states, p.parallelism)
	case p.slidingWindow() && inFlightAfter < p.parallelism:
		// A slot that passed its probe makes room for the next pending
		// one at once, as Swarm's update workers do: the engine keeps
		// starting containers instead of waiting for a batch's slowest.
		p.startBatch(states, p.parallelism-inFlightAfter)
	}

	p.states = states
	p.noteWaiting()
	if countState(states, slotDone) == p.n && p.evidenceForSuccess() {
		p.outcome = Succeeded
		if p.n == 0 {
			p.reason = fmt.Sprintf("revision %d scaled to 0 replicas", p.target.Number)
		} else {
			p.reason = fmt.Sprintf("all %d replicas run revision %d, healthy for at least %s",
				p.n, p.target.Number, max(p.update.Monitor, 0))
		}
		p.notes = append(p.notes, fmt.Sprintf("rollout of revision %d succeeded", p.target.Number))
		return
	}

	if deadline := p.update.ProgressDeadline; deadline > 0 && !p.progress && !recorded.IsZero() {
		since := recorded
		// Waiting out update.delay is not a stall.
		if !ro.BatchDoneAt.IsZero() && ro.BatchDoneAt.Add(p.update.Delay).After(since) {
			since = ro.BatchDoneAt.Add(p.update.Delay)
		}
		// Neither is the canary's duration: the deadline counts from its
		// end (waiting for evidence after it is a stall).
		if end, ok := p.canaryDue(); ok && end.After(since) {
			since = end
		}
		if p.now.Sub(since) > deadline {
			p.fail(fmt.Sprintf("progress deadline %s exceeded: no progress since %s%s%s",
				deadline, since.UTC().Format(time.RFC3339), p.describeStall(states), p.describeEvidenceWait()))
		}
	}
}

// wasInFlight reports whether slot s was in flight at the last recorded step.
// A current replica counts unless it is done and its completion (HealthySince
// + monitor) is no later than the last recorded progress: a completion after
// it has not been acted on yet. Adopted replicas (a rollback's old ones) are
// done long before the rollout began, so their slots never count as in flight.
func (p *planner) wasInFlight(s *slotReplicas, recorded time.Time) bool {
	for _, c := range s.current {
		if !p.slotStopFirst(s.index) && isHealthy(c) {
			// Start-first: a slot is in flight until its replica passes a
			// probe; one that did so after the last recorded step was still
			// in flight there.
			if c.Status.HealthySince.After(recorded) {
				return true
			}
			continue
		}
		if !Done(*c, p.update.Monitor, p.now) || p.completion(c).After(recorded) {
			return true
		}
	}
	return p.waitingToStart(s)
}

// isHealthy reports a replica that passed a probe and has not failed since.
func isHealthy(r *state.Replica) bool {
	return r.Status.State == state.ReplicaHealthy && !r.Status.HealthySince.IsZero()
}

// waitingToStart reports whether s is a stop-first slot whose old replica was
// stopped for the rollout and whose new one is not started yet. The stopped
// record stays until the step after the agent confirms the stop, and the step
// that removes it also starts the new replica, so the marker never vanishes
// before the slot moves on.
func (p *planner) waitingToStart(s *slotReplicas) bool {
	if !p.slotStopFirst(s.index) || len(s.current) > 0 || len(s.old) > 0 {
		return false
	}
	return slices.ContainsFunc(s.stopped, func(r *state.Replica) bool {
		return r.Fingerprint != p.target.Fingerprint
	})
}

// settle handles one slot after its failed replicas were taken out and
// reports where it stands at the end of this step.
func (p *planner) settle(s *slotReplicas, live []*state.Replica, recorded time.Time) slotState {
	// A canary slot is not done while the canary runs: its old replica
	// keeps serving the rest of the requests (with one replica it is the
	// only other side of the split) and stays for a cheap rollback.
	if keeper, ok := p.firstDone(live); ok && !p.inCanary(s.index) {
		retired := p.retireOthers(s, live, keeper)
		if retired || p.completion(keeper).After(recorded) {
			p.progress = true
			p.notes = append(p.notes, fmt.Sprintf("slot %d done: replica %s", s.index, keeper.ID))
		}
		return slotDone
	}
	if !p.slotStopFirst(s.index) {
		for _, c := range live {
			if isHealthy(c) {
				if c.Status.HealthySince.After(recorded) {
					p.progress = true
					p.notes = append(p.notes, fmt.Sprintf("slot %d healthy, monitoring: replica %s", s.index, c.ID))
				}
				return slotMonitoring
			}
		}
	}
	if len(live) > 0 {
		return slotInFlight
	}
	if p.waitingToStart(s) {
		if !draining(s) {
			p.start(s.index, "old replica stopped (stop-first)")
			p.progress = true
		}
		return slotInFlight
	}
	return slotPending
}

// slidingWindow reports whether update.parallelism bounds the slots in
// flight at any moment rather than lock-step batches: start-first without
// update.delay (a delay is a pause between batches, so batches stay; and
// stop-first keeps its stricter rule, its old replicas being gone).
func (p *planner) slidingWindow() bool {
	return !p.stopFirst && p.update.Delay <= 0
}

// startBatch takes pending slots in ascending order, up to budget
// (update.parallelism, or what the sliding window has left of it).
func (p *planner) startBatch(states []slotState, budget int) {
	var taken []int
	for i, st := range states {
		if budget == 0 {
			break
		}
		if st != slotPending || !p.mayStart(i) {
			continue
		}
		s := &p.slots[i]
		stopFirst := p.slotStopFirst(i)
		if room, ok := p.noRoom[i]; ok && !stopFirst && !p.roomMayCome(i, states) {
			p.replaceInPlace(s, room)
			stopFirst = true
		}
		switch {
		case !stopFirst:
			p.start(i, "new batch")
		case len(s.old) > 0:
			for _, o := range s.old {
				p.stop(o, fmt.Sprintf("stop-first: stop before starting revision %d", p.target.Number))
			}
			s.stopping = append(s.stopping, s.old...)
			if !draining(s) {
				p.start(i, "new batch, old replica already gone (stop-first)")
			}
		case draining(s):
			// A stopped container still runs in this slot (an unhealthy
			// replica being stopped): starting now could race it for its
			// ports. The slot joins a batch once the stop is confirmed.
			continue
		default:
			p.start(i, "new batch")
		}
		states[i] = slotInFlight
		budget--
		taken = append(taken, i)
	}
	if len(taken) > 0 && slices.ContainsFunc(taken, func(i int) bool { return !slices.Contains(p.unplaceable, i) }) {
		p.progress = true
		p.notes = append(p.notes, fmt.Sprintf("batch started: slots %v", taken))
	}
	if len(taken) > 0 && p.canarySpec != nil && p.canary == nil && !p.newRunning && p.othersServe() {
		// The first batch (no replica of the rollout runs yet) is the
		// canary; a rollout whose first batch had no other side to split
		// with never gets one later.
		p.canary = &state.CanaryState{Slots: taken, StartedAt: p.now}
		p.notes = append(p.notes, p.canaryLine())
	}
}

// slotStopFirst reports whether slot i is replaced stop-first: the spec
// says so, or a start-first replacement had no room (Rollout.InPlace).
func (p *planner) slotStopFirst(i int) bool {
	if p.stopFirst {
		return true
	}
	_, ok := p.inPlace[i]
	return ok
}

// roomMayCome reports whether the room a start-first replacement of slot i
// lacks may still come without replacing it stop-first: another slot of this
// rollout is in flight or monitoring (its old replica goes when it is done),
// or a container of the service is stopping (in this step or an earlier
// one). Only when none of that holds does the rollout stop waiting for room
// and replace the slot in place.
func (p *planner) roomMayCome(i int, states []slotState) bool {
	for j, st := range states {
		if j != i && (st == slotInFlight || st == slotMonitoring) {
			return true
		}
	}
	for _, r := range p.all {
		if r.Desired == state.DesiredStopped && !isGone(r) {
			return true
		}
	}
	for _, group := range [][]replicaAction{p.failStops, p.stops} {
		for _, a := range group {
			if r := p.byID(a.id); r != nil && !isGone(r) {
				return true
			}
		}
	}
	return false
}

func (p *planner) byID(id string) *state.Replica {
	for _, r := range p.all {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// replaceInPlace turns slot s of a start-first rollout stop-first for the
// rest of the rollout: no host has room for its replacement beside the old
// replica, and none will come.
func (p *planner) replaceInPlace(s *slotReplicas, room NoRoom) {
	ip := state.InPlaceSlot{Slot: s.index, Host: room.Host, Cause: room.Cause}
	p.inPlace[s.index] = ip
	p.notes = append(p.notes, inPlaceLine(ip))
}

// inPlaceLine is the progress line of a slot replaced in place.
func inPlaceLine(ip state.InPlaceSlot) string {
	return fmt.Sprintf("slot %d: no spare host for start-first (%s); replacing stop-first on %s", ip.Slot, ip.Cause, ip.Host)
}

// draining reports whether a container still runs in s for a replica that
// is desired stopped or is being stopped in this step.
func draining(s *slotReplicas) bool {
	stillRuns := func(r *state.Replica) bool { return !isGone(r) }
	return slices.ContainsFunc(s.stopped, stillRuns) || slices.ContainsFunc(s.stopping, stillRuns)
}

// firstDone returns the first done replica of live (sorted by ID).
func (p *planner) firstDone(live []*state.Replica) (*state.Replica, bool) {
	for _, c := range live {
		if Done(*c, p.update.Monitor, p.now) {
			return c, true
		}
	}
	return nil, false
}

// retireOthers stops every replica desired running in s but keeper: the old
// ones it replaces and duplicates of the target. It reports whether it
// stopped any.
func (p *planner) retireOthers(s *slotReplicas, live []*state.Replica, keeper *state.Replica) bool {
	retired := false
	for _, o := range s.old {
		p.stop(o, fmt.Sprintf("replaced by replica %s", keeper.ID))
		retired = true
	}
	for _, c := range live {
		if c.ID != keeper.ID {
			p.stop(c, fmt.Sprintf("duplicate of replica %s", keeper.ID))
			retired = true
		}
	}
	return retired
}

// stopOutside stops the replicas of slots at or beyond the replica count.
func (p *planner) stopOutside() {
	for _, r := range p.outside {
		p.stop(r, fmt.Sprintf("scale down to %d replicas", p.n))
	}
}

func (p *planner) stop(r *state.Replica, why string) {
	p.stops = append(p.stops, replicaAction{r.ID,
		fmt.Sprintf("stop replica %s (slot %d, revision %d): %s", r.ID, r.Slot, r.Revision, why)})
}

func (p *planner) start(slot int, why string) {
	p.starts = append(p.starts, slot)
	p.startLog = append(p.startLog, fmt.Sprintf("start slot %d (revision %d): %s", slot, p.target.Number, why))
}

// completion is when replica c became (or becomes) done.
func (p *planner) completion(c *state.Replica) time.Time {
	if c.Status.HealthySince.IsZero() {
		return time.Time{}
	}
	return c.Status.HealthySince.Add(max(p.update.Monitor, 0))
}

// allowedFailures is how many failed replicas the rollout tolerates:
// Failures > MaxFailureRatio * N fails it. The epsilon keeps ratios such as
// 0.57 of 100 (56.99999… in binary) at the intended 57.
func (p *planner) allowedFailures() int {
	ratio := max(p.update.MaxFailureRatio, 0)
	return int(math.Floor(ratio*float64(p.n) + 1e-9))
}

// fail ends the rollout with its failure action. It keeps the stops of the
// replicas counted in this step and drops every other action: on pause or
// failure a human decides, on rollback the rollback's own rollout does.
func (p *planner) fail(reason string) {
	p.stops, p.starts, p.startLog = nil, nil, nil
	p.progress, p.batchDone = false, false
	p.notes = nil
	p.reason = reason
	switch {
	case p.target.IsRollback():
		p.outcome = Failed
		p.notes = append(p.notes, fmt.Sprintf("rollback revision %d failed: a rollback is never rolled back", p.target.Number))
	case p.update.FailureAction == specs.FailureActionPause:
		p.outcome = Paused
		p.notes = append(p.notes, fmt.Sprintf("rollout of revision %d paused", p.target.Number))
	case p.service.Rollout.From == 0:
		p.outcome = Failed
		p.notes = append(p.notes, fmt.Sprintf("rollout of revision %d failed: no earlier revision to roll back to", p.target.Number))
	default:
		p.outcome = Rollback
		p.notes = append(p.notes, fmt.Sprintf("roll back revision %d to revision %d", p.target.Number, p.service.Rollout.From))
	}
}

// describeStall names the first slot that is not done and why, for the
// progress deadline's reason.
func (p *planner) describeStall(states []slotState) string {
	for i, st := range states {
		if st == slotDone {
			continue
		}
		s := &p.slots[i]
		for _, c := range s.current {
			return fmt.Sprintf("; slot %d: replica %s is %s", i, c.ID, stateWord(c))
		}
		for _, r := range s.stopped {
			if !isGone(r) {
				return fmt.Sprintf("; slot %d: waiting for replica %s to stop (%s)", i, r.ID, stateWord(r))
			}
		}
		return fmt.Sprintf("; slot %d: not started", i)
	}
	return ""
}

// describeFailure names a failed replica and its symptom, e.g. "replica
// web.2 (slot 2) unhealthy: HTTP 500 from /healthz".
func describeFailure(r *state.Replica) string {
	return fmt.Sprintf("replica %s (slot %d) %s", r.ID, r.Slot, symptom(r))
}

// symptom is the observed state and the agent's message, if any.
func symptom(r *state.Replica) string {
	if r.Status.Message == "" {
		return stateWord(r)
	}
	return stateWord(r) + ": " + r.Status.Message
}

func stateWord(r *state.Replica) string {
	if r.Status.State == "" {
		return "not reported"
	}
	return r.Status.State
}

func countState(states []slotState, want slotState) int {
	n := 0
	for _, st := range states {
		if st == want {
			n++
		}
	}
	return n
}

// decision assembles the sorted, deduplicated Decision.
func (p *planner) decision() Decision {
	d := Decision{
		Failures:  p.failures,
		Progress:  p.progress,
		BatchDone: p.batchDone,
		Outcome:   p.outcome,
		Reason:    p.reason,
	}
	for _, group := range [][]replicaAction{p.failStops, p.stops} {
		for _, a := range group {
			d.Stop = append(d.Stop, a.id)
			d.Events = append(d.Events, a.event)
		}
	}
	d.Events = append(d.Events, p.startLog...)
	for _, a := range p.removes {
		d.Remove = append(d.Remove, a.id)
		d.Events = append(d.Events, a.event)
	}
	d.Events = append(d.Events, p.notes...)
	d.Start = append(d.Start, p.starts...)
	if p.inPlace != nil {
		for _, slot := range slices.Sorted(maps.Keys(p.inPlace)) {
			ip := p.inPlace[slot]
			d.InPlace = append(d.InPlace, ip)
			if slices.Contains(p.starts, slot) {
				if d.Pin == nil {
					d.Pin = map[int]string{}
				}
				d.Pin[slot] = ip.Host
			}
			if p.outcome == Continue && slot < len(p.states) && p.states[slot] != slotDone {
				d.Waiting = append(d.Waiting, inPlaceLine(ip))
			}
		}
	}
	if p.outcome == Continue {
		d.Waiting = append(d.Waiting, p.waiting...)
	}
	if p.canary != nil {
		c := *p.canary
		d.Canary = &c
	}
	slices.Sort(d.Start)
	d.Start = slices.Compact(d.Start)
	slices.Sort(d.Stop)
	d.Stop = slices.Compact(d.Stop)
	slices.Sort(d.Remove)
	d.Remove = slices.Compact(d.Remove)
	return d
}
