package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// BenchmarkSwarmRollout4 measures Docker Swarm mode doing what
// BenchmarkRollout4 (parallelism=1), BenchmarkManualRollback and
// BenchmarkAutoRollback measure for deployctl, on the same engine with the same settings: 4 replicas, one at
// a time, start-first, monitor 1s, a health check every 1s that must pass
// once. It turns the engine into a single-node swarm and leaves it after,
// so it runs only with DEPLOYCTL_BENCH_SWARM=1 and only on an engine that
// is not already part of a swarm.
func BenchmarkSwarmRollout4(b *testing.B) {
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

	pinned := func(name string) string {
		ref := env.refs[name]
		return ref[:strings.LastIndex(ref, ":")] + "@" + env.digests[name]
	}
	replicas := uint64(4)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "deployctl-bench-swarm", Labels: map[string]string{"io.deployctl.test": env.runID}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{
			Image: pinned("v1"), User: "10001:10001",
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
		rollout += update(pinned("v11"), swarm.UpdateStateCompleted)
		manual += update("", swarm.UpdateStateRollbackCompleted)
		rollback += update(pinned("broken"), swarm.UpdateStateRollbackCompleted)
	}
	b.ReportMetric(float64(rollout.Milliseconds())/float64(b.N), "rollout-ms/op")
	b.ReportMetric(float64(manual.Milliseconds())/float64(b.N), "manual-rollback-ms/op")
	b.ReportMetric(float64(rollback.Milliseconds())/float64(b.N), "rollback-ms/op")
}
