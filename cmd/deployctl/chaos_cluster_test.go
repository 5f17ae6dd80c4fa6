package main

// The chaos harness: three real `deployctl server` processes (control plane
// only: --no-agent), each in a network namespace of its own made by the
// test (internal/chaos.Network), so that a node can be cut off from its
// peers while clients still reach it. Without root or iproute2 the servers
// run on 127.0.0.1 and a partition is a SIGSTOP (a stopped process is cut
// off both ways, from clients too). internal/chaos/DESIGN.md explains it.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/chaos"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
)

const (
	// electionTimeout sets how long faults last (a few of it): twice the
	// servers' default raft timeouts (raftstore.DefaultHeartbeatTimeout,
	// 500ms), so a paused or cut-off leader is surely replaced.
	electionTimeout = time.Second
	// chaosConvergeTimeout bounds the wait for a healed cluster to agree:
	// raft's replication backs off up to ~10s after repeated failures and
	// a cut TCP connection waits for the transport's 10s deadline.
	chaosConvergeTimeout = 90 * time.Second
)

// chaosNode is one server process of a chaos cluster.
type chaosNode struct {
	idx                             int
	id, httpAddr, raftAddr, dataDir string
	cmd                             *exec.Cmd
	done                            chan struct{}
	log                             *syncBuffer
	paused                          bool // SIGSTOPped, not yet continued
	// clockFile holds the offset of the node's controller clock
	// (testClockEnv); clock its current value.
	clockFile string
	clock     time.Duration
}

// chaosCluster is the servers, their network and the workload's registry.
type chaosCluster struct {
	t         testing.TB
	tlsDir    string
	net       *chaos.Network // nil: loopback, partitions by SIGSTOP
	reg       *chaos.TagRegistry
	nodes     []*chaosNode
	serverEnv []string
	clientTLS *tls.Config
	// rec is the workload's history, where faults record the operations
	// they make (membership changes).
	rec *chaos.Recorder
}

// partitionMethod names how partitions are made, for the summary.
func (c *chaosCluster) partitionMethod() string {
	if c.net != nil {
		return "network namespaces (blackhole routes between nodes)"
	}
	return "SIGSTOP (no network namespaces here)"
}

func mustStartChaosCluster(t testing.TB) *chaosCluster {
	t.Helper()
	needBinary(t)
	ctx := context.Background()
	c := &chaosCluster{t: t, tlsDir: filepath.Join(t.TempDir(), "tls")}
	var nw *chaos.Network
	err := fmt.Errorf("%w: DEPLOYCTL_CHAOS_NO_NETNS is set", chaos.ErrNetnsUnavailable)
	if os.Getenv("DEPLOYCTL_CHAOS_NO_NETNS") == "" {
		nw, err = chaos.NewNetwork(ctx, 3)
	}
	switch {
	case errors.Is(err, chaos.ErrNetnsUnavailable):
		t.Logf("partitions fall back to SIGSTOP: %v", err)
	case err != nil:
		t.Fatalf("chaos network: %v", err)
	default:
		c.net = nw
		// Registered first, so it runs last: after the processes are gone.
		t.Cleanup(func() {
			if err := nw.Close(context.Background()); err != nil {
				t.Errorf("remove the chaos network: %v", err)
			}
		})
	}

	ids := []string{"n1", "n2", "n3"}
	args := []string{"tls", "init", "--dir", c.tlsDir, "--nodes", strings.Join(ids, ",")}
	if c.net != nil {
		hosts := []string{c.net.HostIP().String()}
		for i := range ids {
			hosts = append(hosts, c.net.NodeIP(i).String())
		}
		args = append(args, "--hosts", strings.Join(hosts, ","))
	}
	if out, err := exec.Command(env.bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("tls init: %v\n%s", err, out)
	}
	if c.clientTLS, err = pki.ClientConfig(filepath.Join(c.tlsDir, "ca.pem"), filepath.Join(c.tlsDir, "client.pem"), filepath.Join(c.tlsDir, "client-key.pem")); err != nil {
		t.Fatal(err)
	}
	c.serverEnv = withoutProxy(os.Environ())
	c.reg = c.mustStartRegistry()

	for i, id := range ids {
		nd := &chaosNode{idx: i, id: id, dataDir: t.TempDir()}
		nd.clockFile = filepath.Join(t.TempDir(), "clock")
		if c.net != nil {
			// Each node has its own address: the ports can be fixed.
			nd.httpAddr = net.JoinHostPort(c.net.NodeIP(i).String(), "7070")
			nd.raftAddr = net.JoinHostPort(c.net.NodeIP(i).String(), "7071")
		} else {
			nd.httpAddr, nd.raftAddr = freeAddr(t), freeAddr(t)
		}
		c.nodes = append(c.nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			c.kill(nd, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				t.Logf("log of %s:\n%s", nd.id, tail(nd.log.String(), 80))
			}
		}
	})
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.mustConverge(chaosConvergeTimeout)
	return c
}

// mustStartRegistry serves the workload image. In namespaces the servers
// reach it on the host's address of the test network, over TLS with a
// certificate from the cluster CA (the resolver speaks plain HTTP to
// loopback registries only), and trust the CA through SSL_CERT_FILE.
func (c *chaosCluster) mustStartRegistry() *chaos.TagRegistry {
	c.t.Helper()
	host := "127.0.0.1"
	if c.net != nil {
		host = c.net.HostIP().String()
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.net != nil {
		if _, err := pki.IssueNode(c.tlsDir, "registry", []string{host}); err != nil {
			ln.Close()
			c.t.Fatal(err)
		}
		files := pki.NodeFiles(c.tlsDir, "registry")
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			ln.Close()
			c.t.Fatal(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		c.serverEnv = append(c.serverEnv, "SSL_CERT_FILE="+filepath.Join(c.tlsDir, "ca.pem"))
	}
	reg, err := chaos.StartTagRegistry(context.Background(), ln, "chaos/app")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		if err := reg.Close(); err != nil {
			c.t.Errorf("close the workload registry: %v", err)
		}
	})
	return reg
}

// withoutProxy drops proxy settings: the servers' registry client must
// dial the test's registry itself.
func withoutProxy(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(strings.ToUpper(name), "_PROXY") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (c *chaosCluster) joinList() string {
	var addrs []string
	for _, nd := range c.nodes {
		addrs = append(addrs, nd.httpAddr)
	}
	return strings.Join(addrs, ",")
}

// start runs a node's server with the data it has (none after a wipe).
func (c *chaosCluster) start(nd *chaosNode) {
	c.t.Helper()
	args := []string{"server", "--node-id", nd.id, "--data-dir", nd.dataDir, "--http-addr", nd.httpAddr, "--raft-addr", nd.raftAddr,
		"--bootstrap-expect", fmt.Sprint(len(c.nodes)), "--join", c.joinList(), "--no-agent",
		"--tls-ca", filepath.Join(c.tlsDir, "ca.pem"), "--tls-cert", filepath.Join(c.tlsDir, nd.id+".pem"),
		"--tls-key", filepath.Join(c.tlsDir, nd.id+"-key.pem"), "--log-level", "debug"}
	if c.net != nil {
		nd.cmd = c.net.Command(nd.idx, env.bin, args...)
	} else {
		nd.cmd = exec.Command(env.bin, args...)
	}
	nd.log = &syncBuffer{}
	nd.cmd.Env = append(append([]string(nil), c.serverEnv...), testClockEnv+"="+nd.clockFile)
	nd.cmd.Stdout, nd.cmd.Stderr = nd.log, nd.log
	// A test binary killed on its timeout takes its servers along.
	nd.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := nd.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	nd.paused = false
	nd.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(nd.cmd, nd.done)
}

// signal sends sig to a running node, by its PID.
func (c *chaosCluster) signal(nd *chaosNode, sig syscall.Signal) {
	c.t.Helper()
	if nd.cmd == nil || nd.cmd.Process == nil {
		c.t.Fatalf("%s is not running", nd.id)
	}
	if err := nd.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %v to %s: %v", sig, nd.id, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		nd.paused = true
	case syscall.SIGCONT:
		nd.paused = false
	}
}

// kill ends a node this test started, by PID, and waits for its exit. A
// paused node is continued so that it can act on SIGTERM.
func (c *chaosCluster) kill(nd *chaosNode, sig syscall.Signal) {
	if nd.cmd == nil || nd.cmd.Process == nil {
		return
	}
	_ = nd.cmd.Process.Signal(sig)
	if nd.paused {
		_ = nd.cmd.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-nd.done:
	case <-time.After(15 * time.Second):
		_ = nd.cmd.Process.Kill()
		<-nd.done
	}
	nd.cmd, nd.paused = nil, false
}

func (c *chaosCluster) client(nodes ...*chaosNode) *wire.Client {
	if len(nodes) == 0 {
		nodes = c.nodes
	}
	var addrs []string
	for _, nd := range nodes {
		addrs = append(addrs, nd.httpAddr)
	}
	// A clone each: the HTTP/2 set-up of a transport writes to its TLS
	// config, so transports must not share one.
	return wire.NewTLSClient(addrs, c.clientTLS.Clone())
}

func (c *chaosCluster) others(nd *chaosNode) []*chaosNode {
	var out []*chaosNode
	for _, o := range c.nodes {
		if o != nd {
			out = append(out, o)
		}
	}
	return out
}

func (c *chaosCluster) node(id string) *chaosNode {
	for _, nd := range c.nodes {
		if nd.id == id {
			return nd
		}
	}
	return nil
}

// leaderOf returns the leader every node in group names, when they all
// name the same one, it is in group, and it serves a linearizable read.
func (c *chaosCluster) leaderOf(group []*chaosNode) (*chaosNode, bool) {
	leader := ""
	for _, nd := range group {
		if nd.cmd == nil || nd.paused {
			return nil, false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		p, err := c.client(nd).Peer(ctx)
		cancel()
		if err != nil || p.Leader == "" || (leader != "" && p.Leader != leader) {
			return nil, false
		}
		leader = p.Leader
	}
	l := c.node(leader)
	if l == nil || !contains(ids(group), leader) {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := c.client(l).Cluster(ctx)
	return l, err == nil && st.Leader == leader
}

func ids(nodes []*chaosNode) []string {
	var out []string
	for _, nd := range nodes {
		out = append(out, nd.id)
	}
	return out
}

// mustLeaderAmong waits until the nodes of group agree on a leader among
// them: a majority elected one while the rest was down or cut off.
func (c *chaosCluster) mustLeaderAmong(group []*chaosNode, timeout time.Duration) *chaosNode {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := c.leaderOf(group); ok {
			return l
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nodes %v elected no leader among them within %s", ids(group), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustConverge waits until the whole cluster agrees: every server names
// the same leader, the leader sees three healthy voters, and every server
// answers cluster status (forwarding to the leader) with that leader.
func (c *chaosCluster) mustConverge(timeout time.Duration) *chaosNode {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := c.leaderOf(c.nodes); ok && c.allHealthyVia(l) {
			return l
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not converge within %s", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *chaosCluster) allHealthyVia(leader *chaosNode) bool {
	for _, nd := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := c.client(nd).Cluster(ctx)
		cancel()
		if err != nil || st.Leader != leader.id || len(st.Nodes) != len(c.nodes) {
			return false
		}
		for _, n := range st.Nodes {
			if !n.Voter || !n.Healthy {
				return false
			}
		}
	}
	return true
}

// partition cuts nd off from the other servers (clients still reach it),
// or stops it where there are no namespaces.
func (c *chaosCluster) partition(nd *chaosNode) {
	c.t.Helper()
	if c.net == nil {
		c.signal(nd, syscall.SIGSTOP)
		return
	}
	if err := c.net.Partition(context.Background(), nd.idx); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chaosCluster) heal(nd *chaosNode) {
	c.t.Helper()
	if c.net == nil {
		c.signal(nd, syscall.SIGCONT)
		return
	}
	if err := c.net.Heal(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// stepClock moves nd's controller clock by d (the server re-reads the file
// within testClockPoll).
func (c *chaosCluster) stepClock(nd *chaosNode, d time.Duration) {
	c.t.Helper()
	nd.clock += d
	if err := os.WriteFile(nd.clockFile, []byte(nd.clock.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}
