// Package enginetest decides what a test that needs a Docker Engine does
// when none answers: `go test ./...` on a laptop without Docker skips it
// with one line saying why, and `make test` (CI, DEPLOYCTL_REQUIRE_DOCKER=1)
// fails it, so a CI runner that lost its engine cannot pass by skipping.
package enginetest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// RequireEnv, set to 1, turns a missing engine from a skip into a failure.
const RequireEnv = "DEPLOYCTL_REQUIRE_DOCKER"

// Required reports whether the environment demands an engine.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Unavailable ends t because no engine answered (err says how): a failure
// when RequireEnv is set, else a skip with one line.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if Required() {
		t.Fatalf("no Docker Engine reachable at %s (%v); %s=1 requires one", Host(), err, RequireEnv)
	}
	t.Skipf("engine test skipped: no Docker Engine reachable at %s (%v); `make test` runs it, and fails without an engine", Host(), err)
}

// Require pings the engine that DOCKER_HOST (or the default socket) names
// and calls Unavailable when it does not answer within 10 seconds.
func Require(t testing.TB) {
	t.Helper()
	if err := Ping(); err != nil {
		Unavailable(t, err)
	}
}

// Ping reports whether the engine answers.
func Ping() error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = cli.Ping(ctx)
	return err
}

// Host is the engine address the tests use, for messages.
func Host() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return client.DefaultDockerHost
}
