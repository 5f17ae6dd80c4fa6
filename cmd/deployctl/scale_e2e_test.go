package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
)

// `deployctl scale` on the real engine: 1 -> 3 keeps the running
// container and starts two beside it, 3 -> 1 stops two and keeps it, each
// waited for like an apply; the history shows both scales at the same
// digest, and the current count again changes nothing.
func TestCLIScaleUpAndDown(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	mustCLI(t, s, 0, webSpec(env.refs["v1"], 1, ""), "apply", "-")
	first := currentContainerIDs(mustStatus(t, s, "web"))
	if len(first) != 1 {
		t.Fatalf("want 1 container after the apply, got %v", first)
	}

	r := mustCLI(t, s, 0, "", "scale", "web", "3")
	for _, want := range []string{"web: revision 2 stored, scaling to 3 replicas of " + env.digests["v1"], "done: revision 2 is healthy on 3/3 replicas"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("scale up output lacks %q:\n%s", want, r.stdout)
		}
	}
	st := mustStatus(t, s, "web")
	up := currentContainerIDs(st)
	if st.Revision != 2 || st.Replicas != (wire.ReplicaCounts{Desired: 3, Running: 3, Healthy: 3}) || len(up) != 3 {
		t.Fatalf("status after scaling up: %+v", st)
	}
	for id := range first {
		if !up[id] {
			t.Fatalf("containers after scaling up %v: the first one %s was replaced", slices.Collect(maps.Keys(up)), id)
		}
	}
	if running := runningContainers(t, s.hostID); !sameSet(running, up) {
		t.Fatalf("running %v, want the 3 of the status %v", running, up)
	}

	r = mustCLI(t, s, 0, "", "scale", "web", "1")
	if !strings.Contains(r.stdout, "done: revision 3 is healthy on 1/1 replicas") {
		t.Errorf("scale down output:\n%s", r.stdout)
	}
	// The rollout ends once the kept replica is done; the two stopped
	// ones are drained and gone right after.
	waitFor(t, 30*time.Second, "only the first container running", func() bool {
		return sameSet(runningContainers(t, s.hostID), first)
	})
	if st := mustStatus(t, s, "web"); st.Revision != 3 || st.Replicas.Desired != 1 || !sameSet(currentContainerIDs(st), first) {
		t.Fatalf("status after scaling down: %+v", st)
	}

	if r := mustCLI(t, s, 0, "", "scale", "web", "1"); !strings.Contains(r.stdout, "unchanged") {
		t.Errorf("scale to the current count:\n%s", r.stdout)
	}
	h := mustHistory(t, s, "web")
	if len(h) != 3 {
		t.Fatalf("history %+v, want 3 revisions", h)
	}
	for i, want := range []struct {
		cause    string
		replicas int
	}{{"apply", 1}, {"scale from 1 to 3", 3}, {"scale from 3 to 1", 1}} {
		if h[i].Cause != want.cause || h[i].Replicas != want.replicas || h[i].Digest != env.digests["v1"] {
			t.Errorf("history[%d] = %+v, want cause %q, %d replicas, digest %s", i, h[i], want.cause, want.replicas, env.digests["v1"])
		}
	}
}
