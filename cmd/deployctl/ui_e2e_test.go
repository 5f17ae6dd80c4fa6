package main

// The dashboard in a real browser: Debian's chromium, headless, driven
// with chromedp, against a dev server and (through `deployctl ui`)
// against a three-server TLS cluster, with real Docker and images from
// the in-process registry.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// needChromium returns the chromium binary. Without one the test skips
// with one line, unless DEPLOYCTL_REQUIRE_DOCKER=1 (CI, where .ci/run
// installs it): then it fails.
func needChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("DEPLOYCTL_REQUIRE_DOCKER") == "1" {
		t.Fatal("chromium not found and DEPLOYCTL_REQUIRE_DOCKER=1: install it (apt-get install -y chromium; .ci/run does)")
	}
	t.Skip("chromium not found: skipping the browser test (apt-get install -y chromium)")
	return ""
}

// browser starts a headless chromium for t (ended with it) at 1280x900.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshots go to a temp dir the test logs (DEPLOYCTL_UI_SCREENSHOTS
// names a directory to keep them in instead).
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("DEPLOYCTL_UI_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "deployctl-ui-shots-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	shotOf(t, ctx, dir, name, chromedp.FullScreenshot(100))
}

// shotOf saves what capture takes (the full page, or the viewport).
func shotOf(t *testing.T, ctx context.Context, dir, name string, capture chromedp.Action[[]byte]) {
	t.Helper()
	buf, err := chromedp.Run(ctx, capture)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// js evaluates expr in the page.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return out
}

// waitPage polls expr (a boolean) in the page until it holds.
func waitPage(t *testing.T, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("page: timed out after %s waiting for %s (%s); the page says:\n%s", timeout, what, expr, text)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// uiSpec is webSpec with a longer monitor, so that a rollout of three
// replicas takes some seconds and the page can be seen moving.
func uiSpec(image string, replicas int) string {
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
  monitor: 2s
  progress_deadline: 1m
stop_grace_period: 1s
`, image, replicas)
}

// watchRollout polls the live page until revision rev's rollout ended and
// returns the distinct progress values it saw (without a reload: the
// marker set at load must still be there).
func watchRollout(t *testing.T, ctx context.Context, rev int) []string {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		v := js[string](t, ctx, fmt.Sprintf(`(function(){
			if (!window.__sameLoad) return "reloaded";
			var h = document.querySelector("#rollout h2"), p = document.getElementById("rollout-progress"), s = document.getElementById("rollout-state");
			if (!h || h.textContent.indexOf("Rollout of revision %d") < 0 || !p) return "";
			return s.textContent + " " + p.value + "/" + p.max; })()`, rev))
		if v == "reloaded" {
			t.Fatal("the page reloaded while watching the rollout")
		}
		if v != "" && (len(seen) == 0 || seen[len(seen)-1] != v) {
			seen = append(seen, v)
		}
		if strings.HasPrefix(v, "succeeded") || strings.HasPrefix(v, "failed") {
			return seen
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("rollout of revision %d not seen ending in the page; saw %v", rev, seen)
	return nil
}

func TestUIDashboardInBrowser(t *testing.T) {
	chromium := needChromium(t)
	needEngine(t)
	s := mustStartServer(t)
	ctx := browser(t, chromium)
	dir := screenshotDir(t)
	base := "http://" + s.addr

	// The services page, empty; a release applied from the test appears
	// in it without a reload.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("h1"))); err != nil {
		t.Fatal(err)
	}
	js[bool](t, ctx, `window.__sameLoad = true`)
	waitPage(t, ctx, 10*time.Second, "the live stream", `document.getElementById("live-status").textContent === "live"`)
	mustCLI(t, s, 0, uiSpec(env.refs["v1"], 3), "apply", "--detach", "-")
	waitPage(t, ctx, 60*time.Second, "web in the services table, 3/3 healthy",
		`window.__sameLoad && !!document.querySelector('#services-table a[href="/ui/services/web"]') && document.querySelector("#services-table .replicas").textContent === "3/3"`)
	shot(t, ctx, dir, "services")

	// The service page: a release rolls out live, replica by replica.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/services/web"), chromedp.WaitVisible(chromedp.ID("revisions-table"))); err != nil {
		t.Fatal(err)
	}
	js[bool](t, ctx, `window.__sameLoad = true`)
	waitPage(t, ctx, 10*time.Second, "the live stream", `document.getElementById("live-status").textContent === "live"`)
	mustCLI(t, s, 0, uiSpec(env.refs["v11"], 3), "apply", "--detach", "-")
	seen := watchRollout(t, ctx, 2)
	t.Logf("rollout of revision 2 as the page showed it: %v", seen)
	if len(seen) < 3 || !strings.HasPrefix(seen[0], "in_progress") || seen[len(seen)-1] != "succeeded 3/3" {
		t.Fatalf("the page did not show the rollout moving: %v", seen)
	}
	waitPage(t, ctx, 10*time.Second, "revision 2 current", `document.querySelector("#rev-2.current") !== null`)

	// A bad release: its health checks fail, it rolls back by itself, and
	// the page shows it.
	mustCLI(t, s, 0, uiSpec(env.refs["broken"], 3), "apply", "--detach", "-")
	waitPage(t, ctx, 90*time.Second, "revision 3 rolled back and revision 4 its automatic rollback",
		`window.__sameLoad && document.querySelector('#rev-3[data-state="rolled_back"]') !== null && document.querySelector("#rev-4.current") !== null && document.getElementById("rev-4").textContent.indexOf("automatic rollback of 3 to 2") >= 0`)
	waitPage(t, ctx, 60*time.Second, "the replicas table naming the failed health check",
		`document.getElementById("replicas-table").textContent.indexOf("health") >= 0 && document.querySelectorAll("#replicas-table td.err").length > 0 && Array.from(document.querySelectorAll("#replicas-table td.err")).some(function(td){return td.textContent.length > 0})`)
	waitPage(t, ctx, 60*time.Second, "the rollback's rollout done", `document.getElementById("rollout-state") && document.getElementById("rollout-state").textContent === "succeeded" && document.querySelector("#rollout h2").textContent.indexOf("revision 4") >= 0`)
	shot(t, ctx, dir, "service-rolled-back")
	shotOf(t, ctx, dir, "service-rolled-back-viewport", chromedp.CaptureScreenshot()) // docs/dashboard.png

	// Roll back to revision 1 with the button: the dialog names both
	// revisions; confirm.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("rollback-to-1")), chromedp.WaitVisible(chromedp.ID("rollback-dialog"))); err != nil {
		t.Fatal(err)
	}
	text := js[string](t, ctx, `document.getElementById("rollback-text").textContent`)
	if !strings.Contains(text, "from revision 4 to revision 1") {
		t.Fatalf("the confirmation does not name both revisions: %q", text)
	}
	if focused := js[string](t, ctx, `document.activeElement.id`); focused != "rollback-cancel" {
		t.Errorf("the dialog's focus is on %q, want the cancel button", focused)
	}
	shot(t, ctx, dir, "rollback-dialog")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("rollback-confirm"))); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, 20*time.Second, "the page after the rollback", `location.search.indexOf("rolledback=5") >= 0 && document.querySelector(".flash") !== null`)
	js[bool](t, ctx, `window.__sameLoad = true`)
	waitPage(t, ctx, 90*time.Second, "revision 5 current and succeeded",
		`document.querySelector('#rev-5.current[data-state="succeeded"]') !== null && document.getElementById("svc-replicas").textContent.indexOf("3 healthy") === 0`)

	// The service's state through the API.
	st := mustStatus(t, s, "web")
	if st.Revision != 5 || st.Cause != "rollback of 4 to 1" || st.Digest != env.digests["v1"] || st.Replicas.Healthy != 3 || st.State != "running" {
		t.Fatalf("status after the dashboard's rollback: %+v", st)
	}
	// The diff between two revisions, from its URL.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/services/web?a=2&b=3#diff"), chromedp.WaitVisible(chromedp.ID("diff-table"))); err != nil {
		t.Fatal(err)
	}
	if got := js[int](t, ctx, `document.querySelectorAll("#diff-table tr.changed").length`); got < 2 {
		t.Fatalf("diff 2..3 marks %d changed fields", got)
	}
	// At 390 px, dark: no horizontal scroll of the page itself.
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/ui/services/web"), chromedp.WaitVisible(chromedp.ID("revisions-table"))); err != nil {
		t.Fatal(err)
	}
	if w := js[int](t, ctx, `document.documentElement.scrollWidth`); w > 400 {
		wide := js[string](t, ctx, `Array.from(document.querySelectorAll("body *")).filter(function(e){var r=e.getBoundingClientRect();return r.right>392 && !(e.parentElement && e.parentElement.closest(".scroll"))}).slice(0,8).map(function(e){return e.tagName+"#"+e.id+"."+e.className+" "+Math.round(e.getBoundingClientRect().right)}).join(", ")`)
		t.Errorf("at 390 px the page is %d px wide: %s", w, wide)
	}
	if bg := js[string](t, ctx, `getComputedStyle(document.body).backgroundColor`); bg != "rgb(13, 17, 23)" {
		t.Errorf("dark preference: body background %s", bg)
	}
	shot(t, ctx, dir, "service-390-dark")
	// Hosts and policy, each at its URL.
	for path, want := range map[string]string{"/ui/hosts": s.hostID, "/ui/policy": "allow_capabilities"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+path)); err != nil {
			t.Fatal(err)
		}
		body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, want) {
			t.Errorf("%s lacks %q:\n%s", path, want, body)
		}
	}
	shot(t, ctx, dir, "hosts-390-dark")
}

// TestUIProxyOnTLSCluster: `deployctl ui` with the CLI's certificate in
// front of a three-server TLS cluster, driven the same way.
func TestUIProxyOnTLSCluster(t *testing.T) {
	chromium := needChromium(t)
	needEngine(t)
	c := mustStartCluster(t, 3)
	dir := screenshotDir(t)
	addrs := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		addrs[i] = nd.httpAddr
	}
	tlsArgs := []string{"--addr", strings.Join(addrs, ","), "--tls-ca", filepath.Join(c.tlsDir, "ca.pem"),
		"--tls-cert", filepath.Join(c.tlsDir, "client.pem"), "--tls-key", filepath.Join(c.tlsDir, "client-key.pem")}
	proxy := exec.Command(env.bin, append(tlsArgs, "ui", "--listen", "127.0.0.1:0")...)
	stdout, err := proxy.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	proxy.Stderr = os.Stderr
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Process.Kill(); _ = proxy.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("deployctl ui printed nothing: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "Dashboard:" || !strings.HasPrefix(fields[1], "http://127.0.0.1:") {
		t.Fatalf("deployctl ui printed %q", line)
	}
	url := fields[1]

	if r := c.cli(t, c.nodes, uiSpec(env.refs["v1"], 2), "apply", "-"); r.code != 0 {
		t.Fatalf("apply v1: %d %s %s", r.code, r.stdout, r.stderr)
	}
	ctx := browser(t, chromium)
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"services/web"), chromedp.WaitVisible(chromedp.ID("revisions-table"))); err != nil {
		t.Fatal(err)
	}
	js[bool](t, ctx, `window.__sameLoad = true`)
	waitPage(t, ctx, 10*time.Second, "the live stream through the proxy", `document.getElementById("live-status").textContent === "live"`)
	if r := c.cli(t, c.nodes, uiSpec(env.refs["broken"], 2), "apply", "--detach", "-"); r.code != 0 {
		t.Fatalf("apply broken: %d %s %s", r.code, r.stdout, r.stderr)
	}
	waitPage(t, ctx, 90*time.Second, "revision 2 rolled back by itself, live",
		`window.__sameLoad && document.querySelector('#rev-2[data-state="rolled_back"]') !== null && document.querySelector("#rev-3.current") !== null`)
	if r := c.cli(t, c.nodes, uiSpec(env.refs["v11"], 2), "apply", "-"); r.code != 0 {
		t.Fatalf("apply v1.1: %d %s %s", r.code, r.stdout, r.stderr)
	}
	waitPage(t, ctx, 30*time.Second, "revision 4 current", `document.querySelector('#rev-4.current[data-state="succeeded"]') !== null`)
	shot(t, ctx, dir, "tls-proxy-service")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("rollback-to-1")), chromedp.WaitVisible(chromedp.ID("rollback-dialog"))); err != nil {
		t.Fatal(err)
	}
	if text := js[string](t, ctx, `document.getElementById("rollback-text").textContent`); !strings.Contains(text, "from revision 4 to revision 1") {
		t.Fatalf("the confirmation does not name both revisions: %q", text)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("rollback-confirm"))); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, 90*time.Second, "revision 5 current and succeeded", `document.querySelector('#rev-5.current[data-state="succeeded"]') !== null`)
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.client().Status(cctx, "web", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 5 || st.Cause != "rollback of 4 to 1" || st.Digest != env.digests["v1"] {
		t.Fatalf("status after the rollback through deployctl ui: %+v", st)
	}
	// The hosts page lists the three servers' hosts, up.
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"hosts"), chromedp.WaitVisible(chromedp.ID("hosts-table"))); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes {
		if n := js[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('#hosts-table tr[data-host=%q] .badge.ok').length`, nd.hostID)); n == 0 {
			t.Errorf("host %s not shown up", nd.hostID)
		}
	}
	shot(t, ctx, dir, "tls-proxy-hosts")
}
