package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// testClockEnv names a file holding a duration (e.g. "-90s", "2h") that
// the server adds to the controller's wall clock, re-read every
// testClockPoll: the chaos harness (internal/chaos/DESIGN.md, "Clock
// jumps") writes it to step a running server's clock forward or back,
// which is what an NTP step does to a real one. Test-only: it is an
// environment variable, not a flag or a config key, and a server that has
// it set says so at WARN level when it starts and at every change.
const testClockEnv = "DEPLOYCTL_TEST_CLOCK_FILE"

const testClockPoll = 100 * time.Millisecond

// testClock returns the controller's clock: nil (the controller's
// default, the real UTC wall clock) unless testClockEnv is set. Only the
// wall reading moves: UTC() drops the monotonic one, as the controller's
// default clock does, and raft's timers (monotonic) are untouched, as in
// a real clock step.
func testClock(ctx context.Context, log hclog.Logger) (func() time.Time, error) {
	path := os.Getenv(testClockEnv)
	if path == "" {
		return nil, nil
	}
	read := func() (time.Duration, error) {
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", testClockEnv, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%s: %s holds %q, want a duration such as -90s: %w", testClockEnv, path, s, err)
		}
		return d, nil
	}
	d, err := read()
	if err != nil {
		return nil, err
	}
	var offset atomic.Int64
	offset.Store(int64(d))
	log.Warn("TEST CLOCK in use: the controller's wall clock is offset by the duration in a file; never set this outside tests",
		"env", testClockEnv, "file", path, "offset", d)
	go func() {
		t := time.NewTicker(testClockPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			d, err := read()
			if err != nil {
				log.Error("test clock", "error", err)
				continue
			}
			if old := time.Duration(offset.Swap(int64(d))); old != d {
				log.Warn("TEST CLOCK stepped", "from", old, "to", d)
			}
		}
	}()
	return func() time.Time { return time.Now().UTC().Add(time.Duration(offset.Load())) }, nil
}
