package raftstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// waitBound bounds every wait in these tests. It is a failure deadline for
// a hung cluster, not a speed assertion.
const waitBound = 15 * time.Second

// errRejected is what listFSM returns for commands starting with "fail:".
var errRejected = errors.New("command rejected")

// listFSM is an append-only list of strings with a JSON snapshot. A command
// already in the list is not added again, so that a test may retry an Apply
// whose outcome was unknown (leadership moved under load).
type listFSM struct {
	mu       sync.Mutex
	items    []string
	restores int
}

func (f *listFSM) Apply(entry *raft.Log) any {
	cmd := string(entry.Data)
	if strings.HasPrefix(cmd, "fail:") {
		return fmt.Errorf("%w: %s", errRejected, cmd)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := slices.Index(f.items, cmd); i >= 0 {
		return i + 1
	}
	f.items = append(f.items, cmd)
	return len(f.items)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return listSnapshot(slices.Clone(f.items)), nil
}

func (f *listFSM) Restore(snapshot io.ReadCloser) error {
	defer snapshot.Close()
	var items []string
	if err := json.NewDecoder(snapshot).Decode(&items); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items = items
	f.restores++
	return nil
}

func (f *listFSM) Items() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.items)
}

func (f *listFSM) Restores() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores
}

type listSnapshot []string

func (s listSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("encode snapshot: %w", err)
	}
	return sink.Close()
}

func (s listSnapshot) Release() {}

// testConfig is a node config with test timeouts: smaller than raft's
// defaults for quick elections, large enough that a loaded 2-core machine
// running -race does not depose leaders at random.
func testConfig(id, dataDir string, fsm raft.FSM) Config {
	return Config{
		NodeID:             id,
		DataDir:            dataDir,
		BindAddr:           "127.0.0.1:0",
		FSM:                fsm,
		Logger:             hclog.NewNullLogger(),
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
	}
}

func mustOpen(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close(%s): %v", cfg.NodeID, err)
		}
	})
	return n
}

func mustClose(t testing.TB, n *Node) {
	t.Helper()
	if err := n.Close(); err != nil {
		t.Fatalf("Close(%s): %v", n.ID(), err)
	}
}

func boundedContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	t.Cleanup(cancel)
	return ctx
}

// mustEventually polls cond until it holds, failing after waitBound.
func mustEventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustWaitForLeader(t testing.TB, n *Node) string {
	t.Helper()
	id, err := n.WaitForLeader(boundedContext(t))
	if err != nil {
		t.Fatalf("WaitForLeader on %s: %v", n.ID(), err)
	}
	return id
}

func mustApply(t testing.TB, n *Node, cmd string) any {
	t.Helper()
	resp, err := n.Apply(boundedContext(t), []byte(cmd))
	if err != nil {
		t.Fatalf("Apply(%q) on %s: %v", cmd, n.ID(), err)
	}
	return resp
}

func mustServers(t testing.TB, n *Node) []Server {
	t.Helper()
	servers, err := n.Servers(boundedContext(t))
	if err != nil {
		t.Fatalf("Servers on %s: %v", n.ID(), err)
	}
	return servers
}

func mustConfigIndex(t testing.TB, n *Node) uint64 {
	t.Helper()
	future := n.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		t.Fatalf("GetConfiguration on %s: %v", n.ID(), err)
	}
	return future.Index()
}

// mustSingleLeader bootstraps a single-node cluster and waits until it leads.
func mustSingleLeader(t testing.TB, dataDir string) (*Node, *listFSM) {
	t.Helper()
	fsm := &listFSM{}
	cfg := testConfig("node1", dataDir, fsm)
	cfg.Bootstrap = true
	n := mustOpen(t, cfg)
	if id := mustWaitForLeader(t, n); id != "node1" {
		t.Fatalf("leader = %q, want node1", id)
	}
	return n, fsm
}

// testCluster is a set of nodes in one process; nodes[i] uses dirs[i].
type testCluster struct {
	nodes []*Node
	fsms  []*listFSM
	dirs  []string
}

// mustCluster bootstraps node1, then adds the others as voters through the
// leader and waits until every node knows the full membership.
func mustCluster(t testing.TB, size int, configure func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{}
	for i := range size {
		dir := t.TempDir()
		fsm := &listFSM{}
		cfg := testConfig(fmt.Sprintf("node%d", i+1), dir, fsm)
		cfg.Bootstrap = i == 0
		if configure != nil {
			configure(&cfg)
		}
		n := mustOpen(t, cfg)
		c.nodes = append(c.nodes, n)
		c.fsms = append(c.fsms, fsm)
		c.dirs = append(c.dirs, dir)
		if i == 0 {
			if id := mustWaitForLeader(t, n); id != n.ID() {
				t.Fatalf("leader = %q, want %s", id, n.ID())
			}
			continue
		}
		mustOnLeader(t, "add voter "+n.ID(), c.nodes, func(ctx context.Context, leader *Node) error {
			return leader.AddVoter(ctx, n.ID(), n.Addr())
		})
	}
	for _, n := range c.nodes {
		mustEventually(t, n.ID()+" knows all servers", func() bool {
			servers, err := n.Servers(boundedContext(t))
			return err == nil && len(servers) == size
		})
	}
	return c
}

// currentLeader returns the node among nodes that leads right now, or nil.
func currentLeader(nodes []*Node) *Node {
	for _, n := range nodes {
		if n.IsLeader() {
			return n
		}
	}
	return nil
}

// mustOnLeader runs op on whichever of nodes leads, retrying while
// leadership moves (ErrNotLeader, ErrTimeout) so that an election under load
// does not fail a test about something else. op must be safe to repeat. It
// returns the node op succeeded on.
func mustOnLeader(t testing.TB, what string, nodes []*Node, op func(context.Context, *Node) error) *Node {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	var lastErr error
	for time.Now().Before(deadline) {
		if leader := currentLeader(nodes); leader != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := op(ctx, leader)
			cancel()
			if err == nil {
				return leader
			}
			if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) {
				t.Fatalf("%s on %s: %v", what, leader.ID(), err)
			}
			lastErr = err
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: did not succeed on a leader within %v (last error: %v)", what, waitBound, lastErr)
	return nil
}

// mustApplyOnLeader applies cmd on whichever of nodes leads.
func mustApplyOnLeader(t testing.TB, cmd string, nodes ...*Node) *Node {
	t.Helper()
	return mustOnLeader(t, fmt.Sprintf("apply %q", cmd), nodes, func(ctx context.Context, leader *Node) error {
		_, err := leader.Apply(ctx, []byte(cmd))
		return err
	})
}

// mustLeaderAmong waits until exactly one of nodes leads and returns it.
func mustLeaderAmong(t testing.TB, nodes ...*Node) *Node {
	t.Helper()
	var leader *Node
	mustEventually(t, "one node leads", func() bool {
		leader = nil
		for _, n := range nodes {
			if n.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// mustConverge waits until every FSM holds want.
func mustConverge(t testing.TB, want []string, fsms ...*listFSM) {
	t.Helper()
	for i, fsm := range fsms {
		mustEventually(t, fmt.Sprintf("fsm %d holds %v (has %v)", i, want, fsm.Items()), func() bool {
			return slices.Equal(fsm.Items(), want)
		})
	}
}

// mustReceive reads one value from a leadership channel.
func mustReceive(t testing.TB, ch <-chan bool) (value, ok bool) {
	t.Helper()
	select {
	case value, ok = <-ch:
		return value, ok
	case <-time.After(waitBound):
		t.Fatal("timed out waiting for a leadership notification")
		return false, false
	}
}

func mustReceiveUntil(t testing.TB, ch <-chan bool, want bool) {
	t.Helper()
	for {
		got, ok := mustReceive(t, ch)
		if !ok {
			t.Fatalf("leadership channel closed before %v", want)
		}
		if got == want {
			return
		}
	}
}

func TestSingleNodeBootstrapsAndLeads(t *testing.T) {
	dir := t.TempDir()
	n, _ := mustSingleLeader(t, dir)

	if !n.bootstrapped {
		t.Error("fresh node with Bootstrap=true was not bootstrapped")
	}
	if !n.IsLeader() {
		t.Error("IsLeader() = false on the only node")
	}
	if _, port, err := net.SplitHostPort(n.Addr()); err != nil || port == "0" {
		t.Errorf("Addr() = %q, want the real listener port", n.Addr())
	}
	if id, addr := n.Leader(); id != "node1" || addr != n.Addr() {
		t.Errorf("Leader() = (%q, %q), want (node1, %q)", id, addr, n.Addr())
	}
	if got := n.Stats()["state"]; got != "Leader" {
		t.Errorf("Stats()[state] = %q, want Leader", got)
	}
	servers := mustServers(t, n)
	want := []Server{{ID: "node1", Address: n.Addr(), Voter: true, Leader: true}}
	if !slices.Equal(servers, want) {
		t.Errorf("Servers() = %+v, want %+v", servers, want)
	}
	mustReceiveUntil(t, n.LeaderCh(), true)

	for _, path := range []string{"raft", "raft/snapshots"} {
		info, err := os.Stat(filepath.Join(dir, path))
		if err != nil {
			t.Fatalf("stat %s: %v", path, err)
		}
		if !info.IsDir() || info.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want a 0700 directory", path, info.Mode())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", "raft.db")); err != nil {
		t.Errorf("bolt store: %v", err)
	}
}

func TestApply(t *testing.T) {
	n, _ := mustSingleLeader(t, t.TempDir())
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name     string
		ctx      context.Context
		cmd      string
		wantResp any
		wantErr  error
	}{
		{name: "first command", ctx: context.Background(), cmd: "a", wantResp: 1},
		{name: "second command", ctx: context.Background(), cmd: "b", wantResp: 2},
		{name: "FSM error is returned as the error", ctx: context.Background(), cmd: "fail:x", wantErr: errRejected},
		{name: "expired deadline", ctx: expired, cmd: "c", wantErr: ErrTimeout},
		{name: "canceled context", ctx: canceled, cmd: "c", wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := n.Apply(tt.ctx, []byte(tt.cmd))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Apply(%q) error = %v, want %v", tt.cmd, err, tt.wantErr)
				}
				return
			}
			if err != nil || resp != tt.wantResp {
				t.Fatalf("Apply(%q) = (%v, %v), want (%v, nil)", tt.cmd, resp, err, tt.wantResp)
			}
		})
	}
}

func TestReopenRestoresStateWithoutRebootstrap(t *testing.T) {
	dir := t.TempDir()
	n, _ := mustSingleLeader(t, dir)
	want := []string{"a", "b", "c"}
	for _, cmd := range want {
		mustApply(t, n, cmd)
	}
	appliedBefore := n.AppliedIndex()
	addr := n.Addr()
	mustClose(t, n)

	fsm := &listFSM{}
	cfg := testConfig("node1", dir, fsm)
	cfg.BindAddr = addr
	cfg.Bootstrap = true // must be ignored: the node holds state
	reopened := mustOpen(t, cfg)
	if reopened.bootstrapped {
		t.Fatal("node holding raft state was bootstrapped again")
	}
	if id := mustWaitForLeader(t, reopened); id != "node1" {
		t.Fatalf("leader after reopen = %q, want node1", id)
	}
	if err := reopened.Barrier(boundedContext(t)); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	if got := fsm.Items(); !slices.Equal(got, want) {
		t.Errorf("state after reopen = %v, want %v", got, want)
	}
	// raft publishes AppliedIndex just after handing entries to the FSM, so
	// it may trail the Barrier by a moment.
	mustEventually(t, fmt.Sprintf("AppliedIndex reaches %d", appliedBefore), func() bool {
		return reopened.AppliedIndex() >= appliedBefore
	})
	if servers := mustServers(t, reopened); len(servers) != 1 {
		t.Errorf("Servers after reopen = %+v, want the one original server", servers)
	}
}

func TestSnapshotOnFreshNodeHasNothingToSnapshot(t *testing.T) {
	n := mustOpen(t, testConfig("node1", t.TempDir(), &listFSM{}))
	if err := n.Snapshot(); !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("Snapshot on a fresh node: error = %v, want %v", err, raft.ErrNothingNewToSnapshot)
	}
}

func TestSnapshotThenReopenRestoresFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	n, _ := mustSingleLeader(t, dir)
	var want []string
	for i := range 15 {
		cmd := fmt.Sprintf("cmd-%02d", i)
		mustApply(t, n, cmd)
		want = append(want, cmd)
		if i == 9 {
			if err := n.Snapshot(); err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
		}
	}
	addr := n.Addr()
	mustClose(t, n)

	snapshots, err := os.ReadDir(filepath.Join(dir, "raft", "snapshots"))
	if err != nil || len(snapshots) != 1 {
		t.Fatalf("snapshot dir holds %v (err %v), want one snapshot", snapshots, err)
	}

	fsm := &listFSM{}
	cfg := testConfig("node1", dir, fsm)
	cfg.BindAddr = addr
	reopened := mustOpen(t, cfg)
	mustWaitForLeader(t, reopened)
	if err := reopened.Barrier(boundedContext(t)); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	if got := fsm.Restores(); got != 1 {
		t.Errorf("FSM restored %d times, want 1 (from the snapshot)", got)
	}
	if got := fsm.Items(); !slices.Equal(got, want) {
		t.Errorf("state after reopen = %v, want %v", got, want)
	}
}

func TestClusterReplicatesAndRejectsFollowerWrites(t *testing.T) {
	c := mustCluster(t, 3, nil)
	want := []string{"x", "y", "z"}
	for _, cmd := range want {
		mustApplyOnLeader(t, cmd, c.nodes...)
	}
	mustConverge(t, want, c.fsms...)
	leader := mustLeaderAmong(t, c.nodes...)

	servers := mustServers(t, leader)
	leaders := 0
	for _, s := range servers {
		if !s.Voter {
			t.Errorf("server %s is not a voter", s.ID)
		}
		if s.Leader {
			leaders++
		}
	}
	if len(servers) != 3 || leaders != 1 {
		t.Errorf("Servers() = %+v, want 3 voters with one leader", servers)
	}

	for _, follower := range c.nodes {
		if follower == leader {
			continue
		}
		calls := []struct {
			name string
			call func(context.Context) error
		}{
			{"Apply", func(ctx context.Context) error { _, err := follower.Apply(ctx, []byte("w")); return err }},
			{"Barrier", follower.Barrier},
			{"VerifyLeader", follower.VerifyLeader},
			{"AddVoter", func(ctx context.Context) error { return follower.AddVoter(ctx, "node9", "127.0.0.1:1") }},
			{"RemoveServer", func(ctx context.Context) error { return follower.RemoveServer(ctx, leader.ID()) }},
			{"TransferLeadership", follower.TransferLeadership},
		}
		for _, tc := range calls {
			err := tc.call(boundedContext(t))
			if !errors.Is(err, ErrNotLeader) {
				t.Errorf("%s on follower %s: error = %v, want ErrNotLeader", tc.name, follower.ID(), err)
				continue
			}
			var notLeader *NotLeaderError
			if !errors.As(err, &notLeader) {
				t.Errorf("%s on follower %s: error %v is not a *NotLeaderError", tc.name, follower.ID(), err)
				continue
			}
			if notLeader.LeaderID != "" && (notLeader.LeaderID == follower.ID() || notLeader.LeaderAddr == "") {
				t.Errorf("%s on follower %s: names leader %+v", tc.name, follower.ID(), notLeader)
			}
		}
	}
	if got := mustServers(t, leader); len(got) != 3 {
		t.Errorf("follower calls changed membership: %+v", got)
	}
	mustConverge(t, want, c.fsms...)
}

func TestClusterFailover(t *testing.T) {
	c := mustCluster(t, 3, nil)
	oldLeader := mustApplyOnLeader(t, "before", c.nodes...)
	mustClose(t, oldLeader)

	var survivors []*Node
	var survivorFSMs []*listFSM
	for i, n := range c.nodes {
		if n != oldLeader {
			survivors = append(survivors, n)
			survivorFSMs = append(survivorFSMs, c.fsms[i])
		}
	}
	for _, n := range survivors {
		mustEventually(t, n.ID()+" knows a new leader", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			id, err := n.WaitForLeader(ctx)
			return err == nil && id != oldLeader.ID()
		})
	}
	mustApplyOnLeader(t, "after", survivors...)
	mustConverge(t, []string{"before", "after"}, survivorFSMs...)
}

// splitFollower picks a node that does not lead right now and returns it,
// its data dir and the other nodes.
func (c *testCluster) splitFollower(t testing.TB) (follower *Node, dir string, others []*Node) {
	t.Helper()
	leader := mustLeaderAmong(t, c.nodes...)
	for i, n := range c.nodes {
		if n != leader && follower == nil {
			follower, dir = n, c.dirs[i]
			continue
		}
		others = append(others, n)
	}
	return follower, dir, others
}

func TestAddVoterIsIdempotentAndReplacesAddress(t *testing.T) {
	c := mustCluster(t, 3, nil)
	follower, followerDir, others := c.splitFollower(t)

	indexBefore := mustConfigIndex(t, mustLeaderAmong(t, c.nodes...))
	mustOnLeader(t, "re-add an existing voter", c.nodes, func(ctx context.Context, leader *Node) error {
		return leader.AddVoter(ctx, follower.ID(), follower.Addr())
	})
	mustEventually(t, "the leader refuses to move itself", func() bool {
		leader := currentLeader(c.nodes)
		if leader == nil {
			return false
		}
		err := leader.AddVoter(boundedContext(t), leader.ID(), "127.0.0.1:1")
		if errors.Is(err, ErrNotLeader) {
			return false
		}
		if err == nil || !strings.Contains(err.Error(), "transfer leadership first") {
			t.Fatalf("AddVoter moving the leader itself: error = %v", err)
		}
		return true
	})
	if got := mustConfigIndex(t, mustLeaderAmong(t, c.nodes...)); got != indexBefore {
		t.Errorf("no-op AddVoter calls changed the configuration (index %d -> %d)", indexBefore, got)
	}

	// The follower comes back on another port: AddVoter with the same ID
	// moves it to the new address.
	oldAddr := follower.Addr()
	mustClose(t, follower)
	fsm := &listFSM{}
	moved := mustOpen(t, testConfig(follower.ID(), followerDir, fsm))
	if moved.Addr() == oldAddr {
		t.Fatalf("reopened node got the same address %s; cannot test an address change", oldAddr)
	}
	mustOnLeader(t, "move a voter", others, func(ctx context.Context, leader *Node) error {
		return leader.AddVoter(ctx, moved.ID(), moved.Addr())
	})
	servers := mustServers(t, mustLeaderAmong(t, others...))
	var movedAddrs []string
	for _, s := range servers {
		if s.ID == moved.ID() {
			movedAddrs = append(movedAddrs, s.Address)
		}
	}
	if len(servers) != 3 || !slices.Equal(movedAddrs, []string{moved.Addr()}) {
		t.Errorf("Servers() = %+v, want 3 with %s only at %s", servers, moved.ID(), moved.Addr())
	}
	mustApplyOnLeader(t, "after-move", others...)
	mustConverge(t, []string{"after-move"}, fsm)
}

func TestRemoveServer(t *testing.T) {
	c := mustCluster(t, 3, nil)
	removed, _, remaining := c.splitFollower(t)
	mustOnLeader(t, "remove a follower", remaining, func(ctx context.Context, leader *Node) error {
		return leader.RemoveServer(ctx, removed.ID())
	})
	leader := mustLeaderAmong(t, remaining...)
	servers := mustServers(t, leader)
	if len(servers) != 2 || slices.ContainsFunc(servers, func(s Server) bool { return s.ID == removed.ID() }) {
		t.Errorf("Servers() after removing %s = %+v", removed.ID(), servers)
	}

	indexBefore := mustConfigIndex(t, leader)
	mustOnLeader(t, "remove an absent server", remaining, func(ctx context.Context, leader *Node) error {
		return leader.RemoveServer(ctx, removed.ID())
	})
	if got := mustConfigIndex(t, mustLeaderAmong(t, remaining...)); got != indexBefore {
		t.Errorf("RemoveServer of an absent server changed the configuration (index %d -> %d)", indexBefore, got)
	}

	// The remaining two still form a quorum and replicate.
	mustApplyOnLeader(t, "after-remove", remaining...)
	var remainingFSMs []*listFSM
	for i, n := range c.nodes {
		if n != removed {
			remainingFSMs = append(remainingFSMs, c.fsms[i])
		}
	}
	mustConverge(t, []string{"after-remove"}, remainingFSMs...)
}

func TestBootstrapIgnoredOnFollowerWithState(t *testing.T) {
	c := mustCluster(t, 3, nil)
	mustApplyOnLeader(t, "one", c.nodes...)
	mustConverge(t, []string{"one"}, c.fsms...)
	follower, followerDir, others := c.splitFollower(t)
	addr := follower.Addr()
	mustClose(t, follower)

	fsm := &listFSM{}
	cfg := testConfig(follower.ID(), followerDir, fsm)
	cfg.BindAddr = addr
	cfg.Bootstrap = true
	reopened := mustOpen(t, cfg)
	if reopened.bootstrapped {
		t.Fatal("follower holding raft state was bootstrapped as a new cluster")
	}
	mustApplyOnLeader(t, "two", append(others, reopened)...)
	mustConverge(t, []string{"one", "two"}, fsm)
	if servers := mustServers(t, reopened); len(servers) != 3 {
		t.Errorf("reopened follower sees servers %+v, want the 3-node cluster", servers)
	}
}

func TestTransferLeadershipNotifiesLeaderCh(t *testing.T) {
	c := mustCluster(t, 3, nil)
	leader := mustLeaderAmong(t, c.nodes...)
	leadership := leader.LeaderCh()
	mustReceiveUntil(t, leadership, true)

	if err := leader.TransferLeadership(boundedContext(t)); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	if got, ok := mustReceive(t, leadership); !ok || got {
		t.Fatalf("after transfer LeaderCh delivered (%v, open=%v), want false", got, ok)
	}
	others := slices.DeleteFunc(slices.Clone(c.nodes), func(n *Node) bool { return n == leader })
	mustLeaderAmong(t, others...)
	mustApplyOnLeader(t, "after-transfer", c.nodes...)
	mustConverge(t, []string{"after-transfer"}, c.fsms...)
}

func TestLeaderSubscriptionCompaction(t *testing.T) {
	// Steps: T/F push true/false, r receives one value. Whatever is left
	// is drained at the end.
	tests := []struct {
		name  string
		steps string
		want  string
	}{
		{name: "single value", steps: "F", want: "F"},
		{name: "gain", steps: "FT", want: "FT"},
		{name: "duplicates dropped", steps: "TT", want: "T"},
		{name: "unread gain and loss compact to the end state", steps: "FTF", want: "F"},
		{name: "unread loss and regain kept as a pair", steps: "FTFT", want: "FT"},
		{name: "long unread run ending on the start value", steps: "FTFTFTF", want: "F"},
		{name: "read leader, then lost and regained", steps: "TrFTFT", want: "TFT"},
		{name: "read leader, then lost", steps: "TrFTF", want: "TF"},
		{name: "reads in between", steps: "FrTrFrT", want: "FTFT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := newLeaderSubscription()
			var got strings.Builder
			record := func(v bool) {
				if v {
					got.WriteByte('T')
				} else {
					got.WriteByte('F')
				}
			}
			for _, step := range tt.steps {
				switch step {
				case 'T', 'F':
					sub.push(step == 'T')
				case 'r':
					record(<-sub.ch)
				}
			}
			close(sub.ch)
			for v := range sub.ch {
				record(v)
			}
			if got.String() != tt.want {
				t.Errorf("steps %s delivered %s, want %s", tt.steps, got.String(), tt.want)
			}
		})
	}
}

func TestCloseIsIdempotentAndEndsEverything(t *testing.T) {
	n, _ := mustSingleLeader(t, t.TempDir())
	leadership := n.LeaderCh()
	mustReceiveUntil(t, leadership, true)
	addr := n.Addr()

	mustClose(t, n)
	mustClose(t, n)

	if got, ok := mustReceive(t, leadership); !ok || got {
		t.Errorf("LeaderCh after Close delivered (%v, open=%v), want false", got, ok)
	}
	if _, ok := mustReceive(t, leadership); ok {
		t.Error("LeaderCh not closed by Close")
	}
	if _, ok := mustReceive(t, n.LeaderCh()); ok {
		t.Error("LeaderCh called after Close returned an open channel")
	}
	if n.IsLeader() {
		t.Error("IsLeader() = true after Close")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("raft port %s still accepts connections after Close", addr)
	}

	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"Apply", func(ctx context.Context) error { _, err := n.Apply(ctx, []byte("x")); return err }},
		{"Barrier", n.Barrier},
		{"VerifyLeader", n.VerifyLeader},
		{"WaitForLeader", func(ctx context.Context) error { _, err := n.WaitForLeader(ctx); return err }},
		{"Servers", func(ctx context.Context) error { _, err := n.Servers(ctx); return err }},
		{"AddVoter", func(ctx context.Context) error { return n.AddVoter(ctx, "node2", "127.0.0.1:1") }},
		{"RemoveServer", func(ctx context.Context) error { return n.RemoveServer(ctx, "node2") }},
		{"TransferLeadership", n.TransferLeadership},
		{"Snapshot", func(context.Context) error { return n.Snapshot() }},
	}
	for _, tc := range calls {
		if err := tc.call(boundedContext(t)); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: error = %v, want ErrClosed", tc.name, err)
		}
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(*Config)
		wantErr string
		// failsAfterStore: Open fails after opening the bolt store, which
		// must then be released.
		failsAfterStore bool
	}{
		{"no node id", func(c *Config) { c.NodeID = "" }, "NodeID", false},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir", false},
		{"no bind address", func(c *Config) { c.BindAddr = "" }, "BindAddr", false},
		{"no FSM", func(c *Config) { c.FSM = nil }, "FSM", false},
		{"TLS without certificate", func(c *Config) { c.TLS = &tls.Config{} }, "certificate", false},
		{"unspecified bind without advertise", func(c *Config) { c.BindAddr = "0.0.0.0:0" }, "AdvertiseAddr", true},
		{"advertise without port", func(c *Config) { c.AdvertiseAddr = "10.0.0.1:0" }, "non-zero port", true},
		{"unspecified advertise", func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7000" }, "not dialable", true},
		{"lease longer than heartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Second }, "raft config", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig("node1", dir, &listFSM{})
			cfg.Bootstrap = true
			tt.modify(&cfg)
			n, err := Open(cfg)
			if err == nil {
				_ = n.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open error = %v, want it to mention %q", err, tt.wantErr)
			}
			if tt.failsAfterStore {
				// A failed Open must have released the bolt file: the
				// next Open would otherwise time out on its lock.
				mustOpen(t, testConfig("node1", dir, &listFSM{}))
			}
		})
	}
}

func TestOpenFailsOnDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, testConfig("node1", dir, &listFSM{}))
	n, err := Open(testConfig("node1", dir, &listFSM{}))
	if err == nil {
		_ = n.Close()
		t.Fatal("second Open on a data dir in use succeeded")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("Open error = %v, want it to say the data dir is in use", err)
	}
}

func TestOpenFailsOnBusyPortAndReleasesStore(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg := testConfig("node1", dir, &listFSM{})
	cfg.Bootstrap = true
	cfg.BindAddr = busy.Addr().String()
	if n, err := Open(cfg); err == nil {
		_ = n.Close()
		t.Fatal("Open on a busy port succeeded")
	}
	// The bolt file was released: this Open would time out on its lock.
	mustOpen(t, testConfig("node1", dir, &listFSM{}))
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	n, _ := mustSingleLeader(t, t.TempDir())
	mustApply(t, n, "x")
	leadership := n.LeaderCh()
	mustReceiveUntil(t, leadership, true)
	mustClose(t, n)

	// A failed Open must not leak either.
	cfg := testConfig("node1", t.TempDir(), &listFSM{})
	cfg.AdvertiseAddr = "0.0.0.0:7000"
	if _, err := Open(cfg); err == nil {
		t.Fatal("Open with an unspecified advertise address succeeded")
	}
	mustEventually(t, fmt.Sprintf("goroutines return to %d", before), func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// Compact leaves one snapshot and no log entry it covers; the node goes
// on, and a reopened node restores the same state from that snapshot.
func TestCompactDropsCoveredEntriesAndOlderSnapshots(t *testing.T) {
	dir := t.TempDir()
	n, _ := mustSingleLeader(t, dir)
	var want []string
	for i := range 10 {
		cmd := fmt.Sprintf("cmd-%02d", i)
		mustApply(t, n, cmd)
		want = append(want, cmd)
		if i == 4 {
			if err := n.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	last, err := n.bolt.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Compact(); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	first, err := n.bolt.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first != 0 && first <= last {
		t.Fatalf("log starts at %d after compacting through %d", first, last)
	}
	snapshots, err := os.ReadDir(filepath.Join(dir, "raft", "snapshots"))
	if err != nil || len(snapshots) != 1 {
		t.Fatalf("snapshot dir holds %v (err %v), want one snapshot", snapshots, err)
	}
	mustApply(t, n, "after")
	want = append(want, "after")
	addr := n.Addr()
	mustClose(t, n)
	fsm := &listFSM{}
	cfg := testConfig("node1", dir, fsm)
	cfg.BindAddr = addr
	reopened := mustOpen(t, cfg)
	mustWaitForLeader(t, reopened)
	if err := reopened.Barrier(boundedContext(t)); err != nil {
		t.Fatal(err)
	}
	if got := fsm.Items(); !slices.Equal(got, want) {
		t.Fatalf("state after reopen = %v, want %v", got, want)
	}
}
