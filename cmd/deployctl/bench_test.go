package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Health checks of the benchmark specs: the agent probes HTTP itself; an
// exec check runs the webapp's own checker in the container, as Docker
// Swarm's HEALTHCHECK does in BenchmarkSwarmRollout4.
const (
	benchHTTPCheck = "http: { path: /healthz, port: 8080 }"
	benchExecCheck = `exec: ["/app", "-check"]`
)

// benchSpec is a 4-replica service whose health checks need a known,
// minimal time: each batch must stay healthy for update.monitor.
func benchSpec(image string, parallelism int, monitor time.Duration) []byte {
	return benchSpecCheck(image, parallelism, monitor, benchHTTPCheck)
}

func benchSpecCheck(image string, parallelism int, monitor time.Duration, check string) []byte {
	return fmt.Appendf(nil, `service: bench
image: %s
replicas: 4
resources: { cpus: 0.2, memory: 32M, pids: 32 }
healthcheck:
  %s
  interval: 1s
  timeout: 1s
  retries: 1
update:
  parallelism: %d
  monitor: %s
  progress_deadline: 2m
stop_grace_period: 1s
`, image, check, parallelism, monitor)
}

// waitOutcome waits until revision rev of svc ends and returns its state.
func waitOutcome(b testing.TB, c *wire.Client, svc string, rev int) wire.ServiceStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var index uint64
	for {
		st, err := c.Status(ctx, svc, index, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		index = st.Index
		if st.Revision == rev && st.RevisionState != state.RevisionInProgress {
			return st
		}
		if st.Revision > rev && st.RevisionState != state.RevisionInProgress {
			return st
		}
	}
}

// BenchmarkRollout4 measures what BenchmarkSwarmRollout4 measures for
// Docker Swarm mode: an update of a healthy 4-replica service to another
// digest (v1 and v11 in turn), from apply to the revision's success. It
// reports the time beyond what the health checks themselves need as
// overhead-ms: start-first batches move on once their replicas pass a probe,
// so the checks need one update.monitor window after the last replica.
func BenchmarkRollout4(b *testing.B) {
	needEngine(b)
	cases := []struct {
		name        string
		parallelism int
		check       string
	}{
		{"parallelism=1", 1, benchHTTPCheck},
		{"parallelism=4", 4, benchHTTPCheck},
		// The exec check that Docker Swarm runs in BenchmarkSwarmRollout4.
		{"parallelism=1,check=exec", 1, benchExecCheck},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s := mustStartBenchServer(b)
			c := wire.NewClient([]string{s.addr}, nil)
			monitor := time.Second
			mustApplyAndWait(b, c, benchSpecCheck(env.refs["v1"], tc.parallelism, monitor, tc.check))
			images := []string{env.refs["v11"], env.refs["v1"]}
			var overhead time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				st := mustApplyAndWait(b, c, benchSpecCheck(images[i%2], tc.parallelism, monitor, tc.check))
				overhead += time.Since(start) - monitor
				if st.RevisionState != state.RevisionSucceeded {
					b.Fatalf("rollout %s: %+v", st.RevisionState, st)
				}
			}
			b.ReportMetric(float64(overhead.Milliseconds())/float64(b.N), "overhead-ms/op")
		})
	}
}

// mustApplyAndWait applies spec and waits for its revision to end.
func mustApplyAndWait(b testing.TB, c *wire.Client, spec []byte) wire.ServiceStatus {
	out, err := c.Apply(context.Background(), spec)
	if err != nil {
		b.Fatal(err)
	}
	return waitOutcome(b, c, "bench", out.Revision)
}

// BenchmarkAutoRollback measures apply of a broken release over a healthy
// 4-replica v1 until the automatic rollback has succeeded, as
// BenchmarkSwarmRollout4 does for Docker Swarm mode (rollback-ms). With the
// HTTP check the broken replica's first answer (500) counts; with the exec
// check its failure counts at Docker's pace, one interval after its start.
func BenchmarkAutoRollback(b *testing.B) {
	needEngine(b)
	for _, check := range []struct{ name, yaml string }{{"http", benchHTTPCheck}, {"exec", benchExecCheck}} {
		b.Run("check="+check.name, func(b *testing.B) {
			s := mustStartBenchServer(b)
			c := wire.NewClient([]string{s.addr}, nil)
			mustApplyAndWait(b, c, benchSpecCheck(env.refs["v1"], 1, time.Second, check.yaml))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out, err := c.Apply(context.Background(), benchSpecCheck(env.refs["broken"], 1, time.Second, check.yaml))
				if err != nil {
					b.Fatal(err)
				}
				st := waitOutcome(b, c, "bench", out.Revision+1)
				if st.Cause != fmt.Sprintf("automatic rollback of %d to %d", out.Revision, out.Revision-1) || st.RevisionState != state.RevisionSucceeded {
					b.Fatalf("want a succeeded automatic rollback, got %+v", st)
				}
			}
		})
	}
}

// BenchmarkManualRollback measures `deployctl rollback` of a healthy
// 4-replica service just updated from v1 to v11, from the request until
// the rollback to v1 has succeeded, as BenchmarkSwarmRollout4 does for
// `docker service rollback` (manual-rollback-ms). The v1 replicas are gone,
// so this is a rollout of 4 replicas in batches of one.
func BenchmarkManualRollback(b *testing.B) {
	needEngine(b)
	s := mustStartBenchServer(b)
	c := wire.NewClient([]string{s.addr}, nil)
	mustApplyAndWait(b, c, benchSpec(env.refs["v1"], 1, time.Second))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		mustApplyAndWait(b, c, benchSpec(env.refs["v11"], 1, time.Second))
		b.StartTimer()
		out, err := c.Rollback(context.Background(), "bench", 0)
		if err != nil {
			b.Fatal(err)
		}
		st := waitOutcome(b, c, "bench", out.Revision)
		if st.RevisionState != state.RevisionSucceeded || st.Digest != env.digests["v1"] {
			b.Fatalf("want a succeeded rollback to v1, got %+v", st)
		}
	}
}

// mustStartBenchServer starts a dev server as a user would run it: default
// audit interval (15s) and log level (info).
func mustStartBenchServer(b *testing.B) *devServer {
	b.Helper()
	return mustStartServerArgs(b)
}

// Issue 12 point 2: rollouts of many replicas on one engine, with the
// knobs BenchmarkSwarmRolloutMany gives Docker Swarm mode: a health check
// every 5s that must fail twice, parallelism 10, start-first, monitor 3s,
// automatic rollback, the default 10s stop grace period.
const (
	manyInterval    = 5 * time.Second
	manyRetries     = 2
	manyParallelism = 10
	manyMonitor     = 3 * time.Second
)

// manySpec is the service of BenchmarkRolloutMany.
func manySpec(image string, replicas int, check string) []byte {
	return fmt.Appendf(nil, `service: many
image: %s
replicas: %d
resources: { cpus: 0.2, memory: 32M, pids: 32 }
healthcheck:
  %s
  interval: %s
  timeout: 2s
  retries: %d
update:
  parallelism: %d
  order: start-first
  monitor: %s
  failure_action: rollback
  progress_deadline: 10m
`, image, replicas, check, manyInterval, manyRetries, manyParallelism, manyMonitor)
}

// manyReplicaCounts are the sizes BenchmarkRolloutMany and
// BenchmarkSwarmRolloutMany run: 50, and 200 with DEPLOYCTL_BENCH_200=1
// (about 10 minutes on the 2-core CI machine).
func manyReplicaCounts() []int {
	if os.Getenv("DEPLOYCTL_BENCH_200") == "1" {
		return []int{50, 200}
	}
	return []int{50}
}

// BenchmarkRolloutMany measures, per op, a fresh deploy of N replicas
// (apply of a new service until all are healthy, and until its revision
// succeeded), a rolling update to another digest (apply until succeeded)
// and a bad release over it (apply until its automatic rollback
// succeeded); the service is then removed outside the timer. Run it with
// -benchtime 1x. DEPLOYCTL_BENCH_LOG=DIR keeps the server's debug log
// (every replica's create, start, health and stop) in DIR.
func BenchmarkRolloutMany(b *testing.B) {
	needEngine(b)
	checks := []struct{ name, yaml string }{{"exec", benchExecCheck}, {"http", benchHTTPCheck}}
	for _, n := range manyReplicaCounts() {
		for _, check := range checks {
			b.Run(fmt.Sprintf("replicas=%d,check=%s", n, check.name), func(b *testing.B) {
				logDir := os.Getenv("DEPLOYCTL_BENCH_LOG")
				var s *devServer
				if logDir != "" {
					s = mustStartServerArgs(b, "--log-level", "debug")
					b.Cleanup(func() {
						name := strings.NewReplacer("/", "_", "=", "-", ",", "_").Replace(b.Name()) + ".log"
						_ = os.WriteFile(filepath.Join(logDir, name), []byte(s.log.String()), 0o600)
					})
				} else {
					s = mustStartBenchServer(b)
				}
				c := wire.NewClient([]string{s.addr}, nil)
				var healthy, fresh, update, rollback time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					out, err := c.Apply(context.Background(), manySpec(env.refs["v1"], n, check.yaml))
					if err != nil {
						b.Fatal(err)
					}
					healthy += waitAllHealthy(b, c, "many", out.Revision, n, start)
					st := waitOutcome(b, c, "many", out.Revision)
					fresh += time.Since(start)
					b.Logf("fresh deploy: all healthy %s, succeeded %s", healthy, fresh)
					if st.RevisionState != state.RevisionSucceeded {
						b.Fatalf("fresh deploy %s: %+v", st.RevisionState, st.Message)
					}

					start = time.Now()
					out, err = c.Apply(context.Background(), manySpec(env.refs["v11"], n, check.yaml))
					if err != nil {
						b.Fatal(err)
					}
					st = waitOutcome(b, c, "many", out.Revision)
					update += time.Since(start)
					b.Logf("rolling update %s", time.Since(start))
					if st.Revision != out.Revision || st.RevisionState != state.RevisionSucceeded {
						b.Fatalf("rolling update: revision %d %s (%s): %s", st.Revision, st.RevisionState, st.Cause, st.Message)
					}

					start = time.Now()
					out, err = c.Apply(context.Background(), manySpec(env.refs["broken"], n, check.yaml))
					if err != nil {
						b.Fatal(err)
					}
					st = waitOutcome(b, c, "many", out.Revision+1)
					rollback += time.Since(start)
					if st.Cause != fmt.Sprintf("automatic rollback of %d to %d", out.Revision, out.Revision-1) || st.RevisionState != state.RevisionSucceeded {
						b.Fatalf("want a succeeded automatic rollback, got %s %s: %s", st.Cause, st.RevisionState, st.Message)
					}

					b.StopTimer()
					mustRemoveAndWait(b, c, s, "many")
					b.StartTimer()
				}
				ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N) }
				b.ReportMetric(ms(healthy), "fresh-healthy-ms/op")
				b.ReportMetric(ms(fresh), "fresh-ms/op")
				b.ReportMetric(ms(update), "update-ms/op")
				b.ReportMetric(ms(rollback), "rollback-ms/op")
			})
		}
	}
}

// waitAllHealthy waits until revision rev of svc has want healthy replicas
// and returns the time since start.
func waitAllHealthy(b testing.TB, c *wire.Client, svc string, rev, want int, start time.Time) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var index uint64
	for {
		st, err := c.Status(ctx, svc, index, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		index = st.Index
		if st.Revision == rev && st.Replicas.Healthy >= want {
			return time.Since(start)
		}
		if st.Revision == rev && st.RevisionState != state.RevisionInProgress && st.RevisionState != state.RevisionSucceeded {
			b.Fatalf("revision %d %s: %s", rev, st.RevisionState, st.Message)
		}
	}
}

// mustRemoveAndWait removes svc and waits until none of the server's
// containers is left on the engine.
func mustRemoveAndWait(b testing.TB, c *wire.Client, s *devServer, svc string) {
	if err := c.Remove(context.Background(), svc); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		list, err := env.docker.ContainerList(context.Background(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", deployer.LabelHost+"="+s.hostID))})
		if err == nil && len(list) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatalf("the containers of service %s are still there 5 minutes after its removal", svc)
}
