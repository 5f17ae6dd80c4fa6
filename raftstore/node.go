// Package raftstore hosts the controller's replicated state: a hashicorp/raft
// node (this file) wired to bolt storage, file snapshots and a TCP transport
// that can be wrapped in TLS, plus the FSM that applies commands to the state.
package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Sentinel errors of the node. Errors returned by Node wrap these (test with
// errors.Is); they may wrap the underlying raft or context error as well.
var (
	// ErrNotLeader: the call must run on the leader and this node is not
	// it. The error is a *NotLeaderError naming the leader when known.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: the cluster has no known leader right now (election in
	// progress, or no quorum). Retry later.
	ErrNoLeader = errors.New("no leader")
	// ErrTimeout: the context deadline (or the default timeout) passed
	// before raft answered. For Apply the outcome is unknown: the command
	// may still be committed later.
	ErrTimeout = errors.New("raft apply timed out")
	// ErrClosed: the node was closed (or raft shut down, e.g. after this
	// server was removed from the cluster).
	ErrClosed = errors.New("raft node closed")
)

const (
	// defaultTimeout bounds a call whose context has no deadline.
	defaultTimeout = 10 * time.Second
	// boltOpenTimeout bounds the wait for bolt's file lock, so that a data
	// dir held by another process fails Open instead of hanging it.
	boltOpenTimeout = 2 * time.Second
	// transportTimeout is the I/O deadline the transport puts on RPCs
	// (scaled up for snapshot installs); same as raft.NewTCPTransport users
	// such as Consul and Nomad pass.
	transportTimeout = 10 * time.Second
	// transportMaxPool is the number of pooled outbound connections per peer.
	transportMaxPool = 3
	// snapshotsRetained is how many snapshots the file store keeps.
	snapshotsRetained = 3
)

// The raft timeouts a Config without its own uses (the server's
// --raft-*-timeout defaults). hashicorp/raft's semantics: a leader sends
// heartbeats every HeartbeatTimeout/10; a follower checks for contact at
// random moments HeartbeatTimeout..2×HeartbeatTimeout apart and, finding
// none for HeartbeatTimeout, clears its leader and stands (pre-vote, then
// vote); a candidate that gets no majority tries again after a random
// ElectionTimeout..2×ElectionTimeout. A survivor refuses votes while it
// still knows a leader, so after a leader dies the election is won about
// when the second survivor's own check has fired: kill to new leader is
// roughly 1×..3× HeartbeatTimeout, plus an ElectionTimeout when votes
// split. Half of raft's 1 s defaults gives elections about 0.6-1.6 s after the kill
// instead of 1.1-2.9 s (README, BenchmarkLeaderFailover). The price: a
// follower that hears nothing for 500 ms (a GC or scheduling stall of the
// leader or of itself, a saturated link) starts an election, and writes
// wait for it. On a WAN, or hosts with long stalls, raise all of them
// together (docs/cluster.md).
const (
	DefaultHeartbeatTimeout = 500 * time.Millisecond
	DefaultElectionTimeout  = 500 * time.Millisecond
	// DefaultLeaderLeaseTimeout is as long as raft allows (at most the
	// heartbeat timeout): a leader that loses contact with a quorum steps
	// down after it. It costs nothing when the leader dies; shorter would
	// only make a briefly stalled leader step down needlessly.
	DefaultLeaderLeaseTimeout = 500 * time.Millisecond
	// DefaultCommitTimeout is raft's own: how long an idle leader waits
	// before telling followers the commit index; it does not delay writes.
	DefaultCommitTimeout = 50 * time.Millisecond
)

// NotLeaderError is the concrete error behind ErrNotLeader. It names the
// leader when this node knows it, so that a caller can forward the request.
// When no leader is known it also matches ErrNoLeader.
type NotLeaderError struct {
	LeaderID   string // "" when unknown
	LeaderAddr string // raft address of the leader, "" when unknown
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" && e.LeaderAddr == "" {
		return "not the leader (no leader known)"
	}
	return fmt.Sprintf("not the leader (leader is %q at %s)", e.LeaderID, e.LeaderAddr)
}

// Unwrap makes errors.Is match ErrNotLeader, and ErrNoLeader when no leader
// is known.
func (e *NotLeaderError) Unwrap() []error {
	if e.LeaderID == "" && e.LeaderAddr == "" {
		return []error{ErrNotLeader, ErrNoLeader}
	}
	return []error{ErrNotLeader}
}

// Config configures a Node. NodeID, DataDir, BindAddr and FSM are required.
type Config struct {
	NodeID        string
	DataDir       string
	BindAddr      string      // "127.0.0.1:0" allowed: the node reports the real address
	AdvertiseAddr string      // address peers dial; defaults to the listener's address
	TLS           *tls.Config // used for both listening and dialing; nil: plain TCP (dev mode only)
	// Bootstrap makes a fresh node (no raft state on disk) start a
	// single-node cluster with itself as the only voter. A node that holds
	// state is never bootstrapped again, whatever this says.
	Bootstrap bool
	FSM       raft.FSM
	Logger    hclog.Logger // nil: an Info-level logger on stderr

	// Timeouts: zero means DefaultHeartbeatTimeout and its siblings, not
	// hashicorp/raft's own defaults (1 s, 1 s, 500 ms, 50 ms).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold: raft snapshots once this many entries were
	// appended since the last snapshot, checked every SnapshotInterval
	// (raft's own check). Zero: raft's defaults (8192 entries, 2 min).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// SnapshotSchedule: also take a snapshot this often whenever entries
	// were applied since the last one, however few, so the data
	// directory always holds a recent snapshot. Zero: no schedule.
	SnapshotSchedule time.Duration

	// Metrics times proposals and registers the node's state with its
	// registry (NewMetrics); nil: none.
	Metrics *Metrics
}

// Server is one member of the raft configuration.
type Server struct {
	ID      string
	Address string
	Voter   bool
	Leader  bool
}

// Node is a running raft server. All methods are safe for concurrent use.
type Node struct {
	id     string
	addr   string
	logger hclog.Logger

	// admit is the FSM's version gate, if it has one (see Admitter).
	admit Admitter
	// metrics times proposals (nil: not timed).
	metrics *Metrics

	bolt      *raftboltdb.BoltStore
	snaps     *raft.FileSnapshotStore
	snapDir   string // DATA/raft/snapshots
	stream    *streamLayer
	transport *raft.NetworkTransport
	raft      *raft.Raft

	// bootstrapped records whether Open bootstrapped a new cluster (tests
	// use it to prove a node holding state is never re-bootstrapped).
	bootstrapped bool
	// hadState records whether raft state existed on disk at Open: such a
	// node is never bootstrapped, whatever the cluster formation says.
	hadState bool

	closing    chan struct{} // closed when Close starts
	closeOnce  sync.Once
	closeErr   error
	fanoutDone chan struct{} // closed when the leadership fan-out goroutine exits; nil if never started
	// scheduleDone is closed when the snapshot schedule's goroutine
	// exits; nil without a schedule.
	scheduleDone chan struct{}

	leaderMu   sync.Mutex
	leaderNow  bool // last value raft pushed on NotifyCh
	leaderSubs []*leaderSubscription
	subsClosed bool
}

// Open starts a raft node from cfg.DataDir, creating the layout on first
// start. On error everything Open created is released.
func Open(cfg Config) (*Node, error) {
	if err := validateConfig(cfg); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info})
	}
	n := &Node{
		id:      cfg.NodeID,
		logger:  logger,
		closing: make(chan struct{}),
	}
	if err := n.open(cfg); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

func validateConfig(cfg Config) error {
	switch {
	case cfg.NodeID == "":
		return errors.New("raftstore: Config.NodeID is required")
	case cfg.DataDir == "":
		return errors.New("raftstore: Config.DataDir is required")
	case cfg.BindAddr == "":
		return errors.New("raftstore: Config.BindAddr is required")
	case cfg.FSM == nil:
		return errors.New("raftstore: Config.FSM is required")
	case cfg.TLS != nil && len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil:
		return errors.New("raftstore: Config.TLS has no certificate")
	}
	return nil
}

// open builds the node step by step, leaving each created resource in n so
// that Close can release a partly built node.
func (n *Node) open(cfg Config) error {
	raftDir := filepath.Join(cfg.DataDir, "raft")
	// Created here with 0700 because the snapshot store would create it
	// 0755; raft state includes every declared service.
	if err := os.MkdirAll(filepath.Join(raftDir, "snapshots"), 0o700); err != nil {
		return fmt.Errorf("raftstore: create data dir: %w", err)
	}

	// One bolt file serves as both log store and stable store.
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(raftDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
	})
	if err != nil {
		return fmt.Errorf("raftstore: open %s (in use by another process?): %w", filepath.Join(raftDir, "raft.db"), err)
	}
	n.bolt = bolt

	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, snapshotsRetained, n.logger.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("raftstore: open snapshot store: %w", err)
	}
	n.snaps, n.snapDir = snaps, filepath.Join(raftDir, "snapshots")

	stream, err := newStreamLayer(cfg.BindAddr, cfg.AdvertiseAddr, cfg.TLS)
	if err != nil {
		return err
	}
	n.stream = stream
	n.addr = stream.Addr().String()
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  n.logger.Named("net"),
	})

	// Raft blocks on NotifyCh only until its buffer is full; the fan-out
	// goroutine drains it promptly, so a small buffer suffices.
	notifyCh := make(chan bool, 8)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = n.logger
	rc.NotifyCh = notifyCh
	rc.HeartbeatTimeout = orDefault(cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	rc.ElectionTimeout = orDefault(cfg.ElectionTimeout, DefaultElectionTimeout)
	rc.LeaderLeaseTimeout = orDefault(cfg.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	rc.CommitTimeout = orDefault(cfg.CommitTimeout, DefaultCommitTimeout)
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raftstore: invalid raft config: %w", err)
	}

	hasState, err := raft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		return fmt.Errorf("raftstore: check existing raft state: %w", err)
	}
	n.hadState = hasState
	if cfg.Bootstrap {
		if hasState {
			n.logger.Info("raft state found, not bootstrapping", "data_dir", cfg.DataDir)
		} else {
			bootstrapConfig := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter,
				ID:       raft.ServerID(cfg.NodeID),
				Address:  n.transport.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, bolt, bolt, snaps, n.transport, bootstrapConfig); err != nil {
				return fmt.Errorf("raftstore: bootstrap: %w", err)
			}
			n.bootstrapped = true
			n.logger.Info("bootstrapped single-node cluster", "id", cfg.NodeID, "address", n.addr)
		}
	}

	// Manual recovery after losing quorum for good: an operator writes
	// DATA/raft/peers.json with the surviving servers; the configuration is
	// forced to it once, and the file removed (docs/cluster.md).
	peersFile := filepath.Join(raftDir, "peers.json")
	if _, err := os.Stat(peersFile); err == nil {
		conf, err := raft.ReadConfigJSON(peersFile)
		if err != nil {
			return fmt.Errorf("raftstore: %s: %w", peersFile, err)
		}
		if err := raft.RecoverCluster(rc, cfg.FSM, bolt, bolt, snaps, n.transport, conf); err != nil {
			return fmt.Errorf("raftstore: recover from %s: %w", peersFile, err)
		}
		if err := os.Remove(peersFile); err != nil {
			return fmt.Errorf("raftstore: remove %s after recovery: %w", peersFile, err)
		}
		n.logger.Warn("configuration recovered from peers.json", "servers", len(conf.Servers))
	}

	r, err := raft.NewRaft(rc, cfg.FSM, bolt, bolt, snaps, n.transport)
	if err != nil {
		return fmt.Errorf("raftstore: start raft: %w", err)
	}
	n.raft = r
	if hasState {
		n.warnIfMoved()
	}
	if cfg.Metrics != nil {
		if err := cfg.Metrics.reg.Register(newNodeCollector(r)); err != nil {
			return fmt.Errorf("raftstore: register metrics: %w", err)
		}
		n.metrics = cfg.Metrics
	}
	if g, ok := cfg.FSM.(Admitter); ok {
		n.admit = g
	}

	n.fanoutDone = make(chan struct{})
	go n.fanOutLeadership(notifyCh)
	if cfg.SnapshotSchedule > 0 {
		n.scheduleDone = make(chan struct{})
		go n.snapshotOnSchedule(cfg.SnapshotSchedule)
	}
	return nil
}

// Close shuts down raft, the transport (with every connection it opened or
// accepted) and the bolt store. It is idempotent and safe on a node whose
// Open failed half way. Channels returned by LeaderCh receive false and are
// closed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.closing)
		n.closeErr = n.release()
	})
	return n.closeErr
}

func (n *Node) release() error {
	var errs []error
	if n.scheduleDone != nil {
		<-n.scheduleDone // it ends on n.closing; raft must still run meanwhile
	}
	if n.raft != nil {
		// Waits for raft's goroutines (so the FSM sees no more calls)
		// and closes the transport.
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raftstore: shutdown raft: %w", err))
		}
	}
	if n.transport != nil {
		_ = n.transport.Close() // no-op if raft closed it already; closes the stream
	} else if n.stream != nil {
		_ = n.stream.Close()
	}
	if n.fanoutDone != nil {
		<-n.fanoutDone
	}
	n.closeLeaderSubscriptions()
	if n.bolt != nil {
		if err := n.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raftstore: close bolt store: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (n *Node) isClosed() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

// ID returns the node's raft server ID.
func (n *Node) ID() string { return n.id }

// Addr returns the advertised raft address (the real port when BindAddr
// asked for port 0).
func (n *Node) Addr() string { return n.addr }

// IsLeader reports whether this node is the leader right now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the ID and raft address of the leader as this node knows
// it; both are "" when there is none.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// AppliedIndex returns the index of the last log entry handed to the FSM.
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// Stats returns raft's diagnostic counters (state, term, indexes, peers).
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// Apply replicates cmd through raft and returns the FSM's response once the
// entry is applied on this (leader) node. A response that is an error is
// returned as the error. The context bounds both enqueueing and waiting;
// without a deadline 10s is used. After ErrTimeout, context cancellation or
// ErrNotLeader wrapping raft.ErrLeadershipLost, the command may or may not
// be committed: commands should be idempotent or checked by a later read.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	const op = "raft apply"
	if n.isClosed() {
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	timeout, err := remaining(ctx)
	if err != nil {
		return nil, n.mapError(op, err)
	}
	if n.admit != nil {
		if err := n.admit.Admit(cmd, n.memberIDs); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	start := time.Now()
	future := n.raft.Apply(cmd, timeout)
	if err := n.await(ctx, future); err != nil {
		return nil, n.mapError(op, err)
	}
	n.metrics.observeCommit(cmd, time.Since(start))
	response := future.Response()
	if err, ok := response.(error); ok {
		return nil, err
	}
	return response, nil
}

// Barrier waits until every entry committed before the call is applied to
// the FSM on this leader: after it returns, reads of the FSM reflect all
// writes acknowledged by any earlier leader. Use it once after gaining
// leadership, before serving reads.
func (n *Node) Barrier(ctx context.Context) error {
	const op = "raft barrier"
	if n.isClosed() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	timeout, err := remaining(ctx)
	if err != nil {
		return n.mapError(op, err)
	}
	if err := n.await(ctx, n.raft.Barrier(timeout)); err != nil {
		return n.mapError(op, err)
	}
	return nil
}

// VerifyLeader confirms with a quorum that this node is still the leader
// (guards a read against a deposed leader that has not noticed yet).
func (n *Node) VerifyLeader(ctx context.Context) error {
	const op = "raft verify leader"
	if n.isClosed() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := n.await(ctx, n.raft.VerifyLeader()); err != nil {
		return n.mapError(op, err)
	}
	return nil
}

// WaitForLeader blocks until this node knows a leader (possibly itself) and
// returns its ID. A follower may still report a leader that just died until
// its heartbeat timeout passes. When ctx ends first the error wraps
// ErrNoLeader and the context error.
func (n *Node) WaitForLeader(ctx context.Context) (string, error) {
	const op = "wait for leader"
	if n.isClosed() {
		return "", fmt.Errorf("%s: %w", op, ErrClosed)
	}
	// Leader changes wake us up; the observer never blocks raft (a full
	// buffer already holds a wake-up), and the state is re-read after
	// registering so a change just before it is not missed.
	wake := make(chan raft.Observation, 1)
	observer := raft.NewObserver(wake, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(observer)
	defer n.raft.DeregisterObserver(observer)
	for {
		if id, _ := n.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-wake:
		case <-n.closing:
			return "", fmt.Errorf("%s: %w", op, ErrClosed)
		case <-ctx.Done():
			return "", fmt.Errorf("%s: %w: %w", op, ErrNoLeader, ctx.Err())
		}
	}
}

// Admitter is an FSM with a version gate: Node.Apply asks it before
// proposing a command, with the IDs of the raft configuration's servers
// (asked only when the gate needs them). *FSM is one.
type Admitter interface {
	Admit(cmd []byte, members func() ([]string, error)) error
}

// memberIDs lists the server IDs of the latest raft configuration.
func (n *Node) memberIDs() ([]string, error) {
	future := n.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		return nil, n.mapError("raft configuration", err)
	}
	var ids []string
	for _, s := range future.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	return ids, nil
}

// Servers returns the latest raft configuration as this node knows it.
func (n *Node) Servers(ctx context.Context) ([]Server, error) {
	const op = "raft configuration"
	if n.isClosed() {
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	future := n.raft.GetConfiguration()
	if err := n.await(ctx, future); err != nil {
		return nil, n.mapError(op, err)
	}
	leaderID, _ := n.Leader()
	var servers []Server
	for _, s := range future.Configuration().Servers {
		servers = append(servers, Server{
			ID:      string(s.ID),
			Address: string(s.Address),
			Voter:   s.Suffrage == raft.Voter,
			Leader:  leaderID != "" && string(s.ID) == leaderID,
		})
	}
	return servers, nil
}

// AddVoter adds a voting server (leader only). The new server must already
// be running (Open without Bootstrap): with it unreachable the change cannot
// commit once it counts toward the quorum. Adding a server that is already a
// voter at addr is a no-op; a nonvoter at addr is promoted. A known ID at
// another address is replaced: removed, then added at addr. (raft could
// update the address in place, but v1.8.0 races on that path: replication
// reads the peer without its lock.) The leader cannot move itself this way;
// transfer leadership first.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	op := fmt.Sprintf("raft add voter %q at %s", id, addr)
	if id == "" || addr == "" {
		return fmt.Errorf("%s: server id and address are required", op)
	}
	serverID, serverAddr := raft.ServerID(id), raft.ServerAddress(addr)
	return n.changeConfiguration(ctx, op, func(ctx context.Context, cfg raft.Configuration, index uint64) error {
		for _, s := range cfg.Servers {
			if s.ID != serverID {
				continue
			}
			if s.Address == serverAddr {
				if s.Suffrage == raft.Voter {
					return nil
				}
				break // raft.AddVoter promotes the nonvoter
			}
			if id == n.id {
				return fmt.Errorf("the leader cannot change its own address (now %s): transfer leadership first", s.Address)
			}
			removedAt, err := n.awaitIndex(ctx, func(timeout time.Duration) raft.IndexFuture {
				return n.raft.RemoveServer(serverID, index, timeout)
			})
			if err != nil {
				return fmt.Errorf("remove old address %s: %w", s.Address, err)
			}
			index = removedAt
			break
		}
		_, err := n.awaitIndex(ctx, func(timeout time.Duration) raft.IndexFuture {
			return n.raft.AddVoter(serverID, serverAddr, index, timeout)
		})
		return err
	})
}

// RemoveServer removes a server from the cluster (leader only). Removing an
// unknown ID is a no-op. Removing the leader itself makes it step down and
// shut down; a removed follower is not told and must be closed by its owner.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	op := fmt.Sprintf("raft remove server %q", id)
	if id == "" {
		return fmt.Errorf("%s: server id is required", op)
	}
	return n.changeConfiguration(ctx, op, func(ctx context.Context, cfg raft.Configuration, index uint64) error {
		for _, s := range cfg.Servers {
			if string(s.ID) == id {
				_, err := n.awaitIndex(ctx, func(timeout time.Duration) raft.IndexFuture {
					return n.raft.RemoveServer(s.ID, index, timeout)
				})
				return err
			}
		}
		return nil
	})
}

// changeConfiguration reads the current configuration and lets change act
// on it. Changes are pinned to the configuration they looked at (raft's
// prevIndex), so a concurrent change makes them fail instead of acting on
// stale membership.
func (n *Node) changeConfiguration(ctx context.Context, op string,
	change func(ctx context.Context, cfg raft.Configuration, index uint64) error) error {
	if n.isClosed() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	if !n.IsLeader() {
		return fmt.Errorf("%s: %w", op, n.notLeaderError())
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	current := n.raft.GetConfiguration()
	if err := n.await(ctx, current); err != nil {
		return n.mapError(op, err)
	}
	if err := change(ctx, current.Configuration(), current.Index()); err != nil {
		return n.mapError(op, err)
	}
	return nil
}

// awaitIndex starts a raft operation with the enqueue timeout left in ctx
// and waits for it, returning the index of its log entry.
func (n *Node) awaitIndex(ctx context.Context, start func(timeout time.Duration) raft.IndexFuture) (uint64, error) {
	timeout, err := remaining(ctx)
	if err != nil {
		return 0, err
	}
	future := start(timeout)
	if err := n.await(ctx, future); err != nil {
		return 0, err
	}
	return future.Index(), nil
}

// TransferLeadership hands leadership to the most up-to-date follower
// (leader only) and returns once the transfer finished or failed.
func (n *Node) TransferLeadership(ctx context.Context) error {
	const op = "raft leadership transfer"
	if n.isClosed() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	if !n.IsLeader() {
		return fmt.Errorf("%s: %w", op, n.notLeaderError())
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := n.await(ctx, n.raft.LeadershipTransfer()); err != nil {
		return n.mapError(op, err)
	}
	return nil
}

// Snapshot takes a snapshot of the FSM now and compacts the log behind it
// (keeping raft's trailing logs). It returns an error wrapping
// raft.ErrNothingNewToSnapshot when the FSM holds no applied entry yet.
func (n *Node) Snapshot() error {
	const op = "raft snapshot"
	if n.isClosed() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	if err := n.raft.Snapshot().Error(); err != nil {
		return n.mapError(op, err)
	}
	return nil
}

// Compact takes a snapshot and drops every log entry it covers (no
// trailing entries kept) and every older snapshot, so that what earlier
// entries held is no longer among the data directory's records: after a
// key-encryption key rotation, the values wrapped with the old key go.
// Bolt does not zero the pages it frees; their bytes stay in raft.db
// until bolt reuses them. Followers that lag get the snapshot.
func (n *Node) Compact() error {
	const op = "raft compact"
	if n.isClosed() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	keep := n.raft.ReloadableConfig()
	none := keep
	none.TrailingLogs = 0
	if err := n.raft.ReloadConfig(none); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	err := n.raft.Snapshot().Error()
	if rerr := n.raft.ReloadConfig(keep); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return n.mapError(op, err)
	}
	metas, err := n.snaps.List() // newest first
	if err != nil {
		return fmt.Errorf("%s: list snapshots: %w", op, err)
	}
	for _, m := range metas[min(1, len(metas)):] {
		if err := os.RemoveAll(filepath.Join(n.snapDir, m.ID)); err != nil {
			return fmt.Errorf("%s: remove snapshot %s: %w", op, m.ID, err)
		}
	}
	return nil
}

// await waits for a raft future or the end of ctx. Raft resolves every
// future eventually (at the latest on shutdown), so the helper goroutine
// never outlives the node.
func (n *Node) await(ctx context.Context, future raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- future.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// mapError turns raft and context errors into the package sentinels.
func (n *Node) mapError(op string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%s: %w: %w", op, n.notLeaderError(), err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%s: %w", op, ErrClosed)
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w", op, ErrTimeout, err)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

// notLeaderError names the leader as this node knows it, but never itself:
// a leader that is losing or handing off leadership must not send callers
// back to itself.
func (n *Node) notLeaderError() *NotLeaderError {
	id, addr := n.Leader()
	if id == n.id {
		return &NotLeaderError{}
	}
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// orDefault is d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// withDefaultTimeout gives ctx the default deadline when it has none.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// remaining converts ctx's deadline into the timeout raft's enqueue calls
// take; it fails if ctx is already done.
func remaining(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return defaultTimeout, nil
	}
	timeout := time.Until(deadline)
	if timeout <= 0 {
		return 0, context.DeadlineExceeded
	}
	return timeout, nil
}
