package deployer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
)

// An exec check is also the container's engine HEALTHCHECK (CIS 5.27, see
// engineHealthcheck), so the engine already runs it every interval and
// keeps a verdict by Docker's rules. An exec costs the engine far more
// than an HTTP probe (~0.15s idle, up to ~0.8s on a busy 2-core host), and
// running every check twice slowed whole rollouts by half. So the agent
// runs the check itself only to see the first pass early (the engine's
// first run is an interval after start) and otherwise follows the engine's
// verdict, read with a cheap inspect a few times per interval.

// healthInspector is what the exec prober needs of the runtime.
type healthInspector interface {
	Execer
	Inspect(ctx context.Context, id string) (container.InspectResponse, error)
}

// engineHealthPolls is how many times per interval the engine's verdict is
// read: a verdict is seen at most interval/engineHealthPolls after the
// engine reached it.
const engineHealthPolls = 4

// engineHealthSafetyPolls is how many intervals apart the verdict is
// read when the engine announces its changes: only what a broken event
// stream missed waits that long.
const engineHealthSafetyPolls = 4

// minEngineHealthPoll bounds the inspect rate for very short intervals.
const minEngineHealthPoll = 50 * time.Millisecond

// engineHealth is the engine's health state of a container: ok is false
// when the container has no engine health check (then the agent probes
// it itself).
func engineHealth(inspect container.InspectResponse) (health *container.Health, ok bool) {
	if inspect.ContainerJSONBase == nil || inspect.State == nil || inspect.State.Health == nil {
		return nil, false
	}
	return inspect.State.Health, true
}

// engineVerdict maps the engine's health to a replica verdict: "" while the
// engine is still starting (or reports no status), and the failure of its
// last run as the message of an unhealthy verdict.
func engineVerdict(h *container.Health) (verdict, message string) {
	switch h.Status {
	case container.Healthy:
		return state.ReplicaHealthy, ""
	case container.Unhealthy:
		last := ""
		if n := len(h.Log); n > 0 {
			entry := h.Log[n-1]
			last = fmt.Sprintf("exited with code %d: %s", entry.ExitCode, truncate(strings.TrimSpace(entry.Output), maxProbeMessage))
		}
		return state.ReplicaUnhealthy, fmt.Sprintf("health check failed %d times in a row (engine health check): %s", h.FailingStreak, last)
	}
	return "", ""
}

// runExecProber probes an exec check until ctx ends: the agent's own
// execs on the early schedule until the first pass, and the engine's
// verdict throughout. A container without an engine health check (made
// before deployctl set one) is probed by the agent alone (runProber).
// failed (when not nil) is called for each failure of the agent's early
// execs and each failure the engine's streak adds.
//
// With engineChanged (the engine streams health changes, HealthWatcher)
// the verdict is read when the engine announces a change, and polled only
// every engineHealthSafetyPolls intervals in case the stream missed one.
func runExecProber(ctx context.Context, rt healthInspector, check specs.Healthcheck, target ProbeTarget, startedAt time.Time, emit func(state, message string), failed func(), engineChanged <-chan struct{}) {
	inspect, err := rt.Inspect(ctx, target.ContainerID)
	if err != nil && ctx.Err() != nil {
		return
	}
	if _, ok := engineHealth(inspect); err == nil && !ok {
		runProber(ctx, rt, check, target, startedAt, emit, failed)
		return
	}
	tracker := newHealthTracker(check, startedAt)
	poll := max(tracker.interval/engineHealthPolls, minEngineHealthPoll)
	if engineChanged != nil {
		poll = tracker.interval * engineHealthSafetyPolls
	}
	now := time.Now()
	earlyDelay := tracker.firstDelay()
	nextEarly, nextPoll := now.Add(earlyDelay), now.Add(poll)
	timer := time.NewTimer(0)
	defer timer.Stop()
	reported := ""
	streak := 0 // the engine's failing streak last seen, for failed
	report := func(verdict, message string) {
		if verdict != "" && verdict != reported {
			reported = verdict
			emit(verdict, message)
		}
	}
	for {
		due := nextPoll
		if !tracker.passedOnce && nextEarly.Before(due) {
			due = nextEarly
		}
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-engineChanged:
			nextPoll = time.Now()
		}
		now = time.Now()
		if !tracker.passedOnce && !now.Before(nextEarly) {
			// Only a pass counts here: failures are the engine's to count,
			// at Docker's pace.
			if ProbeExec(ctx, rt, target.ContainerID, check.Exec, tracker.timeout()) == nil {
				tracker.observe(time.Now(), nil)
				report(state.ReplicaHealthy, "")
			} else if ctx.Err() == nil && failed != nil {
				failed()
			}
			if ctx.Err() != nil {
				return
			}
			// Doubling up to the interval; no probe on the interval
			// boundaries, where the engine runs the check anyway.
			earlyDelay = min(max(earlyDelay*2, earlyExecProbeDelay), tracker.interval)
			nextEarly = time.Now().Add(earlyDelay)
		}
		if !now.Before(nextPoll) {
			inspect, err := rt.Inspect(ctx, target.ContainerID)
			if ctx.Err() != nil {
				return
			}
			if health, ok := engineHealth(inspect); err == nil && ok {
				for ; failed != nil && streak < health.FailingStreak; streak++ {
					failed()
				}
				streak = min(streak, health.FailingStreak)
				verdict, message := engineVerdict(health)
				if verdict == state.ReplicaHealthy {
					tracker.observe(time.Now(), nil)
				}
				report(verdict, message)
			}
			nextPoll = time.Now().Add(poll)
		}
	}
}
