package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// BenchmarkSwarmRollout4 measures Docker Swarm mode doing what
// BenchmarkRollout4 (parallelism=1), BenchmarkManualRollback and
// BenchmarkAutoRollback measure for deployctl, on the same engine with the same settings: 4 replicas, one at
// a time, start-first, monitor 1s, a health check every 1s that must pass
// once. It turns the engine into a single-node swarm and leaves it after,
// so it runs only with DEPLOYCTL_BENCH_SWARM=1 and only on an engine that
// is not already part of a swarm.
func BenchmarkSwarmRollout4(b *testing.B) {
	ctx := context.Background()
	cli := mustInitSwarm(b)

	replicas := uint64(4)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "deployctl-bench-swarm", Labels: map[string]string{"io.deployctl.test": env.runID}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{
			Image: swarmPinned("v1"), User: "10001:10001",
			Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/app", "-check"}, Interval: time.Second, Timeout: time.Second, Retries: 1},
		}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		UpdateConfig: &swarm.UpdateConfig{Parallelism: 1, Monitor: time.Second, Order: swarm.UpdateOrderStartFirst,
			FailureAction: swarm.UpdateFailureActionRollback},
		RollbackConfig: &swarm.UpdateConfig{Parallelism: 1, Monitor: time.Second, Order: swarm.UpdateOrderStartFirst},
	}
	created, err := cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cli.ServiceRemove(context.Background(), created.ID) })
	waitRunning := func() {
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Status: true})
			if err == nil {
				for _, s := range svcs {
					if s.ID == created.ID && s.ServiceStatus != nil && s.ServiceStatus.RunningTasks == replicas {
						return
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		b.Fatal("swarm service never ran 4 tasks")
	}
	// update sets image (or, with image "", rolls back to the previous
	// spec as `docker service rollback` does) and waits for want.
	update := func(image string, want swarm.UpdateState) time.Duration {
		s, _, err := cli.ServiceInspectWithRaw(ctx, created.ID, swarm.ServiceInspectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		opts := swarm.ServiceUpdateOptions{}
		if image == "" {
			opts.Rollback = "previous"
		} else {
			s.Spec.TaskTemplate.ContainerSpec.Image = image
		}
		start := time.Now()
		if _, err := cli.ServiceUpdate(ctx, created.ID, s.Version, s.Spec, opts); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			s, _, err := cli.ServiceInspectWithRaw(ctx, created.ID, swarm.ServiceInspectOptions{})
			if err == nil && s.UpdateStatus != nil && s.UpdateStatus.State == want {
				return time.Since(start)
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.Fatalf("swarm update to %s never reached %s", image, want)
		return 0
	}
	waitRunning()
	// Each round: v1 -> v11 (rollout), rollback to v1 (manual), v1 -> broken
	// and back (automatic rollback); the service ends each round on v1.
	var rollout, manual, rollback time.Duration
	for i := 0; i < b.N; i++ {
		rollout += update(swarmPinned("v11"), swarm.UpdateStateCompleted)
		manual += update("", swarm.UpdateStateRollbackCompleted)
		rollback += update(swarmPinned("broken"), swarm.UpdateStateRollbackCompleted)
	}
	b.ReportMetric(float64(rollout.Milliseconds())/float64(b.N), "rollout-ms/op")
	b.ReportMetric(float64(manual.Milliseconds())/float64(b.N), "manual-rollback-ms/op")
	b.ReportMetric(float64(rollback.Milliseconds())/float64(b.N), "rollback-ms/op")
}

// mustInitSwarm turns the engine into a single-node swarm and leaves it
// (and removes the docker_gwbridge it made) when b ends. It skips b
// unless DEPLOYCTL_BENCH_SWARM=1, or when the engine is already part of a
// swarm: not ours to change.
func mustInitSwarm(b *testing.B) *client.Client {
	b.Helper()
	needEngine(b)
	if os.Getenv("DEPLOYCTL_BENCH_SWARM") != "1" {
		b.Skip("set DEPLOYCTL_BENCH_SWARM=1 to compare with Docker Swarm mode (it inits and leaves a swarm on this engine)")
	}
	ctx := context.Background()
	cli := env.docker
	info, err := cli.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateInactive {
		b.Skipf("the engine is already in a swarm (%s): not ours to change", info.Swarm.LocalNodeState)
	}
	// swarm init creates docker_gwbridge (and ingress); leaving keeps the
	// bridge, so it is removed after, unless it was there before.
	_, gwErr := cli.NetworkInspect(ctx, "docker_gwbridge", network.InspectOptions{})
	gwBefore := gwErr == nil
	if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1:2377"}); err != nil {
		b.Fatalf("swarm init: %v", err)
	}
	b.Cleanup(func() {
		_ = cli.SwarmLeave(context.Background(), true)
		if !gwBefore {
			_ = cli.NetworkRemove(context.Background(), "docker_gwbridge")
		}
	})

	return cli
}

// swarmPinned is the test image name by digest, as Swarm gets it.
func swarmPinned(name string) string {
	ref := env.refs[name]
	return ref[:strings.LastIndex(ref, ":")] + "@" + env.digests[name]
}

// BenchmarkSwarmRolloutMany measures Docker Swarm mode doing what
// BenchmarkRolloutMany measures for deployctl, with the same knobs: N
// replicas (the image's own checker as HEALTHCHECK every 5s, 2 retries,
// timeout 2s), parallelism 10, start-first, monitor 3s, automatic
// rollback (the rollback with the same settings), the default 10s stop
// grace period, the same CPU and memory limits. Per op: service create
// until N tasks run (a task with a health check runs once healthy), an
// update to another digest until completed, a bad release until its
// rollback completed; the removal is outside the timer.
func BenchmarkSwarmRolloutMany(b *testing.B) {
	cli := mustInitSwarm(b)
	for _, n := range manyReplicaCounts() {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			var fresh, update, rollback time.Duration
			for i := 0; i < b.N; i++ {
				f, u, r := swarmRolloutMany(b, cli, uint64(n))
				fresh, update, rollback = fresh+f, update+u, rollback+r
			}
			ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N) }
			b.ReportMetric(ms(fresh), "fresh-ms/op")
			b.ReportMetric(ms(update), "update-ms/op")
			b.ReportMetric(ms(rollback), "rollback-ms/op")
		})
	}
}

// swarmRolloutMany is one op of BenchmarkSwarmRolloutMany.
func swarmRolloutMany(b *testing.B, cli *client.Client, replicas uint64) (fresh, update, rollback time.Duration) {
	ctx := context.Background()
	cfg := &swarm.UpdateConfig{Parallelism: manyParallelism, Monitor: manyMonitor, Order: swarm.UpdateOrderStartFirst,
		FailureAction: swarm.UpdateFailureActionRollback}
	rollbackCfg := *cfg
	rollbackCfg.FailureAction = swarm.UpdateFailureActionPause
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "deployctl-bench-swarm-many", Labels: map[string]string{"io.deployctl.test": env.runID}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image: swarmPinned("v1"), User: "10001:10001",
				Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/app", "-check"},
					Interval: manyInterval, Timeout: 2 * time.Second, Retries: manyRetries},
			},
			Resources: &swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: 200_000_000, MemoryBytes: 32 << 20, Pids: 32}},
		},
		Mode:           swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		UpdateConfig:   cfg,
		RollbackConfig: &rollbackCfg,
	}
	start := time.Now()
	created, err := cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	removed := false
	remove := func() {
		if removed {
			return
		}
		removed = true
		_ = cli.ServiceRemove(context.Background(), created.ID)
		// The tasks' containers go after the service: wait for them, so
		// the next op (or benchmark) starts on an idle engine.
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
				Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+created.ID))})
			if err == nil && len(list) == 0 {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	b.Cleanup(remove)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Status: true,
			Filters: filters.NewArgs(filters.Arg("id", created.ID))})
		if err == nil && len(svcs) == 1 && svcs[0].ServiceStatus != nil && svcs[0].ServiceStatus.RunningTasks == replicas {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("swarm service never ran %d tasks", replicas)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fresh = time.Since(start)
	b.Logf("swarm, %d replicas: fresh deploy %s", replicas, fresh)
	updateTo := func(image string, want swarm.UpdateState) time.Duration {
		s, _, err := cli.ServiceInspectWithRaw(ctx, created.ID, swarm.ServiceInspectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		s.Spec.TaskTemplate.ContainerSpec.Image = image
		start := time.Now()
		if _, err := cli.ServiceUpdate(ctx, created.ID, s.Version, s.Spec, swarm.ServiceUpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			s, _, err := cli.ServiceInspectWithRaw(ctx, created.ID, swarm.ServiceInspectOptions{})
			if err == nil && s.UpdateStatus != nil && s.UpdateStatus.State == want {
				return time.Since(start)
			}
			if err == nil && s.UpdateStatus != nil && (s.UpdateStatus.State == swarm.UpdateStatePaused || s.UpdateStatus.State == swarm.UpdateStateRollbackPaused) {
				b.Fatalf("swarm update to %s ended %s after %s, want %s: %s", image, s.UpdateStatus.State, time.Since(start), want, s.UpdateStatus.Message)
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.Fatalf("swarm update to %s never reached %s", image, want)
		return 0
	}
	update = updateTo(swarmPinned("v11"), swarm.UpdateStateCompleted)
	b.Logf("swarm, %d replicas: rolling update %s", replicas, update)
	rollback = updateTo(swarmPinned("broken"), swarm.UpdateStateRollbackCompleted)
	b.Logf("swarm, %d replicas: bad release rolled back %s", replicas, rollback)
	b.StopTimer()
	remove()
	b.StartTimer()
	return fresh, update, rollback
}
