//go:build linux

package firewall

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/enginetest"
)

// The kernel tests build a stand-in host in network namespaces of their
// own and load the rules there (WithNetns), so they touch nothing of the
// machine's: no rule of its tables, no link of its namespace.
//
//	netns c (caller)        netns c2 (caller's 2nd replica)   netns t (target)
//	eth0 10.240.0.2/26      eth0 10.240.0.3/26, :7000         eth0 10.240.0.66/26, :9000
//	     |                       |                                 |
//	┌────┴───────────────────────┴────────── netns h (the host) ───┴───────────┐
//	│ bridge dc-caller 10.240.0.1/26         bridge dc-target 10.240.0.65/26   │
//	│ listeners: proxy 10.240.0.1:4001,4002,4005; undeclared 10.240.0.1:4999;  │
//	│ dns 10.240.0.1:53 tcp+udp, udp 5353; api 0.0.0.0:7070; raft              │
//	│ 10.250.0.1:7071; the target network's proxy 10.240.0.65:4003;            │
//	│ docker-proxy 0.0.0.0:9090 (t's :9000 published)                          │
//	│ up0 10.250.0.1/24 (another host address), default route via o            │
//	│ tables: Docker 20.10's chains as Docker leaves them for two networks     │
//	└────┬─────────────────────────────────────────────────────────────────────┘
//	netns o (outside, the "internet"): eth0 10.250.0.2/24, :8000
const (
	g1      = "10.240.0.1"
	g2      = "10.240.0.65"
	hostUp  = "10.250.0.1"
	outside = "10.250.0.2"
)

// needKernel skips the test with one line when this process cannot build
// namespaces and load rules (not root, no iproute2 or iptables), or fails
// it when DEPLOYCTL_REQUIRE_DOCKER=1 (make test) demands every test run.
func needKernel(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, c := range []string{"ip", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return
	}
	if enginetest.Required() {
		t.Fatalf("kernel test: needs %s; %s=1 requires it to run", strings.Join(missing, ", "), enginetest.RequireEnv)
	}
	t.Skipf("kernel test skipped: needs %s (make test runs it, and fails without)", strings.Join(missing, ", "))
}

// nsPrefix starts every namespace a lab makes: dcfw-<pid>-<random>-<role>.
// The pid lets a later run remove namespaces of a run that died.
const nsPrefix = "dcfw-"

type lab struct {
	base string // dcfw-<pid>-<random>
	id   string // the firewall id of this run
	exe  string
}

func (l *lab) ns(role string) string { return l.base + "-" + role }

// newLab builds the picture above (only the host namespace when full is
// false, without Docker's chains when docker is false). Everything goes
// with the namespaces, deleted in t.Cleanup even when the test fails.
func newLab(t *testing.T, full, docker bool) *lab {
	needKernel(t)
	ctx := context.Background()
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{base: fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), hex.EncodeToString(rnd[:3])), id: "t" + hex.EncodeToString(rnd[:]), exe: exe}
	l.id = l.id[:8]
	removeStaleNamespaces(ctx)
	roles := []string{"h"}
	if full {
		roles = append(roles, "c", "c2", "t", "o")
	}
	t.Cleanup(func() {
		present := namespaces(context.Background())
		for _, r := range roles {
			if present[l.ns(r)] {
				if err := ipCmd(context.Background(), "netns", "del", l.ns(r)); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
	})
	var steps [][]string
	for _, r := range roles {
		steps = append(steps, []string{"netns", "add", l.ns(r)}, []string{"-n", l.ns(r), "link", "set", "lo", "up"})
	}
	h := l.ns("h")
	if full {
		steps = append(steps,
			[]string{"-n", h, "link", "add", "dc-caller", "type", "bridge"},
			[]string{"-n", h, "addr", "add", g1 + "/26", "dev", "dc-caller"},
			[]string{"-n", h, "link", "set", "dc-caller", "up"},
			[]string{"-n", h, "link", "add", "dc-target", "type", "bridge"},
			[]string{"-n", h, "addr", "add", g2 + "/26", "dev", "dc-target"},
			[]string{"-n", h, "link", "set", "dc-target", "up"},
		)
		for _, c := range []struct{ role, port, bridge, addr, gw string }{
			{"c", "vc", "dc-caller", "10.240.0.2/26", g1},
			{"c2", "vc2", "dc-caller", "10.240.0.3/26", g1},
			{"t", "vt", "dc-target", "10.240.0.66/26", g2},
		} {
			ns := l.ns(c.role)
			steps = append(steps,
				[]string{"-n", h, "link", "add", c.port, "type", "veth", "peer", "name", "eth0", "netns", ns},
				[]string{"-n", h, "link", "set", c.port, "master", c.bridge, "up"},
				[]string{"-n", ns, "addr", "add", c.addr, "dev", "eth0"},
				[]string{"-n", ns, "link", "set", "eth0", "up"},
				[]string{"-n", ns, "route", "add", "default", "via", c.gw},
			)
		}
		o := l.ns("o")
		steps = append(steps,
			[]string{"-n", h, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", o},
			[]string{"-n", h, "addr", "add", hostUp + "/24", "dev", "up0"},
			[]string{"-n", h, "link", "set", "up0", "up"},
			[]string{"-n", o, "addr", "add", outside + "/24", "dev", "eth0"},
			[]string{"-n", o, "link", "set", "eth0", "up"},
			[]string{"-n", o, "route", "add", "10.240.0.0/16", "via", hostUp},
			[]string{"-n", h, "route", "add", "default", "via", outside},
		)
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			t.Fatal(err)
		}
	}
	l.run(t, "h", "", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	if docker {
		l.run(t, "h", dockerSkeleton(full), "iptables-restore")
	}
	return l
}

// dockerSkeleton is what Docker 20.10 puts in the tables for two networks
// on bridges dc-caller and dc-target (libnetwork's bridge driver): FORWARD
// dropping by default, DOCKER-USER first, the isolation chains dropping
// traffic between the bridges, each bridge's forwarding accepted, and the
// target's port 9000 published on the host's port 9090 (from its bridges,
// Docker's userland proxy answers that port: a listener in h stands for it).
func dockerSkeleton(full bool) string {
	s := `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
`
	if !full {
		return s + "-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n-A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n"
	}
	for _, b := range []string{"dc-caller", "dc-target"} {
		s += strings.ReplaceAll(`-A FORWARD -o {B} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o {B} -j DOCKER
-A FORWARD -i {B} ! -o {B} -j ACCEPT
-A FORWARD -i {B} -o {B} -j ACCEPT
`, "{B}", b)
	}
	return s + `-A DOCKER -d 10.240.0.66/32 ! -i dc-target -o dc-target -p tcp -m tcp --dport 9000 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i dc-caller ! -o dc-caller -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -i dc-target ! -o dc-target -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o dc-caller -j DROP
-A DOCKER-ISOLATION-STAGE-2 -o dc-target -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 10.240.0.0/26 ! -o dc-caller -j MASQUERADE
-A POSTROUTING -s 10.240.0.64/26 ! -o dc-target -j MASQUERADE
-A DOCKER -i dc-caller -j RETURN
-A DOCKER -i dc-target -j RETURN
-A DOCKER ! -i dc-target -p tcp -m tcp --dport 9090 -j DNAT --to-destination 10.240.0.66:9000
COMMIT
`
}

// run runs a command in role's namespace and returns its output.
func (l *lab) run(t *testing.T, role, stdin string, argv ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(role)}, argv...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(argv, " "), role, err, out)
	}
	return string(out)
}

// helperCmd is the test binary as a helper (helper_test.go) in role's
// namespace.
func (l *lab) helperCmd(role, mode string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", "netns", "exec", l.ns(role), l.exe)
	cmd.Env = append(os.Environ(), "DCFW_HELPER="+mode, "DCFW_ARGS="+strings.Join(args, " "))
	cmd.Stderr = os.Stderr
	return cmd
}

// background starts a helper that runs until its stdin closes, and
// returns once it said "ready". stop closes its stdin and returns its
// output after "ready"; t.Cleanup stops it too.
func (l *lab) background(t *testing.T, role, mode string, args ...string) (stop func() string) {
	t.Helper()
	ready, stop := l.start(t, role, mode, args...)
	ready()
	return stop
}

// start starts a helper; ready waits for its "ready" (helpers start slowly
// under -race: start them all, then wait).
func (l *lab) start(t *testing.T, role, mode string, args ...string) (ready func(), stop func() string) {
	t.Helper()
	cmd := l.helperCmd(role, mode, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(outPipe)
	stopped := false
	stop = func() string {
		if stopped {
			return ""
		}
		stopped = true
		in.Close()
		rest, _ := io.ReadAll(out)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s helper in %s: %v", mode, role, err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s helper in %s did not stop", mode, role)
		}
		return string(rest)
	}
	t.Cleanup(func() { stop() })
	ready = func() {
		t.Helper()
		line, err := out.ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			stop()
			t.Fatalf("%s helper in %s: %q, %v", mode, role, line, err)
		}
	}
	return ready, stop
}

// servers starts the listeners of the picture.
func (l *lab) servers(t *testing.T) {
	var ready []func()
	for _, s := range [][]string{
		{"h", "tcp:" + g1 + ":4001=proxy7", "tcp:" + g1 + ":4002=proxy9", "tcp:" + g1 + ":4005=proxy5",
			"tcp:" + g1 + ":4999=undeclared", "tcp:" + g1 + ":53=dns", "udp:" + g1 + ":53=dns", "udp:" + g1 + ":5353=mdns",
			"tcp:0.0.0.0:7070=api", "tcp:0.0.0.0:9090=docker-proxy", "tcp:" + hostUp + ":7071=raft", "tcp:" + g2 + ":4003=target-proxy"},
		{"c2", "tcp:0.0.0.0:7000=replica2"},
		{"t", "tcp:0.0.0.0:9000=target"},
		{"o", "tcp:0.0.0.0:8000=outside"},
	} {
		r, _ := l.start(t, s[0], "serve", s[1:]...)
		ready = append(ready, r)
	}
	for _, r := range ready {
		r()
	}
}

// expect dials every key of want from role's namespace at once and
// reports each outcome that differs.
func (l *lab) expect(t *testing.T, role, when string, want map[string]string) {
	t.Helper()
	out, err := l.helperCmd(role, "dial", slices.Sorted(maps.Keys(want))...).Output()
	if err != nil {
		t.Fatalf("dial from %s: %v", role, err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("dial from %s: %v: %s", role, err, out)
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: from %s, %s: %s, want %s", when, role, k, got[k], want[k])
		}
	}
}

// save is iptables-save of the host namespace without comments and
// counters: what must be equal before the first Apply and after Close.
func (l *lab) save(t *testing.T) string {
	t.Helper()
	out := l.run(t, "h", "", "iptables-save")
	var keep []string
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "#") {
			keep = append(keep, counters.ReplaceAllString(line, "[]"))
		}
	}
	return strings.Join(keep, "")
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// ours is the lines of iptables-save -t table that name the run's chains.
func ours(save, id string) []string {
	var lines []string
	for line := range strings.Lines(save) {
		if strings.Contains(line, chainPrefix+id+"-") {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines
}

// rules is the picture's rules: the caller's network calls 198.18.0.7:8080
// and 198.18.0.5:8080 (plus extra); the target's network calls the same
// 198.18.0.7:8080, to its own listener.
func rules(extra ...Path) Rules {
	return Rules{Networks: []Network{
		{Bridge: "dc-caller", Gateway: addr(g1), Paths: append([]Path{
			{VIP: addr("198.18.0.5"), Port: 8080, ListenPort: 4005},
		}, extra...)},
		{Bridge: "dc-target", Gateway: addr(g2), Paths: []Path{
			{VIP: addr("198.18.0.7"), Port: 8080, ListenPort: 4003},
		}},
	}}
}

var path7 = Path{VIP: addr("198.18.0.7"), Port: 8080, ListenPort: 4001}
var path9 = Path{VIP: addr("198.18.0.9"), Port: 8080, ListenPort: 4002}

// TestDeclaredPathsOnly: from a service's bridge, a declared VIP:port
// reaches its listener, and nothing else on the host answers; another
// bridge is refused, the bridge itself and the outside are not touched;
// Close leaves the tables as they were.
func TestDeclaredPathsOnly(t *testing.T) {
	l := newLab(t, true, true)
	l.servers(t)
	before := l.save(t)
	ctx := context.Background()

	// Without the rules: the host's ports answer, a VIP goes out to o
	// (which answers "unreachable"), and Docker's isolation drops what goes
	// to the other bridge; so the refusals below are the rules' doing.
	l.expect(t, "c", "without rules", map[string]string{
		"tcp:" + g1 + ":4999":      "ok:undeclared",
		"tcp:" + hostUp + ":7071":  "ok:raft",
		"tcp:198.18.0.7:8080":      "unreachable", // o does not forward
		"tcp:10.240.0.66:9000":     "timeout",     // Docker's isolation drops it
		"tcp:10.240.0.3:7000":      "ok:replica2",
		"tcp:" + outside + ":8000": "ok:outside",
		"tcp:" + hostUp + ":9090":  "ok:docker-proxy", // Docker's nat returns for its bridges: its userland proxy answers
	})
	l.expect(t, "o", "without rules", map[string]string{"tcp:" + hostUp + ":9090": "ok:target"})
	if t.Failed() {
		t.FailNow()
	}

	f, err := New(l.id, WithNetns(l.ns("h")))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(ctx, rules(path7)); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "c", "with rules", map[string]string{
		"tcp:198.18.0.7:8080":      "ok:proxy7", // declared: DNAT to its listener
		"tcp:198.18.0.5:8080":      "ok:proxy5",
		"tcp:198.18.0.7:8081":      "refused", // a port not declared
		"tcp:198.18.0.9:8080":      "refused", // a service not declared
		"udp:198.18.0.7:8080":      "refused",
		"tcp:" + g1 + ":4001":      "refused", // its listener, but not through the VIP
		"tcp:" + g1 + ":4999":      "refused", // the host's other ports
		"tcp:" + g1 + ":53":        "ok:dns",
		"udp:" + g1 + ":53":        "ok:dns",
		"udp:" + g1 + ":5353":      "refused",
		"tcp:" + g1 + ":7070":      "refused", // the API on every address
		"tcp:" + hostUp + ":7070":  "refused",
		"tcp:" + hostUp + ":7071":  "refused", // raft on another address
		"tcp:" + g2 + ":4003":      "refused", // another network's listener
		"tcp:10.240.0.66:9000":     "refused", // another bridge (Docker drops it too)
		"tcp:10.240.0.3:7000":      "ok:replica2",
		"tcp:" + outside + ":8000": "ok:outside",
		"tcp:" + hostUp + ":9090":  "refused", // another service's published port, through docker-proxy
	})
	// Docker's published port still works from outside.
	l.expect(t, "o", "with rules", map[string]string{"tcp:" + hostUp + ":9090": "ok:target"})
	// The caller is known by its bridge: the same VIP:port from the
	// target's bridge goes to that network's listener, and only there.
	l.expect(t, "t", "with rules", map[string]string{
		"tcp:198.18.0.7:8080": "ok:target-proxy",
		"tcp:198.18.0.5:8080": "refused",
		"tcp:" + g1 + ":4001": "refused",
		"tcp:10.240.0.3:7000": "refused",
	})

	// What iptables-save shows is, line for line, what was generated, and
	// so a second Apply loads nothing.
	nets, _ := normalize(rules(path7))
	filter, nat := build(l.id, nets, "DOCKER-USER")
	for _, tc := range []struct {
		tab  table
		save string
	}{{filter, l.run(t, "h", "", "iptables-save", "-t", "filter")}, {nat, l.run(t, "h", "", "iptables-save", "-t", "nat")}} {
		got := ours(tc.save, l.id)
		want := []string{}
		for _, c := range tc.tab.chains {
			want = append(want, ":"+c+" - [0:0]")
		}
		for _, j := range tc.tab.jumps {
			want = append(want, j.rule())
		}
		want = append(want, tc.tab.rules...)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: iptables-save shows\n%s\nwant\n%s", tc.tab.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	n := f.restores
	if err := f.Apply(ctx, rules(path7)); err != nil {
		t.Fatal(err)
	}
	if f.restores != n {
		t.Errorf("Apply of the rules in place ran iptables-restore %d times", f.restores-n)
	}
	// The FORWARD chain hangs from DOCKER-USER, first, before Docker's RETURN.
	if du := l.run(t, "h", "", "iptables", "-S", "DOCKER-USER"); !strings.HasPrefix(du, "-N DOCKER-USER\n-A DOCKER-USER -j "+names(l.id).fwd()+"\n-A DOCKER-USER -j RETURN\n") {
		t.Errorf("DOCKER-USER:\n%s", du)
	}

	// With br_netfilter, the bridged packets between the caller's
	// replicas went through FORWARD, and through the rules, which let
	// them be.
	if v, err := exec.Command("ip", "netns", "exec", l.ns("h"), "sysctl", "-n", "net.bridge.bridge-nf-call-iptables").Output(); err != nil || strings.TrimSpace(string(v)) != "1" {
		t.Logf("bridge-nf-call-iptables is %q (%v) here: bridged packets skip iptables, the intra-bridge check proves less", v, err)
	} else if c := ruleCount(t, l, "filter", "-A "+names(l.id).fwdK(0)+" -o dc-caller -j RETURN"); c == 0 {
		t.Errorf("intra-bridge packets did not pass the rules' RETURN (counter 0)")
	}

	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if after := l.save(t); after != before {
		t.Errorf("Close left the tables changed:\nbefore\n%s\nafter\n%s", before, after)
	}
	l.expect(t, "c", "after Close", map[string]string{"tcp:" + g1 + ":4999": "ok:undeclared"})
}

// ruleCount is the packet counter of one rule of the host namespace.
func ruleCount(t *testing.T, l *lab, table, rule string) int {
	t.Helper()
	for line := range strings.Lines(l.run(t, "h", "", "iptables-save", "-c", "-t", table)) {
		if c, r, ok := strings.Cut(strings.TrimSpace(line), "] "); ok && r == rule {
			n, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(c, ":")[0], "["))
			return n
		}
	}
	t.Fatalf("no rule %q", rule)
	return 0
}

// TestApplyChangesAtOnce: new connections see the new paths as soon as
// Apply returns; Docker inserting its rules at the head of FORWARD (as it
// does for every network it creates) changes nothing.
func TestApplyChangesAtOnce(t *testing.T) {
	l := newLab(t, true, true)
	l.servers(t)
	ctx := context.Background()
	f, err := New(l.id, WithNetns(l.ns("h")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	if err := f.Apply(ctx, rules(path7)); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "c", "paths 5, 7", map[string]string{"tcp:198.18.0.7:8080": "ok:proxy7", "tcp:198.18.0.9:8080": "refused"})
	if err := f.Apply(ctx, rules(path9)); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "c", "paths 5, 9", map[string]string{
		"tcp:198.18.0.7:8080": "refused", "tcp:" + g1 + ":4001": "refused",
		"tcp:198.18.0.9:8080": "ok:proxy9", "tcp:198.18.0.5:8080": "ok:proxy5",
	})
	if err := f.Apply(ctx, Rules{}); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "c", "no networks", map[string]string{"tcp:198.18.0.9:8080": "unreachable", "tcp:" + g1 + ":4999": "ok:undeclared"})
	if err := f.Apply(ctx, rules(path9)); err != nil {
		t.Fatal(err)
	}

	// Docker creates a network: its rules go first in FORWARD, then it
	// puts its DOCKER-USER jump back on top.
	l.run(t, "h", `*filter
-I FORWARD 1 -i dc-caller -o dc-target -j ACCEPT
-I FORWARD 1 -i dc-caller ! -o dc-caller -j ACCEPT
-D FORWARD -j DOCKER-USER
-I FORWARD 1 -j DOCKER-USER
COMMIT
`, "iptables-restore", "--noflush")
	l.expect(t, "c", "after Docker's rules", map[string]string{
		"tcp:10.240.0.66:9000": "refused", "tcp:198.18.0.7:8080": "refused", "tcp:198.18.0.9:8080": "ok:proxy9",
		"tcp:" + outside + ":8000": "ok:outside",
	})
}

// TestApplyIsAtomic: while Apply swaps two rule sets back and forth, a
// prober in the caller's namespace never finds an undeclared port open
// nor a path that stays declared refused. The control at the end proves
// the prober sees a gap when there is one.
func TestApplyIsAtomic(t *testing.T) {
	l := newLab(t, true, true)
	l.servers(t)
	ctx := context.Background()
	f, err := New(l.id, WithNetns(l.ns("h")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	// a and b differ in both tables: in nat the paths, in filter a third
	// network, so that every swap reloads both.
	a, b := rules(path7), rules(path9)
	b.Networks = append(b.Networks, Network{Bridge: "dc-other", Gateway: addr("10.240.1.1")})
	if err := f.Apply(ctx, a); err != nil {
		t.Fatal(err)
	}
	n := f.restores
	undeclared, vipOther, stable := "tcp:"+g1+":4999", "tcp:198.18.0.7:9999", "tcp:198.18.0.5:8080"
	stop := l.background(t, "c", "probe", undeclared, vipOther, stable, "tcp:198.18.0.9:8080")
	const swaps = 40
	for i := range swaps {
		r := b
		if i%2 == 1 {
			r = a
		}
		if err := f.Apply(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	counts := probeCounts(t, stop())
	t.Logf("%d swaps; prober saw %v", swaps, counts)
	if f.restores-n != 2*swaps {
		t.Errorf("%d swaps ran iptables-restore %d times, want one per table and swap", swaps, f.restores-n)
	}
	for spec, want := range map[string]string{undeclared: "refused", vipOther: "refused", stable: "ok:proxy5"} {
		for got, n := range counts[spec] {
			if got != want {
				t.Errorf("during the swaps %s was %s %d times (want only %s)", spec, got, n, want)
			}
		}
		if counts[spec][want] < swaps {
			t.Errorf("%s probed %d times: too few to tell", spec, counts[spec][want])
		}
	}
	for got := range counts["tcp:198.18.0.9:8080"] {
		if got != "ok:proxy9" && got != "refused" {
			t.Errorf("the path that comes and goes was %s", got)
		}
	}

	// Control: emptying the caller's INPUT chain, then loading it again
	// (not atomic), opens the undeclared port for a moment.
	stop = l.background(t, "c", "probe", undeclared)
	l.run(t, "h", "", "iptables", "-F", names(l.id).inK(0))
	time.Sleep(200 * time.Millisecond)
	if err := f.Apply(ctx, a); err != nil {
		t.Fatal(err)
	}
	counts = probeCounts(t, stop())
	if counts[undeclared]["ok:undeclared"] == 0 {
		t.Errorf("control: the prober missed a 200 ms gap: %v", counts)
	}
}

func probeCounts(t *testing.T, out string) map[string]map[string]int {
	t.Helper()
	var counts map[string]map[string]int
	if err := json.Unmarshal([]byte(out), &counts); err != nil {
		t.Fatalf("prober: %v: %q", err, out)
	}
	return counts
}

// TestAdoptAndRemove: the rules outlive the Firewall (an agent restart);
// a new Firewall of the same id replaces them, jumps included, without
// doubling anything; Remove takes everything away, and again nothing.
func TestAdoptAndRemove(t *testing.T) {
	l := newLab(t, true, true)
	l.servers(t)
	ctx := context.Background()
	before := l.save(t)
	f1, err := New(l.id, WithNetns(l.ns("h")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Remove(context.Background(), l.id, WithNetns(l.ns("h"))) })
	if err := f1.Apply(ctx, rules(path7)); err != nil {
		t.Fatal(err)
	}
	// Another agent's rules on the same host (another id) stay as they are.
	other := "o" + l.id[1:]
	fo, err := New(other, WithNetns(l.ns("h")))
	if err != nil {
		t.Fatal(err)
	}
	if err := fo.Apply(ctx, Rules{}); err != nil {
		t.Fatal(err)
	}
	otherLines := ours(l.save(t), other)

	// The agent stops (f1 is not used again); the rules stay.
	l.expect(t, "c", "agent gone", map[string]string{"tcp:198.18.0.7:8080": "ok:proxy7", "tcp:" + g1 + ":4999": "refused"})

	// Someone inserted a second jump meanwhile.
	l.run(t, "h", "", "iptables", "-I", "INPUT", "1", "-j", names(l.id).in())
	f2, err := New(l.id, WithNetns(l.ns("h")))
	if err != nil {
		t.Fatal(err)
	}
	if err := f2.Apply(ctx, rules(path9)); err != nil {
		t.Fatal(err)
	}
	s := l.save(t)
	for _, j := range []string{"-A INPUT -j " + names(l.id).in(), "-A DOCKER-USER -j " + names(l.id).fwd(), "-A PREROUTING -j " + names(l.id).pre()} {
		if n := strings.Count(s, j+"\n"); n != 1 {
			t.Errorf("%q %d times after adoption", j, n)
		}
	}
	l.expect(t, "c", "adopted", map[string]string{"tcp:198.18.0.7:8080": "refused", "tcp:198.18.0.9:8080": "ok:proxy9"})

	if err := Remove(ctx, l.id, WithNetns(l.ns("h"))); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, l.id, WithNetns(l.ns("h"))); err != nil {
		t.Fatalf("Remove of nothing: %v", err)
	}
	s = l.save(t)
	if left := ours(s, l.id); len(left) > 0 {
		t.Errorf("Remove left %q", left)
	}
	if got := ours(s, other); !slices.Equal(got, otherLines) {
		t.Errorf("the other agent's lines changed:\n%q\nwant\n%q", got, otherLines)
	}
	if err := fo.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if after := l.save(t); after != before {
		t.Errorf("tables changed:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// TestForwardHookMoves: without Docker's chains, FORWARD jumps to the
// rules first; once Docker made DOCKER-USER, the next Apply moves the
// jump there.
func TestForwardHookMoves(t *testing.T) {
	l := newLab(t, false, false)
	ctx := context.Background()
	f, err := New(l.id, WithNetns(l.ns("h")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	r := Rules{Networks: []Network{{Bridge: "dc-x", Gateway: addr("10.240.0.1")}}}
	if err := f.Apply(ctx, r); err != nil {
		t.Fatal(err)
	}
	fwd := names(l.id).fwd()
	if s := l.run(t, "h", "", "iptables", "-S", "FORWARD"); !strings.Contains(s, "-A FORWARD -j "+fwd+"\n") {
		t.Fatalf("FORWARD without Docker:\n%s", s)
	}
	l.run(t, "h", dockerSkeleton(false), "iptables-restore", "--noflush")
	if err := f.Apply(ctx, r); err != nil {
		t.Fatal(err)
	}
	if s := l.run(t, "h", "", "iptables", "-S", "FORWARD"); strings.Contains(s, fwd) {
		t.Errorf("FORWARD still jumps to %s:\n%s", fwd, s)
	}
	if s := l.run(t, "h", "", "iptables", "-S", "DOCKER-USER"); !strings.HasPrefix(s, "-N DOCKER-USER\n-A DOCKER-USER -j "+fwd+"\n") {
		t.Errorf("DOCKER-USER:\n%s", s)
	}
}

// TestHostBesideDocker loads rules into this machine's own tables, next to
// the running Docker's, for a bridge that does not exist (so no packet
// matches them): the FORWARD jump goes into Docker's DOCKER-USER, the
// rules read back as generated, and Close leaves none of the run's chains
// or jumps. Other lines are not compared: other processes may change them
// meanwhile.
func TestHostBesideDocker(t *testing.T) {
	needKernel(t)
	ctx := context.Background()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	id := ("t" + hex.EncodeToString(rnd[:]))[:8]
	bridge := "dcfwx" + hex.EncodeToString(rnd[:])
	f, err := New(id)
	if err != nil {
		t.Fatal(err)
	}
	have, err := f.save(ctx, "filter")
	if err != nil {
		t.Fatal(err)
	}
	if forwardHook(have) != dockerUser {
		if enginetest.Required() {
			t.Fatalf("no DOCKER-USER in this machine's filter table; %s=1 requires a Docker Engine managing iptables", enginetest.RequireEnv)
		}
		t.Skip("host test skipped: no DOCKER-USER in this machine's filter table (no Docker managing iptables)")
	}
	t.Cleanup(func() {
		if err := Remove(context.Background(), id); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	r := Rules{Networks: []Network{{Bridge: bridge, Gateway: addr("10.255.254.1"), Paths: []Path{{VIP: addr("198.19.255.254"), Port: 8080, ListenPort: 65001}}}}}
	if err := f.Apply(ctx, r); err != nil {
		t.Fatal(err)
	}
	n := f.restores
	if err := f.Apply(ctx, r); err != nil {
		t.Fatal(err)
	}
	if f.restores != n {
		t.Errorf("second Apply loaded %d scripts", f.restores-n)
	}
	save := func(table string) string {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	filterSave, natSave := save("filter"), save("nat")
	for _, j := range []string{"-A INPUT -j " + names(id).in(), "-A DOCKER-USER -j " + names(id).fwd()} {
		if strings.Count(filterSave, j+"\n") != 1 {
			t.Errorf("filter: want %q once", j)
		}
	}
	if strings.Count(natSave, "-A PREROUTING -j "+names(id).pre()+"\n") != 1 {
		t.Errorf("nat: want the PREROUTING jump once")
	}
	t.Logf("this machine's tables, the run's lines:\n%s\n%s", strings.Join(ours(filterSave, id), "\n"), strings.Join(ours(natSave, id), "\n"))
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if left := append(ours(save("filter"), id), ours(save("nat"), id)...); len(left) > 0 {
		t.Errorf("Close left %q", left)
	}
	if !strings.Contains(save("filter"), "-A DOCKER-USER -j RETURN\n") {
		t.Errorf("DOCKER-USER lost Docker's RETURN")
	}
}

// ipCmd runs one iproute2 command.
func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func namespaces(ctx context.Context) map[string]bool {
	out, _ := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	names := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			names[f[0]] = true
		}
	}
	return names
}

// removeStaleNamespaces deletes namespaces of this naming whose maker
// process is gone (a test binary killed on timeout); links, bridges and
// rules inside go with them.
func removeStaleNamespaces(ctx context.Context) {
	for ns := range namespaces(ctx) {
		rest, ok := strings.CutPrefix(ns, nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = ipCmd(ctx, "netns", "del", ns)
		}
	}
}

// TestKernelTestsSkipOrFail: without iptables (an empty PATH, in a child
// process), a kernel test skips with one line, or fails when
// DEPLOYCTL_REQUIRE_DOCKER=1.
func TestKernelTestsSkipOrFail(t *testing.T) {
	run := func(require string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestForwardHookMoves$", "-test.v")
		cmd.Env = append(os.Environ(), "PATH=/nonexistent", enginetest.RequireEnv+"="+require)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "--- SKIP") || !strings.Contains(out, "kernel test skipped: needs ") {
		t.Fatalf("without the requirement: %v\n%s", err, out)
	}
	out, err = run("1")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, enginetest.RequireEnv+"=1 requires it") {
		t.Fatalf("with %s=1: %v\n%s", enginetest.RequireEnv, err, out)
	}
}
