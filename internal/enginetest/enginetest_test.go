package enginetest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// In a child process without an engine: a skip with one line, or, with
// DEPLOYCTL_REQUIRE_DOCKER=1, a failure.
func TestUnavailableSkipsOrFails(t *testing.T) {
	if os.Getenv("ENGINETEST_CHILD") == "1" {
		Require(t)
		t.Log("engine reachable")
		return
	}
	run := func(require string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUnavailableSkipsOrFails$", "-test.v")
		cmd.Env = append(os.Environ(), "ENGINETEST_CHILD=1", "DOCKER_HOST=unix:///nonexistent/docker.sock", RequireEnv+"="+require)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "--- SKIP") || !strings.Contains(out, "engine test skipped: no Docker Engine reachable at unix:///nonexistent/docker.sock") {
		t.Fatalf("without the requirement: %v\n%s", err, out)
	}
	out, err = run("1")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, RequireEnv+"=1 requires one") {
		t.Fatalf("with %s=1: %v\n%s", RequireEnv, err, out)
	}
}
