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
	"strings"
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

// harnessClient is the client id of the operations the harness itself
// records (membership changes, the final reads).
const harnessClient = chaosClients + 3

// faultMembership: `cluster remove` a follower, or `cluster leave` of the
// leader (it hands leadership over first; the client retries on the new
// leader), then kill the removed server, wipe it and start it again: it
// joins through --join under the same id and address (its certificate's
// name). Both changes are recorded operations on the cluster's voters,
// which the workload reads; the join is open from the server's start
// until the leader shows it as a healthy voter.
func faultMembership(leave bool) chaosFault {
	name := "cluster remove a follower, wipe it, rejoin"
	if leave {
		name = "cluster leave of the leader, wipe it, rejoin"
	}
	return chaosFault{name: name, inject: func(c *chaosCluster, l *chaosNode, rng *rand.Rand) {
		v := victim(c, l, leave, rng)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		call := c.rec.Now()
		err := c.client().RemoveServer(ctx, v.id)
		cancel()
		out := chaos.Output{Outcome: chaos.Ok}
		if err != nil {
			out.Outcome = chaos.Unknown
			c.t.Logf("remove %s: %v (recorded as unknown)", v.id, err)
		}
		c.rec.Record(harnessClient, chaos.Input{Kind: chaos.MemberRemove, Service: chaos.ClusterKey, Node: v.id}, call, out)
		c.kill(v, syscall.SIGKILL)
		c.mustLeaderAmong(c.others(v), 30*time.Second)
		if err := os.RemoveAll(v.dataDir); err != nil {
			c.t.Fatal(err)
		}
		call = c.rec.Now()
		c.start(v)
		c.mustConverge(chaosConvergeTimeout)
		c.rec.Record(harnessClient, chaos.Input{Kind: chaos.MemberJoin, Service: chaos.ClusterKey, Node: v.id}, call, chaos.Output{Outcome: chaos.Ok})
	}}
}

// faultClockJump steps a node's controller wall clock by hours or
// seconds, forward or back, and leaves it there (an NTP step is not
// undone): its stamps in commands, the idempotency records' expiry
// (requestTTL, one hour) and rollout deadlines see the jump; raft's
// timers, which are monotonic, do not, as with a real clock.
func faultClockJump(leader bool) chaosFault {
	return chaosFault{name: "step the " + role(leader) + "'s clock", inject: func(c *chaosCluster, l *chaosNode, rng *rand.Rand) {
		v := victim(c, l, leader, rng)
		steps := []time.Duration{2 * time.Hour, -2 * time.Hour, 90 * time.Second, -90 * time.Second, 25 * time.Hour}
		d := steps[rng.IntN(len(steps))]
		if v.clock+d > 48*time.Hour || v.clock+d < -48*time.Hour {
			d = -d
		}
		c.t.Logf("clock of %s: %s %+v", v.id, v.clock, d)
		c.stepClock(v, d)
		time.Sleep(3 * electionTimeout) // the workload runs on the stepped clock
	}}
}

// allFaults is what the soak tier draws from.
func allFaults() []chaosFault {
	return []chaosFault{
		faultKill(true), faultKill(false), faultPause(true), faultPause(false),
		faultPartition(true), faultPartition(false), faultWipe(),
		faultMembership(false), faultMembership(true), faultClockJump(true), faultClockJump(false),
	}
}

// TestChaosBounded is the CI tier: kill -9 the leader and restart it, step
// the new leader's clock, wipe a follower and let it rejoin, partition the
// leader into a minority and heal, remove a follower from the cluster and
// let it rejoin, SIGSTOP a follower past the election timeout; under four
// concurrent clients running every operation, with every history checked.
func TestChaosBounded(t *testing.T) {
	runChaos(t, []chaosFault{faultKill(true), faultClockJump(true), faultWipe(), faultPartition(true), faultMembership(false), faultPause(false)}, 1)
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
	// doomedService takes the DoomedWorker's releases only.
	doomedService = "doomed-0"
)

func runChaos(t *testing.T, faults []chaosFault, seed uint64) {
	c := mustStartChaosCluster(t)
	t.Logf("partitions by %s", c.partitionMethod())
	rec := chaos.NewRecorder()
	c.rec = rec
	var services []string
	for i := range chaosServices {
		services = append(services, fmt.Sprintf("svc-%d", i))
	}
	removable := []string{"rm-0"}
	var clients []*wire.Client
	for i := range chaosClients {
		// Every server is some client's first address.
		order := append(append([]*chaosNode(nil), c.nodes[i%len(c.nodes):]...), c.nodes[:i%len(c.nodes)]...)
		clients = append(clients, c.client(order...))
	}
	ctx, stop := context.WithCancel(context.Background())
	workloadDone := make(chan struct{})
	// Automatic rollbacks, outside the porcupine model: good and doomed
	// releases in turn on their own service (DESIGN.md, "Automatic
	// rollbacks").
	doomed := &chaos.DoomedWorker{Client: c.client(), Service: doomedService, Image: c.reg.Image, OpTimeout: chaosOpTimeout, Wait: 15 * time.Second}
	go func() {
		defer close(workloadDone)
		done := make(chan struct{})
		go func() { defer close(done); doomed.Run(ctx) }()
		chaos.Workload{
			Clients: clients, Services: services, Removable: removable, Mix: true, Image: c.reg.Image,
			OpTimeout: chaosOpTimeout, Pause: chaosPause, Seed: seed, Recorder: rec,
		}.Run(ctx)
		<-done
	}()
	// Stopped before the cleanups remove the servers and their network,
	// even when the test fails half-way.
	stopWorkload := func() { stop(); <-workloadDone }
	defer stopWorkload()

	mustWriteProgress(t, rec, 10)
	var windows []chaos.Window
	for i, f := range faults {
		leader := c.mustConverge(chaosConvergeTimeout)
		t.Logf("fault %d/%d: %s (leader %s)", i+1, len(faults), f.name, leader.id)
		start := time.Now()
		f.inject(c, leader, rand.New(rand.NewPCG(seed, uint64(i))))
		l := c.mustConverge(chaosConvergeTimeout)
		windows = append(windows, chaos.Window{Start: start, End: time.Now()})
		// Liveness: once healed, the cluster takes writes again.
		mustWriteProgress(t, rec, 5)
		t.Logf("fault %d/%d: converged on leader %s and took writes %s after the fault began", i+1, len(faults), l.id, time.Since(start).Round(time.Millisecond))
	}
	stopWorkload()

	// Scaled revisions ask for replicas no host runs (no agent), so their
	// rollouts wait: scale every service back to 0 (recorded and checked
	// like the workload's scales) so that every current rollout can end.
	mustScaleToZero(t, c, rec, append(append([]string(nil), services...), removable...))

	// Convergence: one leader for all, and a status read through each
	// server (recorded and checked like any other read) answers the same
	// revision.
	c.mustConverge(chaosConvergeTimeout)
	final := map[string][]chaos.Revision{}
	for _, svc := range append(append([]string(nil), services...), removable...) {
		mustSameRevisionEverywhere(t, c, rec, svc)
		// The final history is an observation too: checked by the model
		// (every revision of this life, none left from a purged one) as
		// well as used to settle the unknown operations.
		call := rec.Now()
		final[svc] = mustFinalRevisions(t, c, svc)
		rec.Record(harnessClient, chaos.Input{Kind: chaos.HistoryRead, Service: svc}, call, chaos.HistoryOutput(final[svc]))
	}
	for _, nd := range c.nodes {
		if _, err := chaos.ReadPolicy(context.Background(), rec, harnessClient, c.client(nd), chaosOpTimeout); err != nil {
			t.Errorf("policy through %s after healing: %v", nd.id, err)
		}
		if m, err := chaos.ReadCluster(context.Background(), rec, harnessClient, c.client(nd), chaosOpTimeout); err != nil || m != chaos.InitialMembers {
			t.Errorf("voters through %s after healing: %q, %v", nd.id, m, err)
		}
	}
	// Every rollout ended exactly once, whatever leader drove it: the
	// current revisions' rollouts (replicas: 0) end within a few loop
	// ticks of healing.
	var rolloutProblems []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		rolloutProblems = chaos.CheckRolloutsEnded(final)
		if len(rolloutProblems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
		for _, svc := range append(append([]string(nil), services...), removable...) {
			final[svc] = mustFinalRevisions(t, c, svc)
		}
	}
	for _, p := range rolloutProblems {
		t.Error("rollout: " + p)
	}
	// The doomed service: each doomed release rolled back exactly once, by
	// whichever leader saw its deadline pass.
	var doomedRep chaos.DoomedReport
	for deadline := time.Now().Add(30 * time.Second); ; {
		revs := mustFinalRevisions(t, c, doomedService)
		doomedRep = chaos.CheckDoomed(doomed.Log, revs, windows)
		doomedRep.Problems = append(doomedRep.Problems, chaos.CheckRolloutsEnded(map[string][]chaos.Revision{doomedService: revs})...)
		if len(doomedRep.Problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err := doomedRep.Err(); err != nil {
		t.Error(err)
	}
	if doomed.GaveUp {
		t.Errorf("%s: a doomed release was not rolled back within %s", doomedService, doomed.Wait)
	}

	ops := rec.Operations()
	st := rec.Stats()
	t.Logf("history: %+v", st)
	// Both checks can fail: internal/chaos's tests run them on histories of
	// broken servers. A workload that did nothing would prove nothing.
	if st.OkWrites < 20 || st.Reads < 20 || st.ServicesWritten != chaosServices+len(removable) ||
		st.OkRollbacks == 0 || st.OkScales == 0 || st.UnchangedScales == 0 || st.OkRemoves == 0 || st.OkPolicy == 0 || st.ClusterReads == 0 || st.MemberChanges == 0 ||
		doomedRep.Rollbacks == 0 {
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
	fmt.Printf("  (%d acknowledged writes, %d unknown, %d refused, %d reads; %d rollbacks (%d ok), %d scales (%d ok, %d unchanged), %d rm (%d ok), %d policy sets (%d ok), %d policy reads, %d membership changes, %d cluster reads; %d unknown operations settled by the final state; partitions by %s)\n",
		st.OkWrites, st.UnknownWrites, st.FailedWrites, st.Reads, st.Rollbacks, st.OkRollbacks, st.Scales, st.OkScales, st.UnchangedScales, st.Removes, st.OkRemoves, st.PolicySets, st.OkPolicy, st.PolicyReads,
		st.MemberChanges, st.ClusterReads, len(ops)-len(resolved), c.partitionMethod())
	fmt.Printf("  %d automatic rollbacks of doomed releases (%d with a fault under way), %d applies on %s\n", doomedRep.Rollbacks, doomedRep.WithFault, len(doomed.Log), doomedService)
	fmt.Printf("  faults: %s\n", faultCounts(faults))
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

// mustScaleToZero scales each service to 0 replicas through the healed
// cluster, recorded as the harness's operations. A refused try (a
// conflict with a write whose client gave up but that commits now) is
// tried again; not found is fine (rm-0 may be gone).
func mustScaleToZero(t *testing.T, c *chaosCluster, rec *chaos.Recorder, svcs []string) {
	t.Helper()
	for _, svc := range svcs {
		var out chaos.Output
		for range 5 {
			out = chaos.DoScale(context.Background(), rec, harnessClient, c.client(), svc, 0, chaosOpTimeout)
			if out.Outcome == chaos.Ok || out.Outcome == chaos.NotFound {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if out.Outcome != chaos.Ok && out.Outcome != chaos.NotFound {
			t.Errorf("scale %s to 0 after healing: %s", svc, out.Outcome)
		}
	}
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
	var h []wire.HistoryEntry
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), chaosOpTimeout)
		h, err = c.client().History(ctx, svc)
		cancel()
		if err == nil || errors.Is(err, controller.ErrNotFound) || time.Now().After(deadline) {
			break
		}
		// Logged: after healing, the cluster should answer at once.
		t.Logf("history of %s after healing: %v (retrying)", svc, err)
		time.Sleep(500 * time.Millisecond)
	}
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
		out = append(out, chaos.Revision{Number: e.Revision, Value: v, Replicas: e.Replicas, Cause: e.Cause, State: e.State, RollbackOf: e.RollbackOf, RollbackTo: e.RollbackTo, CreatedAt: e.CreatedAt})
	}
	return out
}

// faultCounts names how many faults of each kind a run injected.
func faultCounts(faults []chaosFault) string {
	n := map[string]int{}
	var order []string
	for _, f := range faults {
		if n[f.name] == 0 {
			order = append(order, f.name)
		}
		n[f.name]++
	}
	var parts []string
	for _, name := range order {
		parts = append(parts, fmt.Sprintf("%d x %s", n[name], name))
	}
	return strings.Join(parts, "; ")
}
