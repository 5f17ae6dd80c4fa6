package audit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/dockerclean"

	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/internal/enginetest"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"
)

// labelTest marks every Docker object these tests create, with the run's
// unique ID as value; cleanup removes exactly those.
const labelTest = "io.deployctl.test"

// waitLimit only guards against a hung test; nothing asserts on time.
const waitLimit = 60 * time.Second

// dockerEnv is a runtime, a raw client for what the runtime does not offer,
// the test host's network plan and the network of its service web, and
// the webapp image in a loopback registry.
type dockerEnv struct {
	runID   string
	rt      *deployer.DockerRuntime
	raw     *client.Client
	host    string
	plan    deployer.NetworkPlan
	network deployer.ServiceNetwork
	ref     string
	engine  audit.EngineInfo
}

// mustDockerEnv connects to the engine (skipping only when it is
// unreachable), builds and serves the webapp image and creates the
// network of service web. Everything is removed in t.Cleanup, also on failure.
func mustDockerEnv(t *testing.T) *dockerEnv {
	t.Helper()
	ctx := context.Background()
	rt, err := deployer.NewDockerRuntime()
	if err != nil {
		t.Fatalf("NewDockerRuntime: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	if err := rt.Ping(ctx); err != nil {
		if errors.Is(err, deployer.ErrEngineUnavailable) {
			enginetest.Unavailable(t, err)
		}
		t.Fatalf("Ping: %v", err)
	}
	raw, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	env := &dockerEnv{runID: "t" + hex.EncodeToString(id), rt: rt, raw: raw}
	env.host = "host-" + env.runID
	env.plan = deployer.NetworkPlan{Prefix: "deployctl-audit-" + env.runID, Pool: netip.MustParsePrefix(deployer.DefaultSubnetPool),
		Labels: map[string]string{labelTest: env.runID}}

	reg, err := devimage.StartRegistry("127.0.0.1:0", hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	t.Cleanup(func() { cleanupDocker(t, raw, env.runID, reg.Addr()) })

	img, err := devimage.BuildGoImage(ctx, devimage.GoImageOptions{
		PackageDir:   "../../examples/webapp",
		Env:          []string{"PORT=8080", "WEBAPP_VERSION=v1"},
		Labels:       map[string]string{labelTest: env.runID},
		ExposedPorts: []string{"8080/tcp"},
	})
	if err != nil {
		t.Fatalf("BuildGoImage: %v", err)
	}
	tagged := reg.Addr() + "/webapp:v1"
	digest, err := devimage.Push(ctx, tagged, img)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if env.ref, err = devimage.PinnedRef(tagged, digest); err != nil {
		t.Fatal(err)
	}
	if err := rt.Pull(ctx, env.ref); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if env.network, err = rt.EnsureServiceNetwork(ctx, env.host, "web", env.plan); err != nil {
		t.Fatalf("EnsureServiceNetwork: %v", err)
	}
	if env.engine, err = rt.EngineInfo(ctx); err != nil {
		t.Fatalf("EngineInfo: %v", err)
	}
	return env
}

// cleanupDocker removes the containers and networks labelled with runID and
// the images pulled from registry. It touches nothing else.
func cleanupDocker(t *testing.T, raw *client.Client, runID, registry string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, err := range dockerclean.Labelled(ctx, raw, labelTest, runID, registry) {
		t.Errorf("cleanup: %v", err)
	}
}

// testAssignment is replica id of a hardened webapp spec (the specs
// defaults, as a spec that says nothing about security gets them) with
// check, publishing 8080 on a loopback port the engine picks.
func (env *dockerEnv) testAssignment(id string, revision int, check specs.Healthcheck) state.Assignment {
	spec := specs.Spec{
		Service:     "web",
		Replicas:    1,
		Env:         map[string]string{"PORT": "8080"},
		Ports:       []specs.Port{{HostIP: "127.0.0.1", ContainerPort: 8080, Protocol: "tcp"}},
		Healthcheck: check,
		Resources:   specs.Resources{NanoCPUs: 250_000_000, MemoryBytes: 64 << 20, Pids: 64},
		Security: specs.Security{
			ReadOnly:        specs.DefaultReadOnly,
			NoNewPrivileges: specs.DefaultNoNewPrivileges,
			CapDrop:         specs.DefaultCapDrop(),
		},
		StopGracePeriod: time.Second,
	}
	fingerprint := "fp-" + strings.Repeat("x", revision)
	return state.Assignment{
		Replica: state.Replica{ID: id + "-" + env.runID, Service: spec.Service, Slot: 1, Revision: revision,
			Fingerprint: fingerprint, Desired: state.DesiredRunning},
		Revision: state.Revision{Service: spec.Service, Number: revision, Spec: spec, Ref: env.ref, Fingerprint: fingerprint},
	}
}

// mustOptions are the create options the agent would use for a on this
// host.
func (env *dockerEnv) mustOptions(t *testing.T, a state.Assignment) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	t.Helper()
	user, err := env.rt.ImageUser(context.Background(), a.Revision.Ref)
	if err != nil {
		t.Fatalf("ImageUser: %v", err)
	}
	cfg, hostCfg, netCfg, err := deployer.ContainerOptions(a, env.host, env.network.Name, user, deployer.WithEngine(env.engine), deployer.WithDNS(env.network.Gateway))
	if err != nil {
		t.Fatalf("ContainerOptions: %v", err)
	}
	return cfg, hostCfg, netCfg
}

// mustRun creates and starts a container from the options, labelled for
// cleanup, and returns its ID.
func (env *dockerEnv) mustRun(t *testing.T, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig) string {
	t.Helper()
	ctx := context.Background()
	cfg.Labels[labelTest] = env.runID
	id, err := env.rt.Create(ctx, name+"-"+env.runID, cfg, hostCfg, netCfg)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := env.rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return id
}

func (env *dockerEnv) mustInspect(t *testing.T, id string) container.InspectResponse {
	t.Helper()
	inspect, err := env.rt.Inspect(context.Background(), id)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return inspect
}

// waitHealthy polls until the engine's own health check reports healthy.
func (env *dockerEnv) waitHealthy(t *testing.T, id string) container.InspectResponse {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		inspect := env.mustInspect(t, id)
		if inspect.State != nil && inspect.State.Health != nil && inspect.State.Health.Status == container.Healthy {
			return inspect
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for the engine to report %s healthy: %+v", id[:12], inspect.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func statusesByID(results []audit.Result) map[string]audit.Result {
	m := make(map[string]audit.Result, len(results))
	for _, r := range results {
		m[r.ID] = r
	}
	return m
}

func warnedIDs(results []audit.Result) []string {
	var ids []string
	for _, r := range results {
		if r.Status == audit.StatusWarn {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func TestAuditWithDocker(t *testing.T) {
	env := mustDockerEnv(t)
	ctx := context.Background()
	execCheck := specs.Healthcheck{Exec: []string{"/app", "-check"}, Interval: 500 * time.Millisecond, Timeout: 5 * time.Second, Retries: 3}
	httpCheck := specs.Healthcheck{HTTP: &specs.HTTPCheck{Path: "/healthz", Port: 8080}, Interval: time.Second, Timeout: time.Second, Retries: 3}

	// The controls whose verdict cannot depend on the host: every one but
	// those inspect cannot judge (info by nature), those that depend on
	// host features (5.1-5.3) and 5.9 (a published port needs a person).
	mustPass := []string{"5.4", "5.5", "5.6", "5.8", "5.10", "5.11", "5.12", "5.13", "5.14", "5.15", "5.16", "5.17",
		"5.18", "5.20", "5.21", "5.22", "5.25", "5.26", "5.29", "5.30", "5.31", "5.32"}

	t.Run("hardened by default: every control passes or is info", func(t *testing.T) {
		a := env.testAssignment("clean", 1, execCheck)
		cfg, hostCfg, netCfg := env.mustOptions(t, a)
		id := env.mustRun(t, "clean", cfg, hostCfg, netCfg)
		// The engine runs the exec check itself: `docker inspect` shows
		// the health (CIS 5.27), under the read-only root, no capabilities
		// and no-new-privileges.
		inspect := env.waitHealthy(t, id)
		results := audit.Checks(inspect, env.engine)
		for _, r := range results {
			t.Logf("%-5s %-4s %s = %s", r.ID, r.Status, r.Field, r.Value)
			if r.Status != audit.StatusPass && r.Status != audit.StatusInfo {
				t.Errorf("%s %s: %s (%s = %s)", r.ID, r.Title, r.Status, r.Field, r.Value)
			}
		}
		byID := statusesByID(results)
		for _, id := range append(mustPass, "5.27") {
			if byID[id].Status != audit.StatusPass {
				t.Errorf("%s %s: %s (%s = %s), want pass", id, byID[id].Title, byID[id].Status, byID[id].Field, byID[id].Value)
			}
		}
		if env.engine.AppArmor && byID["5.2"].Status != audit.StatusPass {
			t.Errorf("5.2 on an AppArmor host: %+v", byID["5.2"])
		}
		if env.engine.SwarmState == "inactive" && byID["5.1"].Status != audit.StatusPass {
			t.Errorf("5.1 with swarm inactive: %+v", byID["5.1"])
		}
	})

	t.Run("an agent-probed replica is info for 5.27 and clean otherwise", func(t *testing.T) {
		a := env.testAssignment("probed", 1, httpCheck)
		cfg, hostCfg, netCfg := env.mustOptions(t, a)
		results := audit.Checks(env.mustInspect(t, env.mustRun(t, "probed", cfg, hostCfg, netCfg)), env.engine)
		if warned := warnedIDs(results); len(warned) != 0 {
			t.Errorf("warned %v", warned)
		}
		if r := statusesByID(results)["5.27"]; r.Status != audit.StatusInfo {
			t.Errorf("5.27 = %+v, want info", r)
		}
	})

	t.Run("a deliberately weak container warns where it is weak", func(t *testing.T) {
		a := env.testAssignment("weak", 1, execCheck)
		cfg, hostCfg, netCfg := env.mustOptions(t, a)
		hostCfg.Memory, hostCfg.MemorySwap = 0, 0
		hostCfg.CPUShares = 0
		hostCfg.PidsLimit = nil
		hostCfg.ReadonlyRootfs = false
		hostCfg.CapAdd = []string{"NET_ADMIN"}
		hostCfg.SecurityOpt = slices.DeleteFunc(hostCfg.SecurityOpt, func(o string) bool { return o == deployer.NoNewPrivileges })
		results := audit.Checks(env.mustInspect(t, env.mustRun(t, "weak", cfg, hostCfg, netCfg)), env.engine)
		want := []string{"5.4", "5.11", "5.12", "5.13", "5.26", "5.29"}
		if warned := warnedIDs(results); !slices.Equal(warned, want) {
			t.Errorf("warned %v, want %v", warned, want)
		}
	})

	t.Run("drift", func(t *testing.T) {
		a := env.testAssignment("drift", 1, execCheck)
		cfg, hostCfg, netCfg := env.mustOptions(t, a)
		id := env.mustRun(t, "drift", cfg, hostCfg, netCfg)

		// Against its own revision, freshly computed as the agent would.
		ownCfg, ownHost, _ := env.mustOptions(t, a)
		if d := audit.DetectDrift(env.mustInspect(t, id), ownCfg, ownHost); d != nil {
			t.Errorf("a fresh container drifts from its own options: %+v", d)
		}

		// Against a changed revision: what a replacement would change.
		next := env.testAssignment("drift", 2, execCheck)
		next.Replica.ID = a.Replica.ID
		next.Revision.Spec.Env["MODE"] = "fast"
		next.Revision.Spec.Resources.MemoryBytes = 96 << 20
		nextCfg, nextHost, _ := env.mustOptions(t, next)
		want := []string{"Config.Env[MODE]", "Config.Labels[io.deployctl.fingerprint]", "Config.Labels[io.deployctl.revision]",
			"HostConfig.Memory", "HostConfig.MemorySwap"}
		if got := driftFields(audit.DetectDrift(env.mustInspect(t, id), nextCfg, nextHost)); !slices.Equal(got, want) {
			t.Errorf("drift from the next revision in %v, want %v", got, want)
		}

		// Changed behind deployctl's back with `docker update`.
		pids := int64(128)
		update := container.UpdateConfig{
			Resources:     container.Resources{Memory: 96 << 20, MemorySwap: 96 << 20, PidsLimit: &pids},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways},
		}
		if _, err := env.raw.ContainerUpdate(ctx, id, update); err != nil {
			t.Fatalf("ContainerUpdate: %v", err)
		}
		updated := env.mustInspect(t, id)
		want = []string{"HostConfig.Memory", "HostConfig.MemorySwap", "HostConfig.PidsLimit", "HostConfig.RestartPolicy"}
		if got := driftFields(audit.DetectDrift(updated, ownCfg, ownHost)); !slices.Equal(got, want) {
			t.Errorf("drift after docker update in %v, want %v", got, want)
		}
		if r := statusesByID(audit.Checks(updated, env.engine))["5.15"]; r.Status != audit.StatusWarn {
			t.Errorf("5.15 after restart policy always: %+v", r)
		}
	})

	t.Run("network drift", func(t *testing.T) {
		a := env.testAssignment("netdrift", 1, execCheck)
		cfg, hostCfg, netCfg := env.mustOptions(t, a)
		id := env.mustRun(t, "netdrift", cfg, hostCfg, netCfg)
		networks := func() map[string]audit.Network {
			list, err := env.rt.Networks(ctx)
			if err != nil {
				t.Fatalf("Networks: %v", err)
			}
			byName := map[string]audit.Network{}
			for _, n := range list {
				byName[n.Name] = n
			}
			return byName
		}
		if d := audit.NetworkDrift(env.mustInspect(t, id), "web", env.network.Name, networks()); d != nil {
			t.Errorf("a fresh replica drifts in its networks: %+v", d)
		}

		// `docker network connect` to another service's network and to
		// one deployctl did not make.
		api, err := env.rt.EnsureServiceNetwork(ctx, env.host, "api", env.plan)
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := env.raw.NetworkCreate(ctx, "foreign-"+env.runID, network.CreateOptions{Driver: "bridge", Labels: map[string]string{labelTest: env.runID}})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{api.ID, foreign.ID} {
			if err := env.raw.NetworkConnect(ctx, n, id, nil); err != nil {
				t.Fatalf("NetworkConnect: %v", err)
			}
		}
		drifts := audit.NetworkDrift(env.mustInspect(t, id), "web", env.network.Name, networks())
		want := []string{"NetworkSettings.Networks[" + api.Name + "]", "NetworkSettings.Networks[foreign-" + env.runID + "]"}
		if got := driftFields(drifts); !slices.Equal(got, want) {
			t.Fatalf("network drift in %v, want %v: %+v", got, want, drifts)
		}
		if !strings.Contains(drifts[0].Got, "network of service api") || !strings.Contains(drifts[1].Got, "did not create") {
			t.Errorf("network drift does not say what the networks are: %+v", drifts)
		}
	})
}
