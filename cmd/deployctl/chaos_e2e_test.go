package main

// Fault injection against a three-server cluster under a concurrent
// workload, checked with porcupine (internal/chaos/DESIGN.md).
// TestChaosBounded is the CI tier; TestChaosSoak runs when
// DEPLOYCTL_CHAOS_ROUNDS is set (`make chaos`).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/internal/chaos"
	"github.com/deployctl/deployctl/internal/wire"
)

// chaosFault injects one fault into a converged cluster whose leader is
// given, and undoes it (restart, continue, heal) before returning; the
// runner then waits for the cluster to converge and take writes again.
type chaosFault struct {
	name   string
	inject func(c *chaosCluster, leader *chaosNode, rng *rand.Rand)
}

// victim is the leader, or a follower picked at random.
func victim(c *chaosCluster, leader *chaosNode, wantLeader bool, rng *rand.Rand) *chaosNode {
	if wantLeader {
		return leader
	}
	followers := c.others(leader)
	return followers[rng.IntN(len(followers))]
}

func role(leader bool) string {
	if leader {
		return "leader"
	}
	return "follower"
}

// faultKill: kill -9, let the others go on (electing a new leader when the
// leader was killed), restart with the node's data.
func faultKill(leader bool) chaosFault {
	return chaosFault{name: "kill -9 the " + role(leader) + ", restart it", inject: func(c *chaosCluster, l *chaosNode, rng *rand.Rand) {
		v := victim(c, l, leader, rng)
		c.kill(v, syscall.SIGKILL)
		c.mustLeaderAmong(c.others(v), 30*time.Second)
		c.start(v)
	}}
}

// faultPause: SIGSTOP past the election timeout, then SIGCONT. A stopped
// leader must be replaced; a stopped follower comes back with a stale term.
func faultPause(leader bool) chaosFault {
	return chaosFault{name: "SIGSTOP the " + role(leader) + " past the election timeout", inject: func(c *chaosCluster, l *chaosNode, rng *rand.Rand) {
		v := victim(c, l, leader, rng)
		c.signal(v, syscall.SIGSTOP)
		if leader {
			c.mustLeaderAmong(c.others(v), 30*time.Second)
		}
		time.Sleep(3 * electionTimeout) // the fault's duration, not an assertion
		c.signal(v, syscall.SIGCONT)
	}}
}

// faultPartition: cut a node off from its peers (a minority of one) while
// clients still reach it, then heal. A cut-off leader keeps answering
// clients for a while: no read it answers may be stale and no write it
// acknowledges may be lost.
func faultPartition(leader bool) chaosFault {
	return chaosFault{name: "partition the " + role(leader) + " into a minority, heal", inject: func(c *chaosCluster, l *chaosNode, rng *rand.Rand) {
		v := victim(c, l, leader, rng)
		c.partition(v)
		if leader {
			c.mustLeaderAmong(c.others(v), 30*time.Second)
		}
		time.Sleep(3 * electionTimeout) // the fault's duration, not an assertion
		c.heal(v)
	}}
}

// faultWipe: kill -9 a follower, delete its data, start it empty: it
// rejoins under the same id and gets the state from the leader.
func faultWipe() chaosFault {
	return chaosFault{name: "wipe a follower, rejoin", inject: func(c *chaosCluster, l *chaosNode, rng *rand.Rand) {
		v := victim(c, l, false, rng)
		c.kill(v, syscall.SIGKILL)
		if err := os.RemoveAll(v.dataDir); err != nil {
			c.t.Fatal(err)
		}
		c.start(v)
	}}
}

// allFaults is what the soak tier draws from.
func allFaults() []chaosFault {
	return []chaosFault{
		faultKill(true), faultKill(false), faultPause(true), faultPause(false),
		faultPartition(true), faultPartition(false), faultWipe(),
	}
}

// TestChaosBounded is the CI tier: kill -9 the leader and restart it, wipe
// a follower and let it rejoin, partition the leader into a minority and
// heal, SIGSTOP a follower past the election timeout; under four
// concurrent clients, with every history checked.
func TestChaosBounded(t *testing.T) {
	runChaos(t, []chaosFault{faultKill(true), faultWipe(), faultPartition(true), faultPause(false)}, 1)
}

// TestChaosSoak draws DEPLOYCTL_CHAOS_ROUNDS faults at random from every
// kind (seed: DEPLOYCTL_CHAOS_SEED, else the clock; it is logged).
func TestChaosSoak(t *testing.T) {
	rounds, err := strconv.Atoi(os.Getenv("DEPLOYCTL_CHAOS_ROUNDS"))
	if err != nil || rounds <= 0 {
		t.Skip("set DEPLOYCTL_CHAOS_ROUNDS (make chaos) for the long run")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DEPLOYCTL_CHAOS_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DEPLOYCTL_CHAOS_SEED: %v", err)
		}
	}
	t.Logf("seed %d (DEPLOYCTL_CHAOS_SEED=%d repeats this schedule)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	kinds := allFaults()
	faults := make([]chaosFault, rounds)
	for i := range faults {
		faults[i] = kinds[rng.IntN(len(kinds))]
	}
	runChaos(t, faults, seed)
}

// chaos workload shape: a few services, so that clients contend on each
// (conflicts, concurrent reads) and porcupine's partitions stay small.
const (
	chaosClients   = 4
	chaosServices  = 4
	chaosOpTimeout = 3 * time.Second
	chaosPause     = 20 * time.Millisecond
)

func runChaos(t *testing.T, faults []chaosFault, seed uint64) {
	c := mustStartChaosCluster(t)
	t.Logf("partitions by %s", c.partitionMethod())
	rec := chaos.NewRecorder()
	var services []string
	for i := range chaosServices {
		services = append(services, fmt.Sprintf("svc-%d", i))
	}
	var clients []*wire.Client
	for i := range chaosClients {
		// Every server is some client's first address.
		order := append(append([]*chaosNode(nil), c.nodes[i%len(c.nodes):]...), c.nodes[:i%len(c.nodes)]...)
		clients = append(clients, c.client(order...))
	}
	ctx, stop := context.WithCancel(context.Background())
	workloadDone := make(chan struct{})
	go func() {
		defer close(workloadDone)
		chaos.Workload{
			Clients: clients, Services: services, Image: c.reg.Image,
			OpTimeout: chaosOpTimeout, Pause: chaosPause, Seed: seed, Recorder: rec,
		}.Run(ctx)
	}()
	// Stopped before the cleanups remove the servers and their network,
	// even when the test fails half-way.
	stopWorkload := func() { stop(); <-workloadDone }
	defer stopWorkload()

	mustWriteProgress(t, rec, 10)
	for i, f := range faults {
		leader := c.mustConverge(chaosConvergeTimeout)
		t.Logf("fault %d/%d: %s (leader %s)", i+1, len(faults), f.name, leader.id)
		start := time.Now()
		f.inject(c, leader, rand.New(rand.NewPCG(seed, uint64(i))))
		l := c.mustConverge(chaosConvergeTimeout)
		// Liveness: once healed, the cluster takes writes again.
		mustWriteProgress(t, rec, 5)
		t.Logf("fault %d/%d: converged on leader %s and took writes %s after the fault began", i+1, len(faults), l.id, time.Since(start).Round(time.Millisecond))
	}
	stopWorkload()

	// Convergence: one leader for all, and a status read through each
	// server (recorded and checked like any other read) answers the same
	// revision.
	c.mustConverge(chaosConvergeTimeout)
	final := map[string][]chaos.Revision{}
	for _, svc := range services {
		mustSameRevisionEverywhere(t, c, rec, svc)
		final[svc] = mustFinalRevisions(t, c, svc)
	}

	ops := rec.Operations()
	st := rec.Stats()
	t.Logf("history: %+v", st)
	// Both checks can fail: internal/chaos's tests run them on histories of
	// broken servers. A workload that did nothing would prove nothing.
	if st.OkWrites < 20 || st.Reads < 20 || st.ServicesWritten != chaosServices {
		t.Errorf("workload too thin to prove anything: %+v", st)
	}
	rep := chaos.CheckFinal(ops, final)
	if err := rep.Err(); err != nil {
		t.Error(err)
	}
	if rep.AcknowledgedWrites != st.OkWrites {
		t.Errorf("final check saw %d acknowledged writes, the history has %d", rep.AcknowledgedWrites, st.OkWrites)
	}
	// Unknown writes are settled with the final state first: those it
	// lacks never took effect, the others became the revision it shows.
	resolved := chaos.ResolveUnknownWrites(ops, final)
	lin := "0 linearizability violations"
	checkStart := time.Now()
	if err := chaos.CheckLinearizable(resolved, 10*time.Minute, ""); err != nil {
		t.Error(err)
		lin = "a linearizability violation"
	}
	t.Logf("porcupine checked %d operations in %s", len(resolved), time.Since(checkStart).Round(time.Millisecond))
	verdict := "survived"
	if t.Failed() {
		verdict = "FAILED:"
	}
	fmt.Printf("%s %d operations and %d faults, %s, %d lost writes\n", verdict, st.Operations, len(faults), lin, rep.Lost)
	fmt.Printf("  (%d acknowledged writes, %d unknown of which %d took effect, %d refused, %d reads; partitions by %s)\n",
		st.OkWrites, st.UnknownWrites, st.UnknownWrites-(len(ops)-len(resolved)), st.FailedWrites, st.Reads, c.partitionMethod())
}

// mustSameRevisionEverywhere reads svc's status through each server in
// turn until the three answers agree. A write whose client gave up may
// still commit now (a request a stopped server had buffered), so one round
// may straddle it; a few rounds may not.
func mustSameRevisionEverywhere(t *testing.T, c *chaosCluster, rec *chaos.Recorder, svc string) {
	t.Helper()
	var revs map[string]int
	for range 10 {
		revs = map[string]int{}
		for _, nd := range c.nodes {
			out, err := chaos.ReadStatus(context.Background(), rec, chaosClients+nd.idx, c.client(nd), svc, chaosOpTimeout)
			if err != nil {
				t.Fatalf("status of %s through %s after healing: %v", svc, nd.id, err)
			}
			revs[nd.id] = out.Revision
		}
		if revs["n1"] == revs["n2"] && revs["n2"] == revs["n3"] {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("%s: servers still answer different revisions after healing: %v", svc, revs)
}

// mustWriteProgress waits until n more writes than now are acknowledged.
func mustWriteProgress(t *testing.T, rec *chaos.Recorder, n int) {
	t.Helper()
	want := rec.Stats().OkWrites + n
	deadline := time.Now().Add(60 * time.Second)
	for rec.Stats().OkWrites < want {
		if time.Now().After(deadline) {
			t.Fatalf("the cluster acknowledged no %d writes within 60s: %+v", n, rec.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustFinalRevisions reads a service's whole history from the healed
// cluster (none when the workload never created it).
func mustFinalRevisions(t *testing.T, c *chaosCluster, svc string) []chaos.Revision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chaosOpTimeout)
	defer cancel()
	h, err := c.client().History(ctx, svc)
	if errors.Is(err, controller.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("history of %s: %v", svc, err)
	}
	var out []chaos.Revision
	for _, e := range h {
		v, err := chaos.ValueOfImage(e.Image)
		if err != nil {
			v = -1 // reported by CheckFinal as a value no write issued
		}
		out = append(out, chaos.Revision{Number: e.Revision, Value: v, Cause: e.Cause})
	}
	return out
}
