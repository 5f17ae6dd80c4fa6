package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the programs run inside the namespaces.
const (
	helperEnv     = "CHAOS_NETNS_HELPER"
	helperAddrEnv = "CHAOS_NETNS_ADDR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "listen":
		os.Exit(helperListen(os.Getenv(helperAddrEnv)))
	case "dial":
		os.Exit(helperDial(os.Getenv(helperAddrEnv)))
	}
	os.Exit(m.Run())
}

// helperListen accepts connections on addr, answering "hello", until its
// standard input closes.
func helperListen(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	fmt.Println("ready")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello\n"))
			c.Close()
		}
	}()
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// helperDial exits 0 when addr answers, 3 otherwise. A blackholed SYN is
// dropped silently, so a cut shows as a connect timeout.
func helperDial(addr string) int {
	if err := dialHello(addr); err != nil {
		fmt.Println(err)
		return 3
	}
	return 0
}

func dialHello(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello\n" {
		return fmt.Errorf("read from %s: %q %v", addr, line, err)
	}
	return nil
}

func mustNetwork(t *testing.T, n int) *Network {
	t.Helper()
	ctx := context.Background()
	nw, err := NewNetwork(ctx, n)
	if errors.Is(err, ErrNetnsUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nw.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return nw
}

// mustListenIn starts a listener helper in node i; cleanup ends it by
// closing its input and waits for it.
func mustListenIn(t *testing.T, nw *Network, i int, addr string) {
	t.Helper()
	cmd := nw.Command(i, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=listen", helperAddrEnv+"="+addr, "GORACE=atexit_sleep_ms=0")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("listener in node %d: %q %v", i, line, err)
	}
}

// reachesFrom reports whether a dial from node i to addr gets an answer.
func reachesFrom(t *testing.T, nw *Network, i int, addr string) bool {
	t.Helper()
	cmd := nw.Command(i, os.Args[0], "-test.run=^$")
	// A race-enabled helper would sleep a second at exit by default.
	cmd.Env = append(os.Environ(), helperEnv+"=dial", helperAddrEnv+"="+addr, "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		return false
	default:
		t.Fatalf("dial helper in node %d: %v\n%s", i, err, out)
		return false
	}
}

func TestNetworkPartitionsNodesButNotTheHost(t *testing.T) {
	nw := mustNetwork(t, 3)
	if !nw.HostIP().IsPrivate() || !netip.MustParsePrefix("10.213.0.0/16").Contains(nw.NodeIP(2)) {
		t.Fatalf("addresses host %s node %s: want 10.213.0.0/16", nw.HostIP(), nw.NodeIP(2))
	}
	addr := func(i int) string { return netip.AddrPortFrom(nw.NodeIP(i), 7000).String() }
	mustListenIn(t, nw, 0, addr(0))
	mustListenIn(t, nw, 1, addr(1))

	check := func(when string, hostTo0, n1To0, n0To1, n2To1 bool) {
		t.Helper()
		if got := dialHello(addr(0)) == nil; got != hostTo0 {
			t.Errorf("%s: host reaches node 0: %v, want %v", when, got, hostTo0)
		}
		if got := reachesFrom(t, nw, 1, addr(0)); got != n1To0 {
			t.Errorf("%s: node 1 reaches node 0: %v, want %v", when, got, n1To0)
		}
		if got := reachesFrom(t, nw, 0, addr(1)); got != n0To1 {
			t.Errorf("%s: node 0 reaches node 1: %v, want %v", when, got, n0To1)
		}
		if got := reachesFrom(t, nw, 2, addr(1)); got != n2To1 {
			t.Errorf("%s: node 2 reaches node 1: %v, want %v", when, got, n2To1)
		}
	}
	ctx := context.Background()
	check("before", true, true, true, true)
	if err := nw.Partition(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if !nw.Partitioned() {
		t.Fatal("Partitioned() false after Partition")
	}
	// Node 0 is cut off from 1 and 2 both ways; the host still reaches it,
	// and the majority still reach each other.
	check("node 0 cut off", true, false, false, true)
	if err := nw.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	check("healed", true, true, true, true)
	if nw.Partitioned() {
		t.Fatal("Partitioned() true after Heal")
	}
}

func TestNetworkCloseRemovesEverything(t *testing.T) {
	ctx := context.Background()
	nw := mustNetwork(t, 2)
	names := append([]string{nw.hub}, nw.nodes...)
	present := listNamespaces(ctx)
	for _, ns := range names {
		if !present[ns] {
			t.Fatalf("namespace %s missing: %v", ns, present)
		}
	}
	if err := nw.Partition(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := nw.Close(ctx); err != nil {
		t.Fatal(err)
	}
	present = listNamespaces(ctx)
	for _, ns := range names {
		if present[ns] {
			t.Errorf("namespace %s left after Close", ns)
		}
	}
	if linkExists(ctx, nw.hostLink) {
		t.Errorf("host link %s left after Close", nw.hostLink)
	}
	// Closing twice is harmless (the cleanup does it again).
	if err := nw.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPrefixesIn(t *testing.T) {
	out := "default via 192.0.2.1 dev eth0\n10.213.7.0/24 dev dctlabc proto kernel scope link src 10.213.7.1\nlocal 127.0.0.1 dev lo table local\n"
	got := prefixesIn(out)
	want := []string{"192.0.2.1/32", "10.213.7.0/24", "10.213.7.1/32", "127.0.0.1/32"}
	if len(got) != len(want) {
		t.Fatalf("prefixesIn = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("prefixesIn = %v, want %v", got, want)
		}
	}
}
