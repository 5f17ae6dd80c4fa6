// Package proxy is the traffic proxy every host runs (issue 8): a Table of
// routes (listen port -> http routes by host and path prefix, or one tcp
// service) and per-service pools of targets (replicas), an HTTP reverse
// proxy and a TCP splice proxy over it. Targets move adding -> healthy ->
// draining -> gone; only healthy targets get new requests, and Drain
// returns once a target's in-flight requests are done. See DESIGN.md.
//
// The package knows nothing of the controller or the engine: the agent
// feeds it a Desired (routes and targets) with Apply and drains targets
// before it stops their containers.
package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Protocols of a route.
const (
	HTTP = "http"
	TCP  = "tcp"
)

// ErrUnknownTarget is returned by Drain for a target the table does not hold.
var ErrUnknownTarget = errors.New("proxy: unknown target")

// State is where a target is in its life.
type State int32

// A target is Adding while it is known but not healthy (before its first
// passing check, or after a failing one): it gets no new requests. Healthy
// targets get new requests. A Draining target gets none and is waited on
// until its in-flight requests finish; Gone is after Drain removed it.
const (
	Adding State = iota
	Healthy
	Draining
	Gone
)

func (s State) String() string {
	switch s {
	case Adding:
		return "adding"
	case Healthy:
		return "healthy"
	case Draining:
		return "draining"
	case Gone:
		return "gone"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Route sends what arrives on a listen port to a service's container Port
// (the pool of targets with that Service and Port). An http route is
// chosen by Host ("" any, "a.example.com" exactly, "*.example.com" one more
// label) and Path, a prefix matched on whole segments ("/" matches all);
// a tcp route owns its listen port and has no Host or Path.
type Route struct {
	Listen   int    `json:"listen"`
	Protocol string `json:"protocol"`
	Host     string `json:"host,omitempty"`
	Path     string `json:"path,omitempty"`
	Service  string `json:"service"`
	Port     int    `json:"port"`
}

// TargetKey names one target: a container Port of a replica of a service,
// reached at Addr (the replica's own address and that port on this host;
// later, another host's proxy). A replica that comes back at another
// address is another target; a replica serving two ingress ports is two.
type TargetKey struct {
	Service string `json:"service"`
	Port    int    `json:"port"`
	ID      string `json:"id"`
	Addr    string `json:"addr"` // host:port
	// Hop says Addr is another host's proxy (its --proxy-addr), which
	// passes the request to one of its own healthy replicas of the
	// service: a replica on another host is reached through that host's
	// proxy, never on its bridge address.
	Hop bool `json:"hop,omitempty"`
}

func (k TargetKey) String() string {
	via := "@"
	if k.Hop {
		via = "@hop:"
	}
	return k.Service + ":" + strconv.Itoa(k.Port) + "/" + k.ID + via + k.Addr
}

// poolKey names a pool: the targets of one container port of a service.
type poolKey struct {
	service string
	port    int
}

// DesiredTarget is a target the agent wants in the pools, and whether its
// health checks pass now.
type DesiredTarget struct {
	TargetKey
	Healthy bool `json:"healthy"`
	// Canary: the replica is of a canary's first batch; while its service
	// is in Desired.Canaries it gets the canary's share of the requests.
	// Not part of the key: a target that changes group is not drained.
	Canary bool `json:"canary,omitempty"`
}

// Desired is everything the table should hold: the input of Apply.
type Desired struct {
	Routes  []Route         `json:"routes"`
	Targets []DesiredTarget `json:"targets"`
	// Pools are pools served without a route: the listeners of service
	// connections (PoolHandler, ServePoolTCP). Listing one keeps it when
	// it has no target yet, as a route does.
	Pools []PoolKey `json:"pools,omitempty"`
	// Canaries are the services under a canary split, each with the share
	// (0 < weight <= 1; others are no split) of its requests and
	// connections that go to its Canary targets; the rest go to the
	// others. A side with no healthy target leaves everything to the other.
	Canaries map[string]float64 `json:"canaries,omitempty"`
}

// PoolKey names a pool: a container port of a service, and the protocol
// its pool listeners speak (a TCP hop is served only for tcp pools).
type PoolKey struct {
	Service  string `json:"service"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// CurrentTarget is a target the table holds and its state.
type CurrentTarget struct {
	TargetKey
	State State `json:"state"`
	// Ejected: the target's address refused a connection and is out of
	// the pools until a dial to it succeeds again (passive ejection).
	Ejected bool `json:"ejected,omitempty"`
	// Canary: on the canary side of a split (DesiredTarget.Canary).
	Canary bool `json:"canary,omitempty"`
}

// Current is what the table holds: the other input of Plan.
type Current struct {
	Routes  []Route
	Targets []CurrentTarget
}

// Port is a listen port and its protocol.
type Port struct {
	Listen   int    `json:"listen"`
	Protocol string `json:"protocol"`
}

// Changes is what Apply did (or Plan would do). The agent opens a listener
// for each of Open and closes each of Close, and drains each of Drain
// (Table.Drain) before it stops the container behind it.
type Changes struct {
	Routes    []Route     // the routes in effect after the change
	Open      []Port      // ports with routes now that had none (or another protocol)
	Close     []Port      // ports that had routes and have none (or another protocol)
	Add       []TargetKey // new targets (Adding or Healthy)
	Up        []TargetKey // Adding -> Healthy
	Down      []TargetKey // Healthy -> Adding: checks fail, no new requests
	Drain     []TargetKey // -> Draining: gone from Desired
	Forget    []TargetKey // Gone targets no longer in Desired: dropped from the table
	Regroup   []TargetKey // targets whose Canary flag changes (same target, no drain)
	Refused   []Route     // routes that collide with an earlier one; left out
	Unchanged bool
}

// Plan computes what Apply changes to go from cur to want. It is pure and
// deterministic: routes are taken sorted by (listen, service, host, path)
// and one that collides with an earlier one is Refused (the controller
// refuses such specs, so this is a guard, not a rule users meet); targets
// keep their state unless Desired moves them; a Draining or Gone target
// stays so even if Desired still lists it (a drained replica is being
// stopped, and the agent's view of the cluster may lag its own drain); a
// Gone target is forgotten once Desired no longer lists it.
func Plan(cur Current, want Desired) Changes {
	var ch Changes
	routes := slices.Clone(want.Routes)
	slices.SortFunc(routes, compareRoutes)
	routes = slices.Compact(routes)
	kind := map[int]string{}
	owner := map[[3]string]bool{}
	for _, r := range routes {
		if k, ok := kind[r.Listen]; (ok && (k != r.Protocol || k == TCP)) || (r.Protocol != HTTP && r.Protocol != TCP) {
			ch.Refused = append(ch.Refused, r)
			continue
		}
		key := [3]string{fmt.Sprint(r.Listen), r.Host, r.Path}
		if owner[key] {
			ch.Refused = append(ch.Refused, r)
			continue
		}
		owner[key] = true
		kind[r.Listen] = r.Protocol
		ch.Routes = append(ch.Routes, r)
	}
	before := map[int]string{}
	for _, r := range cur.Routes {
		before[r.Listen] = r.Protocol
	}
	for _, p := range sortedPorts(kind) {
		if before[p.Listen] != p.Protocol {
			ch.Open = append(ch.Open, p)
		}
	}
	for _, p := range sortedPorts(before) {
		if kind[p.Listen] != p.Protocol {
			ch.Close = append(ch.Close, p)
		}
	}

	have := map[TargetKey]State{}
	for _, t := range cur.Targets {
		have[t.TargetKey] = t.State
	}
	wanted := map[TargetKey]bool{}
	canary := desiredCanary(want)
	targets := slices.Clone(want.Targets)
	slices.SortFunc(targets, func(a, b DesiredTarget) int { return compareKeys(a.TargetKey, b.TargetKey) })
	for _, t := range targets {
		if wanted[t.TargetKey] {
			continue
		}
		wanted[t.TargetKey] = true
		state, ok := have[t.TargetKey]
		switch {
		case !ok:
			ch.Add = append(ch.Add, t.TargetKey)
			if t.Healthy {
				ch.Up = append(ch.Up, t.TargetKey)
			}
		case state == Adding && t.Healthy:
			ch.Up = append(ch.Up, t.TargetKey)
		case state == Healthy && !t.Healthy:
			ch.Down = append(ch.Down, t.TargetKey)
		}
	}
	for _, t := range cur.Targets {
		if wanted[t.TargetKey] && t.Canary != canary[t.TargetKey] {
			ch.Regroup = append(ch.Regroup, t.TargetKey)
		}
	}
	slices.SortFunc(ch.Regroup, compareKeys)
	curTargets := slices.Clone(cur.Targets)
	slices.SortFunc(curTargets, func(a, b CurrentTarget) int { return compareKeys(a.TargetKey, b.TargetKey) })
	for _, t := range curTargets {
		switch {
		case wanted[t.TargetKey]:
		case t.State == Adding || t.State == Healthy:
			ch.Drain = append(ch.Drain, t.TargetKey)
		case t.State == Gone:
			ch.Forget = append(ch.Forget, t.TargetKey)
		}
	}
	ch.Unchanged = len(ch.Open)+len(ch.Close)+len(ch.Add)+len(ch.Up)+len(ch.Down)+len(ch.Drain)+len(ch.Forget)+len(ch.Regroup) == 0 &&
		slices.Equal(ch.Routes, sortedRoutes(cur.Routes))
	return ch
}

// desiredCanary is the targets of want on the canary side; a target
// listed twice is there if either listing says so.
func desiredCanary(want Desired) map[TargetKey]bool {
	out := map[TargetKey]bool{}
	for _, t := range want.Targets {
		if t.Canary {
			out[t.TargetKey] = true
		}
	}
	return out
}

// splits are the valid weights of want.Canaries: a weight outside (0, 1]
// (or NaN) is no split.
func splits(want Desired) map[string]float64 {
	out := map[string]float64{}
	for service, w := range want.Canaries {
		if w > 0 && w <= 1 {
			out[service] = w
		}
	}
	return out
}

func sortedRoutes(routes []Route) []Route {
	routes = slices.Clone(routes)
	slices.SortFunc(routes, compareRoutes)
	return routes
}

func compareRoutes(a, b Route) int {
	return cmp.Or(cmp.Compare(a.Listen, b.Listen), cmp.Compare(a.Service, b.Service), cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Path, b.Path))
}

func compareKeys(a, b TargetKey) int {
	return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Port, b.Port), cmp.Compare(a.ID, b.ID), cmp.Compare(a.Addr, b.Addr), compareBool(a.Hop, b.Hop))
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func sortedPorts(m map[int]string) []Port {
	out := make([]Port, 0, len(m))
	for listen, proto := range m {
		out = append(out, Port{Listen: listen, Protocol: proto})
	}
	slices.SortFunc(out, func(a, b Port) int { return cmp.Compare(a.Listen, b.Listen) })
	return out
}

// Table holds the routes and the pools. Reads on the request path take no
// lock: the routes are an immutable snapshot behind an atomic pointer, and
// each pool's pick lists (its healthy targets by scope and side) are one
// too. Apply and Drain take the mutex.
type Table struct {
	mu      sync.Mutex
	targets map[TargetKey]*target // guarded by mu
	pools   map[poolKey]*pool     // guarded by mu; one per service and port in use
	routes  atomic.Pointer[routing]
	// byKey is an immutable snapshot of pools for the pool listeners,
	// replaced by Apply: a request finds its pool without a lock.
	byKey atomic.Pointer[map[poolKey]*pool]
	// pinned are the pools Desired.Pools keeps, with their protocol;
	// guarded by mu, and a snapshot for the hop listener in pinnedNow.
	pinned    map[poolKey]string
	pinnedNow atomic.Pointer[map[poolKey]string]
	// splits are the canary weights by service (Desired.Canaries);
	// guarded by mu, copied into each pool's pick lists.
	splits map[string]float64
	// retired are forgotten targets whose figures were not taken yet
	// (TakeTraffic); guarded by mu.
	retired []*target
	stats   stats
	// transport carries HTTP requests to targets.
	transport http.RoundTripper
	buffers   bufferPool
	// hopScheme is how requests reach other hosts' proxies: "https" when
	// the hop listeners speak mutual TLS (the transport carries the
	// certificates), "http" under --dev.
	hopScheme string
	// hopTLS is the client side of TCP hops to other hosts' proxies; nil
	// when hops are plain (--dev).
	hopTLS *tls.Config
	// ejections are the addresses whose dial failed, each out of the
	// pools until a dial check succeeds; guarded by mu.
	ejections map[string]*ejection
	closed    bool // guarded by mu: Close stopped the ejection timers
	// eject timing; tests shorten it.
	ejectFirst, ejectMax time.Duration
	// dialCheck says whether an ejected address accepts connections again.
	dialCheck func(ctx context.Context, addr string) error
}

// NewTable returns an empty table. transport carries HTTP requests to the
// targets; nil means NewTransport().
func NewTable(transport http.RoundTripper) *Table {
	return NewTableWith(Options{Transport: transport})
}

// Options configure a Table.
type Options struct {
	// Transport carries HTTP requests to targets; nil means NewTransport()
	// with HopTLSConfig as its TLS client configuration.
	Transport http.RoundTripper
	// HopTLS: other hosts' proxies are reached over https (Transport holds
	// the client certificate and the cluster CA).
	HopTLS bool
	// HopTLSConfig is what TCP hops present to other hosts' proxies and
	// how they check them (the cluster's pki.ProxyConfig): TCP hops dial
	// the hop listener themselves, outside Transport. Setting it implies
	// HopTLS. With HopTLS and no HopTLSConfig, TCP hops use Transport's
	// TLSClientConfig when Transport is an *http.Transport.
	HopTLSConfig *tls.Config
}

// NewTableWith returns an empty table configured by o.
func NewTableWith(o Options) *Table {
	transport := o.Transport
	if transport == nil {
		// HopTLSConfig carries the HTTP hops too then.
		ht := NewTransport()
		ht.TLSClientConfig = o.HopTLSConfig
		transport = ht
	}
	t := &Table{targets: map[TargetKey]*target{}, pools: map[poolKey]*pool{}, transport: transport, hopScheme: "http",
		ejections: map[string]*ejection{}, ejectFirst: EjectFirst, ejectMax: EjectMax, dialCheck: dialCheck}
	if o.HopTLS || o.HopTLSConfig != nil {
		t.hopScheme = "https"
		t.hopTLS = hopClientTLS(o, transport)
	}
	t.stats.byService = map[string]*serviceCounts{}
	t.routes.Store(&routing{ports: map[int]*portRoutes{}})
	t.byKey.Store(&map[poolKey]*pool{})
	t.pinnedNow.Store(&map[poolKey]string{})
	return t
}

// target is one replica in a pool.
type target struct {
	key      TargetKey
	state    atomic.Int32
	inflight atomic.Int64
	drained  chan struct{}
	once     sync.Once
	// ejected: its address refused a dial; out of the pick lists until a
	// dial check passes (guarded by Table.mu; the pick lists carry it).
	ejected bool
	// canary: a replica of a canary's first batch (guarded by Table.mu;
	// the pick lists carry it). Not part of the key: a target that changes
	// group (the canary promoted) is the same target, not drained.
	canary bool
	// figures count what this proxy sent to the replica (traffic.go); nil
	// for a hop target, whose requests the other host's proxy counts.
	figures *liveFigures
}

func (t *target) State() State { return State(t.state.Load()) }

// release ends one request or connection on the target; the last one on a
// draining target lets Drain return.
func (t *target) release() {
	if t.inflight.Add(-1) == 0 && t.State() == Draining {
		t.signalDrained()
	}
}

func (t *target) signalDrained() { t.once.Do(func() { close(t.drained) }) }

// side is the group of a pool's targets a request goes to under a canary
// split: the canary's first batch, the others (stable), or either.
type side uint8

const (
	anySide side = iota
	stableSide
	canarySide
)

// describe is the side in a message: " on the canary side" or "".
func (s side) describe() string {
	switch s {
	case canarySide:
		return " on the canary side"
	case stableSide:
		return " on the stable side"
	}
	return ""
}

// Scopes of the pick lists: every healthy target (this host's and hop
// targets), or this host's own only (a request that came through another
// host's proxy, so that a request hops at most once).
const (
	allHosts = iota
	thisHost
)

// pickLists is what picks read of a pool: an immutable snapshot that
// refresh replaces under Table.mu.
type pickLists struct {
	// by[scope][side] are the healthy, not ejected targets of a scope
	// (allHosts, thisHost) on a side (anySide: all of them).
	by [2][3][]*target
	// weight is the canary's share of the pool's new requests and
	// connections (Desired.Canaries); 0: no split.
	weight float64
}

// pool is the targets of one container port of a service.
type pool struct {
	lists   atomic.Pointer[pickLists]
	members []*target // guarded by Table.mu
	weight  float64   // guarded by Table.mu: the split of the pool's service
}

// refresh rebuilds the lists that picks read; under Table.mu.
func (p *pool) refresh() {
	l := &pickLists{weight: p.weight}
	for _, t := range p.members {
		if t.State() != Healthy || t.ejected {
			continue
		}
		s := stableSide
		if t.canary {
			s = canarySide
		}
		l.by[allHosts][anySide] = append(l.by[allHosts][anySide], t)
		l.by[allHosts][s] = append(l.by[allHosts][s], t)
		if !t.key.Hop {
			l.by[thisHost][anySide] = append(l.by[thisHost][anySide], t)
			l.by[thisHost][s] = append(l.by[thisHost][s], t)
		}
	}
	p.lists.Store(l)
}

// draw chooses the side of a new request: the canary with probability
// weight, the stable side otherwise, each only while it has a healthy
// target (else the other takes everything); anySide without a split.
// Every proxy draws with the same weight over the whole cluster's
// targets, so the canary's share holds across proxies whatever the
// number of replicas on each side and where they run.
func (l *pickLists) draw() side {
	if l.weight <= 0 {
		return anySide
	}
	stable, canary := len(l.by[allHosts][stableSide]) > 0, len(l.by[allHosts][canarySide]) > 0
	switch {
	case stable && canary:
		if rand.Float64() < l.weight {
			return canarySide
		}
		return stableSide
	case canary:
		return canarySide
	case stable:
		return stableSide
	}
	return anySide
}

// pick chooses the target of a new request or connection from this
// host's listeners (ingress ports, pool listeners): the side first, when
// the pool's service has a split (draw), then a target of that side by
// least outstanding requests between two chosen at random (power of two
// choices). It counts a request on the target (the caller releases it)
// and returns the side it was chosen on, which a retry keeps and a hop
// passes on (HeaderHopCanary). nil when no healthy target is left.
func (p *pool) pick() (*target, side) {
	s := p.lists.Load().draw()
	if t := p.pickIn(allHosts, s, nil); t != nil || s == anySide {
		return t, s
	}
	// The side emptied since the draw (an Apply in between).
	return p.pickIn(allHosts, anySide, nil), anySide
}

// pickHop chooses the target of a request or connection that came
// through another host's proxy: one of this host's own targets, on the
// side the sender chose (HeaderHopCanary). That side is strict, so that
// the sender's split holds (nil when it has no healthy target here: the
// sender tries elsewhere), but only while this host's table has a split
// for the service too: the two views differ only while a change from the
// controller propagates, and the split starting or ending is no reason to
// turn a request away.
func (p *pool) pickHop(s side) (*target, side) {
	if p.lists.Load().weight <= 0 {
		s = anySide
	}
	return p.pickIn(thisHost, s, nil), s
}

// pickAgain chooses the target of a retry, not at the failed target's
// address: on the side of the first pick while that side has another
// healthy target, else on any side (a retry is about the request getting
// through; the split is about the share of requests, which one retry
// barely moves).
func (p *pool) pickAgain(scope int, s side, failed *target) (*target, side) {
	if s != anySide {
		if t := p.pickIn(scope, s, failed); t != nil {
			return t, s
		}
	}
	return p.pickIn(scope, anySide, failed), anySide
}

// pickIn chooses a healthy target of a scope and side, not at exclude's
// address, by least outstanding requests between two chosen at random
// (power of two choices) and counts a request on it; the caller releases
// it. The count is taken before the state is checked again, so a Drain
// that marked the target draining in between either sees the request or
// the pick sees the drain. nil when no healthy target is left.
//
// A retry excludes every target at the failed one's address, not only the
// target itself: several replicas on another host are several hop targets
// at that host's one proxy address, and a host whose proxy refused or
// reset a connection would most likely fail the retry too.
func (p *pool) pickIn(scope int, s side, exclude *target) *target {
	for range 4 {
		list := p.lists.Load().by[scope][s]
		if exclude != nil && slices.ContainsFunc(list, func(t *target) bool { return t.key.Addr == exclude.key.Addr }) {
			list = slices.DeleteFunc(slices.Clone(list), func(t *target) bool { return t.key.Addr == exclude.key.Addr })
		}
		var t *target
		switch n := len(list); n {
		case 0:
			return nil
		case 1:
			t = list[0]
		default:
			i, j := rand.IntN(n), rand.IntN(n-1)
			if j >= i {
				j++
			}
			t = list[i]
			if list[j].inflight.Load() < t.inflight.Load() {
				t = list[j]
			}
		}
		t.inflight.Add(1)
		if t.State() == Healthy {
			return t
		}
		t.release()
	}
	return nil
}

// routing is an immutable snapshot of the routes by listen port.
type routing struct {
	ports map[int]*portRoutes
}

type portRoutes struct {
	tcp      *boundRoute
	exact    map[string][]*boundRoute // host -> routes, longest path first
	wildcard map[string][]*boundRoute // "example.com" of "*.example.com" -> routes
	any      []*boundRoute
}

type boundRoute struct {
	Route
	pool *pool
}

// poolLocked returns the pool of a service's port, creating it; under mu.
func (t *Table) poolLocked(service string, port int) *pool {
	k := poolKey{service, port}
	p := t.pools[k]
	if p == nil {
		p = &pool{weight: t.splits[service]}
		p.refresh()
		t.pools[k] = p
	}
	return p
}

// current is what the table holds now; under mu.
func (t *Table) currentLocked() Current {
	var cur Current
	for _, ports := range t.routes.Load().ports {
		if ports.tcp != nil {
			cur.Routes = append(cur.Routes, ports.tcp.Route)
		}
		for _, group := range ports.exact {
			cur.Routes = appendRoutes(cur.Routes, group)
		}
		for _, group := range ports.wildcard {
			cur.Routes = appendRoutes(cur.Routes, group)
		}
		cur.Routes = appendRoutes(cur.Routes, ports.any)
	}
	for _, tg := range t.targets {
		cur.Targets = append(cur.Targets, CurrentTarget{TargetKey: tg.key, State: tg.State(), Ejected: tg.ejected, Canary: tg.canary})
	}
	slices.SortFunc(cur.Routes, compareRoutes)
	slices.SortFunc(cur.Targets, func(a, b CurrentTarget) int { return compareKeys(a.TargetKey, b.TargetKey) })
	return cur
}

func appendRoutes(out []Route, group []*boundRoute) []Route {
	for _, r := range group {
		out = append(out, r.Route)
	}
	return out
}

// Current returns the routes and targets the table holds, sorted.
func (t *Table) Current() Current {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.currentLocked()
}

// Apply makes the table hold want, at once: new routes and the states of
// targets take effect together for every request that starts after Apply
// returns. Targets gone from want become Draining (no new requests) and are
// listed in Changes.Drain; the caller drains them with Drain before it
// stops their containers.
func (t *Table) Apply(want Desired) Changes {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := Plan(t.currentLocked(), want)
	pinned := map[poolKey]string{}
	for _, k := range want.Pools {
		pinned[poolKey{k.Service, k.Port}] = cmp.Or(k.Protocol, HTTP)
	}
	weights := splits(want)
	if ch.Unchanged && maps.Equal(pinned, t.pinned) && maps.Equal(weights, t.splits) {
		return ch
	}
	ch.Unchanged = false
	t.pinned = pinned
	t.pinnedNow.Store(&pinned)
	touched := map[*pool]bool{}
	if !maps.Equal(weights, t.splits) {
		t.splits = weights
		for k, p := range t.pools {
			if p.weight != weights[k.service] {
				p.weight = weights[k.service]
				touched[p] = true
			}
		}
	}
	canary := desiredCanary(want)
	for _, k := range ch.Add {
		// A new target at an ejected address (another replica on a host
		// whose proxy is down) starts ejected too.
		tg := &target{key: k, drained: make(chan struct{}), ejected: t.ejections[k.Addr] != nil, canary: canary[k]}
		if !k.Hop {
			tg.figures = &liveFigures{}
		}
		t.targets[k] = tg
		p := t.poolLocked(k.Service, k.Port)
		p.members = append(p.members, tg)
		touched[p] = true
	}
	set := func(keys []TargetKey, s State) {
		for _, k := range keys {
			tg := t.targets[k]
			tg.state.Store(int32(s))
			touched[t.poolLocked(k.Service, k.Port)] = true
		}
	}
	set(ch.Up, Healthy)
	set(ch.Down, Adding)
	set(ch.Drain, Draining)
	for _, k := range ch.Regroup {
		t.targets[k].canary = canary[k]
		touched[t.poolLocked(k.Service, k.Port)] = true
	}
	for _, k := range ch.Forget {
		// Its last figures (the requests it failed while being stopped)
		// are still to be reported.
		if tg := t.targets[k]; tg.figures != nil {
			t.retired = append(t.retired, tg)
		}
		delete(t.targets, k)
	}
	t.dropUnusedEjectionsLocked()
	for p := range touched {
		p.refresh()
	}
	for _, k := range ch.Drain {
		if tg := t.targets[k]; tg.inflight.Load() == 0 {
			tg.signalDrained()
		}
	}
	next := &routing{ports: map[int]*portRoutes{}}
	for _, r := range ch.Routes {
		pr := next.ports[r.Listen]
		if pr == nil {
			pr = &portRoutes{exact: map[string][]*boundRoute{}, wildcard: map[string][]*boundRoute{}}
			next.ports[r.Listen] = pr
		}
		br := &boundRoute{Route: r, pool: t.poolLocked(r.Service, r.Port)}
		switch {
		case r.Protocol == TCP:
			pr.tcp = br
		case r.Host == "":
			pr.any = append(pr.any, br)
		case len(r.Host) > 2 && r.Host[:2] == "*.":
			pr.wildcard[r.Host[2:]] = append(pr.wildcard[r.Host[2:]], br)
		default:
			pr.exact[r.Host] = append(pr.exact[r.Host], br)
		}
	}
	for _, pr := range next.ports {
		byPathLength := func(a, b *boundRoute) int { return cmp.Compare(len(b.Path), len(a.Path)) }
		for _, g := range pr.exact {
			slices.SortStableFunc(g, byPathLength)
		}
		for _, g := range pr.wildcard {
			slices.SortStableFunc(g, byPathLength)
		}
		slices.SortStableFunc(pr.any, byPathLength)
	}
	t.routes.Store(next)
	// A pool with no target and no route is dropped, so that services
	// removed long ago do not accumulate.
	routed := map[poolKey]bool{}
	for _, r := range ch.Routes {
		routed[poolKey{r.Service, r.Port}] = true
	}
	for k := range pinned {
		routed[k] = true
		t.poolLocked(k.service, k.port)
	}
	for name, p := range t.pools {
		if len(p.members) == 0 && !routed[name] {
			delete(t.pools, name)
		}
	}
	snapshot := maps.Clone(t.pools)
	t.byKey.Store(&snapshot)
	return ch
}

// Drain takes a target out of every pool (if Apply has not already) and
// waits until its in-flight requests and connections are done, or ctx
// ends; then the target is Gone (kept as such until Desired stops listing
// it, so that a lagging Desired cannot bring it back). The agent stops the container only after
// Drain returns. The error wraps ctx's when requests were still in flight
// (they will fail when the container stops), and is ErrUnknownTarget for a
// target the table does not hold.
func (t *Table) Drain(ctx context.Context, key TargetKey) error {
	t.mu.Lock()
	tg := t.targets[key]
	if tg == nil {
		t.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownTarget, key)
	}
	if tg.State() == Gone {
		t.mu.Unlock()
		return nil
	}
	if tg.State() != Draining {
		tg.state.Store(int32(Draining))
		t.poolLocked(key.Service, key.Port).refresh()
	}
	t.mu.Unlock()
	if tg.inflight.Load() == 0 {
		tg.signalDrained()
	}
	var err error
	select {
	case <-tg.drained:
	case <-ctx.Done():
		err = fmt.Errorf("proxy: drain %s: %d requests still in flight: %w", key, tg.inflight.Load(), ctx.Err())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tg.state.Store(int32(Gone))
	p := t.poolLocked(key.Service, key.Port)
	p.members = slices.DeleteFunc(p.members, func(m *target) bool { return m == tg })
	p.refresh()
	return err
}

// InFlight is the number of requests and connections open on a target, 0
// for one the table does not hold.
func (t *Table) InFlight(key TargetKey) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tg := t.targets[key]; tg != nil {
		return tg.inflight.Load()
	}
	return 0
}
