package main

// End-to-end tests: the built deployctl binary, driven as a user would, as
// a real `deployctl server --dev` process with the real Docker Engine and a
// real registry on 127.0.0.1. Every container, network and image they cause
// is removed in cleanup, even when a test fails.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/deployer/firewall"
	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/internal/dockerclean"
	"github.com/deployctl/deployctl/internal/enginetest"
	"github.com/deployctl/deployctl/internal/seccompprofile"
	"github.com/deployctl/deployctl/internal/wire"
)

// e2eEnv is shared by the tests of this package, built lazily: the binary
// the first time a test needs it (needBinary), the registry and images the
// first time a test needs the engine (needEngine). A unit-test run builds
// neither; without an engine, engine tests skip with one line (or fail
// under DEPLOYCTL_REQUIRE_DOCKER=1, as `make test` sets).
type e2eEnv struct {
	bin     string
	regAddr string
	// image references by name: v1, v11 (healthy, another digest), broken, crash
	refs    map[string]string
	digests map[string]string
	docker  *client.Client
	runID   string
}

// env is filled by needBinary and needEngine (each part once, under its
// sync.Once) and read-only after.
var env = &e2eEnv{refs: map[string]string{}, digests: map[string]string{}, runID: fmt.Sprintf("e2e-%d", os.Getpid())}

// lazyEnv holds what the lazy setup made, for TestMain to remove.
var lazyEnv struct {
	dir                 string
	binOnce, engineOnce sync.Once
	binErr, engineErr   error
	mu                  sync.Mutex
	closers             []func()
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	code := m.Run()
	lazyEnv.mu.Lock()
	closers := lazyEnv.closers
	lazyEnv.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	if lazyEnv.dir != "" {
		os.RemoveAll(lazyEnv.dir)
	}
	return code
}

// needBinary builds deployctl once, the first time a test needs it, and
// returns its path.
func needBinary(t testing.TB) string {
	t.Helper()
	lazyEnv.binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deployctl-e2e-")
		if err != nil {
			lazyEnv.binErr = err
			return
		}
		lazyEnv.dir = dir
		bin := filepath.Join(dir, "deployctl")
		build := exec.Command("go", "build", "-o", bin, ".")
		if out, err := build.CombinedOutput(); err != nil {
			lazyEnv.binErr = fmt.Errorf("build deployctl: %w\n%s", err, out)
			return
		}
		env.bin = bin
	})
	if lazyEnv.binErr != nil {
		t.Fatal(lazyEnv.binErr)
	}
	return env.bin
}

// needEngine skips t (or fails it, under DEPLOYCTL_REQUIRE_DOCKER=1) when
// no Docker Engine answers, and otherwise makes sure the binary, the
// registry and the test images exist.
func needEngine(t testing.TB) {
	t.Helper()
	enginetest.Require(t)
	needBinary(t)
	lazyEnv.engineOnce.Do(func() {
		closers, err := setupEngine(env)
		lazyEnv.mu.Lock()
		lazyEnv.closers = append(lazyEnv.closers, closers...)
		lazyEnv.mu.Unlock()
		lazyEnv.engineErr = err
	})
	if lazyEnv.engineErr != nil {
		t.Fatalf("e2e setup: %v", lazyEnv.engineErr)
	}
}

// setupEngine connects to the engine, starts the registry and pushes the
// test images; the closers undo it, also after an error.
func setupEngine(e *e2eEnv) ([]func(), error) {
	ctx := context.Background()
	var closers []func()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return closers, err
	}
	e.docker = cli
	closers = append(closers, func() { cli.Close() })

	reg, err := devimage.StartRegistry("127.0.0.1:0", hclog.NewNullLogger())
	if err != nil {
		return closers, err
	}
	e.regAddr = reg.Addr()
	closers = append(closers, func() { reg.Close() })
	closers = append(closers, func() { removeRegistryImages(cli, e.regAddr) })

	img, err := devimage.BuildGoImage(ctx, devimage.GoImageOptions{PackageDir: "../../examples/webapp", Env: []string{"WEBAPP_VERSION=v1"}})
	if err != nil {
		return closers, err
	}
	variants := map[string][]string{"v1": nil, "v11": {"WEBAPP_VERSION=v1.1"}, "broken": {"WEBAPP_VERSION=v2", "WEBAPP_BROKEN=1"}, "crash": {"WEBAPP_CRASH=1"}}
	for name, extra := range variants {
		im := img
		if extra != nil {
			if im, err = devimage.WithEnv(img, extra...); err != nil {
				return closers, err
			}
		}
		ref := e.regAddr + "/e2e/webapp:" + name
		d, err := devimage.Push(ctx, ref, im)
		if err != nil {
			return closers, err
		}
		e.refs[name], e.digests[name] = ref, d
	}
	return closers, nil
}

// removeRegistryImages removes the images the engine pulled from this run's
// registry, recognised by a repo digest naming its address.
func removeRegistryImages(cli *client.Client, regAddr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dockerclean.RegistryImages(ctx, cli, regAddr)
}

// devServer is a `deployctl server --dev` child process of a test.
type devServer struct {
	t       testing.TB
	addr    string
	raft    string
	dataDir string
	hostID  string
	network string
	cmd     *exec.Cmd
	done    chan struct{}
	log     *syncBuffer
	// args are the flags after the common ones: the tests audit every
	// second and log at debug level; benchmarks run as a user would.
	args []string
}

// e2eServerArgs make the agent audit every second (the audit tests wait
// for one) and log everything (shown when a test fails).
func e2eServerArgs() []string {
	return []string{"--log-level", "debug", "--audit-interval", "1s"}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	return freeAddrOn(t, "127.0.0.1")
}

// freeAddrOn is a free TCP port on ip, as ip:port.
func freeAddrOn(t testing.TB, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// mustStartServer starts a dev server with its own host id and network;
// cleanup stops it by PID and removes every container its agent made (by
// the host-id label) and its network.
func mustStartServer(t testing.TB) *devServer {
	t.Helper()
	return mustStartServerArgs(t, e2eServerArgs()...)
}

// mustStartServerArgs starts a dev server with args after the common flags.
func mustStartServerArgs(t testing.TB, args ...string) *devServer {
	t.Helper()
	needEngine(t)
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	s := &devServer{
		t: t, addr: freeAddr(t), raft: freeAddr(t), dataDir: t.TempDir(),
		hostID: env.runID + "-" + name, network: "deployctl-" + env.runID + "-" + name,
		args: args,
	}
	t.Cleanup(func() {
		s.stop()
		removeHostObjects(env.docker, s.hostID, s.network)
		if t.Failed() {
			t.Logf("server log:\n%s", s.log.String())
		}
	})
	// The ports were free when freeAddr closed them; another process may
	// take one before the server binds it: then new ports, a few times.
	for attempt := 1; ; attempt++ {
		err := s.tryStart(nil)
		if err == nil {
			return s
		}
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; again on other ports", attempt, err)
		s.addr, s.raft = freeAddr(t), freeAddr(t)
	}
}

// errAddrInUse: the server exited at start because a port it was given
// was taken meanwhile.
var errAddrInUse = errors.New("a port given to the server was taken")

func (s *devServer) start(extraEnv []string) {
	s.t.Helper()
	if err := s.tryStart(extraEnv); err != nil {
		s.t.Fatal(err)
	}
}

// tryStart starts the server and waits until it leads; errAddrInUse when
// it exited because a port was taken.
func (s *devServer) tryStart(extraEnv []string) error {
	s.log = &syncBuffer{}
	s.cmd = exec.Command(env.bin, append([]string{"server", "--dev", "--node-id", "n1", "--host-id", s.hostID, "--network", s.network,
		"--http-addr", s.addr, "--raft-addr", s.raft, "--data-dir", s.dataDir}, s.args...)...)
	s.cmd.Env = append(os.Environ(), extraEnv...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			if strings.Contains(s.log.String(), "address already in use") {
				return fmt.Errorf("server exited at start: %v: %w\n%s", s.cmd.ProcessState, errAddrInUse, s.log.String())
			}
			return fmt.Errorf("server exited at start: %v\n%s", s.cmd.ProcessState, s.log.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := wire.NewClient([]string{s.addr}, nil).Cluster(ctx)
		cancel()
		if err == nil && st.Leader == "n1" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("server not ready in 30s:\n%s", s.log.String())
}

// stop ends the server process this test started, by its PID.
func (s *devServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// removeHostObjects removes the containers labelled with a test's host id
// and the networks its agent created (the service networks, by the host
// id label).
func removeHostObjects(cli *client.Client, hostID, netName string) {
	if cli == nil {
		return // no engine was set up: nothing of ours can be there
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dockerclean.HostObjects(ctx, cli, hostID, netName)
	// The agent's packet rules (its own chains) outlive it on purpose;
	// the test's host is gone, so they go too.
	if err := firewall.Remove(ctx, deployer.FirewallID(hostID)); err != nil {
		fmt.Fprintf(os.Stderr, "removing the packet rules of host %s: %v\n", hostID, err)
	}
}

// syncBuffer is a bytes.Buffer that a child process writes while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cliResult is one run of the deployctl binary.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (s *devServer) cli(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	return s.cliCtx(t, context.Background(), stdin, args...)
}

func (s *devServer) cliCtx(t *testing.T, ctx context.Context, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.CommandContext(ctx, env.bin, append([]string{"--addr", s.addr}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("run deployctl %v: %v", args, err)
	}
	return res
}

func mustCLI(t *testing.T, s *devServer, wantCode int, stdin string, args ...string) cliResult {
	t.Helper()
	r := s.cli(t, stdin, args...)
	if r.code != wantCode {
		t.Fatalf("deployctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, wantCode, r.stdout, r.stderr)
	}
	return r
}

func mustStatus(t *testing.T, s *devServer, svc string) wire.ServiceStatus {
	t.Helper()
	r := mustCLI(t, s, 0, "", "status", svc, "-o", "json")
	var st wire.ServiceStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	return st
}

func mustHistory(t *testing.T, s *devServer, svc string) []wire.HistoryEntry {
	t.Helper()
	r := mustCLI(t, s, 0, "", "history", svc, "-o", "json")
	var h []wire.HistoryEntry
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
		t.Fatalf("history -o json: %v\n%s", err, r.stdout)
	}
	return h
}

// webSpec is a fast-probing spec for the test images.
func webSpec(image string, replicas int, extra string) string {
	return fmt.Sprintf(`service: web
image: %s
replicas: %d
resources: { cpus: 0.2, memory: 32M, pids: 32 }
healthcheck:
  http: { path: /healthz, port: 8080 }
  interval: 500ms
  timeout: 500ms
  retries: 2
update:
  parallelism: 1
  monitor: 1s
  progress_deadline: 1m
stop_grace_period: 1s
%s`, image, replicas, extra)
}

// runningContainers lists the IDs of the running containers of a host,
// by service label.
func runningContainers(t *testing.T, hostID string) map[string]bool {
	t.Helper()
	list, err := env.docker.ContainerList(context.Background(), container.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", "io.deployctl.host="+hostID), filters.Arg("status", "running")),
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, c := range list {
		out[c.ID] = true
	}
	return out
}

func currentContainerIDs(st wire.ServiceStatus) map[string]bool {
	out := map[string]bool{}
	for _, in := range st.Instances {
		if in.Current && in.Desired == "running" && in.ContainerID != "" {
			out[in.ContainerID] = true
		}
	}
	return out
}

func TestCLIDeployAutoRollbackManualRollbackRemove(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// v1, three replicas: exit 0 once all are healthy.
	r := mustCLI(t, s, 0, "", "apply", write("web.yaml", webSpec(env.refs["v1"], 3, "")))
	for _, want := range []string{"revision 1 stored", env.digests["v1"], "healthy", "done: revision 1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("apply output lacks %q:\n%s", want, r.stdout)
		}
	}
	st := mustStatus(t, s, "web")
	if st.Revision != 1 || st.Digest != env.digests["v1"] || st.State != "running" || st.Replicas != (wire.ReplicaCounts{Desired: 3, Running: 3, Healthy: 3}) {
		t.Fatalf("status after v1: %+v", st)
	}
	v1IDs := currentContainerIDs(st)
	if len(v1IDs) != 3 {
		t.Fatalf("want 3 v1 containers, got %v", v1IDs)
	}
	mustBeHardened(t, v1IDs, env.refs["v1"], env.digests["v1"])

	// The same spec again, from stdin: no new revision.
	r = mustCLI(t, s, 0, webSpec(env.refs["v1"], 3, ""), "apply", "-")
	if !strings.Contains(r.stdout, "unchanged") {
		t.Fatalf("re-apply: %s", r.stdout)
	}

	// Broken v2: health checks fail, automatic rollback, exit 3.
	r = mustCLI(t, s, 3, "", "apply", write("web-broken.yaml", webSpec(env.refs["broken"], 3, "")))
	for _, want := range []string{"revision 2 stored", "unhealthy", "rolling back", "rolled back: revision 3"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("broken apply output lacks %q:\n%s", want, r.stdout)
		}
	}
	st = mustStatus(t, s, "web")
	if st.Revision != 3 || st.Digest != env.digests["v1"] || st.State != "running" || st.Replicas.Healthy != 3 {
		t.Fatalf("status after rollback: %+v", st)
	}
	// No loss of healthy replicas: start-first kept every v1 container
	// running, and the rollback adopted them.
	if got := currentContainerIDs(st); !sameSet(got, v1IDs) {
		t.Fatalf("containers after rollback %v, want the v1 ones %v kept", got, v1IDs)
	}
	running := runningContainers(t, s.hostID)
	for id := range v1IDs {
		if !running[id] {
			t.Fatalf("v1 container %s is not running after the rollback", id)
		}
	}
	h := mustHistory(t, s, "web")
	wantStates := []string{"succeeded", "rolled_back", "succeeded"}
	if len(h) != 3 {
		t.Fatalf("history %+v", h)
	}
	for i, w := range wantStates {
		if h[i].State != w {
			t.Fatalf("history[%d] state %q, want %q (%+v)", i, h[i].State, w, h)
		}
	}
	if h[2].Cause != "automatic rollback of 2 to 1" || h[2].RollbackOf != 2 || h[2].Digest != env.digests["v1"] || h[1].Digest != env.digests["broken"] {
		t.Fatalf("rollback revision %+v", h[2])
	}

	// A healthy v1.1, then a manual rollback to the last good other digest.
	mustCLI(t, s, 0, "", "apply", write("web-v11.yaml", webSpec(env.refs["v11"], 3, "")))
	r = mustCLI(t, s, 0, "", "rollback", "web")
	if !strings.Contains(r.stdout, "done: revision 5") {
		t.Fatalf("rollback output:\n%s", r.stdout)
	}
	st = mustStatus(t, s, "web")
	if st.Digest != env.digests["v1"] || st.Cause != "rollback of 4 to 3" || st.Replicas.Healthy != 3 {
		t.Fatalf("status after manual rollback: %+v", st)
	}
	// --to N picks any revision.
	mustCLI(t, s, 0, "", "rollback", "web", "--to", "4")
	if st = mustStatus(t, s, "web"); st.Digest != env.digests["v11"] || st.Cause != "rollback of 5 to 4" {
		t.Fatalf("status after --to 4: %+v", st)
	}
	h = mustHistory(t, s, "web")
	if h[3].State != "rolled_back" || h[4].State != "rolled_back" || h[5].State != "succeeded" {
		t.Fatalf("history after manual rollbacks: %+v", h)
	}

	// rm removes the service and its containers.
	mustCLI(t, s, 0, "", "rm", "web")
	if got := runningContainers(t, s.hostID); len(got) != 0 {
		t.Fatalf("containers left after rm: %v", got)
	}
	if r := s.cli(t, "", "status", "web"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("status after rm: exit %d %s", r.code, r.stderr)
	}
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// mustBeHardened inspects containers for the hardened run options.
func mustBeHardened(t *testing.T, ids map[string]bool, tagRef, digest string) {
	t.Helper()
	repo := tagRef[:strings.LastIndex(tagRef, ":")]
	for id := range ids {
		c, err := env.docker.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		hc := c.HostConfig
		checks := []struct {
			what string
			ok   bool
		}{
			{"image pinned by digest", c.Config.Image == repo+"@"+digest},
			{"non-root user", c.Config.User != "" && c.Config.User != "0" && !strings.HasPrefix(c.Config.User, "root") && !strings.HasPrefix(c.Config.User, "0:")},
			{"cap drop ALL", len(hc.CapDrop) == 1 && hc.CapDrop[0] == "ALL"},
			{"no cap add", len(hc.CapAdd) == 0},
			{"no-new-privileges", contains(hc.SecurityOpt, "no-new-privileges")},
			{"seccomp not disabled", !contains(hc.SecurityOpt, "seccomp=unconfined") && !contains(hc.SecurityOpt, "seccomp:unconfined")},
			{"read-only rootfs", hc.ReadonlyRootfs},
			{"tmpfs /tmp", hc.Tmpfs["/tmp"] != ""},
			{"pids limit", hc.PidsLimit != nil && *hc.PidsLimit == 32},
			{"memory limit", hc.Memory == 32<<20},
			{"cpu limit", hc.NanoCPUs == 200_000_000},
			{"restart on-failure 5", hc.RestartPolicy.Name == "on-failure" && hc.RestartPolicy.MaximumRetryCount == 5},
			{"not privileged", !hc.Privileged},
			{"user-defined network", strings.HasPrefix(string(hc.NetworkMode), "deployctl-")},
			{"private pid/ipc/uts", !hc.PidMode.IsHost() && !hc.IpcMode.IsHost() && !hc.UTSMode.IsHost()},
			{"labels", c.Config.Labels["io.deployctl.service"] == "web" && c.Config.Labels["io.deployctl.revision"] != "" && c.Config.Labels["io.deployctl.host"] != ""},
		}
		for _, ch := range checks {
			if !ch.ok {
				t.Errorf("container %s: %s does not hold (config %+v, host config %+v)", id[:12], ch.what, c.Config, hc)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCLIServerRestartAdoptsContainers(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 2, ""), "apply", "-")
	before := currentContainerIDs(mustStatus(t, s, "web"))
	if len(before) != 2 {
		t.Fatalf("want 2 containers, got %v", before)
	}
	s.stop()
	// The controller going away stops no container.
	if got := runningContainers(t, s.hostID); !sameSet(got, before) {
		t.Fatalf("after the server stopped, running %v, want %v", got, before)
	}
	s.start(nil)
	// The restarted node reads its state back and its agent adopts the
	// running containers: same IDs, none recreated.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := mustStatus(t, s, "web")
		if st.Revision == 1 && st.State == "running" && st.Replicas.Healthy == 2 && sameSet(currentContainerIDs(st), before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %+v, want the same 2 containers healthy", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := runningContainers(t, s.hostID); !sameSet(got, before) {
		t.Fatalf("running after restart %v, want %v (adopted, not recreated)", got, before)
	}
	if h := mustHistory(t, s, "web"); len(h) != 1 {
		t.Fatalf("history after restart: %+v", h)
	}
}

func TestCLIRefusesBadInput(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 1, ""), "apply", "-")
	before := mustHistory(t, s, "web")

	// An invalid spec: exit 2, every problem named, nothing stored.
	r := mustCLI(t, s, 2, "service: web\nimage: "+env.refs["v1"]+"\nreplicaz: 3\nresources: { memory: lots }\n", "apply", "-")
	for _, want := range []string{"line 3", "did you mean replicas", "resources.memory"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("invalid spec error lacks %q:\n%s", want, r.stderr)
		}
	}
	// An image that does not resolve: exit 1, nothing stored.
	r = mustCLI(t, s, 1, webSpec(env.regAddr+"/e2e/webapp:no-such-tag", 1, ""), "apply", "-")
	if !strings.Contains(r.stderr, "cannot be resolved") {
		t.Errorf("unresolvable image error:\n%s", r.stderr)
	}
	// A registry that is down: exit 1, nothing stored.
	r = mustCLI(t, s, 1, webSpec(freeAddr(t)+"/e2e/webapp:v1", 1, ""), "apply", "-")
	if !strings.Contains(r.stderr, "reachable") {
		t.Errorf("registry-down error:\n%s", r.stderr)
	}
	if after := mustHistory(t, s, "web"); len(after) != len(before) {
		t.Fatalf("a refused apply changed history: %+v", after)
	}
	if st := mustStatus(t, s, "web"); st.Revision != 1 || st.State != "running" {
		t.Fatalf("a refused apply changed the running revision: %+v", st)
	}
	// Usage errors and unknown services.
	mustCLI(t, s, 2, "", "apply")
	mustCLI(t, s, 2, "", "frobnicate")
	mustCLI(t, s, 2, "", "rollback", "web", "--to", "-3")
	r = mustCLI(t, s, 1, "", "rollback", "nope")
	if !strings.Contains(r.stderr, "not found") {
		t.Errorf("rollback of a missing service: %s", r.stderr)
	}
	r = mustCLI(t, s, 0, "", "help", "exit-codes")
	for _, want := range []string{"0  done", "3  the release failed", "5  stopped waiting"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help exit-codes lacks %q", want)
		}
	}
	// A first release that crashes has nothing to roll back to: exit 4.
	r = mustCLI(t, s, 4, strings.Replace(webSpec(env.refs["crash"], 1, ""), "service: web", "service: crashy", 1), "apply", "-")
	if !strings.Contains(r.stdout+r.stderr, "failed") {
		t.Errorf("crash release output:\n%s\n%s", r.stdout, r.stderr)
	}
	if st := mustStatus(t, s, "crashy"); st.State != "failed" {
		t.Fatalf("crashy state %q, want failed", st.State)
	}
}

func TestCLIPauseOnFailure(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 2, ""), "apply", "-")
	spec := strings.Replace(webSpec(env.refs["broken"], 2, ""), "  parallelism: 1\n", "  parallelism: 1\n  failure_action: pause\n", 1)
	r := mustCLI(t, s, 4, spec, "apply", "-")
	if !strings.Contains(r.stderr, "paused") {
		t.Fatalf("pause output:\n%s\n%s", r.stdout, r.stderr)
	}
	st := mustStatus(t, s, "web")
	if st.State != "paused" || st.Revision != 2 {
		t.Fatalf("status %+v, want revision 2 paused", st)
	}
	// The old replicas still serve: start-first never stopped them.
	healthyOld := 0
	for _, in := range st.Instances {
		if in.Revision == 1 && in.Desired == "running" && in.State == "healthy" {
			healthyOld++
		}
	}
	if healthyOld != 2 {
		t.Fatalf("%d healthy v1 replicas while paused, want 2: %+v", healthyOld, st.Instances)
	}
	// A human rolls back: exit 0.
	mustCLI(t, s, 0, "", "rollback", "web")
}

func TestCLIDetachesOnInterrupt(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	spec := strings.Replace(webSpec(env.refs["v1"], 2, ""), "monitor: 1s", "monitor: 3s", 1)
	cmd := exec.Command(env.bin, "--addr", s.addr, "apply", "-")
	cmd.Stdin = strings.NewReader(spec)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the rollout is under way, then Ctrl-C the CLI.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "stored") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitTimeout || !strings.Contains(out.String(), "detached") {
		t.Fatalf("after Ctrl-C: %v, output:\n%s", err, out.String())
	}
	// The rollout went on without the CLI.
	for {
		st := mustStatus(t, s, "web")
		if st.RevisionState == "succeeded" && st.Replicas.Healthy == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout did not finish after detach: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestCLIServerWithoutDockerFailsClearly(t *testing.T) {
	needBinary(t)
	s := &devServer{t: t, addr: freeAddr(t), raft: freeAddr(t), dataDir: t.TempDir(), hostID: env.runID + "-nodocker", network: "deployctl-nodocker", args: e2eServerArgs()}
	cmd := exec.Command(env.bin, "server", "--dev", "--http-addr", s.addr, "--raft-addr", s.raft, "--data-dir", s.dataDir, "--host-id", s.hostID)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix:///nonexistent/docker.sock")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), "cannot reach the Docker Engine") {
		t.Fatalf("server without Docker: %v\n%s", err, out)
	}
	// Not --dev: refused with the reason.
	out, err = exec.Command(env.bin, "server").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != ExitUsage || !strings.Contains(string(out), "TLS") {
		t.Fatalf("server without --dev: %v\n%s", err, out)
	}
}

func TestCLIPolicyGatesApply(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 1, ""), "apply", "-")
	before := mustHistory(t, s, "web")

	// No policy set: the default denies every exception.
	r := mustCLI(t, s, 0, "", "policy", "get", "-o", "json")
	if !strings.Contains(r.stdout, `"NET_BIND_SERVICE"`) || !strings.Contains(r.stdout, `"version": 0`) {
		t.Fatalf("default policy:\n%s", r.stdout)
	}
	privileged := strings.Replace(webSpec(env.refs["v1"], 1, ""), "stop_grace_period: 1s\n", "stop_grace_period: 1s\nsecurity: { privileged: true, cap_add: [NET_ADMIN] }\n", 1)
	r = mustCLI(t, s, 1, privileged, "apply", "-")
	for _, want := range []string{"security.privileged", "allow_privileged", "NET_ADMIN", "allow_capabilities"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("denial lacks %q:\n%s", want, r.stderr)
		}
	}

	// no_new_privileges: false is refused by the default policy (issue 16,
	// finding 6): a setuid-root file would give euid 0.
	noNNP := strings.Replace(webSpec(env.refs["v1"], 1, ""), "stop_grace_period: 1s\n", "stop_grace_period: 1s\nsecurity: { no_new_privileges: false }\n", 1)
	r = mustCLI(t, s, 1, noNNP, "apply", "-")
	for _, want := range []string{"security.no_new_privileges", "allow_new_privileges: true", "deployctl policy set"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("denial lacks %q:\n%s", want, r.stderr)
		}
	}
	if after := mustHistory(t, s, "web"); len(after) != len(before) {
		t.Fatalf("a refused apply changed history: %+v", after)
	}

	// A trust rule for this registry: the unsigned image is refused.
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := fmt.Sprintf("trust:\n  - match: %q\n    keys: [release.pub]\n", env.regAddr+"/e2e/*")
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mustCLI(t, s, 0, "", "policy", "set", filepath.Join(dir, "policy.yaml"))
	if !strings.Contains(r.stdout, "policy version 1 stored") {
		t.Fatalf("policy set: %s", r.stdout)
	}
	r = mustCLI(t, s, 1, webSpec(env.refs["v11"], 1, ""), "apply", "-")
	if !strings.Contains(r.stderr, "release.pub") || !strings.Contains(strings.ToLower(r.stderr), "sign") {
		t.Fatalf("unsigned image error:\n%s", r.stderr)
	}
	// Issue 16, finding 7: another spelling of the same registry is held
	// to the same rule.
	port := env.regAddr[strings.LastIndex(env.regAddr, ":")+1:]
	for _, registry := range []string{"LOCALHOST:" + port, "localhost:" + port} {
		r = mustCLI(t, s, 1, webSpec(strings.Replace(env.refs["v11"], env.regAddr, registry, 1), 1, ""), "apply", "-")
		if !strings.Contains(r.stderr, "release.pub") || !strings.Contains(r.stderr, "not signed") {
			t.Fatalf("unsigned image spelled %s:\n%s", registry, r.stderr)
		}
	}
	if after := mustHistory(t, s, "web"); len(after) != len(before) {
		t.Fatalf("refused applies changed history: %+v", after)
	}
	// Signed with the listed key (cosign's tag layout): admitted, and the
	// revision records the key.
	mustSignCosignV2(t, env.refs["v11"], env.digests["v11"], key)
	mustCLI(t, s, 0, webSpec(env.refs["v11"], 1, ""), "apply", "-")
	if h := mustHistory(t, s, "web"); h[len(h)-1].SignedBy != "release.pub" {
		t.Fatalf("signed revision: %+v", h[len(h)-1])
	}
	before = mustHistory(t, s, "web")

	// A policy with a typo is refused with its line, nothing stored.
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("allow_privileged: true\nalow_root: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mustCLI(t, s, 2, "", "policy", "set", filepath.Join(dir, "bad.yaml"))
	if !strings.Contains(r.stderr, "line 2") || !strings.Contains(r.stderr, "allow_root") {
		t.Fatalf("bad policy error:\n%s", r.stderr)
	}
	if after := mustHistory(t, s, "web"); len(after) != len(before) {
		t.Fatalf("refused applies changed history: %+v", after)
	}
	if st := mustStatus(t, s, "web"); st.Revision != 2 || st.State != "running" {
		t.Fatalf("refused applies changed the running revision: %+v", st)
	}

	// A writable root file system is only warned about by default: the
	// apply goes through, the warning is on stderr and in the history.
	writable := strings.Replace(webSpec(env.refs["v11"], 1, ""), "stop_grace_period: 1s\n", "stop_grace_period: 1s\nsecurity: { read_only: false }\n", 1)
	r = mustCLI(t, s, 0, writable, "apply", "--detach", "-")
	if !strings.Contains(r.stderr, "warning: security.read_only") || !strings.Contains(r.stderr, "writable_rootfs") {
		t.Errorf("apply of a writable root file system: stderr lacks the warning:\n%s", r.stderr)
	}
	if h := mustHistory(t, s, "web"); len(h[len(h)-1].PolicyWarnings) != 1 {
		t.Errorf("the revision does not keep the warning: %+v", h[len(h)-1])
	}
}

// mustSignCosignV2 writes what `cosign sign --key` writes in its tag layout:
// an image tagged sha256-<hex>.sig whose layer is the simple-signing
// payload, annotated with the base64 ECDSA signature over it.
func mustSignCosignV2(t *testing.T, tagRef, digest string, key *ecdsa.PrivateKey) {
	t.Helper()
	repo, err := name.NewRepository(tagRef[:strings.LastIndex(tagRef, ":")], name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"critical":{"identity":{"docker-reference":"` + repo.Name() + `"},"image":{"docker-manifest-digest":"` +
		digest + `"},"type":"cosign container image signature"},"optional":null}`)
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:       static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json"),
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag(strings.Replace(digest, ":", "-", 1)+".sig"), img); err != nil {
		t.Fatal(err)
	}
}

// trivyReport writes a Trivy JSON report (schema 2) for a pinned image.
func trivyReport(t *testing.T, dir, repoDigest string, created time.Time, severities ...string) string {
	t.Helper()
	var vulns []string
	for i, sev := range severities {
		vulns = append(vulns, fmt.Sprintf(`{"VulnerabilityID": "CVE-2026-%04d", "PkgName": "stdlib", "InstalledVersion": "1.0", "FixedVersion": "1.1", "Severity": %q}`, i+1, sev))
	}
	body := fmt.Sprintf(`{"SchemaVersion": 2, "CreatedAt": %q, "ArtifactName": %q, "ArtifactType": "container_image",
  "Metadata": {"RepoDigests": [%q]},
  "Results": [{"Target": "app", "Class": "lang-pkgs", "Type": "gobinary", "Vulnerabilities": [%s]}]}`,
		created.UTC().Format(time.RFC3339), repoDigest, repoDigest, strings.Join(vulns, ","))
	path := filepath.Join(dir, fmt.Sprintf("trivy-%d.json", len(severities)))
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCLIScanGateAndStrictSeccomp(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("scan: { mode: enforce, max_severity: high, max_age: 7d }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, 0, "", "policy", "set", filepath.Join(dir, "policy.yaml"))
	ref := env.refs["v1"]
	pinned := ref[:strings.LastIndex(ref, ":")] + "@" + env.digests["v1"]
	spec := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(spec, []byte(webSpec(ref, 1, "security: { seccomp: strict }\n")), 0o644); err != nil {
		t.Fatal(err)
	}

	// No scan: refused. A scan with a critical finding: refused, naming it.
	// A scan of another digest: refused.
	r := mustCLI(t, s, 1, "", "apply", spec)
	if !strings.Contains(r.stderr, "scan") {
		t.Fatalf("no scan: %s", r.stderr)
	}
	// Issue 16, finding 8: a report nobody signed, with no findings and
	// the right digest, is refused under enforce, saying how to attach a
	// signed attestation or accept unsigned reports.
	r = mustCLI(t, s, 1, "", "apply", spec, "--scan-report", trivyReport(t, dir, pinned, time.Now()))
	for _, want := range []string{"not signed", "cosign attest", "scan.accept_unsigned_reports: true"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("forged report: %q missing from\n%s", want, r.stderr)
		}
	}
	// The policy accepts unsigned reports: they are judged.
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("scan: { mode: enforce, max_severity: high, max_age: 7d, accept_unsigned_reports: true }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, 0, "", "policy", "set", filepath.Join(dir, "policy.yaml"))
	r = mustCLI(t, s, 1, "", "apply", spec, "--scan-report", trivyReport(t, dir, pinned, time.Now(), "LOW", "CRITICAL"))
	if !strings.Contains(r.stderr, "CVE-2026-0002") {
		t.Fatalf("critical finding: %s", r.stderr)
	}
	other := ref[:strings.LastIndex(ref, ":")] + "@" + env.digests["broken"]
	mustCLI(t, s, 1, "", "apply", spec, "--scan-report", trivyReport(t, dir, other, time.Now()))
	if r := s.cli(t, "", "status", "web"); r.code != 1 {
		t.Fatalf("a refused first apply created the service: %d %s", r.code, r.stdout)
	}

	// A clean, fresh scan of the pinned digest: admitted; the replica runs
	// under the built-in strict seccomp profile.
	mustCLI(t, s, 0, "", "apply", spec, "--scan-report", trivyReport(t, dir, pinned, time.Now(), "LOW", "MEDIUM"))
	st := mustStatus(t, s, "web")
	for id := range currentContainerIDs(st) {
		c, err := env.docker.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		strict := false
		for _, opt := range c.HostConfig.SecurityOpt {
			if strings.HasPrefix(opt, "seccomp=") && strings.Contains(opt, "SCMP_ACT_ERRNO") {
				strict = true
			}
		}
		if !strict {
			t.Fatalf("container %s runs without the strict profile: %v", id[:12], c.HostConfig.SecurityOpt)
		}
	}
}

func TestCLIAuditIsCleanByDefaultAndSeesDrift(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 1, ""), "apply", "-")
	var rep wire.AuditReport
	waitFor(t, 30*time.Second, "an audit of the replica", func() bool {
		r := s.cli(t, "", "audit", "-o", "json")
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &rep) == nil && len(rep.Hosts) == 1 && len(rep.Hosts[0].Containers) == 1
	})
	c := rep.Hosts[0].Containers[0]
	if len(c.Results) < 30 || c.Service != "web" {
		t.Fatalf("audit of %s: %d checks", c.ContainerID, len(c.Results))
	}
	// A spec that says nothing about security passes section 5.
	if r := s.cli(t, "", "audit", "--strict"); r.code != 0 {
		t.Fatalf("a default container is not CIS-clean:\n%s%s", r.stdout, r.stderr)
	}
	// Someone raises the memory limit behind deployctl's back: drift.
	if _, err := env.docker.ContainerUpdate(context.Background(), c.ContainerID, container.UpdateConfig{
		Resources: container.Resources{Memory: 48 << 20, MemorySwap: 48 << 20}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the drift to show", func() bool {
		r := s.cli(t, "", "audit", "--strict")
		return r.code == 1 && strings.Contains(r.stdout, "drift") && strings.Contains(r.stdout, "HostConfig.Memory")
	})
	// Someone connects it to a network deployctl did not create.
	ctx := context.Background()
	foreign := s.network + "-foreign"
	created, err := env.docker.NetworkCreate(ctx, foreign, network.CreateOptions{Driver: "bridge", Labels: map[string]string{"io.deployctl.host": s.hostID}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.docker.NetworkDisconnect(context.Background(), created.ID, c.ContainerID, true)
		if err := env.docker.NetworkRemove(context.Background(), created.ID); err != nil {
			t.Errorf("cleanup: remove network %s: %v", foreign, err)
		}
	})
	if err := env.docker.NetworkConnect(ctx, created.ID, c.ContainerID, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the network drift to show", func() bool {
		r := s.cli(t, "", "audit", "--strict")
		return r.code == 1 && strings.Contains(r.stdout, "NetworkSettings.Networks["+foreign+"]") && strings.Contains(r.stdout, "a network deployctl did not create")
	})
}

func TestCLIOutdatedAndRefresh(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	ctx := context.Background()
	moving := env.regAddr + "/e2e/webapp:moving-" + strings.ToLower(t.Name())
	mustRetag(t, ctx, env.refs["v1"], moving)
	mustCLI(t, s, 0, webSpec(moving, 1, ""), "apply", "-")
	if r := mustCLI(t, s, 0, "", "outdated", "-o", "json"); strings.Contains(r.stdout, `"service": "web"`) {
		t.Fatalf("outdated right after apply:\n%s", r.stdout)
	}
	if r := mustCLI(t, s, 0, "", "apply", "--refresh", "web"); !strings.Contains(r.stdout, "up to date") {
		t.Fatalf("refresh of an unmoved tag:\n%s", r.stdout)
	}
	// The tag moves to v1.1: outdated says so; refresh rolls it out.
	mustRetag(t, ctx, env.refs["v11"], moving)
	r := mustCLI(t, s, 0, "", "outdated", "-o", "json")
	if !strings.Contains(r.stdout, `"service": "web"`) || !strings.Contains(r.stdout, env.digests["v11"]) {
		t.Fatalf("outdated after the tag moved:\n%s", r.stdout)
	}
	mustCLI(t, s, 0, "", "apply", "--refresh", "web")
	if st := mustStatus(t, s, "web"); st.Digest != env.digests["v11"] || st.Revision != 2 || st.Replicas.Healthy != 1 {
		t.Fatalf("after refresh: %+v", st)
	}
	if r := mustCLI(t, s, 0, "", "outdated", "-o", "json"); strings.Contains(r.stdout, `"service": "web"`) {
		t.Fatalf("still outdated after refresh:\n%s", r.stdout)
	}
}

// mustRetag points tag at the image behind from, in the test registry.
func mustRetag(t *testing.T, ctx context.Context, from, tag string) {
	t.Helper()
	src, err := name.ParseReference(from, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(src, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devimage.Push(ctx, tag, img); err != nil {
		t.Fatal(err)
	}
}

// mustAttestVulnV2 writes what `cosign attest --type vuln --key` writes in
// its tag layout: an image tagged sha256-<hex>.att whose layer is a DSSE
// envelope over an in-toto statement with the Trivy report as the
// predicate's scanner.result.
func mustAttestVulnV2(t *testing.T, tagRef, digest string, key *ecdsa.PrivateKey, trivyJSON []byte) {
	t.Helper()
	repo, err := name.NewRepository(tagRef[:strings.LastIndex(tagRef, ":")], name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	statement := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://cosign.sigstore.dev/attestation/vuln/v1",
"subject":[{"name":%q,"digest":{"sha256":%q}}],
"predicate":{"invocation":{"parameters":null,"uri":"","event_id":"","builder.id":""},
"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.50.0","version":"0.50.0","db":{"uri":"","version":""},"result":%s},
"metadata":{"scanStartedOn":%q,"scanFinishedOn":%q}}}`, repo.Name(), strings.TrimPrefix(digest, "sha256:"), trivyJSON, now, now)
	payloadType := "application/vnd.in-toto+json"
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(statement), statement)
	sum := sha256.Sum256([]byte(pae))
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	envelope, _ := json.Marshal(map[string]any{
		"payloadType": payloadType,
		"payload":     base64.StdEncoding.EncodeToString([]byte(statement)),
		"signatures":  []map[string]string{{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:       static.NewLayer(envelope, "application/vnd.dsse.envelope.v1+json"),
		Annotations: map[string]string{"predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag(strings.Replace(digest, ":", "-", 1)+".att"), img); err != nil {
		t.Fatal(err)
	}
}

// The scan gate reads a signed vulnerability attestation when no report
// file is given.
func TestCLIScanGateReadsVulnAttestation(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err := os.WriteFile(filepath.Join(dir, "scanner.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	// The images of this test's tags are signed and attested with the key.
	pol := fmt.Sprintf("trust:\n  - match: %q\n    keys: [scanner.pub]\nscan: { mode: enforce, max_severity: high }\n", env.regAddr+"/e2e/*")
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, 0, "", "policy", "set", filepath.Join(dir, "policy.yaml"))
	ref := env.regAddr + "/e2e/webapp:attested"
	mustRetag(t, context.Background(), env.refs["v1"], ref)
	digest := env.digests["v1"]
	pinned := ref[:strings.LastIndex(ref, ":")] + "@" + digest
	mustSignCosignV2(t, ref, digest, key)

	report := func(sev ...string) []byte {
		data, err := os.ReadFile(trivyReport(t, dir, pinned, time.Now(), sev...))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	// An attested scan with a critical finding: refused, naming it.
	mustAttestVulnV2(t, ref, digest, key, report("CRITICAL"))
	r := mustCLI(t, s, 1, webSpec(ref, 1, ""), "apply", "-")
	if !strings.Contains(r.stderr, "CVE-2026-0001") {
		t.Fatalf("attested critical finding:\n%s", r.stderr)
	}
	// A clean report sent with the apply does not override it (issue 16,
	// finding 8).
	clean := filepath.Join(dir, "clean.json")
	if err := os.WriteFile(clean, report(), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mustCLI(t, s, 1, webSpec(ref, 1, ""), "apply", "-", "--scan-report", clean)
	if !strings.Contains(r.stderr, "CVE-2026-0001") || !strings.Contains(r.stderr, "was ignored") {
		t.Fatalf("attested critical finding with a clean report sent:\n%s", r.stderr)
	}
	// A newer, clean attested scan replaces it: admitted.
	mustAttestVulnV2(t, ref, digest, key, report("LOW"))
	mustCLI(t, s, 0, webSpec(ref, 1, ""), "apply", "-")
}

// Issue 16 finding 5: a seccomp profile weaker than Docker's default is
// refused at apply with nothing stored — the review's own profile by the
// CLI (its refusal rests on a made-up syscall), one that allows by default
// and one that adds keyctl by the server's policy check, each naming
// allow_seccomp_syscalls — and admitted once the policy lists keyctl.
func TestCLISeccompProfileWeakerThanDefault(t *testing.T) {
	s := mustStartServer(t)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 1, ""), "apply", "-")
	before := mustHistory(t, s, "web")
	dir := t.TempDir()
	profilePath := filepath.Join(dir, "profile.json")
	spec := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(spec, []byte(webSpec(env.refs["v1"], 1, "security: { seccomp: ./profile.json }\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	strict, err := seccompprofile.Strict()
	if err != nil {
		t.Fatal(err)
	}
	var withKeyctl map[string]any
	if err := json.Unmarshal(strict, &withKeyctl); err != nil {
		t.Fatal(err)
	}
	withKeyctl["syscalls"] = append(withKeyctl["syscalls"].([]any), map[string]any{"names": []string{"keyctl"}, "action": "SCMP_ACT_ALLOW"})
	keyctlProfile, err := json.Marshal(withKeyctl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		profile string
		code    int
		want    []string
	}{
		{"review profile", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]}`, 2,
			[]string{"security.seccomp", "not_a_syscall", "unknown syscall"}},
		{"allows by default", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}`, 1,
			[]string{"security.seccomp", "allow_seccomp_syscalls", "defaultAction SCMP_ACT_ALLOW"}},
		{"adds keyctl", string(keyctlProfile), 1,
			[]string{"security.seccomp", "allow_seccomp_syscalls", "keyctl (allowed unconditionally; the default refuses it)", "add keyctl to allow_seccomp_syscalls"}},
	} {
		if err := os.WriteFile(profilePath, []byte(tt.profile), 0o644); err != nil {
			t.Fatal(err)
		}
		r := mustCLI(t, s, tt.code, "", "apply", spec)
		for _, want := range tt.want {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s: refusal lacks %q:\n%s", tt.name, want, r.stderr)
			}
		}
		if after := mustHistory(t, s, "web"); len(after) != len(before) {
			t.Fatalf("%s: a refused apply stored a revision: %+v", tt.name, after)
		}
	}
	// The policy lists keyctl: the same profile is admitted and runs.
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("allow_seccomp_syscalls: [keyctl]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, 0, "", "policy", "set", filepath.Join(dir, "policy.yaml"))
	mustCLI(t, s, 0, "", "apply", spec)
	if after := mustHistory(t, s, "web"); len(after) != len(before)+1 {
		t.Fatalf("admitted apply: history %+v", after)
	}
	for id := range currentContainerIDs(mustStatus(t, s, "web")) {
		c, err := env.docker.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(c.HostConfig.SecurityOpt, func(o string) bool { return strings.HasPrefix(o, "seccomp={") && strings.Contains(o, `"keyctl"`) }) {
			t.Fatalf("container %s runs without the admitted profile: %v", id[:12], c.HostConfig.SecurityOpt)
		}
	}
}

// A seccomp profile file named by the spec is read by the CLI, checked,
// stored in the revision and passed inline to the engine.
func TestCLISeccompProfileFile(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	dir := t.TempDir()
	profile, err := seccompprofile.Strict()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "profile.json"), profile, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(spec, []byte(webSpec(env.refs["v1"], 1, "security: { seccomp: ./profile.json }\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, 0, "", "apply", spec)
	for id := range currentContainerIDs(mustStatus(t, s, "web")) {
		c, err := env.docker.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(c.HostConfig.SecurityOpt, func(o string) bool { return strings.HasPrefix(o, "seccomp={") }) {
			t.Fatalf("container %s runs without the profile: %v", id[:12], c.HostConfig.SecurityOpt)
		}
	}
	// A broken profile is refused by the CLI before anything is sent.
	if err := os.WriteFile(filepath.Join(dir, "profile.json"), []byte(`{"defaultAction": "SCMP_ACT_NOPE"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustCLI(t, s, 2, "", "apply", spec)
	if !strings.Contains(r.stderr, "security.seccomp") {
		t.Fatalf("broken profile: %s", r.stderr)
	}
}

// A rollback passes today's policy (issue 16, finding 9): revision 1 runs
// with pid: host while the policy allows it; once the policy no longer
// does, neither the automatic rollback of a broken release nor `rollback
// --to 1` brings it back.
func TestCLIRollbackPassesTodaysPolicy(t *testing.T) {
	s := mustStartServer(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	withHostPID := func(spec string) string {
		return strings.Replace(spec, "stop_grace_period: 1s\n", "stop_grace_period: 1s\npid: host\n", 1)
	}
	mustCLI(t, s, 0, "", "policy", "set", write("open.yaml", "allow_host_pid: true\n"))
	mustCLI(t, s, 0, withHostPID(webSpec(env.refs["v1"], 1, "")), "apply", "-")
	v1IDs := currentContainerIDs(mustStatus(t, s, "web"))
	mustCLI(t, s, 0, "", "policy", "set", write("closed.yaml", "{}\n"))

	// Automatic: the broken release fails and stays failed, exit 4, with
	// the reason; nothing of revision 1 is started.
	r := mustCLI(t, s, 4, webSpec(env.refs["broken"], 1, ""), "apply", "-")
	for _, want := range []string{"no automatic rollback", "revision 1", "pid", "allow_host_pid"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("refused automatic rollback lacks %q:\n%s\n%s", want, r.stdout, r.stderr)
		}
	}
	h := mustHistory(t, s, "web")
	if len(h) != 2 || h[1].State != "failed" {
		t.Fatalf("history after the refused automatic rollback: %+v", h)
	}
	// The pid: host container admitted yesterday keeps running (a failed
	// release does not become an outage); no other was started.
	running := runningContainers(t, s.hostID)
	for id := range v1IDs {
		if !running[id] {
			t.Errorf("revision 1 container %s was stopped", id)
		}
	}
	if st := mustStatus(t, s, "web"); st.State != "failed" || len(currentContainerIDs(st)) > 1 {
		t.Fatalf("status after the refused automatic rollback: %+v", st)
	}

	// Manual: refused with the violation, nothing stored.
	r = mustCLI(t, s, 1, "", "rollback", "web", "--to", "1")
	for _, want := range []string{"pid", "allow_host_pid", "revision 1"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("refused rollback lacks %q:\n%s", want, r.stderr)
		}
	}
	if after := mustHistory(t, s, "web"); len(after) != 2 {
		t.Fatalf("a refused rollback changed history: %+v", after)
	}
	// A compliant release is the way out.
	mustCLI(t, s, 0, webSpec(env.refs["v11"], 1, ""), "apply", "-")
}
