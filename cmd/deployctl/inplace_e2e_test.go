package main

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
)

// mustStartAgent runs `deployctl agent` for a further host of dev server s,
// on the same Docker Engine with its own host id and network, with extra
// flags after those. Cleanup stops it by PID and removes what its host id
// labels.
func mustStartAgent(t *testing.T, s *devServer, suffix string, extra ...string) string {
	t.Helper()
	hostID, network := s.hostID+"-"+suffix, s.network+"-"+suffix
	agent := exec.Command(env.bin, append([]string{"agent", "--servers", s.addr, "--host-id", hostID, "--network", network, "--log-level", "debug"}, extra...)...)
	var alog syncBuffer
	agent.Stdout, agent.Stderr = &alog, &alog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = agent.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = agent.Process.Kill()
			<-done
		}
		removeHostObjects(env.docker, hostID, network)
		if t.Failed() {
			t.Logf("agent %s log:\n%s", hostID, tail(alog.String(), 40))
		}
	})
	return hostID
}

// waitHostsReady waits until dev server s reports every host of ids ready.
func waitHostsReady(t *testing.T, s *devServer, ids ...string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("hosts %v ready", ids), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := wire.NewClient([]string{s.addr}, nil).Cluster(ctx)
		if err != nil {
			return false
		}
		ready := 0
		for _, h := range st.Hosts {
			if h.State == "ready" && slices.Contains(ids, h.ID) {
				ready++
			}
		}
		return ready == len(ids)
	})
}

// The layout on the real engine: three hosts (a dev server and two
// agents), placement.max_per_host 1, the default update.order start-first,
// three replicas. No host has room for a replacement beside an old replica,
// so each slot is replaced stop-first on its own host and the progress says
// so: the update ends with exit 0, and a bad release ends with exit 3 after
// its replica ran unhealthy (not after the progress deadline, which would
// say "progress deadline").
func TestCLINoSpareHostReplacesInPlace(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	hosts := []string{s.hostID, mustStartAgent(t, s, "h2"), mustStartAgent(t, s, "h3")}
	waitHostsReady(t, s, hosts...)
	spec := func(image string) string {
		return webSpec(image, 3, "placement: { max_per_host: 1 }\n")
	}
	onePerHost := func(when string) {
		t.Helper()
		for _, h := range hosts {
			if n := len(runningContainers(t, h)); n != 1 {
				t.Fatalf("%s: host %s runs %d containers, want 1 (max_per_host 1)", when, h, n)
			}
		}
	}

	mustCLI(t, s, 0, spec(env.refs["v1"]), "apply", "-")
	onePerHost("after v1")

	r := mustCLI(t, s, 0, spec(env.refs["v11"]), "apply", "-")
	t.Logf("update:\n%s", r.stdout)
	for slot := range 3 {
		want := fmt.Sprintf("slot %d: no spare host for start-first (max_per_host 1); replacing stop-first on ", slot)
		if !strings.Contains(r.stdout, want) {
			t.Errorf("update output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "done: revision 2") {
		t.Errorf("update output:\n%s", r.stdout)
	}
	st := mustStatus(t, s, "web")
	if st.Revision != 2 || st.Digest != env.digests["v11"] || st.Replicas.Healthy != 3 {
		t.Fatalf("status after the update: %+v", st)
	}
	onePerHost("after the update")

	r = mustCLI(t, s, 3, spec(env.refs["broken"]), "apply", "-")
	t.Logf("bad release:\n%s", r.stdout)
	for _, want := range []string{"no spare host for start-first (max_per_host 1)", "unhealthy", "rolling back", "rolled back: revision 4"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bad release output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "progress deadline") {
		t.Errorf("the bad release waited for the progress deadline:\n%s", r.stdout)
	}
	st = mustStatus(t, s, "web")
	if st.Revision != 4 || st.Digest != env.digests["v11"] || st.Replicas.Healthy != 3 {
		t.Fatalf("status after the rollback: %+v", st)
	}
	onePerHost("after the rollback")
}
