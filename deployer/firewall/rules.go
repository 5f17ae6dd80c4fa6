package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Rules is everything one host's agent wants enforced for its service
// networks.
type Rules struct {
	Networks []Network
}

// Network is one service's bridge on this host and the connections the
// service declared.
type Network struct {
	Bridge  string     // Linux bridge interface, e.g. "dc-1a2b3c4d"
	Gateway netip.Addr // the bridge's address (the host side)
	Paths   []Path     // declared connections of the service on this bridge
}

// Path is one declared connection: the caller dials VIP:Port, the host
// sends it to the proxy's listener at Gateway:ListenPort.
type Path struct {
	VIP        netip.Addr // the target service's address, in ServiceRange
	Port       int        // the port the caller dials (VIP:Port)
	ListenPort int        // the host proxy's listener on Gateway for this path
}

// maxChain is the longest chain name iptables takes.
const maxChain = 28

// maxNetworks keeps DEPLOYCTL-<8-byte id>-FWD-<index> within maxChain.
const maxNetworks = 100000

// chainPrefix starts every chain of every agent; "DEPLOYCTL-<id>-" starts
// one agent's.
const chainPrefix = "DEPLOYCTL-"

// names are the chains of one agent: a top chain per hook (IN, FWD, PRE)
// that dispatches on the input bridge to a chain per network (IN-k, FWD-k,
// PRE-k, k the network's index in bridge order), and ISO, the other
// bridges no network forwards to.
type names string

func (n names) prefix() string    { return chainPrefix + string(n) + "-" }
func (n names) in() string        { return n.prefix() + "IN" }
func (n names) fwd() string       { return n.prefix() + "FWD" }
func (n names) pre() string       { return n.prefix() + "PRE" }
func (n names) iso() string       { return n.prefix() + "ISO" }
func (n names) inK(k int) string  { return fmt.Sprintf("%sIN-%d", n.prefix(), k) }
func (n names) fwdK(k int) string { return fmt.Sprintf("%sFWD-%d", n.prefix(), k) }
func (n names) preK(k int) string { return fmt.Sprintf("%sPRE-%d", n.prefix(), k) }

// ours reports whether chain is one of this agent's. Ids have no "-", so
// no agent's prefix starts another's.
func (n names) ours(chain string) bool { return strings.HasPrefix(chain, n.prefix()) }

// dockerUser is the chain Docker leaves to its users' rules.
const dockerUser = "DOCKER-USER"

// hooks are the chains the top chains of a table are jumped to from: the
// built-in chains, and DOCKER-USER. Only these are searched for jumps.
func hooks(tableName string) []string {
	if tableName == "nat" {
		return []string{"PREROUTING"}
	}
	return []string{"INPUT", "FORWARD", dockerUser}
}

// forwardHook is where the FORWARD top chain is jumped to from:
// DOCKER-USER when Docker made it (and jumps to it from FORWARD), since
// Docker keeps that jump first in FORWARD and never edits DOCKER-USER's
// content, while it inserts its own ACCEPT rules at the head of FORWARD
// whenever it creates a network; FORWARD itself otherwise (Docker started
// with iptables disabled, or no Docker: the tests' stand-in host).
func forwardHook(filter tableState) string {
	if filter.chains[dockerUser] && slices.Contains(filter.rules["FORWARD"], "-A FORWARD -j "+dockerUser) {
		return dockerUser
	}
	return "FORWARD"
}

// table is the wanted content of one table's agent chains: the chains,
// their rules ("-A CHAIN ..." in iptables-save's own spelling, so that
// what is in place compares equal to what is wanted) and the jumps to
// them.
type table struct {
	name   string
	chains []string
	rules  []string
	jumps  []jump
}

// jump is the rule "-A from -j to".
type jump struct{ from, to string }

func (j jump) rule() string { return "-A " + j.from + " -j " + j.to }

// normalize checks r and returns its networks sorted by bridge, each with
// its paths sorted by VIP and port, exact duplicates dropped. r is not
// changed.
func normalize(r Rules) ([]Network, error) {
	vips := netip.MustParsePrefix(ServiceRange)
	if len(r.Networks) > maxNetworks {
		return nil, fmt.Errorf("firewall: %d networks: at most %d (the chain names hold the index)", len(r.Networks), maxNetworks)
	}
	nets := make([]Network, 0, len(r.Networks))
	seen := map[string]bool{}
	for _, nw := range r.Networks {
		if err := checkBridge(nw.Bridge); err != nil {
			return nil, err
		}
		if seen[nw.Bridge] {
			return nil, fmt.Errorf("firewall: bridge %s listed twice", nw.Bridge)
		}
		seen[nw.Bridge] = true
		if !nw.Gateway.Is4() || nw.Gateway.IsUnspecified() {
			return nil, fmt.Errorf("firewall: network %s: gateway %v: want an IPv4 address", nw.Bridge, nw.Gateway)
		}
		paths := slices.Clone(nw.Paths)
		for _, p := range paths {
			if !p.VIP.Is4() || !vips.Contains(p.VIP) {
				return nil, fmt.Errorf("firewall: network %s: service address %v: want one in %s", nw.Bridge, p.VIP, ServiceRange)
			}
			if p.Port < 1 || p.Port > 65535 || p.ListenPort < 1 || p.ListenPort > 65535 {
				return nil, fmt.Errorf("firewall: network %s: path %v:%d -> listener %d: ports are 1 to 65535", nw.Bridge, p.VIP, p.Port, p.ListenPort)
			}
		}
		slices.SortFunc(paths, func(a, b Path) int {
			return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port), cmp.Compare(a.ListenPort, b.ListenPort))
		})
		paths = slices.Compact(paths)
		for i := 1; i < len(paths); i++ {
			if a, b := paths[i-1], paths[i]; a.VIP == b.VIP && a.Port == b.Port {
				return nil, fmt.Errorf("firewall: network %s: %v:%d goes to two listeners, %d and %d", nw.Bridge, a.VIP, a.Port, a.ListenPort, b.ListenPort)
			}
		}
		nw.Paths = paths
		nets = append(nets, nw)
	}
	slices.SortFunc(nets, func(a, b Network) int { return strings.Compare(a.Bridge, b.Bridge) })
	return nets, nil
}

// checkBridge accepts interface names (at most 15 bytes) of letters,
// digits and "_.-": nothing an iptables rule would read as a wildcard
// ("+") or as another word.
func checkBridge(name string) error {
	if len(name) < 1 || len(name) > 15 || !onlyChars(name, "_.-") || name[0] == '-' {
		return fmt.Errorf("firewall: bridge %q: want an interface name of 1 to 15 letters, digits or _.- (not starting with -)", name)
	}
	return nil
}

// onlyChars reports whether s has only ASCII letters, digits and bytes of
// extra.
func onlyChars(s, extra string) bool {
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// build returns the wanted filter and nat tables for nets (normalized)
// with the FORWARD top chain jumped to from fwdHook.
func build(id string, nets []Network, fwdHook string) (filter, nat table) {
	n := names(id)
	filter = table{name: "filter", jumps: []jump{{"INPUT", n.in()}, {fwdHook, n.fwd()}}}
	nat = table{name: "nat", jumps: []jump{{"PREROUTING", n.pre()}}}
	add := func(t *table, chain string, rule ...string) {
		t.rules = append(t.rules, "-A "+chain+" "+strings.Join(rule, " "))
	}
	const (
		established = "-m conntrack --ctstate RELATED,ESTABLISHED"
		tcpReset    = "-j REJECT --reject-with tcp-reset"
		portUnreach = "-j REJECT --reject-with icmp-port-unreachable"
	)

	// INPUT: what a bridge may reach on the host itself.
	filter.chains = append(filter.chains, n.in())
	for k, nw := range nets {
		add(&filter, n.in(), "-i", nw.Bridge, "-g", n.inK(k))
	}
	for k, nw := range nets {
		c, gw := n.inK(k), nw.Gateway.String()+"/32"
		filter.chains = append(filter.chains, c)
		add(&filter, c, established, "-j ACCEPT")
		add(&filter, c, "-d", gw, "-p udp -m udp --dport 53 -j ACCEPT")
		add(&filter, c, "-d", gw, "-p tcp -m tcp --dport 53 -j ACCEPT")
		// What the nat table sent from a service address to the gateway:
		// only a declared path's DNAT does that. The paths themselves are
		// the nat table's alone, so a change of paths is one transaction,
		// and nothing here ever rejects a packet DNAT rewrote (the reset
		// would not reach the caller as one: DESIGN.md).
		add(&filter, c, "-d", gw, "-p tcp -m conntrack --ctstate DNAT --ctorigdst", ServiceRange, "-j ACCEPT")
		add(&filter, c, "-p tcp", tcpReset)
		add(&filter, c, portUnreach)
	}

	// FORWARD: no service address unless DNAT took it (then it is INPUT's),
	// no other service bridge; everything else is Docker's to decide.
	filter.chains = append(filter.chains, n.fwd())
	add(&filter, n.fwd(), established, "-j RETURN")
	for k, nw := range nets {
		add(&filter, n.fwd(), "-i", nw.Bridge, "-g", n.fwdK(k))
	}
	for k, nw := range nets {
		c := n.fwdK(k)
		filter.chains = append(filter.chains, c)
		add(&filter, c, "-o", nw.Bridge, "-j RETURN")
		add(&filter, c, "-d", ServiceRange, "-p tcp", tcpReset)
		add(&filter, c, "-d", ServiceRange, portUnreach)
		add(&filter, c, "-j", n.iso())
	}
	filter.chains = append(filter.chains, n.iso())
	for _, nw := range nets {
		add(&filter, n.iso(), "-o", nw.Bridge, "-p tcp", tcpReset)
		add(&filter, n.iso(), "-o", nw.Bridge, portUnreach)
	}

	// nat PREROUTING: a declared VIP:port from its caller's bridge goes to
	// the path's listener on that bridge's gateway. A network without
	// paths has no chain here: nothing to DNAT.
	nat.chains = append(nat.chains, n.pre())
	for k, nw := range nets {
		if len(nw.Paths) > 0 {
			add(&nat, n.pre(), "-i", nw.Bridge, "-g", n.preK(k))
		}
	}
	for k, nw := range nets {
		if len(nw.Paths) == 0 {
			continue
		}
		c := n.preK(k)
		nat.chains = append(nat.chains, c)
		for _, p := range nw.Paths {
			add(&nat, c, "-d", p.VIP.String()+"/32", "-p tcp -m tcp --dport", fmt.Sprint(p.Port),
				"-j DNAT --to-destination", netip.AddrPortFrom(nw.Gateway, uint16(p.ListenPort)).String())
		}
	}
	return filter, nat
}

// tableState is one table as iptables-save printed it: every chain, and
// every chain's rules in order.
type tableState struct {
	chains map[string]bool
	rules  map[string][]string
}

// parseSave reads iptables-save's output for one table. Comments, the
// table line and COMMIT are skipped; a rule is kept as printed.
func parseSave(out string) tableState {
	s := tableState{chains: map[string]bool{}, rules: map[string][]string{}}
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, ":"):
			if f := strings.Fields(line[1:]); len(f) > 0 {
				s.chains[f[0]] = true
			}
		case strings.HasPrefix(line, "-A "):
			if f := strings.Fields(line); len(f) > 1 {
				s.rules[f[1]] = append(s.rules[f[1]], line)
			}
		}
	}
	return s
}

// plan returns the iptables-restore input that turns the agent's part of
// have into want, or "" when it already is want. The agent's part is every
// chain named DEPLOYCTL-<id>-* and every jump "-A HOOK -j <such a chain>"
// from a hook chain; nothing else is read or written.
//
// Chains whose rules differ are declared (iptables-restore --noflush
// flushes a declared chain) and filled; chains no longer wanted are
// declared and deleted; a wanted jump present exactly once stays where it
// is, any other count becomes one jump inserted first in its hook; jumps
// from the wrong hook are deleted. All of it is one transaction.
func plan(want table, have tableState, id string) string {
	n := names(id)
	wanted := map[string]bool{}
	byChain := map[string][]string{}
	for _, c := range want.chains {
		wanted[c] = true
	}
	for _, r := range want.rules {
		c := strings.Fields(r)[1]
		byChain[c] = append(byChain[c], r)
	}
	var stale []string
	for c := range have.chains {
		if n.ours(c) && !wanted[c] {
			stale = append(stale, c)
		}
	}
	slices.Sort(stale)
	same := len(stale) == 0
	for _, c := range want.chains {
		if !have.chains[c] || !slices.Equal(have.rules[c], byChain[c]) {
			same = false
		}
	}

	count := map[jump]int{}
	for _, h := range hooks(want.name) {
		for _, r := range have.rules[h] {
			if to, ok := strings.CutPrefix(r, "-A "+h+" -j "); ok && n.ours(to) && !strings.Contains(to, " ") {
				count[jump{h, to}]++
			}
		}
	}
	var del, ins []jump
	for _, j := range want.jumps {
		if count[j] != 1 {
			del = append(del, slices.Repeat([]jump{j}, count[j])...)
			ins = append(ins, j)
		}
	}
	var extra []jump
	for j := range count {
		if !slices.Contains(want.jumps, j) {
			extra = append(extra, j)
		}
	}
	slices.SortFunc(extra, func(a, b jump) int { return cmp.Or(strings.Compare(a.from, b.from), strings.Compare(a.to, b.to)) })
	for _, j := range extra {
		del = append(del, slices.Repeat([]jump{j}, count[j])...)
	}
	if same && len(del) == 0 && len(ins) == 0 {
		return ""
	}

	var b strings.Builder
	b.WriteString("*" + want.name + "\n")
	if !same {
		for _, c := range append(slices.Clone(want.chains), stale...) {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, r := range want.rules {
			b.WriteString(r + "\n")
		}
	}
	for _, j := range del {
		b.WriteString("-D " + j.from + " -j " + j.to + "\n")
	}
	for _, j := range ins {
		b.WriteString("-I " + j.from + " 1 -j " + j.to + "\n")
	}
	for _, c := range stale {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
