package main

// Scale with hollow hosts (issue 12 points 3 and 4): three real servers
// (separate processes of the built binary, raft on loopback, mutual TLS
// from `tls init`, no local agents) and one `deployctl agent --hollow N`
// process simulating N hosts. TestHollowScale is the small version that
// runs in `make test` (correctness, not time); BenchmarkScale (make
// bench-scale) is the big one and prints the README's Scale table.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/internal/hollow"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// scaleParams size one scale run.
type scaleParams struct {
	hosts, services, replicas, parallelism int
	// serverLog is the servers' --log-level (their output is kept in
	// memory for a failing test).
	serverLog string
	// profileDir, when set, gets a 30 s CPU profile of each server from
	// the start of the deploy (cpu-n1.pprof ...; servers run --pprof-addr).
	profileDir string
	// logf reports figures as they are measured.
	logf func(format string, args ...any)
}

// scaleResult is what a run measured.
type scaleResult struct {
	total       int
	deploy      time.Duration
	statusP50   time.Duration
	statusP99   time.Duration
	statusN     int
	update      time.Duration
	rollback    time.Duration
	newLeader   time.Duration
	movingAgain time.Duration
	servers     []serverFigures
	hollowRSS   int64
	hollowCPU   time.Duration
}

// serverFigures are one server's figures, read from /proc before it was
// killed or at the end.
type serverFigures struct {
	id            string
	peakRSS       int64
	cpu           time.Duration
	raftLog, snap int64
	leader        bool
}

// scaleImages pushes three images to an in-process registry on loopback:
// v1, v2 and v3-bad (hollow hosts fail every check of a "bad" tag). They
// are random layers: hollow runtimes never pull, the servers only resolve
// the tags to digests.
func scaleImages(t testing.TB) (v1, v2, bad string) {
	t.Helper()
	reg, err := devimage.StartRegistry("127.0.0.1:0", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	refs := make([]string, 3)
	for i, tag := range []string{"v1", "v2", "v3-bad"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		refs[i] = reg.Addr() + "/scale/app:" + tag
		if _, err := devimage.Push(context.Background(), refs[i], img); err != nil {
			t.Fatal(err)
		}
	}
	return refs[0], refs[1], refs[2]
}

func scaleSpec(name, image string, replicas, parallelism int) string {
	return fmt.Sprintf(`service: %s
image: %s
replicas: %d
resources: { cpus: 0.01, memory: 8M, pids: 16 }
healthcheck:
  tcp: { port: 8080 }
  interval: 1s
  retries: 2
update:
  parallelism: %d
  monitor: 1s
  progress_deadline: 5m
stop_grace_period: 1s
`, name, image, replicas, parallelism)
}

// startHollow runs `deployctl agent --hollow N` against the cluster with
// nothing but --tls-dir, killed by PID when the test ends.
func startHollow(t testing.TB, c *testCluster, hosts int) *exec.Cmd {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(env.bin, "agent", "--hollow", strconv.Itoa(hosts), "--servers", c.joinList(), "--tls-dir", c.tlsDir,
		"--log-level", "warn", "--hollow-stats-every", "0")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("log of the hollow agent:\n%s", tail(logs.String(), 40))
		}
	})
	return cmd
}

// runHollowScale is the whole scenario; it fails t on any wrong outcome.
func runHollowScale(t testing.TB, p scaleParams) scaleResult {
	needBinary(t)
	v1, v2, bad := scaleImages(t)
	var pprofAddrs []string
	perNode := func(int) []string { return nil }
	if p.profileDir != "" {
		perNode = func(i int) []string {
			pprofAddrs = append(pprofAddrs, freeAddr(t))
			return []string{"--pprof-addr", pprofAddrs[i]}
		}
	}
	c := mustStartClusterWith(t, 3, perNode, "--no-agent", "--log-level", p.serverLog)
	hollowCmd := startHollow(t, c, p.hosts)
	client := c.client()
	ctx := context.Background()

	waitFor(t, 2*time.Minute, fmt.Sprintf("%d hollow hosts ready", p.hosts), func() bool {
		hs, err := client.Hosts(ctx)
		if err != nil {
			return false
		}
		ready := 0
		for _, h := range hs {
			if strings.HasPrefix(h.ID, hollow.DefaultPrefix+"-") && h.State == state.HostReady {
				ready++
			}
		}
		return ready == p.hosts
	})

	names := make([]string, p.services)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%03d", i+1)
	}
	res := scaleResult{total: p.services * p.replicas}

	// Status of the first service (1 per 100 ms) while everything deploys.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var samples []time.Duration
	var sampling sync.WaitGroup
	sampling.Go(func() {
		for sampleCtx.Err() == nil {
			start := time.Now()
			cctx, cancel := context.WithTimeout(sampleCtx, 10*time.Second)
			_, err := client.Status(cctx, names[0], 0, 0)
			cancel()
			if err == nil {
				samples = append(samples, time.Since(start))
			}
			select {
			case <-sampleCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})

	var profiling sync.WaitGroup
	if p.profileDir != "" {
		for i, addr := range pprofAddrs {
			profiling.Go(func() { saveProfile(t, addr, filepath.Join(p.profileDir, fmt.Sprintf("cpu-n%d.pprof", i+1)), p.logf) })
		}
	}
	start := time.Now()
	for _, name := range names {
		if _, err := client.Apply(ctx, []byte(scaleSpec(name, v1, p.replicas, p.parallelism))); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
	}
	waitAll(t, client, names, p.replicas, 1, 20*time.Minute, p.logf)
	res.deploy = time.Since(start)
	stopSampling()
	sampling.Wait()
	profiling.Wait()
	res.statusN = len(samples)
	res.statusP50, res.statusP99 = percentile(samples, 50), percentile(samples, 99)
	p.logf("deployed %d replicas on %d hollow hosts in %s (%.0f replicas/s); status p50 %s p99 %s over %d calls",
		res.total, p.hosts, res.deploy.Round(time.Millisecond), float64(res.total)/res.deploy.Seconds(), res.statusP50, res.statusP99, res.statusN)

	// A rolling update of one service.
	start = time.Now()
	if _, err := client.Apply(ctx, []byte(scaleSpec(names[0], v2, p.replicas, p.parallelism))); err != nil {
		t.Fatal(err)
	}
	st := waitService(t, client, names[0], 10*time.Minute, func(st wire.ServiceStatus) bool {
		return st.Revision == 2 && st.RevisionState == state.RevisionSucceeded && st.Replicas.Healthy == p.replicas
	})
	res.update = time.Since(start)
	p.logf("rolling update of %d replicas (parallelism %d): %s", p.replicas, p.parallelism, res.update.Round(time.Millisecond))
	if !strings.Contains(st.Image, ":v2") {
		t.Fatalf("after the update %s runs %s, want v2", names[0], st.Image)
	}

	// A bad release, rolled back automatically to v2.
	start = time.Now()
	if _, err := client.Apply(ctx, []byte(scaleSpec(names[0], bad, p.replicas, p.parallelism))); err != nil {
		t.Fatal(err)
	}
	st = waitService(t, client, names[0], 10*time.Minute, func(st wire.ServiceStatus) bool {
		return st.Revision == 4 && st.RevisionState == state.RevisionSucceeded && st.Replicas.Healthy == p.replicas
	})
	res.rollback = time.Since(start)
	p.logf("bad release rolled back at %d replicas: %s (%s)", p.replicas, res.rollback.Round(time.Millisecond), st.Cause)
	if st.Cause != "automatic rollback of 3 to 2" || !strings.Contains(st.Image, ":v2") {
		t.Fatalf("after the bad release %s is at revision %d (%s), image %s; want the automatic rollback of 3 to 2 running v2", names[0], st.Revision, st.Cause, st.Image)
	}

	// kill -9 of the leader in the middle of another rolling update.
	leader := c.mustLeader(30 * time.Second)
	moving := names[len(names)-1]
	if _, err := client.Apply(ctx, []byte(scaleSpec(moving, v2, p.replicas, p.parallelism))); err != nil {
		t.Fatal(err)
	}
	var before int
	waitService(t, client, moving, 5*time.Minute, func(st wire.ServiceStatus) bool {
		before = st.Replicas.Healthy
		return st.Revision == 2 && st.Replicas.Healthy > 0 && st.Replicas.Healthy < p.replicas/2
	})
	for _, nd := range c.nodes {
		f := readServerFigures(nd)
		f.leader = nd == leader
		res.servers = append(res.servers, f)
	}
	killed := time.Now()
	c.kill(leader, syscall.SIGKILL)
	var survivors []*clusterNode
	for _, nd := range c.nodes {
		if nd != leader {
			survivors = append(survivors, nd)
		}
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		cs, err := c.client(survivors...).Cluster(cctx)
		cancel()
		if err == nil && cs.Leader != "" && cs.Leader != leader.id {
			break
		}
		if time.Since(killed) > time.Minute {
			t.Fatal("no new leader within a minute of killing the old one")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.newLeader = time.Since(killed)
	survivorClient := c.client(survivors...)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := survivorClient.Status(cctx, moving, 0, 0)
		cancel()
		if err == nil && st.Replicas.Healthy > before {
			break
		}
		if time.Since(killed) > 2*time.Minute {
			t.Fatalf("the rollout of %s did not move within 2 minutes of the leader's kill (healthy %d)", moving, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.movingAgain = time.Since(killed)
	p.logf("kill -9 of the leader %s: new leader after %s, rollout moving again after %s", leader.id,
		res.newLeader.Round(time.Millisecond), res.movingAgain.Round(time.Millisecond))
	waitService(t, survivorClient, moving, 10*time.Minute, func(st wire.ServiceStatus) bool {
		return st.Revision == 2 && st.RevisionState == state.RevisionSucceeded && st.Replicas.Healthy == p.replicas
	})
	for i, nd := range c.nodes {
		if nd != leader {
			f := readServerFigures(nd)
			f.leader = false
			res.servers[i] = f
		}
	}
	res.hollowRSS, res.hollowCPU = procFigures(hollowCmd.Process.Pid)
	return res
}

// waitAll waits until every service runs revision rev with all its
// replicas healthy.
func waitAll(t testing.TB, client *wire.Client, names []string, replicas, rev int, timeout time.Duration, logf func(string, ...any)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		list, err := client.Services(context.Background())
		healthy, done := 0, 0
		if err == nil {
			for _, st := range list {
				if !slices.Contains(names, st.Service) {
					continue
				}
				healthy += st.Replicas.Healthy
				if st.Revision == rev && st.RevisionState == state.RevisionSucceeded && st.Replicas.Healthy == replicas {
					done++
				}
			}
			if done == len(names) {
				return
			}
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			logf("deploying: %d of %d replicas healthy, %d of %d services done (err %v)", healthy, replicas*len(names), done, len(names), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d of %d services done, %d replicas healthy", timeout, done, len(names), healthy)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitService(t testing.TB, client *wire.Client, name string, timeout time.Duration, ok func(wire.ServiceStatus) bool) wire.ServiceStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last wire.ServiceStatus
	var lastErr error
	for {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := client.Status(cctx, name, 0, 0)
		cancel()
		if err == nil {
			last = st
			if ok(st) {
				return st
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out after %s; last status: revision %d %s (%s), healthy %d/%d, error %v",
				name, timeout, last.Revision, last.RevisionState, last.Cause, last.Replicas.Healthy, last.Replicas.Desired, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procFigures are a process's peak RSS (VmHWM) and CPU time (user+system)
// from /proc; zero where unreadable.
func procFigures(pid int) (rss int64, cpu time.Duration) {
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				rss = kb * 1024
			}
		}
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command (which may hold spaces) in parentheses.
		if i := strings.LastIndexByte(string(data), ')'); i > 0 {
			f := strings.Fields(string(data)[i+1:])
			if len(f) > 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
			}
		}
	}
	return rss, cpu
}

func readServerFigures(nd *clusterNode) serverFigures {
	f := serverFigures{id: nd.id}
	if nd.cmd != nil && nd.cmd.Process != nil {
		f.peakRSS, f.cpu = procFigures(nd.cmd.Process.Pid)
	}
	f.raftLog = dirSize(filepath.Join(nd.dataDir, "raft", "raft.db"))
	f.snap = dirSize(filepath.Join(nd.dataDir, "raft", "snapshots"))
	return f
}

func dirSize(path string) int64 {
	var n int64
	_ = filepath.Walk(path, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// TestHollowScale is the small scale run of `make test`: 100 hollow hosts
// and 5,000 replicas (5 services × 1,000) on three TLS servers; every
// replica healthy, a rolling update and an automatic rollback complete, and
// a rollout survives kill -9 of the leader. Times are logged, not judged.
func TestHollowScale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers and 100 hollow hosts")
	}
	res := runHollowScale(t, scaleParams{hosts: 100, services: 5, replicas: 1000, parallelism: 100, serverLog: "info", logf: t.Logf})
	for _, s := range res.servers {
		t.Logf("server %s (leader %v): peak RSS %d MiB, CPU %s, raft log %d KiB, snapshots %d KiB", s.id, s.leader, s.peakRSS>>20, s.cpu, s.raftLog>>10, s.snap>>10)
	}
}

// TestHollowHostSpeaksOnlyForItself: a certificate a hollow fleet issues
// in memory names one host, and the servers refuse its report for another
// host as they refuse a real agent's.
func TestHollowHostSpeaksOnlyForItself(t *testing.T) {
	needBinary(t)
	c := mustStartCluster(t, 3, "--no-agent", "--log-level", "info")
	ca, err := pki.LoadAuthority(c.tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ca.AgentClientConfig("hollow-0001")
	if err != nil {
		t.Fatal(err)
	}
	as1 := wire.NewTLSClient(strings.Split(c.joinList(), ","), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := as1.Report(ctx, state.HostReport{Host: "hollow-0001"}); err != nil {
		t.Fatalf("report for its own host: %v", err)
	}
	err = as1.Report(ctx, state.HostReport{Host: "hollow-0002"})
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Status != 403 {
		t.Fatalf("report for another host: %v, want a 403", err)
	}
	if _, err := as1.Assignments(ctx, "hollow-0002", 0, 0); !errors.As(err, &re) || re.Status != 403 {
		t.Fatalf("assignments of another host: %v, want a 403", err)
	}
	if _, err := as1.Services(ctx); !errors.As(err, &re) || re.Status != 403 {
		t.Fatalf("an agent certificate read the operator API: %v, want a 403", err)
	}
}

// TestScaleBenchmark is `make bench-scale` (DEPLOYCTL_BENCH_SCALE=1): 1,000
// hollow hosts and 100 services × 1,000 replicas by default; the sizes can
// be lowered with DEPLOYCTL_SCALE_HOSTS, _SERVICES and _REPLICAS. It prints
// the figures of the README's Scale table.
func TestScaleBenchmark(t *testing.T) {
	if os.Getenv("DEPLOYCTL_BENCH_SCALE") == "" {
		t.Skip("the scale benchmark runs with DEPLOYCTL_BENCH_SCALE=1 (make bench-scale)")
	}
	size := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv("DEPLOYCTL_SCALE_" + name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	p := scaleParams{hosts: size("HOSTS", 1000), services: size("SERVICES", 100), replicas: size("REPLICAS", 1000), parallelism: 100,
		serverLog: "warn", logf: t.Logf, profileDir: os.Getenv("DEPLOYCTL_SCALE_PROFILE_DIR")}
	res := runHollowScale(t, p)
	fmt.Printf("\nScale: %d hollow hosts, %d services × %d replicas = %d replicas, 3 TLS servers, %d CPUs\n",
		p.hosts, p.services, p.replicas, res.total, runtimeCPUs())
	fmt.Printf("| figure | value |\n| --- | --- |\n")
	fmt.Printf("| deploy until all healthy | %s (%.0f replicas/s) |\n", res.deploy.Round(time.Millisecond), float64(res.total)/res.deploy.Seconds())
	fmt.Printf("| `status` of a %d-replica service while it deploys | p50 %s, p99 %s (%d calls) |\n", p.replicas, res.statusP50, res.statusP99, res.statusN)
	fmt.Printf("| rolling update of %d replicas, parallelism %d | %s |\n", p.replicas, p.parallelism, res.update.Round(time.Millisecond))
	fmt.Printf("| bad release rolled back automatically | %s |\n", res.rollback.Round(time.Millisecond))
	fmt.Printf("| kill -9 of the leader: new leader | %s |\n", res.newLeader.Round(time.Millisecond))
	fmt.Printf("| kill -9 of the leader: rollout moving again | %s |\n", res.movingAgain.Round(time.Millisecond))
	for _, s := range res.servers {
		role := "follower"
		if s.leader {
			role = "leader (killed; figures at the kill)"
		}
		fmt.Printf("| server %s, %s | peak RSS %d MiB, CPU %.1f s, raft log %.1f MiB, snapshots %.1f MiB |\n",
			s.id[strings.LastIndex(s.id, "-")+1:], role, s.peakRSS>>20, s.cpu.Seconds(), float64(s.raftLog)/(1<<20), float64(s.snap)/(1<<20))
	}
	fmt.Printf("| hollow agent process (%d hosts) | peak RSS %d MiB, CPU %.1f s |\n", p.hosts, res.hollowRSS>>20, res.hollowCPU.Seconds())
}

func runtimeCPUs() int { return runtime.NumCPU() }

// saveProfile writes a 30 s CPU profile of the server whose --pprof-addr
// is addr; a failure is logged, the run goes on.
func saveProfile(t testing.TB, addr, file string, logf func(string, ...any)) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=30")
	if err != nil {
		logf("profile of %s: %v", addr, err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(file, data, 0o600)
	}
	if err != nil {
		logf("profile of %s: %v", addr, err)
		return
	}
	logf("CPU profile of %s: %s", addr, file)
}
