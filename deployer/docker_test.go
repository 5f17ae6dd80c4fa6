package deployer

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/go-hclog"
)

// mustRunReplica pulls, creates and starts the container of a on its
// service's network, as the agent does, and returns its inspect after
// start.
func mustRunReplica(t *testing.T, env *dockerEnv, hostID string, a state.Assignment) container.InspectResponse {
	t.Helper()
	ctx := context.Background()
	if err := env.rt.Pull(ctx, a.Revision.Ref); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	user, err := env.rt.ImageUser(ctx, a.Revision.Ref)
	if err != nil {
		t.Fatalf("ImageUser: %v", err)
	}
	sn := env.mustServiceNetwork(t, hostID, a.Replica.Service)
	cfg, hostCfg, netCfg, err := ContainerOptions(a, hostID, sn.Name, user, WithDNS(sn.Gateway))
	if err != nil {
		t.Fatalf("ContainerOptions: %v", err)
	}
	cfg.Labels[labelTest] = env.runID
	id, err := env.rt.Create(ctx, ContainerName(a), cfg, hostCfg, netCfg)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := env.rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	inspect, err := env.rt.Inspect(ctx, id)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return inspect
}

// waitProbe retries a probe until it passes: the webapp needs a moment
// after start before it listens.
func waitProbe(t *testing.T, what string, probe func() error) {
	t.Helper()
	var last error
	waitUntil(t, what, func() bool {
		last = probe()
		return last == nil
	})
}

func TestDockerRuntime(t *testing.T) {
	env := mustDockerEnv(t)
	ctx := context.Background()
	hostID := "host-" + env.runID

	t.Run("Pull refuses and reports errors", func(t *testing.T) {
		missing := env.reg.Addr() + "/webapp@sha256:" + strings.Repeat("0", 64)
		tests := []struct {
			ref  string
			want error
		}{
			{env.tagRef, ErrNotPinned},
			{env.reg.Addr() + "/webapp", ErrNotPinned},
			{missing, ErrPullFailed},
		}
		for _, tt := range tests {
			if err := env.rt.Pull(ctx, tt.ref); !errors.Is(err, tt.want) {
				t.Errorf("Pull(%s) = %v, want %v", tt.ref, err, tt.want)
			}
		}
	})

	t.Run("Pull skips a present image", func(t *testing.T) {
		// A registry of its own that goes away after the first pull: the
		// second pull can only succeed without asking it.
		reg, err := devimage.StartRegistry("127.0.0.1:0", hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cleanupImages(t, env.raw, "", reg.Addr()) })
		img, err := devimage.BuildGoImage(ctx, devimage.GoImageOptions{PackageDir: "../examples/webapp", Labels: map[string]string{labelTest: env.runID}})
		if err != nil {
			t.Fatal(err)
		}
		ref := mustPush(t, reg.Addr()+"/once:v1", img)
		if err := env.rt.Pull(ctx, ref); err != nil {
			t.Fatalf("first Pull: %v", err)
		}
		if err := reg.Close(); err != nil {
			t.Fatal(err)
		}
		if err := env.rt.Pull(ctx, ref); err != nil {
			t.Fatalf("second Pull with the registry gone: %v, want nil (image present)", err)
		}
	})

	t.Run("hardened replica", func(t *testing.T) {
		a := assignment("hardened-"+env.runID, 1, env.goodRef, testSpec())
		inspect := mustRunReplica(t, env, hostID, a)
		cfg, hc := inspect.Config, inspect.HostConfig
		sn := env.mustServiceNetwork(t, hostID, a.Replica.Service)

		checks := []struct {
			what string
			ok   bool
			got  any
		}{
			{"running", inspect.State != nil && inspect.State.Running, inspect.State},
			{"Image is the pinned ref", cfg.Image == env.goodRef, cfg.Image},
			{"User non-root (the image's)", cfg.User == devimage.DefaultUser, cfg.User},
			{"CapDrop ALL", slices.Equal([]string(hc.CapDrop), []string{"ALL"}), hc.CapDrop},
			{"no CapAdd", len(hc.CapAdd) == 0, hc.CapAdd},
			{"SecurityOpt no-new-privileges", slices.Contains(hc.SecurityOpt, "no-new-privileges"), hc.SecurityOpt},
			{"no seccomp=unconfined", !slices.ContainsFunc(hc.SecurityOpt, func(s string) bool { return strings.Contains(s, "unconfined") }), hc.SecurityOpt},
			{"ReadonlyRootfs", hc.ReadonlyRootfs, hc.ReadonlyRootfs},
			{"Tmpfs /tmp", hc.Tmpfs["/tmp"] == TmpfsOptions, hc.Tmpfs},
			{"PidsLimit 64", hc.PidsLimit != nil && *hc.PidsLimit == 64, hc.PidsLimit},
			{"Memory 64MiB", hc.Memory == 64<<20, hc.Memory},
			{"MemorySwap = Memory", hc.MemorySwap == 64<<20, hc.MemorySwap},
			{"NanoCPUs 0.25", hc.NanoCPUs == 250_000_000, hc.NanoCPUs},
			{"RestartPolicy on-failure/5", hc.RestartPolicy.Name == container.RestartPolicyOnFailure && hc.RestartPolicy.MaximumRetryCount == 5, hc.RestartPolicy},
			{"not privileged", !hc.Privileged, hc.Privileged},
			{"NetworkMode = the service's network", string(hc.NetworkMode) == sn.Name, hc.NetworkMode},
			{"on no other network", len(inspect.NetworkSettings.Networks) == 1, inspect.NetworkSettings.Networks},
			{"DNS = the network's gateway", slices.Equal(hc.DNS, []string{sn.Gateway.String()}), hc.DNS},
			{"PID namespace private", hc.PidMode == "", hc.PidMode},
			{"IPC namespace not host", !hc.IpcMode.IsHost(), hc.IpcMode},
			{"UTS namespace private", hc.UTSMode == "", hc.UTSMode},
			{"cgroup namespace private", hc.CgroupnsMode.IsPrivate(), hc.CgroupnsMode},
			{"no init", hc.Init == nil || !*hc.Init, hc.Init},
			{"StopTimeout 2s", cfg.StopTimeout != nil && *cfg.StopTimeout == 2, cfg.StopTimeout},
			{"replica label", cfg.Labels[LabelReplica] == a.Replica.ID, cfg.Labels},
			{"host label", cfg.Labels[LabelHost] == hostID, cfg.Labels},
			{"managed label", cfg.Labels[LabelManaged] == "true", cfg.Labels},
			{"name", inspect.Name == "/"+ContainerName(a), inspect.Name},
			{"address in the service's subnet", sn.Subnet.Contains(netip.MustParseAddr(ReplicaIP(inspect))), inspect.NetworkSettings},
		}
		for _, c := range checks {
			if !c.ok {
				t.Errorf("%s: got %v", c.what, c.got)
			}
		}

		target := ProbeTarget{ContainerID: inspect.ID, IP: ReplicaIP(inspect)}
		probes := []struct {
			name  string
			check specs.Healthcheck
		}{
			{"http", specs.Healthcheck{HTTP: &specs.HTTPCheck{Path: "/healthz", Port: 8080}, Timeout: time.Second}},
			{"tcp", specs.Healthcheck{TCP: &specs.TCPCheck{Port: 8080}, Timeout: time.Second}},
			{"exec", specs.Healthcheck{Exec: []string{"/app", "-check"}, Timeout: 5 * time.Second}},
		}
		for _, p := range probes {
			waitProbe(t, p.name+" probe to pass", func() error { return Probe(ctx, env.rt, p.check, target) })
		}

		t.Run("probes fail where they must", func(t *testing.T) {
			failing := []struct {
				name  string
				check specs.Healthcheck
			}{
				{"http wrong path", specs.Healthcheck{HTTP: &specs.HTTPCheck{Path: "/missing", Port: 8080}, Timeout: time.Second}},
				{"tcp closed port", specs.Healthcheck{TCP: &specs.TCPCheck{Port: 8081}, Timeout: time.Second}},
				{"exec non-zero", specs.Healthcheck{Exec: []string{"/app", "-no-such-flag"}, Timeout: 5 * time.Second}},
			}
			for _, p := range failing {
				if err := Probe(ctx, env.rt, p.check, target); !errors.Is(err, ErrProbeFailed) {
					t.Errorf("%s: Probe = %v, want ErrProbeFailed", p.name, err)
				}
			}
		})

		t.Run("Exec returns code and output", func(t *testing.T) {
			code, output, err := env.rt.Exec(ctx, inspect.ID, []string{"/app", "-check"}, 5*time.Second)
			if err != nil || code != 0 || !strings.Contains(output, "check: ok") {
				t.Errorf("Exec = %d, %q, %v; want 0, check: ok", code, output, err)
			}
		})

		t.Run("ListManaged finds it", func(t *testing.T) {
			list, err := env.rt.ListManaged(ctx, hostID)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].ID != inspect.ID {
				t.Errorf("ListManaged = %d containers, want exactly %s", len(list), shortID(inspect.ID))
			}
		})

		t.Run("StopAndRemove", func(t *testing.T) {
			if err := env.rt.StopAndRemove(ctx, inspect.ID, time.Second); err != nil {
				t.Fatalf("StopAndRemove: %v", err)
			}
			if _, err := env.rt.Inspect(ctx, inspect.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Inspect after removal = %v, want ErrNotFound", err)
			}
			if err := env.rt.StopAndRemove(ctx, inspect.ID, time.Second); err != nil {
				t.Errorf("StopAndRemove of a removed container = %v, want nil", err)
			}
		})
	})

	t.Run("broken replica fails its HTTP and exec probes", func(t *testing.T) {
		a := assignment("broken-"+env.runID, 1, env.brokenRef, testSpec())
		inspect := mustRunReplica(t, env, hostID, a)
		target := ProbeTarget{ContainerID: inspect.ID, IP: ReplicaIP(inspect)}
		// The TCP port opens: the app runs, it only answers 500.
		waitProbe(t, "tcp probe", func() error { return ProbeTCP(ctx, target.IP, 8080, time.Second) })
		if err := ProbeHTTP(ctx, target.IP, 8080, "/healthz", time.Second); !errors.Is(err, ErrProbeFailed) || !strings.Contains(err.Error(), "500") {
			t.Errorf("ProbeHTTP = %v, want a failure naming 500", err)
		}
		if err := ProbeExec(ctx, env.rt, inspect.ID, []string{"/app", "-check"}, 5*time.Second); !errors.Is(err, ErrProbeFailed) {
			t.Errorf("ProbeExec = %v, want ErrProbeFailed", err)
		}
	})

	t.Run("containers without deployctl labels are never touched", func(t *testing.T) {
		// Created here with only the test label: not deployctl's.
		created, err := env.raw.ContainerCreate(ctx, &container.Config{
			Image:  env.goodRef,
			Labels: map[string]string{labelTest: env.runID, LabelHost: hostID},
		}, &container.HostConfig{NetworkMode: container.NetworkMode(env.mustServiceNetwork(t, hostID, "web").Name)}, nil, nil, "foreign-"+env.runID)
		if err != nil {
			t.Fatal(err)
		}
		list, err := env.rt.ListManaged(ctx, hostID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			if c.ID == created.ID {
				t.Error("ListManaged returned a container without io.deployctl.managed")
			}
		}
		if err := env.rt.StopAndRemove(ctx, created.ID, time.Second); !errors.Is(err, ErrNotManaged) {
			t.Errorf("StopAndRemove(foreign) = %v, want ErrNotManaged", err)
		}
		if _, err := env.rt.Inspect(ctx, created.ID); err != nil {
			t.Errorf("foreign container is gone: %v", err)
		}
	})

	t.Run("Create refuses an unlabelled config", func(t *testing.T) {
		if _, err := env.rt.Create(ctx, "unlabelled-"+env.runID, &container.Config{Image: env.goodRef}, nil, nil); err == nil {
			t.Error("Create without io.deployctl.managed succeeded")
		}
	})
}

func TestEngineUnavailable(t *testing.T) {
	rt, err := NewDockerRuntime(withHost("unix://" + t.TempDir() + "/no-docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	err = rt.Ping(context.Background())
	if !errors.Is(err, ErrEngineUnavailable) || !strings.Contains(err.Error(), "DOCKER_HOST") {
		t.Errorf("Ping = %v, want ErrEngineUnavailable mentioning DOCKER_HOST", err)
	}
}
