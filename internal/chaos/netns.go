package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNetnsUnavailable: this process cannot make network namespaces (not
// root, or no iproute2). Callers fall back to another partition method.
var ErrNetnsUnavailable = errors.New("network namespaces unavailable")

// nsPrefix starts the name of every namespace a Network makes:
// dctl-<pid>-<random>-<role>. The pid lets a later run remove namespaces
// whose maker died without cleaning up (a test binary killed on timeout).
const nsPrefix = "dctl-"

// Network is a private network of test-made namespaces: one namespace per
// node, each with an eth0 on a bridge that lives in a hub namespace, and a
// veth from this process's namespace to the bridge, so the test reaches
// every node and the nodes reach the test. Addresses are in a /24 of
// 10.213.0.0/16 that no route or address of this namespace overlaps; the
// node namespaces have no other route, so nothing they send can leave the
// test's links.
//
// A partition is a set of blackhole routes inside the node namespaces:
// node to node traffic across the cut is dropped both ways, while the test
// (the clients) still reaches every node, so a cut-off leader keeps
// answering clients, which is what the checker must catch it at.
type Network struct {
	id       string
	hub      string
	nodes    []string
	hostLink string
	subnet   netip.Prefix

	mu      sync.Mutex
	blocked map[[2]int]bool // (from, to) node pairs with a blackhole route in from's namespace
}

// NewNetwork makes a network of n nodes. It returns an error wrapping
// ErrNetnsUnavailable when this process cannot make namespaces at all.
func NewNetwork(ctx context.Context, n int) (*Network, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root", ErrNetnsUnavailable)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("%w: no ip command (apt-get install iproute2): %v", ErrNetnsUnavailable, err)
	}
	if n < 1 || n > 200 {
		return nil, fmt.Errorf("chaos: %d nodes: want 1 to 200", n)
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("chaos: random network id: %w", err)
	}
	token := hex.EncodeToString(rnd[:])
	nw := &Network{
		id:       fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), token),
		hostLink: "dctl" + token, // 10 bytes: interface names stop at 15
		blocked:  map[[2]int]bool{},
	}
	nw.hub = nw.id + "-hub"
	for i := range n {
		nw.nodes = append(nw.nodes, fmt.Sprintf("%s-n%d", nw.id, i+1))
	}

	// Choosing a free subnet and taking it (the host address makes its
	// route) happen under a lock shared by every test process, so two
	// concurrent runs never pick the same /24.
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "deployctl-chaos-netns.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	removeStaleNamespaces(ctx)
	if nw.subnet, err = freeSubnet(ctx); err != nil {
		return nil, err
	}
	if err := nw.build(ctx); err != nil {
		return nil, errors.Join(err, nw.Close(context.WithoutCancel(ctx)))
	}
	return nw, nil
}

func (nw *Network) build(ctx context.Context) error {
	steps := [][]string{
		{"netns", "add", nw.hub},
		{"-n", nw.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", nw.hub, "link", "set", "br0", "up"},
	}
	for i, ns := range nw.nodes {
		port := fmt.Sprintf("p%d", i+1)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", nw.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", nw.hub, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", ns, "addr", "add", nw.NodeIP(i).String() + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	steps = append(steps,
		[]string{"link", "add", nw.hostLink, "type", "veth", "peer", "name", "host", "netns", nw.hub},
		[]string{"-n", nw.hub, "link", "set", "host", "master", "br0", "up"},
		[]string{"addr", "add", nw.HostIP().String() + "/24", "dev", nw.hostLink},
		[]string{"link", "set", nw.hostLink, "up"},
	)
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// HostIP is this process's address on the network: where the nodes reach
// the test (its registry, for one).
func (nw *Network) HostIP() netip.Addr { return nw.addr(1) }

// NodeIP is node i's address (i from 0).
func (nw *Network) NodeIP(i int) netip.Addr { return nw.addr(11 + i) }

func (nw *Network) addr(host int) netip.Addr {
	b := nw.subnet.Addr().As4()
	b[3] = byte(host)
	return netip.AddrFrom4(b)
}

// Namespace is node i's namespace name.
func (nw *Network) Namespace(i int) string { return nw.nodes[i] }

// Command runs a program in node i's namespace. `ip netns exec` execs the
// program, so the process's PID is the program's: signals sent to it (kill,
// stop, continue) reach the program itself.
func (nw *Network) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", nw.nodes[i], name}, args...)...)
}

// Partition cuts the nodes in side off from every other node, both ways.
// Cuts add up until Heal.
func (nw *Network) Partition(ctx context.Context, side ...int) error {
	in := map[int]bool{}
	for _, i := range side {
		if i < 0 || i >= len(nw.nodes) {
			return fmt.Errorf("chaos: partition: no node %d", i)
		}
		in[i] = true
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for a := range nw.nodes {
		for b := range nw.nodes {
			if a == b || in[a] == in[b] || nw.blocked[[2]int{a, b}] {
				continue
			}
			if err := ip(ctx, "-n", nw.nodes[a], "route", "add", "blackhole", nw.NodeIP(b).String()+"/32"); err != nil {
				return err
			}
			nw.blocked[[2]int{a, b}] = true
		}
	}
	return nil
}

// Heal removes every cut.
func (nw *Network) Heal(ctx context.Context) error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var errs []error
	for pair := range nw.blocked {
		if err := ip(ctx, "-n", nw.nodes[pair[0]], "route", "del", "blackhole", nw.NodeIP(pair[1]).String()+"/32"); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(nw.blocked, pair)
	}
	return errors.Join(errs...)
}

// Partitioned reports whether any cut is in place.
func (nw *Network) Partitioned() bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return len(nw.blocked) > 0
}

// Close removes the host link, the node namespaces and the hub (with
// them their links and the bridge). End the processes running in the
// namespaces first. It tries every step and reports every failure.
func (nw *Network) Close(ctx context.Context) error {
	var errs []error
	present := listNamespaces(ctx)
	if linkExists(ctx, nw.hostLink) {
		errs = append(errs, ip(ctx, "link", "del", nw.hostLink))
	}
	for _, ns := range append(append([]string(nil), nw.nodes...), nw.hub) {
		if present[ns] {
			errs = append(errs, ip(ctx, "netns", "del", ns))
		}
	}
	return errors.Join(errs...)
}

// ip runs one iproute2 command.
func ip(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func linkExists(ctx context.Context, name string) bool {
	return exec.CommandContext(ctx, "ip", "link", "show", "dev", name).Run() == nil
}

func listNamespaces(ctx context.Context) map[string]bool {
	out, _ := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	names := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names[f[0]] = true
		}
	}
	return names
}

// removeStaleNamespaces deletes namespaces of this package's naming whose
// maker process is gone; their links go with them.
func removeStaleNamespaces(ctx context.Context) {
	for ns := range listNamespaces(ctx) {
		rest, ok := strings.CutPrefix(ns, nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive, or not ours to judge
		}
		_ = ip(ctx, "netns", "del", ns)
	}
}

// freeSubnet picks a /24 of 10.213.0.0/16 that overlaps no route and no
// address of this namespace, starting at one derived from the pid.
func freeSubnet(ctx context.Context) (netip.Prefix, error) {
	var used []netip.Prefix
	for _, args := range [][]string{{"-4", "route", "show", "table", "all"}, {"-4", "-o", "addr", "show"}} {
		out, err := exec.CommandContext(ctx, "ip", args...).Output()
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
		}
		used = append(used, prefixesIn(string(out))...)
	}
	start := os.Getpid() % 256
	for k := range 256 {
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte((start + k) % 256), 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, errors.New("chaos: no free /24 in 10.213.0.0/16")
}

// prefixesIn finds every IPv4 prefix or address in ip's output, gateways
// and source addresses included (being too careful costs nothing). The
// word "default" is not parsed: a default route is no conflict, since the
// more specific route of the test's /24 wins.
func prefixesIn(out string) []netip.Prefix {
	var ps []netip.Prefix
	for _, field := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(field); err == nil && p.Addr().Is4() {
			ps = append(ps, p.Masked())
		} else if a, err := netip.ParseAddr(field); err == nil && a.Is4() {
			ps = append(ps, netip.PrefixFrom(a, 32))
		}
	}
	return ps
}

// lockFile takes an exclusive flock on path, waiting for it until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("chaos: network lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("chaos: network lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("chaos: network lock: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
