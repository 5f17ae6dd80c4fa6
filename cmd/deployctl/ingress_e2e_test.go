package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCLIIngressDropsNothing: one --dev node, 4 replicas behind an ingress
// http port, steady load through the agent's proxy (keep-alive and a new
// connection per request) across an update, a bad release that rolls back
// by itself, a manual rollback, a scale 4 -> 1 -> 4 and a `docker kill` of
// one replica: no request fails,
// and none is ever answered by the bad release (its / answers 200 while
// its health check fails: it must never be in a pool).
func TestCLIIngressDropsNothing(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	listen := freePort(t)
	spec := func(ref string, replicas int) string {
		return webSpec(ref, replicas, fmt.Sprintf("ingress:\n  - {listen: %d, port: 8080}\n", listen))
	}
	mustCLI(t, s, 0, spec(env.refs["v1"], 4), "apply", "-")
	url := fmt.Sprintf("http://127.0.0.1:%d/", listen)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), "webapp v1") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ingress port never answered from v1: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var ok, failed, fromBroken atomic.Int64
	var firstFailure atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: i%2 == 1}}
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := client.Get(url)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				} else {
					body, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					switch {
					case resp.StatusCode != http.StatusOK:
						failed.Add(1)
						firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, body))
					case strings.Contains(string(body), "v2"):
						fromBroken.Add(1)
					default:
						ok.Add(1)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	phase := func(name string, run func()) {
		before := failed.Load()
		run()
		if n := failed.Load() - before; n > 0 {
			t.Errorf("%s: %d requests failed (first: %v)", name, n, firstFailure.Load())
		}
	}
	phase("update", func() { mustCLI(t, s, 0, spec(env.refs["v11"], 4), "apply", "-") })
	phase("bad release", func() { mustCLI(t, s, 3, spec(env.refs["broken"], 4), "apply", "-") })
	phase("manual rollback", func() { mustCLI(t, s, 0, "", "rollback", "web") })
	phase("scale 4 -> 1", func() { mustCLI(t, s, 0, spec(env.refs["v1"], 1), "apply", "-") })
	phase("scale 1 -> 4", func() { mustCLI(t, s, 0, spec(env.refs["v1"], 4), "apply", "-") })
	phase("docker kill of one replica", func() {
		for id := range currentContainerIDs(mustStatus(t, s, "web")) {
			if err := env.docker.ContainerKill(context.Background(), id, "KILL"); err != nil {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(3 * time.Second) // the load runs on while the agent sees the exit
	})
	// rm: requests may fail once no replica is left (503); nothing else is checked.
	mustCLI(t, s, 0, "", "rm", "web")
	stop()
	wg.Wait()
	if fromBroken.Load() > 0 {
		t.Errorf("%d requests were answered by the bad release", fromBroken.Load())
	}
	if ok.Load() < 500 {
		t.Errorf("only %d requests succeeded: the load did not run through the phases", ok.Load())
	}
	t.Logf("requests: %d ok, %d failed, %d from the bad release", ok.Load(), failed.Load(), fromBroken.Load())
}

// freePort is a loopback TCP port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	addr := freeAddr(t)
	var port int
	if _, err := fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	return port
}
