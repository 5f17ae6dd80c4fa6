// Command deployctl-demo runs the main job of deployctl end to end on this
// machine, with nothing but Go and a Docker Engine:
//
//  1. build the example app (examples/webapp) into an image FROM scratch,
//     and a broken variant of it (its /healthz answers 500);
//  2. serve both from a registry on 127.0.0.1 (in this process);
//  3. build deployctl and start a dev server (a real child process);
//  4. deploy v1 with 3 replicas, then apply the broken v2 and watch the
//     automatic rollback, through the CLI as a user would;
//  5. remove the service, stop the server and clean up what it created.
//
// It exits non-zero if any step does not behave as the README says.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/deployer/firewall"
	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/internal/dockerclean"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

type demo struct {
	work    string // temp dir: binary, specs, logs
	bin     string
	addr    string
	regAddr string
	network string
	hostID  string
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(ctx context.Context) error {
	work, err := os.MkdirTemp("", "deployctl-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	suffix := fmt.Sprintf("%d", os.Getpid())
	d := &demo{work: work, network: "deployctl-demo-" + suffix, hostID: "demo-host-" + suffix}

	step("building deployctl")
	d.bin = filepath.Join(work, "deployctl")
	if err := runCmd(ctx, os.Stdout, "go", "build", "-o", d.bin, "./cmd/deployctl"); err != nil {
		return fmt.Errorf("build deployctl (run the demo from the repository root): %w", err)
	}

	step("building examples/webapp into an image FROM scratch (no docker build, no pull)")
	img, err := devimage.BuildGoImage(ctx, devimage.GoImageOptions{PackageDir: "./examples/webapp", Env: []string{"WEBAPP_VERSION=v1"}, ExposedPorts: []string{"8080/tcp"}})
	if err != nil {
		return err
	}
	broken, err := devimage.WithEnv(img, "WEBAPP_VERSION=v2", "WEBAPP_BROKEN=1")
	if err != nil {
		return err
	}

	reg, err := devimage.StartRegistry("127.0.0.1:0", hclog.NewNullLogger())
	if err != nil {
		return err
	}
	defer reg.Close()
	d.regAddr = reg.Addr()
	v1Ref, v2Ref := d.regAddr+"/demo/webapp:v1", d.regAddr+"/demo/webapp:v2"
	dg1, err := devimage.Push(ctx, v1Ref, img)
	if err != nil {
		return err
	}
	dg2, err := devimage.Push(ctx, v2Ref, broken)
	if err != nil {
		return err
	}
	fmt.Printf("registry on %s serves\n  %s = %s\n  %s = %s (healthz answers 500)\n", d.regAddr, v1Ref, dg1, v2Ref, dg2)
	defer d.removePulledImages()

	step("starting a dev server (single node: raft, API, agent for the local Docker Engine)")
	srv, err := d.startServer(ctx)
	if err != nil {
		return err
	}
	defer d.stopServer(srv)
	defer d.removeHostObjects()

	webV1 := filepath.Join(work, "web.yaml")
	webV2 := filepath.Join(work, "web-broken.yaml")
	if err := os.WriteFile(webV1, []byte(spec(v1Ref)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(webV2, []byte(spec(v2Ref)), 0o644); err != nil {
		return err
	}
	fmt.Printf("web.yaml:\n%s", indent(spec(v1Ref)))

	step("deployctl apply web.yaml   (v1, 3 replicas; waits until all are healthy)")
	if code := d.cli(ctx, "apply", webV1); code != 0 {
		return fmt.Errorf("apply v1 exited %d, want 0", code)
	}
	step("deployctl status web")
	d.cli(ctx, "status", "web")

	step("deployctl apply web-broken.yaml   (v2 fails its health check: expect an automatic rollback, exit 3)")
	if code := d.cli(ctx, "apply", webV2); code != 3 {
		return fmt.Errorf("apply broken v2 exited %d, want 3 (rolled back)", code)
	}
	step("deployctl status web   (v1's digest again, 3 healthy)")
	if code := d.cli(ctx, "status", "web"); code != 0 {
		return fmt.Errorf("status exited %d", code)
	}
	step("deployctl history web")
	d.cli(ctx, "history", "web")

	step("deployctl rm web")
	if code := d.cli(ctx, "rm", "web"); code != 0 {
		return fmt.Errorf("rm exited %d, want 0", code)
	}
	step("demo done: v1 deployed, broken v2 rolled back automatically, service removed; cleaning up")
	return nil
}

func spec(image string) string {
	return fmt.Sprintf(`service: web
image: %s
replicas: 3
env: { WEBAPP_GREETING: hello }
resources: { cpus: 0.25, memory: 64M, pids: 64 }
healthcheck:
  http: { path: /healthz, port: 8080 }
  interval: 1s
  timeout: 1s
  retries: 2
update:
  parallelism: 1
  order: start-first
  monitor: 2s
  failure_action: rollback
  progress_deadline: 1m
stop_grace_period: 2s
`, image)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

func runCmd(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	return cmd.Run()
}

// cli runs the built deployctl against the demo server and returns its exit code.
func (d *demo) cli(ctx context.Context, args ...string) int {
	fmt.Printf("$ deployctl %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, d.bin, append([]string{"--addr", d.addr}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		fmt.Println("(exit 0)")
		return 0
	case errors.As(err, &ee):
		fmt.Printf("(exit %d)\n", ee.ExitCode())
		return ee.ExitCode()
	}
	fmt.Println("(could not run:", err, ")")
	return -1
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// serverProc is the dev server child process; done closes when it exits.
type serverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (d *demo) startServer(ctx context.Context) (*serverProc, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	raftAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	d.addr = httpAddr
	logPath := filepath.Join(d.work, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(d.bin, "server", "--dev", "--node-id", "demo", "--host-id", d.hostID,
		"--http-addr", httpAddr, "--raft-addr", raftAddr, "--network", d.network, "--data-dir", filepath.Join(d.work, "data"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	proc := &serverProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logFile.Close(); close(proc.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		probe := exec.CommandContext(ctx, d.bin, "--addr", d.addr, "cluster", "status", "-o", "json")
		if out, err := probe.Output(); err == nil && strings.Contains(string(out), `"leader": "demo"`) {
			fmt.Printf("server pid %d on %s (log: server.log in the demo's temp dir)\n", cmd.Process.Pid, d.addr)
			return proc, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.stopServer(proc)
	log, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("dev server did not become ready in 30s; its log:\n%s", log)
}

// stopServer ends the server this demo started, by its PID.
func (d *demo) stopServer(p *serverProc) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func dockerClient() (*client.Client, error) {
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}

// removeHostObjects removes the demo's containers and its service networks,
// which its agent created (by the demo host's label).
func (d *demo) removeHostObjects() {
	cli, err := dockerClient()
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dockerclean.HostObjects(ctx, cli, d.hostID, d.network)
	if err := firewall.Remove(ctx, deployer.FirewallID(d.hostID)); err != nil {
		fmt.Fprintf(os.Stderr, "demo: removing the packet rules of host %s: %v\n", d.hostID, err)
	}
}

// removePulledImages removes the images the engine pulled from the demo's
// registry.
func (d *demo) removePulledImages() {
	cli, err := dockerClient()
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dockerclean.RegistryImages(ctx, cli, d.regAddr)
}
