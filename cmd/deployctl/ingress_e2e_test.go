package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// TestClusterIngressSurvivesHostKill: three servers with mutual TLS, each
// running its agent and its proxy (ingress ports on its own loopback IP,
// hop listener on --proxy-addr), 6 replicas spread over the three hosts.
// Requests entering one host are answered by replicas on all three (local
// ones on the bridge, the others through their host's proxy, over mutual
// TLS). Then another host dies: kill -9 of its server (agent and proxy)
// and of its containers, under steady load. At most 0.5 % of the requests
// after the kill fail, and none from 2 s after it.
func TestClusterIngressSurvivesHostKill(t *testing.T) {
	needEngine(t)
	ingressIP := func(i int) string { return fmt.Sprintf("127.0.0.%d", i+2) }
	c := mustStartClusterWith(t, 3, func(i int) []string {
		return []string{"--ingress-addr", ingressIP(i), "--proxy-addr", freeAddr(t)}
	}, "--host-ttl", "3s", "--host-down-grace", "3s")
	c.mustReadyHosts(t, 3)
	listen := freePort(t)
	spec := webSpec(env.refs["v1"], 6, fmt.Sprintf("ingress:\n  - {listen: %d, port: 8080}\n", listen))
	if r := c.cli(t, c.nodes, spec, "apply", "-"); r.code != 0 {
		t.Fatalf("apply: %d %s %s", r.code, r.stdout, r.stderr)
	}
	leader := c.mustLeader(10 * time.Second)
	// The entry host and the host that dies: neither is the leader, so the
	// test is about traffic, not a raft election.
	var others []int
	for i, nd := range c.nodes {
		if nd != leader {
			others = append(others, i)
		}
	}
	entry, victim := others[0], c.nodes[others[1]]
	url := fmt.Sprintf("http://%s:%d/", ingressIP(entry), listen)

	// hostOf maps a replica's hostname (its short container ID) to its host.
	hostOf := func() map[string]string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := c.client().Status(ctx, "web", 0, 0)
		if err != nil {
			return nil
		}
		out := map[string]string{}
		for _, in := range st.Instances {
			if len(in.ContainerID) >= 12 {
				out[in.ContainerID[:12]] = in.Host
			}
		}
		return out
	}
	client := &http.Client{Timeout: 5 * time.Second}
	seen := map[string]bool{}
	waitFor(t, 60*time.Second, "requests entering one host to be answered by replicas on all three", func() bool {
		hosts := hostOf()
		for range 30 {
			resp, err := client.Get(url)
			if err != nil {
				return false
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if h := hosts[resp.Header.Get("X-Webapp-Hostname")]; h != "" {
					seen[h] = true
				}
			}
		}
		return len(seen) == 3
	})

	type result struct {
		at     time.Time
		failed string
	}
	var mu sync.Mutex
	var results []result
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 6 {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: i%2 == 1}}
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				failed := ""
				resp, err := client.Get(url)
				if err != nil {
					failed = err.Error()
				} else {
					body, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						failed = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
					}
				}
				mu.Lock()
				results = append(results, result{at: start, failed: failed})
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(3 * time.Second)
	killedAt := time.Now()
	c.kill(victim, syscall.SIGKILL)
	for id := range runningContainers(t, victim.hostID) {
		if err := env.docker.ContainerKill(context.Background(), id, "KILL"); err != nil {
			t.Errorf("docker kill %s: %v", id, err)
		}
	}
	time.Sleep(8 * time.Second)
	stop()
	wg.Wait()

	var before, after, failedAfter, lateFailures int
	var firstFailure string
	for _, r := range results {
		if r.at.Before(killedAt) {
			before++
			if r.failed != "" {
				t.Errorf("a request failed before the kill: %s", r.failed)
			}
			continue
		}
		after++
		if r.failed == "" {
			continue
		}
		failedAfter++
		if firstFailure == "" {
			firstFailure = r.failed
		}
		if r.at.After(killedAt.Add(2 * time.Second)) {
			lateFailures++
		}
	}
	t.Logf("requests: %d before the kill, %d after (%d failed, %d of them later than 2 s; first: %q)", before, after, failedAfter, lateFailures, firstFailure)
	if after < 200*8 {
		t.Errorf("only %d requests in the 8 s after the kill: the load was under 200 requests/s", after)
	}
	if failedAfter*1000 > after*5 {
		t.Errorf("%d of %d requests failed after the kill: more than 0.5 %%", failedAfter, after)
	}
	if lateFailures > 0 {
		t.Errorf("%d requests failed later than 2 s after the kill", lateFailures)
	}
}
