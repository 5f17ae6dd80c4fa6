package main

// Issue 10 point 5 on the real engine: the built binary inside tmux (a
// real terminal: tmux's pane, read back with capture-pane), against a dev
// server. apply and status -w draw the live view in place; a bad release
// shows its rollback and exits 3 as plain mode does; --plain, TERM=dumb,
// NO_COLOR and a pipe get plain lines without a single escape.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tmuxPane is one tmux session on a private socket, with one pane
// running sh; cleanup kills that session only.
type tmuxPane struct {
	t      *testing.T
	socket string
	target string
}

// needTmux skips t with one line when tmux is absent, or fails it under
// DEPLOYCTL_REQUIRE_DOCKER=1 (CI installs tmux: .ci/run).
func needTmux(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("DEPLOYCTL_REQUIRE_DOCKER") == "1" {
			t.Fatal("tmux is not installed (apt-get install tmux); the live view's tests need a terminal")
		}
		t.Skip("tmux is not installed; skipping the live view's terminal test")
	}
}

// startTmux starts sh in dir with env (NAME=value words, no quoting
// needed) in a 120x40 pane.
func startTmux(t *testing.T, dir string, env ...string) *tmuxPane {
	t.Helper()
	p := &tmuxPane{t: t, socket: fmt.Sprintf("deployctl-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()), target: "live"}
	// sh (no line editing): what is typed echoes as plain text. The
	// environment goes on its command line: tmux keeps its own PATH.
	p.tmux("new-session", "-d", "-s", p.target, "-x", "120", "-y", "40", "-c", dir,
		"env -u NO_COLOR "+strings.Join(env, " ")+" PS1='$ ' sh")
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", p.socket, "kill-session", "-t", p.target).Run() })
	return p
}

func (p *tmuxPane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// run clears the pane and types a command, then echoes its exit status.
func (p *tmuxPane) run(command string) {
	p.t.Helper()
	p.tmux("send-keys", "-t", p.target, "-l", `printf '\033[H\033[2J'; `+command+`; echo "EXIT=$?"`)
	p.tmux("send-keys", "-t", p.target, "Enter")
}

func (p *tmuxPane) capture() string {
	p.t.Helper()
	return p.tmux("capture-pane", "-p", "-t", p.target)
}

var exitLine = regexp.MustCompile(`(?m)^EXIT=(\d+)\s*$`)

// waitPane waits until the pane shows what ok wants, and returns it; on
// a timeout the test fails with the pane as it was.
func (p *tmuxPane) waitPane(within time.Duration, what string, ok func(pane string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		pane := p.capture()
		if ok(pane) {
			return pane
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %v waiting for %s; the pane:\n%s", within, what, pane)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitExit waits for the command's exit status in the pane.
func (p *tmuxPane) waitExit(within time.Duration) (string, string) {
	p.t.Helper()
	pane := p.waitPane(within, "the command's EXIT= line", exitLine.MatchString)
	return pane, exitLine.FindStringSubmatch(pane)[1]
}

// recordRaw pipes what the pane's programs write, raw, to a file until
// the returned func stops it and returns the bytes.
// The returned func waits until the recording holds exits exit lines.
func (p *tmuxPane) recordRaw(path string, exits int) func() string {
	p.t.Helper()
	p.tmux("pipe-pane", "-t", p.target, "cat > "+path)
	return func() string {
		// The piping command may still be writing: wait for the exit
		// statuses that end what was recorded, then stop it.
		var raw []byte
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var err error
			if raw, err = os.ReadFile(path); err == nil && len(exitLine.FindAll(raw, -1)) >= exits {
				break
			}
		}
		p.tmux("pipe-pane", "-t", p.target)
		return string(raw)
	}
}

func TestCLILiveViewInTmux(t *testing.T) {
	needTmux(t)
	needEngine(t)
	s := mustStartServer(t)
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// monitor 2s: each slot's replacement stays on screen long enough to
	// be seen mid-rollout.
	slow := func(ref string) string { return strings.Replace(webSpec(ref, 3, ""), "monitor: 1s", "monitor: 2s", 1) }
	write("v1.yaml", slow(env.refs["v1"]))
	write("v11.yaml", slow(env.refs["v11"]))
	write("broken.yaml", slow(env.refs["broken"]))

	// Plain through a pipe: no escape at all.
	r := mustCLI(t, s, 0, slow(env.refs["v1"]), "apply", "-")
	if strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, "done: revision 1") {
		t.Fatalf("apply to a pipe:\n%q", r.stdout)
	}

	p := startTmux(t, dir, "DEPLOYCTL_ADDR="+s.addr, "PATH="+filepath.Dir(env.bin)+":"+os.Getenv("PATH"))

	// 1. apply v1.1 over v1: the view mid-rollout, then at the end.
	stopRaw := p.recordRaw(filepath.Join(dir, "live.raw"), 1)
	p.run("deployctl apply v11.yaml")
	mid := p.waitPane(60*time.Second, "the live view mid-rollout", func(mid string) bool {
		return strings.Contains(mid, "web  revision 1 → 2  deploying  [") && strings.Contains(mid, "1 → 2") &&
			(strings.Contains(mid, "waiting") || strings.Contains(mid, "checking") || strings.Contains(mid, "starting")) &&
			!exitLine.MatchString(mid)
	})
	t.Logf("mid-rollout:\n%s", mid)
	for _, want := range []string{"SLOT  REVISION", "/3 healthy", "last events:", "revision_stored"} {
		if !strings.Contains(mid, want) {
			t.Errorf("mid-rollout view lacks %q", want)
		}
	}
	end, code := p.waitExit(90 * time.Second)
	raw := stopRaw()
	t.Logf("end:\n%s", end)
	if code != "0" {
		t.Fatalf("live apply exit %s, want 0:\n%s", code, end)
	}
	if n := strings.Count(end, "web  revision 1 → 2"); n != 1 {
		t.Errorf("the view's header is on the pane %d times, want once (redrawn in place):\n%s", n, end)
	}
	if n := len(regexp.MustCompile(`(?m)^\s+\d\s+1 → 2\s+healthy\s+healthy\s+\S+`).FindAllString(end, -1)); n != 3 {
		t.Errorf("%d slot rows '1 → 2 healthy healthy HOST', want 3:\n%s", n, end)
	}
	for _, want := range []string{"[####################] 3/3 healthy", "rollout_succeeded", "done: revision 2 is healthy on 3/3 replicas"} {
		if !strings.Contains(end, want) {
			t.Errorf("final view lacks %q", want)
		}
	}
	if !strings.Contains(raw, "\x1b[2K") || !regexp.MustCompile(`\x1b\[\d+A`).MatchString(raw) || !strings.Contains(raw, "\x1b[32m") {
		t.Errorf("the live apply wrote no cursor-up, clear-line or colour escapes: %q", tail(raw, 400))
	}

	// 2. A bad release: the view shows the rollback; exit 3, as plain.
	p.run("deployctl apply broken.yaml")
	end, code = p.waitExit(120 * time.Second)
	t.Logf("bad release:\n%s", end)
	for _, want := range []string{"web  revision 3 → 4 (rollback)", "revision 3 failed:", "rolled back: revision 4 is healthy on 3/3"} {
		if !strings.Contains(end, want) {
			t.Errorf("bad release's view lacks %q", want)
		}
	}
	plain := s.cli(t, "", "apply", "--force", filepath.Join(dir, "broken.yaml"))
	if code != "3" || plain.code != 3 {
		t.Fatalf("bad release: exit %s in the live view, %d plain; want 3 both\n%s\n%s", code, plain.code, plain.stdout, plain.stderr)
	}
	if strings.Contains(plain.stdout, "\x1b") || !strings.Contains(plain.stdout, "rolling back") {
		t.Fatalf("plain bad release:\n%q", plain.stdout)
	}

	// 3. status -w follows a rollout another command started.
	mustCLI(t, s, 0, "", "apply", "--detach", filepath.Join(dir, "v1.yaml"))
	p.run("deployctl status -w web")
	mid = p.waitPane(60*time.Second, "status -w's live view while it follows revision 7", func(mid string) bool {
		return strings.Contains(mid, "web  revision 6 → 7") && strings.Contains(mid, "SLOT  REVISION") && !exitLine.MatchString(mid)
	})
	t.Logf("status -w, following:\n%s", mid)
	end, code = p.waitExit(90 * time.Second)
	t.Logf("status -w:\n%s", end)
	if code != "0" || !strings.Contains(end, "done: revision 7 is healthy on 3/3") || !strings.Contains(end, "[####################] 3/3") {
		t.Fatalf("status -w: exit %s\n%s", code, end)
	}

	// 4. --plain, TERM=dumb and NO_COLOR on the terminal: plain lines, no
	// escape in what reached the pane (one recording of the three: the
	// test's own clear before each command splits it).
	cases := []string{"deployctl --plain apply v11.yaml", "TERM=dumb deployctl apply v1.yaml", "NO_COLOR=1 deployctl apply v11.yaml"}
	stopPlain := p.recordRaw(filepath.Join(dir, "plain.raw"), len(cases))
	for _, command := range cases {
		p.run(command)
		end, code = p.waitExit(90 * time.Second)
		if code != "0" || !strings.Contains(end, "done: revision") || !strings.Contains(end, "slot 0: replica") {
			t.Fatalf("%s: exit %s\n%s", command, code, end)
		}
	}
	parts := strings.Split(stopPlain(), "\x1b[H\x1b[2J")
	if len(parts) != len(cases)+1 {
		t.Fatalf("the pane's recording has %d clears, want %d: %q", len(parts)-1, len(cases), parts)
	}
	for i, after := range parts[1:] {
		if !strings.Contains(after, "done: revision") {
			t.Fatalf("%s: the recording lacks the closing line: %q", cases[i], after)
		}
		if strings.Contains(after, "\x1b") {
			t.Fatalf("%s wrote an escape to the terminal: %q", cases[i], after)
		}
	}

	// 5. Ctrl-C in the view detaches with exit 5, as plain; the rollout
	// goes on.
	p.run("deployctl apply v1.yaml")
	p.waitPane(60*time.Second, "the live view of revision 11", func(pane string) bool {
		return strings.Contains(pane, "web  revision 10 → 11  deploying")
	})
	p.tmux("send-keys", "-t", p.target, "C-c")
	end, code = p.waitExit(30 * time.Second)
	if code != "5" || !strings.Contains(end, "detached: the rollout goes on") {
		t.Fatalf("Ctrl-C in the live view: exit %s\n%s", code, end)
	}
	t.Logf("Ctrl-C:\n%s", end)
}
