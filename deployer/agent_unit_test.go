package deployer

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/go-hclog"
)

func TestNewAgentValidates(t *testing.T) {
	rt, err := NewDockerRuntime()
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctrl := newFakeController("h1")
	tests := []struct {
		name string
		cfg  AgentConfig
		ok   bool
	}{
		{"complete", AgentConfig{HostID: "h1", Controller: ctrl, Runtime: rt}, true},
		{"no host", AgentConfig{Controller: ctrl, Runtime: rt}, false},
		{"no controller", AgentConfig{HostID: "h1", Runtime: rt}, false},
		{"no runtime", AgentConfig{HostID: "h1", Controller: ctrl}, false},
		{"host network", AgentConfig{HostID: "h1", Controller: ctrl, Runtime: rt, Network: "host"}, false},
		{"default bridge", AgentConfig{HostID: "h1", Controller: ctrl, Runtime: rt, Network: "bridge"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent, err := NewAgent(tt.cfg)
			if tt.ok {
				if err != nil {
					t.Fatalf("NewAgent: %v", err)
				}
				if agent.cfg.Network != DefaultNetwork || agent.cfg.ResyncInterval != DefaultResyncInterval ||
					agent.cfg.HeartbeatInterval != DefaultHeartbeatInterval || agent.cfg.AssignmentWait != DefaultAssignmentWait ||
					agent.cfg.TrafficInterval != DefaultTrafficInterval {
					t.Errorf("defaults not filled: %+v", agent.cfg)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewAgent = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// An engine that cannot be reached must not stop the agent: it logs one
// clear error, keeps heartbeating and keeps retrying.
func TestAgentSurvivesUnreachableEngine(t *testing.T) {
	rt, err := NewDockerRuntime(withHost("unix://" + t.TempDir() + "/no-docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctrl := newFakeController("h1")
	ctrl.assign(assignment("r1", 1, pinnedRef, testSpec()))
	logs := &lockedBuffer{}
	agent, err := NewAgent(AgentConfig{
		HostID: "h1", Controller: ctrl, Runtime: rt,
		Logger:            hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}),
		ResyncInterval:    20 * time.Millisecond,
		HeartbeatInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()

	ctrl.waitFor(t, "heartbeats while the engine is down", func(f *fakeController) bool { return len(f.reports) >= 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if _, reported := ctrl.latest["r1"]; reported {
		t.Errorf("replica reported without an engine: %+v", ctrl.latest["r1"])
	}
	out := logs.String()
	if !strings.Contains(out, "DOCKER_HOST") {
		t.Errorf("log does not say what to check:\n%s", out)
	}
	if n := strings.Count(out, "[ERROR]"); n != 1 {
		t.Errorf("engine outage logged as error %d times, want once:\n%s", n, out)
	}
}

func TestOutbox(t *testing.T) {
	report := func(id, st string) state.StatusReport { return state.StatusReport{ReplicaID: id, State: st} }
	box := newOutbox()
	if batch := box.take(); batch != nil {
		t.Fatalf("empty outbox gave %v", batch)
	}

	box.put(report("a", state.ReplicaStarting))
	box.put(report("b", state.ReplicaStarting))
	box.put(report("a", state.ReplicaHealthy))
	first := box.take()
	if want := []state.StatusReport{report("a", state.ReplicaHealthy), report("b", state.ReplicaStarting)}; !slices.Equal(first, want) {
		t.Fatalf("take = %v, want %v (newest per replica, first-seen order)", first, want)
	}

	// The send failed; meanwhile b changed again and c appeared.
	box.put(report("b", state.ReplicaHealthy))
	box.put(report("c", state.ReplicaStarting))
	box.putBack(first)
	if want := []state.StatusReport{report("a", state.ReplicaHealthy), report("b", state.ReplicaHealthy), report("c", state.ReplicaStarting)}; !slices.Equal(box.take(), want) {
		t.Errorf("after putBack, want %v: the newer b must win", want)
	}
}

func TestNotRunningReason(t *testing.T) {
	tests := []struct {
		name    string
		inspect string
		want    string
	}{
		{"running", "running", ""},
		{"no state", "", "container has no state"},
		{"exited 1", "exited:1", "exited with code 1"},
		{"oom", "exited:137:oom", "OOM killed"},
		{"restarting", "restarting:2", "exited with code 2 (the engine is restarting it)"},
		{"restarted", "running:restarted", "exited and was restarted by the engine (restart count 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := notRunningReason(fakeInspect(tt.inspect), 0, ContainerExit{}, false); got != tt.want {
				t.Errorf("reason = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("exit event gives the code after a restart", func(t *testing.T) {
		got := notRunningReason(fakeInspect("running:restarted"), 0, ContainerExit{ExitCode: 3}, true)
		if want := "exited with code 3 and was restarted by the engine (restart count 1)"; got != want {
			t.Errorf("reason = %q, want %q", got, want)
		}
	})
}

// fakeInspect builds an inspect result from "status[:code][:oom|restarted]".
func fakeInspect(desc string) container.InspectResponse {
	if desc == "" {
		return container.InspectResponse{}
	}
	parts := strings.Split(desc, ":")
	st := &container.State{Status: parts[0]}
	base := &container.ContainerJSONBase{State: st}
	inspect := container.InspectResponse{ContainerJSONBase: base}
	switch parts[0] {
	case "running":
		st.Running = true
	case "restarting":
		st.Running, st.Restarting = true, true
	}
	for _, p := range parts[1:] {
		switch p {
		case "oom":
			st.OOMKilled = true
		case "restarted":
			base.RestartCount = 1
		default:
			code, err := strconv.Atoi(p)
			if err != nil {
				panic(err)
			}
			st.ExitCode = code
		}
	}
	return inspect
}
