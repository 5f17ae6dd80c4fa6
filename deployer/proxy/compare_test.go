//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The settings of issue 8's comparison: wrk's closed loop, then an open
// loop at a steady rate, in rounds.
const (
	caddyVersion   = "v2.11.9"
	wrkThreads     = 2
	wrkConns       = 50
	wrkWarm        = 2 * time.Second
	wrkDuration    = 10 * time.Second
	steadyRate     = 1000 // requests per second
	steadyWarm     = 2 * time.Second
	steadyDuration = 10 * time.Second
	// steadyWorkers bounds the requests in flight of the open loop; at
	// 1,000 req/s and sub-millisecond answers one or two are busy, so the
	// schedule never waits for a free worker unless a path stalls.
	steadyWorkers = 64
	// defaultRounds: every path is measured this many times, the paths
	// taking turns, so that other work on a shared machine lands on all of
	// them alike rather than on whichever ran at that moment
	// ($DEPLOYCTL_BENCH_PROXY_ROUNDS overrides it).
	defaultRounds = 3
)

// TestCompareProxies is issue 8's proxy benchmark: requests/s and p50/p99
// straight to one backend, through nginx, through Caddy and through
// deployctl's proxy to the same 4 backends, with wrk (2 threads, 50
// keep-alive connections), then p50/p99 at a steady 1,000 req/s. It prints
// a markdown table (and writes it to $DEPLOYCTL_BENCH_PROXY_OUT) and
// asserts nothing about speed: the numbers go in the README.
//
// The backends are 4 Go HTTP servers in one process of their own
// (internal/proxybench), not containers: every hop stays on loopback (a
// container's bridge address is not), no docker-proxy or NAT sits in one
// path and not in another, and the backends share neither heap nor garbage
// collector with any proxy. deployctl's proxy runs in a process of its own
// too (the same helper), like nginx and Caddy.
//
// It needs wrk, nginx and a Go toolchain (Caddy is built once per run with
// go install unless one is on PATH); `make bench-proxy` installs wrk and
// nginx-light from Debian when missing.
func TestCompareProxies(t *testing.T) {
	if os.Getenv("DEPLOYCTL_BENCH_PROXY") != "1" {
		t.Skip("the wrk/nginx/Caddy comparison runs with DEPLOYCTL_BENCH_PROXY=1 (make bench-proxy)")
	}
	rounds := defaultRounds
	if v := os.Getenv("DEPLOYCTL_BENCH_PROXY_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DEPLOYCTL_BENCH_PROXY_ROUNDS=%q: want a number ≥ 1", v)
		}
		rounds = n
	}
	wrk := lookTool(t, "wrk", "apt-get install -y wrk")
	nginx := lookTool(t, "nginx", "apt-get install -y nginx-light")
	dir := t.TempDir()
	helper := buildHelper(t, dir)
	caddy, caddyVer := caddyBinary(t, dir)

	backends := startChild(t, "backends", helper, "backends", "-n", "4")
	if len(backends.addrs) != 4 {
		t.Fatalf("backends: want 4 addresses, got %q", backends.addrs)
	}
	proxyArgs := []string{"proxy", "-targets", strings.Join(backends.addrs, ",")}
	if prof := os.Getenv("DEPLOYCTL_BENCH_PROXY_CPUPROFILE"); prof != "" {
		proxyArgs = append(proxyArgs, "-cpuprofile", prof)
	}
	// Every proxy runs for the whole test (an idle one costs nothing
	// measurable), so the rounds can take turns.
	paths := []*benchPath{
		{name: "direct to one backend"},
		{name: "nginx " + toolVersion(nginx, "-v"), px: startNginx(t, nginx, backends.addrs)},
		{name: "Caddy " + caddyVer, px: startCaddy(t, caddy, backends.addrs)},
		{name: "deployctl proxy", deployctl: true, px: startChild(t, "deployctl proxy", helper, proxyArgs...)},
	}
	for _, p := range paths {
		p.url = "http://" + backends.addrs[0] + "/"
		if p.px != nil {
			p.url = "http://" + p.px.addrs[0] + "/"
		}
		waitOK(t, p.url, p.px)
		if _, err := runWrk(wrk, p.url, wrkWarm); err != nil {
			t.Fatalf("%s: warm-up: %v", p.name, err)
		}
	}
	ours := []*child{backends}
	for _, p := range paths {
		if p.px != nil {
			ours = append(ours, p.px)
		}
	}
	load0 := loadAverage()
	var others []float64 // the share of the machine other processes took during each wrk run
	for round := 1; round <= rounds; round++ {
		for _, p := range paths {
			cpu0 := p.px.cpu(t)
			busy0, own0, start := machineBusy(t), ownCPU(t, ours), time.Now()
			res, err := runWrk(wrk, p.url, wrkDuration)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			// Clock ticks make it a little negative on a quiet machine.
			other := max(0, float64(machineBusy(t)-busy0-(ownCPU(t, ours)-own0))/float64(time.Since(start)*time.Duration(runtime.NumCPU())))
			others = append(others, other)
			p.wrk = append(p.wrk, res)
			if p.px != nil && res.requests > 0 {
				p.cpu = append(p.cpu, (p.px.cpu(t)-cpu0)/time.Duration(res.requests))
			}
			t.Logf("round %d, %s: wrk %.0f req/s, p50 %v, p99 %v; other processes took %.0f%% of the machine", round, p.name, res.rps, res.p50, res.p99, 100*other)
		}
		for _, p := range paths {
			st, err := runSteady(p.url, steadyRate, steadyWarm, steadyDuration)
			if err != nil {
				t.Fatalf("%s: open loop: %v", p.name, err)
			}
			p.latency = append(p.latency, st.latency...)
			p.lag = append(p.lag, st.lag...)
			p.errors += st.errors
			lat := slices.Sorted(slices.Values(st.latency))
			t.Logf("round %d, %s: open loop at %d req/s: p50 %v, p99 %v, %d errors", round, p.name, steadyRate, percentile(lat, 0.50), percentile(lat, 0.99), st.errors)
		}
	}
	for _, p := range paths {
		if p.errors > 0 {
			t.Errorf("%s: %d requests of the open loop failed", p.name, p.errors)
		}
		lag := slices.Sorted(slices.Values(p.lag))
		t.Logf("%s: the open loop's p99 lag behind its schedule %v (timer wake-ups)", p.name, percentile(lag, 0.99))
	}
	report := compareReport(paths, rounds) + fmt.Sprintf("Other processes on the machine took %.0f%% of its CPU during the median wrk run (%.0f–%.0f%%); load average %s before the run.\n",
		100*median(others), 100*slices.Min(others), 100*slices.Max(others), load0)
	t.Log("\n" + report)
	if out := os.Getenv("DEPLOYCTL_BENCH_PROXY_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Errorf("write %s: %v", out, err)
		}
	}
}

// benchPath is one way to the backends and what it measured.
type benchPath struct {
	name      string
	deployctl bool
	px        *child // the proxy; nil: straight to a backend
	url       string
	wrk       []wrkResult     // one per round
	cpu       []time.Duration // the proxy's CPU time (all its processes) per request, one per round
	latency   []time.Duration // every answered request of the open loops
	lag       []time.Duration // how late each open-loop request left
	errors    int
}

// summary is a path's numbers in the report: the median round of wrk's,
// and the percentiles of every open-loop request of all rounds.
type summary struct {
	rps, minRPS, maxRPS float64
	p50, p99, cpu       time.Duration
	open50, open99      time.Duration
}

func (p *benchPath) summary() summary {
	rps := make([]float64, len(p.wrk))
	var p50, p99 []time.Duration
	for i, w := range p.wrk {
		rps[i] = w.rps
		p50, p99 = append(p50, w.p50), append(p99, w.p99)
	}
	lat := slices.Sorted(slices.Values(p.latency))
	s := summary{rps: median(rps), minRPS: slices.Min(rps), maxRPS: slices.Max(rps), p50: median(p50), p99: median(p99),
		open50: percentile(lat, 0.50), open99: percentile(lat, 0.99)}
	if len(p.cpu) > 0 {
		s.cpu = median(p.cpu)
	}
	return s
}

func compareReport(paths []*benchPath, rounds int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d cores, %s, every process on one machine over loopback; %d rounds, the paths taking turns: wrk -t%d -c%d -d%s --latency (median round, req/s range), then an open loop at %d req/s for %s (percentiles of all rounds' requests).\n\n",
		runtime.NumCPU(), runtime.Version(), rounds, wrkThreads, wrkConns, wrkDuration, steadyRate, steadyDuration)
	b.WriteString("| path | req/s | (range) | p50 | p99 | proxy CPU per request | p50 at 1,000 req/s | p99 at 1,000 req/s | added at 1,000 req/s (p50 / p99) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	direct := paths[0].summary()
	var nginx, caddy, deployctl *benchPath
	for i, p := range paths {
		s := p.summary()
		cpu, added := "–", "–"
		if s.cpu > 0 {
			cpu = fmtDur(s.cpu)
		}
		if i > 0 {
			added = signed(s.open50-direct.open50) + " / " + signed(s.open99-direct.open99)
		}
		fmt.Fprintf(&b, "| %s | %s | %s–%s | %s | %s | %s | %s | %s | %s |\n", p.name, fmtRate(s.rps), fmtRate(s.minRPS), fmtRate(s.maxRPS),
			fmtDur(s.p50), fmtDur(s.p99), cpu, fmtDur(s.open50), fmtDur(s.open99), added)
		switch {
		case p.deployctl:
			deployctl = p
		case strings.HasPrefix(p.name, "nginx"):
			nginx = p
		case strings.HasPrefix(p.name, "Caddy"):
			caddy = p
		}
	}
	b.WriteString("\n")
	for _, peer := range []*benchPath{caddy, nginx} {
		var each []string
		for i := range deployctl.wrk {
			each = append(each, strconv.FormatFloat(deployctl.wrk[i].rps/peer.wrk[i].rps, 'f', 2, 64))
		}
		fmt.Fprintf(&b, "deployctl / %s: %.2f× the requests/s (medians; round by round %s).\n", strings.Fields(peer.name)[0],
			deployctl.summary().rps/peer.summary().rps, strings.Join(each, ", "))
	}
	d := deployctl.summary()
	addP50, addP99 := d.open50-direct.open50, d.open99-direct.open99
	fmt.Fprintf(&b, "deployctl at %d req/s adds %s at p50 (target ≤ 0.3 ms: %s) and %s at p99 (target ≤ 2 ms: %s).\n",
		steadyRate, signed(addP50), met(addP50 <= 300*time.Microsecond), signed(addP99), met(addP99 <= 2*time.Millisecond))
	return b.String()
}

// median of a non-empty list; the mean of the middle two for an even count.
func median[T float64 | time.Duration](v []T) T {
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func signed(d time.Duration) string {
	if d < 0 {
		return "−" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func fmtRate(r float64) string {
	s := strconv.FormatFloat(math.Round(r), 'f', 0, 64)
	if len(s) > 3 {
		s = s[:len(s)-3] + "," + s[len(s)-3:]
	}
	return s
}

// fmtDur prints µs below a millisecond and ms with two decimals above.
func fmtDur(d time.Duration) string {
	if d < time.Millisecond && d > -time.Millisecond {
		return strconv.FormatInt(d.Microseconds(), 10) + " µs"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}

func lookTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%s; make bench-proxy installs it)", name, install)
	}
	return p
}

// toolVersion is the first line a tool prints about its version, trimmed
// to the version itself where it says more.
func toolVersion(bin, arg string) string {
	out, _ := exec.Command(bin, arg).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	line = strings.TrimPrefix(line, "nginx version: nginx/")
	v, _, _ := strings.Cut(line, " ")
	return v
}

// buildHelper builds internal/proxybench, the process that runs the
// backends and deployctl's proxy; a built binary (not go run) so that the
// PID the test kills is the server's own.
func buildHelper(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "proxybench")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "github.com/deployctl/deployctl/internal/proxybench")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build proxybench: %v\n%s", err, out)
	}
	return bin
}

// goTool is the go command: go test puts its own toolchain's first on PATH.
func goTool() string { return "go" }

// caddyBinary is a caddy found on PATH, or one built with go install from
// the module proxy into the run's temporary directory (the Go build cache
// makes every build after the first a link), and its version. A caddy
// built by go install says "unknown" to `caddy version`, so the version
// asked for is the one reported.
func caddyBinary(t *testing.T, dir string) (string, string) {
	t.Helper()
	if p, err := exec.LookPath("caddy"); err == nil {
		return p, toolVersion(p, "version") + " (from PATH)"
	}
	gobin := filepath.Join(dir, "gobin")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "install", "github.com/caddyserver/caddy/v2/cmd/caddy@"+caddyVersion)
	cmd.Dir = dir // outside this module: go install pkg@version ignores it anyway
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	t.Logf("building Caddy %s with go install (minutes the first time)", caddyVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install caddy: %v\n%s", err, out)
	}
	return filepath.Join(gobin, "caddy"), caddyVersion
}

// child is a process the test started: it is killed by its PID when the
// test ends (or earlier by stop), and it dies with the test process
// (Pdeathsig) if the test is killed.
type child struct {
	name   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	addrs  []string // what it serves: the "ready" line, or the address given to it
	done   chan error
	once   sync.Once
}

// syncBuffer lets the child's stderr be written by exec's copier while
// the test reads it after a failure.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// spawn starts a process; the caller waits for it to serve.
func spawn(t *testing.T, name string, env []string, bin string, args ...string) (*child, io.Reader) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	c := &child{name: name, cmd: cmd, stderr: stderr, done: make(chan error, 1)}
	// Wait only after stdout is read to the end (exec's rule for
	// StdoutPipe); the reader below or a drain does that.
	t.Cleanup(func() { c.stop(t) })
	return c, stdout
}

// startChild starts a proxybench command and waits for its "ready" line.
func startChild(t *testing.T, name, bin string, args ...string) *child {
	t.Helper()
	c, stdout := spawn(t, name, nil, bin, args...)
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, r)
		c.done <- c.cmd.Wait()
	}()
	select {
	case line := <-lines:
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "ready" {
			t.Fatalf("%s: no ready line (got %q); stderr:\n%s", name, line, c.stderr)
		}
		c.addrs = f[1:]
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not ready after 30 s; stderr:\n%s", name, c.stderr)
	}
	return c
}

// startServer starts a server that prints nothing when ready (nginx,
// Caddy) on addr; the caller waits for addr to answer.
func startServer(t *testing.T, name, addr string, env []string, bin string, args ...string) *child {
	t.Helper()
	c, stdout := spawn(t, name, env, bin, args...)
	c.addrs = []string{addr}
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		c.done <- c.cmd.Wait()
	}()
	return c
}

// stop ends the process by its PID: SIGTERM (the deployctl helper writes
// its CPU profile then, nginx shuts down fast, Caddy stops), SIGKILL if
// it is still there after 10 s.
func (c *child) stop(t *testing.T) {
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Logf("%s (pid %d) ignored SIGTERM for 10 s; killing it", c.name, c.cmd.Process.Pid)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
}

// cpu is the user and system CPU time of the process and its children
// (nginx's workers) so far; 0 for no process.
func (c *child) cpu(t *testing.T) time.Duration {
	if c == nil {
		return 0
	}
	pid := c.cmd.Process.Pid
	total, _, err := procCPU(pid)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("read /proc: %v", err)
	}
	for _, e := range entries {
		other, err := strconv.Atoi(e.Name())
		if err != nil || other == pid {
			continue
		}
		if d, ppid, err := procCPU(other); err == nil && ppid == pid {
			total += d
		}
	}
	return total
}

// machineBusy is the CPU time every core spent on anything but idling
// and waiting for I/O, from /proc/stat (stolen time counts: the machine
// did not get it).
func machineBusy(t *testing.T) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatalf("read /proc/stat: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// ownCPU is the CPU time of this benchmark: the test process, the children
// it has waited for (wrk runs) and the ones still running.
func ownCPU(t *testing.T, running []*child) time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			t.Fatalf("getrusage: %v", err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, c := range running {
		total += c.cpu(t)
	}
	return total
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// procCPU reads utime+stime and the parent of a process from
// /proc/PID/stat (in clock ticks, 100 per second on Linux).
func procCPU(pid int) (time.Duration, int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("cpu of pid %d: short stat line", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, ppid, nil
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// waitOK waits until url, served by c (nil: a backend), answers 200.
func waitOK(t *testing.T, url string, c *child) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	var stderr string
	if c != nil {
		stderr = c.stderr.String()
	}
	t.Fatalf("%s did not answer 200 within 30 s: %s; stderr:\n%s", url, last, stderr)
}

// startNginx runs Debian's nginx in the foreground on a generated
// configuration: 4 upstreams with keep-alive to them, least_conn (like
// deployctl's least outstanding), one worker per core, no access log, and
// the same forwarding headers deployctl sets (Host, X-Forwarded-*), so that
// each proxy does the same work. keepalive_requests is raised on both
// sides: its default (1,000) would make nginx alone reconnect every 1,000
// requests.
func startNginx(t *testing.T, bin string, upstreams []string) *child {
	t.Helper()
	prefix := t.TempDir()
	addr := freeLoopbackAddr(t)
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "    server %s;\n", u)
	}
	conf := fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000;
  upstream backends {
    least_conn;
%[2]s    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`, prefix, servers.String(), addr)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServer(t, "nginx", addr, nil, bin, "-p", prefix, "-c", confPath, "-g", "daemon off;")
}

// startCaddy runs Caddy on a JSON configuration: reverse_proxy to the 4
// upstreams, least_conn, admin endpoint off, no automatic HTTPS, errors
// only in its log; HOME and the XDG directories point into a temporary
// directory so that it writes nothing elsewhere.
func startCaddy(t *testing.T, bin string, upstreams []string) *child {
	t.Helper()
	dir := t.TempDir()
	addr := freeLoopbackAddr(t)
	var ups []map[string]string
	for _, u := range upstreams {
		ups = append(ups, map[string]string{"dial": u})
	}
	conf := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"bench": map[string]any{
			"listen":          []string{addr},
			"automatic_https": map[string]any{"disable": true},
			"routes": []any{map[string]any{"handle": []any{map[string]any{
				"handler":        "reverse_proxy",
				"upstreams":      ups,
				"load_balancing": map[string]any{"selection_policy": map[string]any{"policy": "least_conn"}},
			}}}},
		}}}},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(confPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
	return startServer(t, "caddy", addr, env, bin, "run", "--config", confPath)
}

// wrkResult is what wrk measured.
type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	requests int64
}

func runWrk(bin, url string, d time.Duration) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-t"+strconv.Itoa(wrkThreads), "-c"+strconv.Itoa(wrkConns), "-d"+strconv.Itoa(int(d.Seconds()))+"s", "--latency", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkResult, error) {
	wrkLatency := regexp.MustCompile(`(?m)^\s*(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkRate := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkRequests := regexp.MustCompile(`(?m)^\s*([0-9]+) requests in`)
	wrkBad := regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)|Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	var r wrkResult
	for _, m := range wrkBad.FindAllStringSubmatch(out, -1) {
		for _, n := range m[1:] {
			if n != "" && n != "0" {
				return r, fmt.Errorf("wrk saw failures: %q\n%s", m[0], out)
			}
		}
	}
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("no latency distribution in wrk's output:\n%s", out)
	}
	return r, nil
}

// steadyResult is what the open loop measured after its warm-up.
type steadyResult struct {
	latency []time.Duration // of each answered request
	// lag is how late each request left after its scheduled time (timer
	// wake-ups of the generator, or no free worker): the rate holds over
	// the run, not within every millisecond.
	lag    []time.Duration
	errors int
}

// runSteady is an open-loop load generator, wrk2- and vegeta-like: request
// i is due at start + i/rate whatever happened to the earlier ones, so a
// slow answer does not slow the load. A request's latency is from the
// moment it is sent to the end of its body; the sends scheduled in the
// first warm are not counted. Every latency is kept (10,000 a run), so
// the percentiles are exact.
func runSteady(url string, rate int, warm, d time.Duration) (steadyResult, error) {
	transport := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: steadyWorkers, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 5 * time.Second}
	interval := time.Second / time.Duration(rate)
	total := int((warm + d) / interval)
	skip := int(warm / interval)

	type sample struct {
		latency, lag time.Duration
		err          bool
	}
	due := make(chan int, rate)
	samples := make([]sample, total)
	start := time.Now()
	var wg sync.WaitGroup
	for range steadyWorkers {
		wg.Go(func() {
			for i := range due {
				sent := time.Now()
				s := sample{lag: sent.Sub(start.Add(time.Duration(i) * interval))}
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = errors.New(resp.Status)
					}
				}
				s.latency, s.err = time.Since(sent), err != nil
				samples[i] = s // each index is written by one worker only
			}
		})
	}
	for i := range total {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		due <- i
	}
	close(due)
	wg.Wait()

	var r steadyResult
	for _, s := range samples[skip:] {
		r.lag = append(r.lag, s.lag)
		if s.err {
			r.errors++
			continue
		}
		r.latency = append(r.latency, s.latency)
	}
	if len(r.latency) == 0 {
		return r, errors.New("no request succeeded")
	}
	return r, nil
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}
