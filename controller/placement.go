package controller

import (
	"cmp"
	"container/heap"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/controller/rollout"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// hostLoad is what placement knows of one host.
type hostLoad struct {
	id string
	// ready is false for a down host: it never takes a replica, and is
	// kept only so that a slot that cannot be placed can say so.
	ready bool
	// draining: the operator drained the host (`deployctl host drain`):
	// it takes no new replica; its replicas still count where they run.
	draining bool
	labels   map[string]string
	// userns: the host's engine runs with userns-remap.
	userns bool
	// total counts the containers on the host, all services: replicas
	// desired running, and replicas desired stopped whose container still
	// runs (rollout.Gone is false), since it holds its ports until the agent
	// confirms the stop.
	total int
	// ports counts the containers publishing each host port on it.
	ports map[publishedPort]int
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
	// portsOf returns the host ports a revision publishes.
	portsOf func(service string, revision int) []specs.Port
	// requireUserns: the policy places replicas only on hosts whose engine
	// runs with userns-remap.
	requireUserns bool
	// draining are the drained hosts (rollout.Input.Draining).
	draining map[string]bool
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
	cl.portsOf = func(service string, number int) []specs.Port {
		key := revKey{service, number}
		ports, seen := portsOf[key]
		if !seen {
			if rev, ok := src.Revision(service, number); ok {
				ports = rev.Spec.Ports
			}
			portsOf[key] = ports
		}
		return ports
	}
	for _, h := range src.Hosts() {
		hl := &hostLoad{id: h.ID, ready: h.State == state.HostReady, draining: h.Draining(), labels: h.Labels, ports: map[publishedPort]int{},
			userns: h.Engine != nil && h.Engine.Userns}
		cl.hosts = append(cl.hosts, hl)
		if hl.draining {
			if cl.draining == nil {
				cl.draining = map[string]bool{}
			}
			cl.draining[h.ID] = true
		}
		if !hl.ready {
			continue
		}
		src.EachHostReplica(h.ID, func(r state.Replica) {
			if !holdsHost(r) {
				return
			}
			hl.total++
			for _, p := range cl.portsOf(r.Service, r.Revision) {
				hl.ports[publishedPortOf(p)]++
			}
		})
	}
	return cl
}

// holdsHost reports whether a replica's container holds room on its host:
// it is desired running, or desired stopped and its stop not confirmed.
func holdsHost(r state.Replica) bool {
	return r.Desired == state.DesiredRunning || !rollout.Gone(r)
}

// portInUse returns a published port of spec already taken on the host:
// by its load, by the replicas this placement added (added), less the
// ports of replicas it imagines gone (freed).
func (h *hostLoad) portInUse(spec specs.Spec, added []publishedPort, freed map[publishedPort]int) (publishedPort, bool) {
	for _, p := range spec.Ports {
		want := publishedPortOf(p)
		for used, n := range h.ports {
			if n-freed[used] > 0 && want.clashes(used) {
				return want, true
			}
		}
		for _, used := range added {
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
	refusedDraining
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
	// own holds, per slot, the service's replicas that hold room on their
	// host (desired running, or still stopping).
	own map[int][]state.Replica
	// added and addedPorts are what this call placed, per host: place does
	// not change the cluster load until commit.
	added      map[*hostLoad]int
	addedPorts map[*hostLoad][]publishedPort
}

// imagined is room a placement imagines free on one host: the slot's own
// replicas there, gone.
type imagined struct {
	replicas int
	ports    map[publishedPort]int
}

// refuse says why h cannot take a replica, or nil when it can.
func (p *placement) refuse(h *hostLoad) *refusal { return p.refuseWithout(h, imagined{}) }

// refuseWithout is refuse with the room of gone imagined free.
func (p *placement) refuseWithout(h *hostLoad, gone imagined) *refusal {
	if !h.ready {
		return &refusal{kind: refusedDown}
	}
	if h.draining {
		return &refusal{kind: refusedDraining}
	}
	if p.requireUserns && !h.userns {
		return &refusal{kind: refusedUserns}
	}
	for i, c := range p.constraints {
		if !c.Matches(h.labels, h.id) {
			return &refusal{kind: refusedConstraint, constraint: i}
		}
	}
	if limit := p.spec.Placement.MaxPerHost; limit > 0 && p.perHost[h.id]-gone.replicas >= limit {
		return &refusal{kind: refusedMaxPerHost}
	}
	if port, taken := h.portInUse(p.spec, p.addedPorts[h], gone.ports); taken {
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
	if ta, tb := a.total+p.added[a], b.total+p.added[b]; ta != tb {
		return ta < tb
	}
	return a.id < b.id
}

// place picks a host for each slot. A host is a candidate when it is ready,
// not draining, satisfies every placement constraint, runs fewer than max_per_host
// replicas of the service (counting every revision, the replicas still
// stopping and the replicas this call places) and has none of the spec's
// host ports in use. A slot pinned to a host (a slot replaced in place, see
// controller/rollout) goes there when that host is a candidate. Otherwise
// it takes the first candidate in the spread order; the call keeps track of
// what it placed so that a batch spreads. It does not change the load: call
// commit with the placements kept.
//
// Replicas that the same controller step stops still count: their
// containers run until the agent stops them. A stop-first slot whose old
// replica is stopped in this step is therefore placed on a later pass.
//
// A slot that cannot be placed gets a reason instead, which counts the
// hosts by cause and says what would help; slots with the same reason share
// one ("slots 2, 3 cannot be placed: ..."). When the slot's own replicas
// hold the only room it lacks (max_per_host or a host port on their host,
// which otherwise takes the replica), noRoom says where, for
// rollout.Input.NoRoom.
func (cl *clusterLoad) place(spec specs.Spec, serviceReplicas []state.Replica, slots []int, pin map[int]string) (placed map[int]string, reasons []string, noRoom map[int]rollout.NoRoom) {
	p := &placement{spec: spec, perHost: map[string]int{}, running: map[int]bool{}, own: map[int][]state.Replica{},
		requireUserns: cl.requireUserns, added: map[*hostLoad]int{}, addedPorts: map[*hostLoad][]publishedPort{}}
	for _, r := range serviceReplicas {
		if !holdsHost(r) {
			continue
		}
		p.perHost[r.Host]++
		p.own[r.Slot] = append(p.own[r.Slot], r)
		if r.Desired == state.DesiredRunning {
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
			return map[int]string{}, unplaced.reasons(), nil
		}
		p.constraints = append(p.constraints, c)
	}

	placed = map[int]string{}
	// Unpinned slots take the head of a heap of the candidates in spread
	// order: placing on a host changes only that host's place in the order
	// and whether it still takes replicas, so the head is what a scan of
	// every host would pick. A scan per slot cost hosts × slots (10^8 map
	// reads to place 100,000 replicas on 1,000 hosts, issue 12).
	var order *spreadHeap
	for _, slot := range slots {
		var best *hostLoad
		var refused map[refusal]int
		if _, pinned := pin[slot]; !pinned {
			if order == nil {
				order = p.candidates(cl.hosts)
			}
			if order.Len() > 0 {
				best = heap.Pop(order).(*hostLoad)
			}
		}
		if best == nil {
			refused = map[refusal]int{}
			for _, h := range cl.hosts {
				if why := p.refuse(h); why != nil {
					refused[*why]++
					continue
				}
				if h.id == pin[slot] {
					best = h
					break
				}
				if best == nil || p.before(h, best) {
					best = h
				}
			}
			// A pinned placement moves its host in the order: the heap
			// is built again for the next unpinned slot.
			order = nil
		}
		if best == nil {
			room, ok := cl.ownRoom(p, slot)
			if !ok {
				unplaced.add(slot, p.explain(refused, p.running[slot]))
				continue
			}
			if noRoom == nil {
				noRoom = map[int]rollout.NoRoom{}
			}
			noRoom[slot] = room
			if id, stopping := p.stoppingOn(slot, room.Host); stopping {
				// Only a container of the slot that is being stopped holds
				// the room: it comes when the agent confirms the stop.
				unplaced.add(slot, fmt.Sprintf("waiting for replica %s to stop on %s (%s)", id, room.Host, room.Cause))
			} else {
				unplaced.add(slot, p.explain(refused, p.running[slot]))
			}
			continue
		}
		placed[slot] = best.id
		p.perHost[best.id]++
		p.added[best]++
		for _, port := range spec.Ports {
			p.addedPorts[best] = append(p.addedPorts[best], publishedPortOf(port))
		}
		if order != nil && p.refuse(best) == nil {
			heap.Push(order, best)
		}
	}
	return placed, unplaced.reasons(), noRoom
}

// candidates is a heap of the hosts that take a replica now, in spread
// order.
func (p *placement) candidates(hosts []*hostLoad) *spreadHeap {
	h := &spreadHeap{p: p}
	for _, host := range hosts {
		if p.refuse(host) == nil {
			h.hosts = append(h.hosts, host)
		}
	}
	heap.Init(h)
	return h
}

// spreadHeap orders hosts by placement.before (container/heap).
type spreadHeap struct {
	p     *placement
	hosts []*hostLoad
}

func (h *spreadHeap) Len() int           { return len(h.hosts) }
func (h *spreadHeap) Less(i, j int) bool { return h.p.before(h.hosts[i], h.hosts[j]) }
func (h *spreadHeap) Swap(i, j int)      { h.hosts[i], h.hosts[j] = h.hosts[j], h.hosts[i] }
func (h *spreadHeap) Push(x any)         { h.hosts = append(h.hosts, x.(*hostLoad)) }
func (h *spreadHeap) Pop() any {
	last := h.hosts[len(h.hosts)-1]
	h.hosts = h.hosts[:len(h.hosts)-1]
	return last
}

// ownRoom finds the host where slot's own replicas hold the room its
// replacement lacks: the first (by ID) that refuses the replacement for
// max_per_host or a host port, and takes it once they are gone.
func (cl *clusterLoad) ownRoom(p *placement, slot int) (rollout.NoRoom, bool) {
	if len(p.own[slot]) == 0 {
		return rollout.NoRoom{}, false
	}
	byHost := map[string]imagined{}
	for _, r := range p.own[slot] {
		gone := byHost[r.Host]
		gone.replicas++
		if gone.ports == nil {
			gone.ports = map[publishedPort]int{}
		}
		if cl.portsOf != nil {
			for _, port := range cl.portsOf(r.Service, r.Revision) {
				gone.ports[publishedPortOf(port)]++
			}
		}
		byHost[r.Host] = gone
	}
	for _, h := range cl.hosts {
		gone, ok := byHost[h.id]
		if !ok {
			continue
		}
		why := p.refuse(h)
		if why == nil || p.refuseWithout(h, gone) != nil {
			continue
		}
		switch why.kind {
		case refusedMaxPerHost:
			return rollout.NoRoom{Host: h.id, Cause: fmt.Sprintf("max_per_host %d", p.spec.Placement.MaxPerHost)}, true
		case refusedPort:
			return rollout.NoRoom{Host: h.id, Cause: "host port " + why.port}, true
		}
	}
	return rollout.NoRoom{}, false
}

// stoppingOn reports whether every container of slot on host is desired
// stopped (still stopping), and the first one's ID.
func (p *placement) stoppingOn(slot int, host string) (string, bool) {
	id := ""
	for _, r := range p.own[slot] {
		if r.Host != host {
			continue
		}
		if r.Desired == state.DesiredRunning {
			return "", false
		}
		if id == "" {
			id = r.ID
		}
	}
	return id, id != ""
}

// commit adds placed replicas of spec to the load, so that the next
// service's placement in the same pass sees them.
func (cl *clusterLoad) commit(spec specs.Spec, placed map[int]string) {
	for _, h := range cl.hosts {
		for _, host := range placed {
			if host != h.id {
				continue
			}
			h.total++
			for _, port := range spec.Ports {
				h.ports[publishedPortOf(port)]++
			}
		}
	}
}

// placeStarts places the Starts of Decision d (made from in) and returns the
// Decision kept with its placements. A start-first replacement that only
// its own slot's room can take goes back to Decide as Input.NoRoom, and
// Decide decides again: it replaces the slot stop-first in place when no
// room will come, or keeps it start-first and waiting. Each round adds a
// slot to NoRoom, so this ends. When nothing fits at all, Decide hears it
// once more as Input.Unplaceable, so the progress deadline keeps running.
func (cl *clusterLoad) placeStarts(in rollout.Input, d rollout.Decision, spec specs.Spec) (rollout.Decision, map[int]string, []string) {
	for {
		placed, reasons, noRoom := cl.place(spec, in.Replicas, d.Start, d.Pin)
		added := false
		for slot, room := range noRoom {
			if _, known := in.NoRoom[slot]; known {
				continue
			}
			if in.NoRoom == nil {
				in.NoRoom = map[int]rollout.NoRoom{}
			} else if !added {
				in.NoRoom = maps.Clone(in.NoRoom)
			}
			in.NoRoom[slot] = room
			added = true
		}
		inRollout := in.Service.Rollout != nil && in.Service.Rollout.State == state.RolloutInProgress
		if added && inRollout {
			d = rollout.Decide(in)
			continue
		}
		if inRollout && len(d.Start) > 0 && len(placed) == 0 && in.Unplaceable == nil {
			// Nothing fitted: tell Decide, so that starting the same
			// batch again does not count as progress and the progress
			// deadline can end the rollout. Ends: Unplaceable is set once.
			in.Unplaceable = slices.Clone(d.Start)
			d = rollout.Decide(in)
			continue
		}
		cl.commit(spec, placed)
		return d, placed, reasons
	}
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
		case refusedDraining:
			counts = append(counts, fmt.Sprintf("%d draining", n))
			addFix("activate a draining host (deployctl host activate)")
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
