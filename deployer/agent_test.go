package deployer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/go-hclog"
)

// agentHarness runs one agent against a fake controller on the test engine.
type agentHarness struct {
	env    *dockerEnv
	hostID string
	ctrl   *fakeController
}

// newAgentHarness gives the test a host of its own; the containers and
// networks of that host are removed when the test ends, so subtests do
// not pile them up.
func newAgentHarness(t *testing.T, env *dockerEnv) *agentHarness {
	t.Helper()
	hostID := "h-" + env.runID + "-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	h := &agentHarness{env: env, hostID: hostID, ctrl: newFakeController(hostID)}
	t.Cleanup(func() { removeHost(t, env, hostID) })
	return h
}

// removeHost removes the containers, then the networks, of a test host.
func removeHost(t testing.TB, env *dockerEnv, hostID string) {
	ctx := context.Background()
	list, err := env.rt.ListManaged(ctx, hostID)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, c := range list {
		if err := env.raw.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("cleanup: remove %s: %v", shortID(c.ID), err)
		}
	}
	networks, err := env.rt.ServiceNetworks(ctx, hostID)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, n := range networks {
		if err := env.raw.NetworkRemove(ctx, n.ID); err != nil {
			t.Errorf("cleanup: remove network %s: %v", n.Name, err)
		}
	}
}

// mustStartAgent runs a new agent until the returned stop is called (or the
// test ends) and checks that Run returned nil. changes adjust its config.
func (h *agentHarness) mustStartAgent(t *testing.T, changes ...func(*AgentConfig)) (stop func()) {
	t.Helper()
	cfg := AgentConfig{
		HostID:            h.hostID,
		Labels:            map[string]string{"zone": "test"},
		Network:           h.env.prefixFor(h.hostID),
		NetworkLabels:     map[string]string{labelTest: h.env.runID},
		ContainerLabels:   map[string]string{labelTest: h.env.runID},
		Controller:        h.ctrl,
		Runtime:           h.env.rt,
		Logger:            hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}}),
		ResyncInterval:    200 * time.Millisecond,
		HeartbeatInterval: 300 * time.Millisecond,
		AssignmentWait:    time.Second,
	}
	for _, change := range changes {
		change(&cfg)
	}
	agent, err := NewAgent(cfg)
	if err != nil {
		t.Fatalf("NewAgent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil after cancel", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// testWriter sends agent logs to the test log, shown on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newReplicaID is random like the controller's IDs, so that container
// names (which hold the first 8 characters) do not collide.
func newReplicaID(t testing.TB) string {
	return mustRunID(t)[1:] + "-replica"
}

func (h *agentHarness) mustInspect(t *testing.T, id string) container.InspectResponse {
	t.Helper()
	inspect, err := h.env.rt.Inspect(context.Background(), id)
	if err != nil {
		t.Fatalf("Inspect %s: %v", shortID(id), err)
	}
	return inspect
}

func (h *agentHarness) managed(t *testing.T) []container.Summary {
	t.Helper()
	list, err := h.env.rt.ListManaged(context.Background(), h.hostID)
	if err != nil {
		t.Fatalf("ListManaged: %v", err)
	}
	return list
}

func (h *agentHarness) waitGone(t *testing.T, containerID string) {
	t.Helper()
	waitUntil(t, "container "+shortID(containerID)+" removed", func() bool {
		_, err := h.env.rt.Inspect(context.Background(), containerID)
		return errors.Is(err, ErrNotFound)
	})
}

func stopped(a state.Assignment) state.Assignment {
	a.Replica.Desired = state.DesiredStopped
	return a
}

func TestAgent(t *testing.T) {
	env := mustDockerEnv(t)

	t.Run("runs two replicas to healthy", func(t *testing.T) {
		h := newAgentHarness(t, env)
		r1 := assignment(newReplicaID(t), 1, env.goodRef, testSpec())
		r2 := assignment(newReplicaID(t), 2, env.goodRef, testSpec())
		h.ctrl.assign(r1, r2)
		h.mustStartAgent(t)

		for _, a := range []state.Assignment{r1, r2} {
			report := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaHealthy)
			inspect := h.mustInspect(t, report.ContainerID)
			if !inspect.State.Running || inspect.Config.Labels[LabelReplica] != a.Replica.ID || inspect.Config.Labels[LabelHost] != h.hostID {
				t.Errorf("container of %s: running %t labels %v", a.Replica.ID, inspect.State.Running, inspect.Config.Labels)
			}
			history := h.ctrl.history(a.Replica.ID)
			if history[0].State != state.ReplicaStarting {
				t.Errorf("first report of %s = %+v, want starting", a.Replica.ID, history[0])
			}
		}
		h.ctrl.mu.Lock()
		labels := h.ctrl.reports[0].Labels
		h.ctrl.mu.Unlock()
		if labels["zone"] != "test" {
			t.Errorf("host report labels = %v, want zone=test", labels)
		}
		if n := len(h.managed(t)); n != 2 {
			t.Errorf("managed containers = %d, want 2", n)
		}
	})

	t.Run("heartbeats without changes", func(t *testing.T) {
		h := newAgentHarness(t, env)
		h.mustStartAgent(t)
		h.ctrl.waitFor(t, "three empty heartbeats", func(f *fakeController) bool {
			empty := 0
			for _, r := range f.reports {
				if r.Host == h.hostID && len(r.Reports) == 0 {
					empty++
				}
			}
			return empty >= 3
		})
	})

	t.Run("broken image is reported unhealthy", func(t *testing.T) {
		h := newAgentHarness(t, env)
		a := assignment(newReplicaID(t), 1, env.brokenRef, testSpec())
		h.ctrl.assign(a)
		h.mustStartAgent(t)
		report := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaUnhealthy)
		if !strings.Contains(report.Message, "500") {
			t.Errorf("unhealthy message = %q, want the 500 it saw", report.Message)
		}
		if inspect := h.mustInspect(t, report.ContainerID); !inspect.State.Running {
			t.Error("an unhealthy replica's container was stopped; the controller decides that")
		}
	})

	// An answered failure counts from the first probe (healthTracker): a
	// service that answers 503 while it warms up is judged on that answer
	// unless start_period covers the warm-up, as it must for Docker too.
	t.Run("warm-up 503 counts unless start_period covers it", func(t *testing.T) {
		h := newAgentHarness(t, env)
		warmup := func(startPeriod time.Duration) specOption {
			return func(s *specs.Spec) {
				s.Env["WEBAPP_WARMUP"] = "1500ms"
				s.Healthcheck.Interval = 3 * time.Second
				s.Healthcheck.Retries = 1
				s.Healthcheck.StartPeriod = startPeriod
			}
		}
		judged := assignment(newReplicaID(t), 1, env.goodRef, testSpec(warmup(0)))
		covered := assignment(newReplicaID(t), 2, env.goodRef, testSpec(warmup(2500*time.Millisecond)))
		h.ctrl.assign(judged, covered)
		h.mustStartAgent(t)

		report := h.ctrl.waitState(t, judged.Replica.ID, state.ReplicaUnhealthy)
		if !strings.Contains(report.Message, "503") {
			t.Errorf("unhealthy message = %q, want the 503 it saw", report.Message)
		}
		// Once warm it passes again: the verdict came from its answer
		// before the first interval, not from a service that stayed broken.
		h.ctrl.waitState(t, judged.Replica.ID, state.ReplicaHealthy)

		h.ctrl.waitState(t, covered.Replica.ID, state.ReplicaHealthy)
		for _, r := range h.ctrl.history(covered.Replica.ID) {
			if r.State == state.ReplicaUnhealthy {
				t.Errorf("a warm-up inside start_period was reported unhealthy: %+v", r)
			}
		}
	})

	// An exec check is the container's engine HEALTHCHECK too: the agent
	// sees the first pass with its own exec, then follows the engine.
	t.Run("exec check follows the engine's verdict", func(t *testing.T) {
		h := newAgentHarness(t, env)
		execCheck := func(s *specs.Spec) {
			s.Healthcheck = specs.Healthcheck{Exec: []string{"/app", "-check"}, Interval: 500 * time.Millisecond, Timeout: 2 * time.Second, Retries: 1}
		}
		good := assignment(newReplicaID(t), 1, env.goodRef, testSpec(execCheck))
		broken := assignment(newReplicaID(t), 2, env.brokenRef, testSpec(execCheck))
		h.ctrl.assign(good, broken)
		h.mustStartAgent(t)

		report := h.ctrl.waitState(t, broken.Replica.ID, state.ReplicaUnhealthy)
		if !strings.Contains(report.Message, "engine health check") || !strings.Contains(report.Message, "500") {
			t.Errorf("unhealthy message = %q, want the engine's verdict with the 500 its check saw", report.Message)
		}
		healthy := h.ctrl.waitState(t, good.Replica.ID, state.ReplicaHealthy)
		waitUntil(t, "the engine's own verdict on the good replica", func() bool {
			inspect := h.mustInspect(t, healthy.ContainerID)
			return inspect.State.Health != nil && inspect.State.Health.Status == container.Healthy
		})
		for _, r := range h.ctrl.history(good.Replica.ID) {
			if r.State == state.ReplicaUnhealthy {
				t.Errorf("the good replica was reported unhealthy: %+v", r)
			}
		}
	})

	t.Run("crashing image is reported failed and removed", func(t *testing.T) {
		h := newAgentHarness(t, env)
		a := assignment(newReplicaID(t), 1, env.crashRef, testSpec())
		h.ctrl.assign(a)
		h.mustStartAgent(t)
		report := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaFailed)
		if !strings.Contains(report.Message, "exited") || !strings.Contains(report.Message, "code 1") {
			t.Errorf("failed message = %q, want the exit code", report.Message)
		}
		if report.ContainerID == "" {
			t.Fatal("failed report names no container")
		}
		h.waitGone(t, report.ContainerID)
	})

	t.Run("desired stopped stops and removes", func(t *testing.T) {
		h := newAgentHarness(t, env)
		running := assignment(newReplicaID(t), 1, env.goodRef, testSpec())
		neverStarted := stopped(assignment(newReplicaID(t), 2, env.goodRef, testSpec()))
		h.ctrl.assign(running, neverStarted)
		h.mustStartAgent(t)
		healthy := h.ctrl.waitState(t, running.Replica.ID, state.ReplicaHealthy)
		h.ctrl.waitState(t, neverStarted.Replica.ID, state.ReplicaStopped)

		h.ctrl.assign(stopped(running), neverStarted)
		report := h.ctrl.waitState(t, running.Replica.ID, state.ReplicaStopped)
		if report.ContainerID != healthy.ContainerID {
			t.Errorf("stopped report names %s, want %s", report.ContainerID, healthy.ContainerID)
		}
		if _, err := h.env.rt.Inspect(context.Background(), healthy.ContainerID); !errors.Is(err, ErrNotFound) {
			t.Errorf("container after stop: %v, want ErrNotFound", err)
		}
	})

	t.Run("container removed behind its back is recreated", func(t *testing.T) {
		h := newAgentHarness(t, env)
		a := assignment(newReplicaID(t), 1, env.goodRef, testSpec())
		h.ctrl.assign(a)
		h.mustStartAgent(t)
		first := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaHealthy)

		if err := env.raw.ContainerRemove(context.Background(), first.ContainerID, container.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		var second state.StatusReport
		h.ctrl.waitFor(t, "a healthy replacement container", func(f *fakeController) bool {
			second = f.latest[a.Replica.ID]
			return second.State == state.ReplicaHealthy && second.ContainerID != first.ContainerID
		})
		sawStarting := false
		for _, r := range h.ctrl.history(a.Replica.ID) {
			if r.State == state.ReplicaStarting && strings.Contains(r.Message, "removed") {
				sawStarting = true
			}
		}
		if !sawStarting {
			t.Errorf("no starting report about the removal in %+v", h.ctrl.history(a.Replica.ID))
		}
		if inspect := h.mustInspect(t, second.ContainerID); inspect.Config.Labels[LabelReplica] != a.Replica.ID {
			t.Errorf("replacement labels = %v, want the same replica", inspect.Config.Labels)
		}
	})

	t.Run("restarted agent adopts running containers", func(t *testing.T) {
		h := newAgentHarness(t, env)
		r1 := assignment(newReplicaID(t), 1, env.goodRef, testSpec())
		r2 := assignment(newReplicaID(t), 2, env.goodRef, testSpec(func(s *specs.Spec) {
			s.Healthcheck = specs.Healthcheck{} // no check: healthy once running
		}))
		h.ctrl.assign(r1, r2)
		stopFirst := h.mustStartAgent(t)
		before := map[string]string{}
		for _, a := range []state.Assignment{r1, r2} {
			before[a.Replica.ID] = h.ctrl.waitState(t, a.Replica.ID, state.ReplicaHealthy).ContainerID
		}
		stopFirst()
		for id, containerID := range before {
			if inspect := h.mustInspect(t, containerID); !inspect.State.Running {
				t.Fatalf("container of %s stopped with the agent", id)
			}
		}

		h.ctrl.forgetReports()
		h.mustStartAgent(t)
		for id, containerID := range before {
			report := h.ctrl.waitState(t, id, state.ReplicaHealthy)
			if report.ContainerID != containerID {
				t.Errorf("%s: container %s after restart, want adopted %s", id, shortID(report.ContainerID), shortID(containerID))
			}
			for _, r := range h.ctrl.history(id) {
				if r.State == state.ReplicaStarting {
					t.Errorf("%s: adopted replica was reported starting: %+v", id, r)
				}
			}
		}
		if n := len(h.managed(t)); n != 2 {
			t.Errorf("managed containers after restart = %d, want 2", n)
		}
	})

	t.Run("orphans are removed", func(t *testing.T) {
		h := newAgentHarness(t, env)
		orphan := assignment(newReplicaID(t), 9, env.goodRef, testSpec())
		orphanInspect := mustRunReplica(t, env, h.hostID, orphan)
		kept := assignment(newReplicaID(t), 1, env.goodRef, testSpec())
		h.ctrl.assign(kept)
		h.mustStartAgent(t)
		h.ctrl.waitState(t, kept.Replica.ID, state.ReplicaHealthy)
		h.waitGone(t, orphanInspect.ID)
		if _, reported := h.ctrl.latest[orphan.Replica.ID]; reported {
			t.Error("the orphan was reported as a replica")
		}
	})

	t.Run("unpinned reference is refused", func(t *testing.T) {
		h := newAgentHarness(t, env)
		a := assignment(newReplicaID(t), 1, env.tagRef, testSpec())
		h.ctrl.assign(a)
		h.mustStartAgent(t)
		report := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaFailed)
		if !strings.Contains(report.Message, "not pinned") {
			t.Errorf("failed message = %q, want it to say the ref is not pinned", report.Message)
		}
		if n := len(h.managed(t)); n != 0 {
			t.Errorf("managed containers = %d, want none", n)
		}
	})

	t.Run("root image is refused", func(t *testing.T) {
		h := newAgentHarness(t, env)
		a := assignment(newReplicaID(t), 1, env.goodRef, testSpec(func(s *specs.Spec) { s.Security.User = "0" }))
		h.ctrl.assign(a)
		h.mustStartAgent(t)
		report := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaFailed)
		if !strings.Contains(report.Message, "allow_root") {
			t.Errorf("failed message = %q, want it to name allow_root", report.Message)
		}
	})

	t.Run("controller down at start is retried", func(t *testing.T) {
		h := newAgentHarness(t, env)
		a := assignment(newReplicaID(t), 1, env.goodRef, testSpec())
		h.ctrl.assign(a)
		h.ctrl.setDown(true)
		h.mustStartAgent(t)
		h.ctrl.waitFor(t, "calls refused while down", func(f *fakeController) bool { return f.refused >= 3 })
		h.ctrl.setDown(false)
		h.ctrl.waitState(t, a.Replica.ID, state.ReplicaHealthy)
	})
}

// BenchmarkStartToHealthy measures the time from a new assignment to its
// healthy report for one replica (the image is built and pulled before).
func BenchmarkStartToHealthy(b *testing.B) {
	env := mustDockerEnv(b)
	if err := env.rt.Pull(context.Background(), env.goodRef); err != nil {
		b.Fatal(err)
	}
	hostID := "h-" + env.runID + "-bench"
	ctrl := newFakeController(hostID)
	agent, err := NewAgent(AgentConfig{
		HostID: hostID, Network: env.prefixFor(hostID), Controller: ctrl, Runtime: env.rt,
		ContainerLabels: map[string]string{labelTest: env.runID}, NetworkLabels: map[string]string{labelTest: env.runID},
		ResyncInterval: 200 * time.Millisecond, HeartbeatInterval: time.Second, AssignmentWait: time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })

	spec := testSpec(func(s *specs.Spec) { s.Healthcheck.Interval = 5 * time.Second })
	for b.Loop() {
		a := assignment(newReplicaID(b), 1, env.goodRef, spec)
		ctrl.assign(a)
		ctrl.waitState(b, a.Replica.ID, state.ReplicaHealthy)

		b.StopTimer()
		ctrl.assign(stopped(a))
		ctrl.waitState(b, a.Replica.ID, state.ReplicaStopped)
		b.StartTimer()
	}
}
