package rollout

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Judging a release by its traffic (issue 15): the canary and
// update.rollback_on. Everything here reads the planner's input; the
// figures come in through Input.Traffic.

// inCanary reports whether slot i belongs to a canary that still runs.
func (p *planner) inCanary(i int) bool {
	return p.canary.Running() && slices.Contains(p.canary.Slots, i)
}

// mayStart reports whether a pending slot may join a batch now. While the
// canary runs only its own slots may (a failed canary replica within the
// tolerated failures is replaced); after the first batch, a judged release
// starts no other batch until it has the evidence rollback_on asks for,
// unless a human promoted the canary.
func (p *planner) mayStart(i int) bool {
	if p.canary.Running() {
		return slices.Contains(p.canary.Slots, i)
	}
	return !p.holdForEvidence()
}

// holdForEvidence: the release is judged, some of its replicas run, and
// their requests are still too few to judge them.
func (p *planner) holdForEvidence() bool {
	promoted := p.canary != nil && p.canary.Promoted
	return p.newRunning && !p.evidence() && !promoted
}

// evidence reports whether the new revision's figures are enough to judge
// it (always, for a release without rollback_on).
func (p *planner) evidence() bool {
	return p.judge == nil || p.traffic.New.Requests >= uint64(max(p.judge.MinRequests, 1))
}

// evidenceForSuccess: a judged release succeeds only on evidence, never on
// silence. A rollout that started no replica of its own (every slot adopted:
// only update settings or the count changed) has nothing new to judge.
func (p *planner) evidenceForSuccess() bool {
	return !p.newRunning || p.evidence()
}

// othersServe reports whether a replica of another revision runs: the
// other side of a canary's split. A first release (or one after every
// replica failed) has none, and a canary there would get every request
// whatever its weight: such a rollout has no canary.
func (p *planner) othersServe() bool {
	if len(p.outside) > 0 {
		return true
	}
	for i := range p.slots {
		if len(p.slots[i].old) > 0 {
			return true
		}
	}
	return false
}

// canaryHealthy returns when every replica of the canary's batch was
// healthy: the latest HealthySince among its slots (of each slot's
// earliest healthy current replica). A failed and replaced canary replica
// thus restarts the canary's duration. False while a slot has none.
func (p *planner) canaryHealthy() (time.Time, bool) {
	if p.canary == nil || len(p.canary.Slots) == 0 {
		return time.Time{}, false
	}
	var all time.Time
	for _, i := range p.canary.Slots {
		if i < 0 || i >= p.n {
			continue
		}
		var first time.Time
		for _, c := range p.slots[i].current {
			if isHealthy(c) && (first.IsZero() || c.Status.HealthySince.Before(first)) {
				first = c.Status.HealthySince
			}
		}
		if first.IsZero() {
			return time.Time{}, false
		}
		if first.After(all) {
			all = first
		}
	}
	return all, !all.IsZero()
}

// canaryDue is when a running canary's duration ends, once its batch is
// healthy.
func (p *planner) canaryDue() (time.Time, bool) {
	if !p.canary.Running() || p.canarySpec == nil {
		return time.Time{}, false
	}
	since, ok := p.canaryHealthy()
	if !ok {
		return time.Time{}, false
	}
	return since.Add(p.canarySpec.Duration), true
}

// advanceCanary ends a running canary when it was promoted, or when its
// duration has passed since its batch was healthy and the release has
// the evidence rollback_on asks for. A breach is judged later in the
// step, whether the canary ends or not.
func (p *planner) advanceCanary() {
	if !p.canary.Running() {
		return
	}
	switch {
	case p.canary.Promoted:
		p.endCanary("promoted")
		return
	case p.canarySpec == nil:
		// Cannot happen (a revision's spec is immutable); do not hold a
		// rollout for a canary its spec does not have.
		p.endCanary("no canary in the spec")
		return
	}
	due, ok := p.canaryDue()
	if !ok || p.now.Before(due) || !p.evidence() {
		return
	}
	why := p.canarySpec.Duration.String() + " passed"
	if p.judge != nil {
		why += "; " + Describe(p.traffic.New)
	}
	p.endCanary(why)
}

func (p *planner) endCanary(why string) {
	p.canary.EndedAt = p.now
	p.canary.Ended = why
	p.progress = true
	p.notes = append(p.notes, "canary ended: "+why)
}

// breach judges the new revision's figures against rollback_on once they
// are enough, e.g. "error rate 31.1 % over 212 requests > 2 %
// (update.rollback_on.error_rate; the other replicas: 0.2 % over 1890
// requests)". Both thresholds are judged; a breach of either fails.
func (p *planner) breach() (string, bool) {
	if p.judge == nil || !p.evidence() {
		return "", false
	}
	n, old := p.traffic.New, p.traffic.Old
	var reasons []string
	if e := p.judge.ErrorRate; e != nil && n.ErrorRate() > *e {
		line := fmt.Sprintf("error rate %s over %d requests > %s (update.rollback_on.error_rate", percent(n.ErrorRate()), n.Requests, percent(*e))
		if old.Requests > 0 {
			line += fmt.Sprintf("; the other replicas: %s over %d requests", percent(old.ErrorRate()), old.Requests)
		}
		reasons = append(reasons, line+")")
	}
	if l := p.judge.LatencyP99; l > 0 && n.P99 > l {
		line := fmt.Sprintf("p99 latency %s over %d requests > %s (update.rollback_on.latency_p99", latency(n.P99), n.Requests, l)
		if old.Requests > 0 {
			line += fmt.Sprintf("; the other replicas: %s over %d requests", latency(old.P99), old.Requests)
		}
		reasons = append(reasons, line+")")
	}
	if len(reasons) == 0 {
		return "", false
	}
	return strings.Join(reasons, "; "), true
}

// noteWaiting adds the rollout's waiting lines: the canary's while it runs,
// and the evidence rollback_on still lacks. The lines stay the same while
// their cause lasts (they become the stored rollout message); the live
// count goes to Events only.
func (p *planner) noteWaiting() {
	if p.canary.Running() && len(p.canary.Slots) > 0 {
		p.waiting = append(p.waiting, p.canaryLine())
	}
	if p.newRunning && !p.evidence() {
		p.waiting = append(p.waiting, fmt.Sprintf("waiting for traffic: revision %d needs %d requests to be judged (update.rollback_on.min_requests)",
			p.target.Number, p.judge.MinRequests))
		p.notes = append(p.notes, WaitingForTraffic(p.traffic.New, p.judge.MinRequests))
	}
}

// canaryLine is "canary: 1 replica at 10% for 30s".
func (p *planner) canaryLine() string {
	n := len(p.canary.Slots)
	noun := "replicas"
	if n == 1 {
		noun = "replica"
	}
	return fmt.Sprintf("canary: %d %s at %s for %s", n, noun, percentOf(p.canarySpec.Weight), p.canarySpec.Duration)
}

// describeEvidenceWait completes a progress deadline's reason when the
// release was waiting for requests.
func (p *planner) describeEvidenceWait() string {
	if !p.newRunning || p.evidence() {
		return ""
	}
	return "; " + WaitingForTraffic(p.traffic.New, p.judge.MinRequests) + " (no release passes without evidence)"
}

// WaitingForTraffic is the line of a release that lacks evidence: "waiting
// for traffic: 12 of 50 requests".
func WaitingForTraffic(s traffic.Summary, minRequests int) string {
	return fmt.Sprintf("waiting for traffic: %d of %d requests", s.Requests, minRequests)
}

// Judged returns the rollback_on a rollout to rev from a revision of
// fingerprint fromFingerprint ("" for a first release) is judged by, nil
// when none: rollbacks, automatic or manual, and first releases are judged
// by health alone, and a revision running the same containers as the one it replaces (a
// scale, a change of update settings) has nothing new to judge.
func Judged(rev state.Revision, fromFingerprint string) *specs.RollbackOn {
	if !JudgedRelease(rev, fromFingerprint) {
		return nil
	}
	return rev.Spec.Update.RollbackOn
}

// JudgedRelease reports whether a rollout to rev may have a canary and be
// judged by traffic: it is no rollback, it replaces a revision (a first
// release has no users yet to send it the evidence, nothing to compare
// with and nothing to roll back to: held for evidence, it would wait for
// requests that only come once it is up, then fail at its deadline), and
// it runs other containers than the revision it replaces.
func JudgedRelease(rev state.Revision, fromFingerprint string) bool {
	return !rev.IsRollback() && fromFingerprint != "" && fromFingerprint != rev.Fingerprint
}

// CanaryDue is when the running canary of in's rollout ends by time (its
// batch healthy for update.canary.duration): the caller wakes then.
func CanaryDue(in Input) (time.Time, bool) {
	return newPlanner(in).canaryDue()
}

// Describe writes figures as every message shows them: "212 requests,
// 0.5 % errors, p50 3ms, p99 120ms".
func Describe(s traffic.Summary) string {
	return fmt.Sprintf("%d requests, %s errors, p50 %s, p99 %s", s.Requests, percent(s.ErrorRate()), latency(s.P50), latency(s.P99))
}

// Percent writes a fraction as messages do: 0.3113 is "31.1 %".
func Percent(f float64) string { return percent(f) }

// percent writes a fraction as a percentage with at most one decimal:
// 0.3113 is "31.1 %".
func percent(f float64) string {
	return strconv.FormatFloat(math.Round(f*1000)/10, 'f', -1, 64) + " %"
}

// percentOf writes a spec's share as it was written: 0.1 is "10%".
func percentOf(f float64) string {
	return strconv.FormatFloat(f*100, 'f', -1, 64) + "%"
}

// latency rounds a latency (a histogram bucket's bound, e.g.
// 812.4531ms) to what a human compares: 812ms, or 0.4ms below one.
func latency(d time.Duration) time.Duration {
	if d >= time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}
