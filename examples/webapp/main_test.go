package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runMainEnv makes the test binary run main() instead of the tests, so the
// crash and signal behaviour is tested on a real process.
const runMainEnv = "WEBAPP_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return listener
}

// startServe runs serve on a loopback listener and returns its base URL and
// a function that stops it and returns serve's error.
func startServe(t *testing.T, version string, broken bool) (string, func() error) {
	t.Helper()
	listener := mustListen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, listener, behaviour{version: version, broken: broken}) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + listener.Addr().String(), stop
}

func mustGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		name       string
		broken     bool
		path       string
		wantStatus int
		wantBody   string
	}{
		{"healthy healthz", false, "/healthz", http.StatusOK, "ok\n"},
		{"broken healthz", true, "/healthz", http.StatusInternalServerError, "broken (WEBAPP_BROKEN=1)\n"},
		{"root names the version", false, "/", http.StatusOK, "webapp v7\n"},
		{"root works when broken", true, "/", http.StatusOK, "webapp v7\n"},
		{"unknown path", false, "/nope", http.StatusNotFound, "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, _ := startServe(t, "v7", tt.broken)
			status, body := mustGet(t, base+tt.path)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestWarmup(t *testing.T) {
	tests := []struct {
		name      string
		warmUntil time.Time
		want      int
	}{
		{"warming up answers 503", time.Now().Add(time.Hour), http.StatusServiceUnavailable},
		{"warm answers 200", time.Now().Add(-time.Millisecond), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			newHandler(behaviour{version: "v1", warmUntil: tt.warmUntil}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			if rec.Code != tt.want {
				t.Errorf("GET /healthz = %d %q, want %d", rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}

func TestServeStopsGracefully(t *testing.T) {
	base, stop := startServe(t, "v1", false)
	if status, _ := mustGet(t, base+"/healthz"); status != http.StatusOK {
		t.Fatalf("healthz = %d before stop", status)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after cancel, want nil", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("GET after shutdown succeeded, want connection refused")
	}
}

func TestCheckMode(t *testing.T) {
	tests := []struct {
		name   string
		broken bool
		want   int
	}{
		{"passes on a healthy server", false, 0},
		{"fails on a broken server", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, _ := startServe(t, "v1", tt.broken)
			_, port, err := net.SplitHostPort(base[len("http://"):])
			if err != nil {
				t.Fatal(err)
			}
			if got := runCheck(port); got != tt.want {
				t.Errorf("runCheck = %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("fails when nothing listens", func(t *testing.T) {
		listener := mustListen(t)
		port := strconv.Itoa(listener.Addr().(*net.TCPAddr).Port)
		listener.Close()
		if got := runCheck(port); got != 1 {
			t.Errorf("runCheck = %d, want 1", got)
		}
	})
}

// mainProcess starts the test binary as the webapp with extra env.
func mainProcess(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{runMainEnv + "=1"}, env...)...)
	return cmd
}

func TestCrashExitsWithCodeOne(t *testing.T) {
	err := mainProcess(t, "WEBAPP_CRASH=1", "PORT=0").Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("run with WEBAPP_CRASH=1: %v, want exit status 1", err)
	}
}

func TestSIGTERMExitsCleanly(t *testing.T) {
	listener := mustListen(t)
	port := strconv.Itoa(listener.Addr().(*net.TCPAddr).Port)
	listener.Close()

	cmd := mainProcess(t, "PORT="+port)
	logs, logWriter, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd.Stderr = logWriter
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logWriter.Close() // the child holds its own copy
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// The first log line says the server listens: after it a SIGTERM must
	// reach the handler, not the default action.
	if _, err := bufio.NewReader(logs).ReadString('\n'); err != nil {
		t.Fatalf("read first log line: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("webapp after SIGTERM: %v, want exit status 0", err)
	}
}

// The client modes tests run inside containers: their exit codes say what
// happened (0 answered 2xx or connected, 3 answered another status, 1 no
// answer or no name).
func TestClientModes(t *testing.T) {
	base, _ := startServe(t, "v9", true)
	if got := runFetch(base + "/"); got != 0 {
		t.Errorf("fetch / = %d, want 0", got)
	}
	if got := runFetch(base + "/healthz"); got != 3 {
		t.Errorf("fetch of a failing /healthz = %d, want 3", got)
	}
	closed := mustListen(t)
	addr := closed.Addr().String()
	closed.Close()
	if got := runFetch("http://" + addr + "/"); got != 1 {
		t.Errorf("fetch with nothing listening = %d, want 1", got)
	}
	if got := runDial(base[len("http://"):]); got != 0 {
		t.Errorf("dial of a listener = %d, want 0", got)
	}
	if got := runDial(addr); got != 1 {
		t.Errorf("dial with nothing listening = %d, want 1", got)
	}
	if got := runFetchRepeat(base+"/", 100*time.Millisecond); got != 0 {
		t.Errorf("repeated fetch of / = %d, want 0", got)
	}
	if got := runFetchRepeat(base+"/healthz", 50*time.Millisecond); got != 3 {
		t.Errorf("repeated fetch of a failing /healthz = %d, want 3", got)
	}
	if got := runResolve("localhost"); got != 0 {
		t.Errorf("resolve localhost = %d, want 0", got)
	}
	if got := runResolve("no-such-name.invalid"); got != 1 {
		t.Errorf("resolve of an .invalid name = %d, want 1", got)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{ms(5), 0.5, 5 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.99, 4 * time.Millisecond},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 0.9, 9 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
		}
	}
}

func TestFailEveryAndDelay(t *testing.T) {
	h := newHandler(behaviour{version: "v2", failEvery: 2, delay: 20 * time.Millisecond})
	var codes []int
	start := time.Now()
	for range 4 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		codes = append(codes, rec.Code)
	}
	if !slices.Equal(codes, []int{200, 500, 200, 500}) {
		t.Errorf("answers to / with failEvery 2 = %v, want every second one 500", codes)
	}
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Errorf("4 answers with a 20ms delay took %v", took)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("/healthz of a release failing its requests = %d, want 200 (it passes its health check)", rec.Code)
	}
}

func TestRequireSecret(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("good-123"), 0o400); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		want string
		code int
	}{{"good-", http.StatusOK}, {"bad-", http.StatusInternalServerError}} {
		rec := httptest.NewRecorder()
		newHandler(behaviour{requireFile: file, requirePrefix: tt.want}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != tt.code || strings.Contains(rec.Body.String(), "123") {
			t.Errorf("require %q: %d %q, want %d without the value", tt.want, rec.Code, rec.Body.String(), tt.code)
		}
	}
	if got := runCat(file); got != 0 {
		t.Errorf("cat = %d", got)
	}
	if got := runCat(file + ".missing"); got != 1 {
		t.Errorf("cat of a missing file = %d, want 1", got)
	}
}
