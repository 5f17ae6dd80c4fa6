package deployer

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
)

// fakeHealthRuntime answers execs with a fixed exit code and inspects with
// the engine health state the test sets (nil: no engine health check).
type fakeHealthRuntime struct {
	execCode atomic.Int32
	execs    atomic.Int32
	inspects atomic.Int32
	mu       sync.Mutex
	health   *container.Health
}

func (f *fakeHealthRuntime) Exec(context.Context, string, []string, time.Duration) (int, string, error) {
	f.execs.Add(1)
	return int(f.execCode.Load()), "check output", nil
}

func (f *fakeHealthRuntime) Inspect(context.Context, string) (container.InspectResponse, error) {
	f.inspects.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	st := &container.State{Running: true}
	if f.health != nil {
		h := *f.health
		st.Health = &h
	}
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{State: st}}, nil
}

func (f *fakeHealthRuntime) setHealth(h *container.Health) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.health = h
}

// startExecProber runs runExecProber until the test ends and returns its
// verdicts as "state:message".
func startExecProber(t *testing.T, rt *fakeHealthRuntime, check specs.Healthcheck) <-chan string {
	t.Helper()
	return startExecProberChanged(t, rt, check, nil)
}

// startExecProberChanged is startExecProber with the engine's health
// changes announced on changed (nil: none, the prober polls).
func startExecProberChanged(t *testing.T, rt *fakeHealthRuntime, check specs.Healthcheck, changed <-chan struct{}) <-chan string {
	t.Helper()
	verdicts := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runExecProber(ctx, rt, check, ProbeTarget{ContainerID: "c1"}, time.Now(), func(st, message string) {
			verdicts <- st + ":" + message
		}, nil, changed)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return verdicts
}

func mustVerdict(t *testing.T, verdicts <-chan string) string {
	t.Helper()
	select {
	case v := <-verdicts:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict")
		return ""
	}
}

func TestExecProberFollowsTheEngine(t *testing.T) {
	check := specs.Healthcheck{Exec: []string{"/app", "-check"}, Interval: 40 * time.Millisecond, Timeout: time.Second, Retries: 1}
	rt := &fakeHealthRuntime{}
	rt.setHealth(&container.Health{Status: container.Starting})
	verdicts := startExecProber(t, rt, check)

	// The agent's own exec sees the first pass before the engine's first run.
	if got := mustVerdict(t, verdicts); got != state.ReplicaHealthy+":" {
		t.Fatalf("first verdict = %q, want healthy from the early exec", got)
	}
	execsAfterPass := rt.execs.Load()

	// Then the engine's verdict is followed, with its failing streak and the
	// output of its last run.
	rt.setHealth(&container.Health{Status: container.Unhealthy, FailingStreak: 3,
		Log: []*container.HealthcheckResult{{ExitCode: 1, Output: "check: /healthz answered 500\n"}}})
	got := mustVerdict(t, verdicts)
	if !strings.HasPrefix(got, state.ReplicaUnhealthy+":") || !strings.Contains(got, "3 times") || !strings.Contains(got, "answered 500") || !strings.Contains(got, "code 1") {
		t.Fatalf("verdict = %q, want unhealthy with the engine's streak, exit code and output", got)
	}
	rt.setHealth(&container.Health{Status: container.Healthy})
	if got := mustVerdict(t, verdicts); got != state.ReplicaHealthy+":" {
		t.Fatalf("verdict = %q, want healthy again", got)
	}
	// After the first pass the check ran only in the engine.
	if n := rt.execs.Load(); n != execsAfterPass {
		t.Errorf("the agent ran %d execs after the first pass, want none", n-execsAfterPass)
	}
}

func TestExecProberLeavesFailuresToTheEngine(t *testing.T) {
	check := specs.Healthcheck{Exec: []string{"/app", "-check"}, Interval: 20 * time.Millisecond, Timeout: time.Second, Retries: 1}
	rt := &fakeHealthRuntime{}
	rt.execCode.Store(1)
	rt.setHealth(&container.Health{Status: container.Starting})
	verdicts := startExecProber(t, rt, check)

	// Failing execs alone decide nothing while the engine is still starting
	// (its start_period, say)...
	waitUntil(t, "several failed execs and engine reads", func() bool { return rt.execs.Load() >= 3 && rt.inspects.Load() >= 10 })
	select {
	case v := <-verdicts:
		t.Fatalf("verdict %q from the agent's own failed execs, want the engine's", v)
	default:
	}
	// ...the engine's unhealthy does.
	rt.setHealth(&container.Health{Status: container.Unhealthy, FailingStreak: 1})
	if got := mustVerdict(t, verdicts); !strings.HasPrefix(got, state.ReplicaUnhealthy+":") {
		t.Fatalf("verdict = %q, want unhealthy", got)
	}
}

func TestExecProberWithoutEngineHealthProbesItself(t *testing.T) {
	check := specs.Healthcheck{Exec: []string{"/app", "-check"}, Interval: 20 * time.Millisecond, Timeout: time.Second, Retries: 2}
	rt := &fakeHealthRuntime{} // no engine health check on the container
	rt.execCode.Store(1)
	verdicts := startExecProber(t, rt, check)
	if got := mustVerdict(t, verdicts); !strings.HasPrefix(got, state.ReplicaUnhealthy+":") || !strings.Contains(got, "exited with code 1") {
		t.Fatalf("verdict = %q, want unhealthy from the agent's own execs", got)
	}
	rt.execCode.Store(0)
	if got := mustVerdict(t, verdicts); got != state.ReplicaHealthy+":" {
		t.Fatalf("verdict = %q, want healthy", got)
	}
}

// With the engine announcing its health changes (HealthWatcher), the
// prober reads the engine's verdict when told, not a few times per
// interval: with an hour's interval, only the announcement can bring the
// unhealthy verdict within the test.
func TestExecProberReadsTheEngineWhenToldOfAChange(t *testing.T) {
	check := specs.Healthcheck{Exec: []string{"/app", "-check"}, Interval: time.Hour, Timeout: time.Second, Retries: 1}
	rt := &fakeHealthRuntime{}
	rt.setHealth(&container.Health{Status: container.Starting})
	changed := make(chan struct{}, 1)
	verdicts := startExecProberChanged(t, rt, check, changed)
	if got := mustVerdict(t, verdicts); got != state.ReplicaHealthy+":" {
		t.Fatalf("first verdict = %q, want healthy from the early exec", got)
	}
	before := rt.inspects.Load()
	rt.setHealth(&container.Health{Status: container.Unhealthy, FailingStreak: 1})
	changed <- struct{}{}
	if got := mustVerdict(t, verdicts); !strings.HasPrefix(got, state.ReplicaUnhealthy+":") {
		t.Fatalf("verdict = %q, want unhealthy", got)
	}
	if n := rt.inspects.Load() - before; n != 1 {
		t.Errorf("%d engine reads for one announced change, want 1", n)
	}
}
