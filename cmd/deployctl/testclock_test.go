package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestTestClockOffUnlessTheEnvironmentSaysSo(t *testing.T) {
	t.Setenv(testClockEnv, "")
	now, err := testClock(context.Background(), hclog.NewNullLogger())
	if err != nil || now != nil {
		t.Fatalf("testClock without %s = %v, %v: want nil (the controller's real clock)", testClockEnv, now != nil, err)
	}
}

func TestTestClockStepsTheWallClockAndSaysSo(t *testing.T) {
	file := filepath.Join(t.TempDir(), "clock")
	if err := os.WriteFile(file, []byte("2h"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(testClockEnv, file)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	now, err := testClock(ctx, log)
	if err != nil || now == nil {
		t.Fatalf("testClock = %v, %v", now != nil, err)
	}
	if d := time.Until(now()); d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
		t.Fatalf("clock is %s ahead, want 2h", d)
	}
	if !strings.Contains(logs.String(), "TEST CLOCK in use") {
		t.Fatalf("no warning at start: %q", logs.String())
	}
	if err := os.WriteFile(file, []byte("-90s"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := time.Until(now())
		if d < -80*time.Second && d > -100*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clock did not step back: %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.WriteFile(file, []byte("soon"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(testClockEnv, file)
	if _, err := testClock(ctx, hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), testClockEnv) {
		t.Fatalf("a file that holds no duration: %v, want an error naming %s", err, testClockEnv)
	}
}
