package controller

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// hostLoad is what placement knows of one host.
type hostLoad struct {
	id string
	// ready is false for a down host: it never takes a replica, and is
	// kept only so that a slot that cannot be placed can say so.
	ready  bool
	labels map[string]string
	// userns: the host's engine runs with userns-remap.
	userns bool
	// total counts the replicas desired running on the host, all services.
	total int
	// ports holds the host ports published on it.
	ports map[publishedPort]bool
}

// publishedPort is one host port taken on a host. addr is unmapped, so that
// ::ffff:127.0.0.1 and 127.0.0.1 are the same address.
type publishedPort struct {
	addr     netip.Addr
	port     int
	protocol string
}

func publishedPortOf(p specs.Port) publishedPort {
	addr, err := netip.ParseAddr(p.HostIP)
	if err != nil {
		// Validate refuses such a spec; an address that does not parse is
		// taken for every address, the safe reading for a clash check.
		addr = netip.IPv4Unspecified()
	}
	return publishedPort{addr: addr.Unmap(), port: p.HostPort, protocol: p.Protocol}
}

func (p publishedPort) String() string {
	return netip.AddrPortFrom(p.addr, uint16(p.port)).String() + "/" + p.protocol
}

// clashes reports whether two bindings cannot coexist on one host: same
// port and protocol, and the same address or an unspecified one (0.0.0.0
// or ::), which takes every address. specs.Validate applies the same rule
// to the ports of one spec.
func (p publishedPort) clashes(q publishedPort) bool {
	return p.port == q.port && p.protocol == q.protocol &&
		(p.addr == q.addr || p.addr.IsUnspecified() || q.addr.IsUnspecified())
}

// clusterLoad summarises the hosts once per controller pass, so placing a
// replica does not walk every replica of the cluster.
type clusterLoad struct {
	hosts []*hostLoad
	// requireUserns: the policy places replicas only on hosts whose engine
	// runs with userns-remap.
	requireUserns bool
}

// clusterSource is the part of *state.Tables that placement reads.
type clusterSource interface {
	Hosts() []state.Host
	EachHostReplica(host string, fn func(state.Replica))
	Revision(service string, number int) (state.Revision, bool)
}

func newClusterLoad(t *state.Tables) *clusterLoad { return loadOf(t) }

func loadOf(src clusterSource) *clusterLoad {
	cl := &clusterLoad{}
	// Ports by revision, read once: a revision (its whole spec) copied per
	// replica was a fifth of a pass at 100,000 replicas.
	type revKey struct {
		service string
		number  int
	}
	portsOf := map[revKey][]specs.Port{}
	for _, h := range src.Hosts() {
		hl := &hostLoad{id: h.ID, ready: h.State == state.HostReady, labels: h.Labels, ports: map[publishedPort]bool{},
			userns: h.Engine != nil && h.Engine.Userns}
		cl.hosts = append(cl.hosts, hl)
		if !hl.ready {
			continue
		}
		src.EachHostReplica(h.ID, func(r state.Replica) {
			if r.Desired != state.DesiredRunning {
				return
			}
			hl.total++
			key := revKey{r.Service, r.Revision}
			ports, seen := portsOf[key]
			if !seen {
				if rev, ok := src.Revision(r.Service, r.Revision); ok {
					ports = rev.Spec.Ports
				}
				portsOf[key] = ports
			}
			for _, p := range ports {
				hl.ports[publishedPortOf(p)] = true
			}
		})
	}
	return cl
}

// portInUse returns a published port of spec already taken on the host.
func (h *hostLoad) portInUse(spec specs.Spec) (publishedPort, bool) {
	for _, p := range spec.Ports {
		want := publishedPortOf(p)
		for used := range h.ports {
			if want.clashes(used) {
				return want, true
			}
		}
	}
	return publishedPort{}, false
}

// refusalKind is why a host cannot take a replica, in the order the checks
// run; a host is counted under the first check it fails.
type refusalKind int

const (
	refusedDown refusalKind = iota
	refusedUserns
	refusedConstraint
	refusedMaxPerHost
	refusedPort
)

// refusal is one cause, as the reason of an unplaced slot counts it.
type refusal struct {
	kind refusalKind
	// constraint is the index of the failed constraint (refusedConstraint).
	constraint int
	// port is the port in use (refusedPort).
	port string
}

// placement is one call of place: the spec's rules and this service's
// replicas per host, which grow as the call places them.
type placement struct {
	spec          specs.Spec
	constraints   []specs.Constraint
	requireUserns bool
	// perHost counts the replicas of the service desired running on each
	// host, every revision alike: an old replica that start-first keeps
	// running until its replacement is healthy occupies its host as much
	// as a new one. Replicas placed by this call are added as they go.
	perHost map[string]int
	// running marks the slots that still have a replica desired running:
	// a slot started while so is a start-first replacement.
	running map[int]bool
}

// refuse says why h cannot take a replica, or nil when it can.
func (p *placement) refuse(h *hostLoad) *refusal {
	if !h.ready {
		return &refusal{kind: refusedDown}
	}
	if p.requireUserns && !h.userns {
		return &refusal{kind: refusedUserns}
	}
	for i, c := range p.constraints {
		if !c.Matches(h.labels, h.id) {
			return &refusal{kind: refusedConstraint, constraint: i}
		}
	}
	if limit := p.spec.Placement.MaxPerHost; limit > 0 && p.perHost[h.id] >= limit {
		return &refusal{kind: refusedMaxPerHost}
	}
	if port, taken := h.portInUse(p.spec); taken {
		return &refusal{kind: refusedPort, port: port.String()}
	}
	return nil
}

// before is the spread order: fewest replicas of this service, then fewest
// in all, then the lowest ID, so that the choice is deterministic.
func (p *placement) before(a, b *hostLoad) bool {
	if p.perHost[a.id] != p.perHost[b.id] {
		return p.perHost[a.id] < p.perHost[b.id]
	}
	if a.total != b.total {
		return a.total < b.total
	}
	return a.id < b.id
}

// place picks a host for each slot. A host is a candidate when it is ready,
// satisfies every placement constraint, runs fewer than max_per_host
// replicas of the service (counting every revision and the replicas this
// call places) and has none of the spec's host ports in use. Among the
// candidates it takes the first in the spread order, and it updates the
// load as it goes so that a batch spreads.
//
// Replicas that the same controller step stops still count: their
// containers run until the agent stops them. A stop-first slot whose old
// replica is stopped in this step is therefore placed on the next pass.
//
// A slot that cannot be placed gets a reason instead, which counts the
// hosts by cause and says what would help; slots with the same reason share
// one ("slots 2, 3 cannot be placed: ...").
func (cl *clusterLoad) place(spec specs.Spec, serviceReplicas []state.Replica, slots []int) (map[int]string, []string) {
	p := &placement{spec: spec, perHost: map[string]int{}, running: map[int]bool{}, requireUserns: cl.requireUserns}
	for _, r := range serviceReplicas {
		if r.Desired == state.DesiredRunning {
			p.perHost[r.Host]++
			p.running[r.Slot] = true
		}
	}
	var unplaced reasonGroups
	for _, text := range spec.Placement.Constraints {
		c, err := specs.ParseConstraint(text)
		if err != nil {
			// Validate refuses such a spec before it is stored; this is
			// only reachable with a record written by hand.
			for _, slot := range slots {
				unplaced.add(slot, fmt.Sprintf("placement constraint %q is invalid (%v); fix the spec", text, err))
			}
			return map[int]string{}, unplaced.reasons()
		}
		p.constraints = append(p.constraints, c)
	}

	placed := map[int]string{}
	for _, slot := range slots {
		var best *hostLoad
		refused := map[refusal]int{}
		for _, h := range cl.hosts {
			if why := p.refuse(h); why != nil {
				refused[*why]++
				continue
			}
			if best == nil || p.before(h, best) {
				best = h
			}
		}
		if best == nil {
			unplaced.add(slot, p.explain(refused, p.running[slot]))
			continue
		}
		placed[slot] = best.id
		p.perHost[best.id]++
		best.total++
		for _, port := range spec.Ports {
			best.ports[publishedPortOf(port)] = true
		}
	}
	return placed, unplaced.reasons()
}

// explain says why no host could take a replica: how many hosts failed
// each check, then what would help. replacing is true when the slot still
// runs an old replica (a start-first replacement).
func (p *placement) explain(refused map[refusal]int, replacing bool) string {
	if len(refused) == 0 {
		return "no ready host: none has joined the cluster yet; start an agent"
	}
	causes := make([]refusal, 0, len(refused))
	hosts := 0
	for r, n := range refused {
		causes = append(causes, r)
		hosts += n
	}
	slices.SortFunc(causes, func(a, b refusal) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.constraint, b.constraint), cmp.Compare(a.port, b.port))
	})

	var counts []string
	fixes := []string{"add hosts"}
	addFix := func(fix string) {
		if !slices.Contains(fixes, fix) {
			fixes = append(fixes, fix)
		}
	}
	constraintCauses := 0
	for _, r := range causes {
		if r.kind == refusedConstraint {
			constraintCauses++
		}
	}
	startFirst := replacing && p.spec.Update.Order == specs.OrderStartFirst
	var note string
	for _, r := range causes {
		n := refused[r]
		switch r.kind {
		case refusedDown:
			counts = append(counts, fmt.Sprintf("%d down", n))
			addFix("bring the down hosts back")
		case refusedUserns:
			counts = append(counts, fmt.Sprintf("%d without userns-remap, which the policy requires (require_userns)", n))
			addFix("turn on userns-remap on those engines (docs/cis.md)")
		case refusedConstraint:
			counts = append(counts, fmt.Sprintf("%d %s constraint %q", n, plural(n, "fails", "fail"), p.constraints[r.constraint]))
			addFix(plural(constraintCauses, "relax the constraint", "relax the constraints"))
		case refusedMaxPerHost:
			limit := p.spec.Placement.MaxPerHost
			counts = append(counts, fmt.Sprintf("%d already %s max_per_host %d %s of %s",
				n, plural(n, "runs", "run"), limit, plural(limit, "replica", "replicas"), p.spec.Service))
			addFix("raise max_per_host")
			if startFirst {
				addFix("use update.order: stop-first")
				note = "update.order start-first keeps the old replica running until its replacement is healthy, so with max_per_host a rollout needs a spare host"
			}
		case refusedPort:
			counts = append(counts, fmt.Sprintf("%d %s host port %s in use", n, plural(n, "has", "have"), r.port))
			if startFirst {
				addFix("use update.order: stop-first")
				if note == "" {
					note = "update.order start-first keeps the old replica and its host port until its replacement is healthy"
				}
			} else {
				addFix("free the port")
			}
		}
	}
	text := fmt.Sprintf("%d %s: %s", hosts, plural(hosts, "host", "hosts"), strings.Join(counts, ", "))
	if note != "" {
		text += "; " + note
	}
	return text + "; " + orList(fixes)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// orList joins choices as "a, b or c".
func orList(choices []string) string {
	if len(choices) == 1 {
		return choices[0]
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// reasonGroups collects the slots that cannot be placed by reason, in the
// order the reasons first appear, so that a batch of slots failing alike
// makes one line instead of one per slot.
type reasonGroups struct {
	texts []string
	slots map[string][]int
}

func (g *reasonGroups) add(slot int, reason string) {
	if g.slots == nil {
		g.slots = map[string][]int{}
	}
	if _, seen := g.slots[reason]; !seen {
		g.texts = append(g.texts, reason)
	}
	g.slots[reason] = append(g.slots[reason], slot)
}

func (g *reasonGroups) reasons() []string {
	var out []string
	for _, text := range g.texts {
		slots := g.slots[text]
		numbers := make([]string, len(slots))
		for i, s := range slots {
			numbers[i] = fmt.Sprint(s)
		}
		out = append(out, fmt.Sprintf("%s %s cannot be placed: %s",
			plural(len(slots), "slot", "slots"), strings.Join(numbers, ", "), text))
	}
	return out
}
