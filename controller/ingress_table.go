package controller

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// ingressRoutes lists the routes of every service's current revision,
// sorted. A service being removed keeps its routes until it is gone (its
// replicas, desired stopped, are no backends by then).
func ingressRoutes(t *state.Tables) []wire.IngressRoute {
	out := []wire.IngressRoute{}
	for _, svc := range t.Services() {
		rev, ok := t.Revision(svc.Name, svc.Current)
		if !ok {
			continue
		}
		for _, in := range rev.Spec.Ingress {
			out = append(out, wire.IngressRoute{Service: svc.Name, Listen: in.Listen, Protocol: in.Protocol, Host: in.Host, Path: in.Path, Port: in.Port,
				TLS: routeTLS(rev, in)})
		}
	}
	slices.SortFunc(out, func(a, b wire.IngressRoute) int {
		return cmp.Or(cmp.Compare(a.Listen, b.Listen), strings.Compare(a.Protocol, b.Protocol), strings.Compare(a.Host, b.Host),
			strings.Compare(a.Path, b.Path), strings.Compare(a.Service, b.Service), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// servedPorts is the sorted, distinct container ports a revision serves
// through the proxies: those of its ingress entries and its exposed ports.
func servedPorts(spec specs.Spec) []int {
	ports := make([]int, 0, len(spec.Ingress)+len(spec.Expose))
	for _, in := range spec.Ingress {
		ports = append(ports, in.Port)
	}
	for _, e := range spec.Expose {
		ports = append(ports, e.Port)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// ingressBackends lists the replicas that may receive traffic, sorted by
// service and replica: desired running, reported healthy, on a ready
// host, of a service with ingress entries or exposed ports. Their ports
// are those of the replica's own revision (servedPorts). Neither ingress
// nor expose is part of the fingerprint, so a replica adopted by a later
// revision with the same fingerprint (a change of ingress or expose only)
// keeps its older revision number while running exactly what the current
// revision describes: its ports are then the current revision's.
func ingressBackends(t *state.Tables) []wire.IngressBackend {
	out := []wire.IngressBackend{}
	hosts := map[string]state.Host{}
	for _, h := range t.Hosts() {
		hosts[h.ID] = h
	}
	for _, svc := range t.Services() {
		cur, ok := t.Revision(svc.Name, svc.Current)
		if !ok {
			continue
		}
		ports := map[int][]int{} // revision -> its served ports, asked once
		portsOf := func(r state.Replica) []int {
			n := r.Revision
			if r.Fingerprint == cur.Fingerprint {
				n = cur.Number
			}
			p, seen := ports[n]
			if !seen {
				if rev, ok := t.Revision(svc.Name, n); ok {
					p = servedPorts(rev.Spec)
				}
				ports[n] = p
			}
			return p
		}
		canarySlots, _, _ := runningCanary(svc, cur)
		for _, r := range t.ServiceReplicas(svc.Name) {
			h, ok := hosts[r.Host]
			if r.Desired != state.DesiredRunning || r.Status.State != state.ReplicaHealthy || !ok || h.State != state.HostReady {
				continue
			}
			p := portsOf(r)
			if len(p) == 0 {
				continue
			}
			// The canary is the new revision's replicas in the canary's
			// slots; the old replicas those slots keep meanwhile serve
			// the rest with the others.
			canary := r.Revision == cur.Number && slices.Contains(canarySlots, r.Slot)
			out = append(out, wire.IngressBackend{Service: svc.Name, Replica: r.ID, Host: r.Host, ProxyAddr: h.ProxyAddr, Ports: p, Canary: canary})
		}
	}
	slices.SortFunc(out, func(a, b wire.IngressBackend) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Replica, b.Replica))
	})
	return out
}

func sameBackends(a, b []wire.IngressBackend) bool {
	return slices.EqualFunc(a, b, func(x, y wire.IngressBackend) bool {
		return x.Service == y.Service && x.Replica == y.Replica && x.Host == y.Host && x.ProxyAddr == y.ProxyAddr && slices.Equal(x.Ports, y.Ports) &&
			x.Canary == y.Canary
	})
}

// runningCanary returns the slots and weight of the canary svc's rollout
// to rev runs now (update.canary), false when none does: no rollout, a
// rollback (never a canary), or a canary that has ended. A canary whose
// rollout paused or failed before it ended (a breach under failure_action
// pause, a refused automatic rollback) keeps its split: its replicas pass
// their health checks and stay backends until a human decides, and they
// had better keep the canary's share than get an even one.
func runningCanary(svc state.Service, rev state.Revision) ([]int, float64, bool) {
	ro := svc.Rollout
	if ro == nil || ro.Revision != rev.Number || rev.IsRollback() ||
		rev.Spec.Update.Canary == nil || !ro.Canary.Running() || len(ro.Canary.Slots) == 0 {
		return nil, 0, false
	}
	return ro.Canary.Slots, rev.Spec.Update.Canary.Weight, true
}

// ingressCanaries lists the services whose requests the proxies split by
// weight now, sorted by service: those with a running canary that the
// proxies serve (ingress entries or exposed ports). The split is listed
// from the start of the canary's batch, before its replicas are healthy:
// the proxies send everything to the other side while one side has no
// healthy backend, and a replica that turns healthy then gets its weight,
// never an even share first.
func ingressCanaries(t *state.Tables) []wire.CanarySplit {
	var out []wire.CanarySplit
	for _, svc := range t.Services() {
		rev, ok := t.Revision(svc.Name, svc.Current)
		if !ok || len(servedPorts(rev.Spec)) == 0 {
			continue
		}
		if _, weight, ok := runningCanary(svc, rev); ok {
			out = append(out, wire.CanarySplit{Service: svc.Name, Weight: weight})
		}
	}
	return out
}

// ingressFeed keeps the one ingress table every agent's blocking query
// answers from: ingress routes, backends, service addresses and resolved
// connections between services. It is computed at most once per state
// version, by the first caller that needs it (a query, or follow while
// queries wait), never per waiter; its Index moves only when its content
// changes, so writes that change none of it (heartbeats, most status
// reports) wake nobody. Leader memory only.
type ingressFeed struct {
	store *state.Store
	// waiting counts the queries in progress; follow computes only then.
	waiting atomic.Int64

	mu sync.Mutex
	// view is the state version table was computed from (nil: none yet).
	view  *state.Tables
	table wire.IngressTable
	// changed is closed, and replaced, when table's content changes.
	changed chan struct{}
}

func newIngressFeed(store *state.Store) *ingressFeed {
	return &ingressFeed{store: store, changed: make(chan struct{})}
}

// reset forgets the table: a new leader's first table takes the index of
// the state it is computed from. Another leader may have answered a
// content this node never saw, so an unchanged content since this node's
// last term proves nothing; the index of the current view is past
// anything another leader answered, so no agent misses a change.
func (f *ingressFeed) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.view = nil
}

// current returns the table of the store's current version and a channel
// closed when its content next changes.
func (f *ingressFeed) current() (wire.IngressTable, <-chan struct{}) {
	t := f.store.View()
	f.mu.Lock()
	defer f.mu.Unlock()
	if t == f.view {
		return f.table, f.changed
	}
	next := wire.IngressTable{Routes: ingressRoutes(t), Backends: ingressBackends(t),
		Services: serviceAddresses(t), Connections: resolvedConnections(t, connectionJudgeOf(t)), Canaries: ingressCanaries(t)}
	same := f.view != nil && slices.Equal(next.Routes, f.table.Routes) && sameBackends(next.Backends, f.table.Backends) &&
		slices.Equal(next.Services, f.table.Services) && slices.Equal(next.Connections, f.table.Connections) &&
		slices.Equal(next.Canaries, f.table.Canaries)
	f.view = t
	if !same {
		// max: the index never goes back, even across a restore.
		next.Index = max(t.Index(), f.table.Index)
		f.table = next
		close(f.changed)
		f.changed = make(chan struct{})
	}
	return f.table, f.changed
}

// follow recomputes the table at every state change while queries wait,
// so that they wake within a write of a change; until ctx ends.
func (f *ingressFeed) follow(ctx context.Context) {
	for {
		// The channel comes with the version: a write after it closes it,
		// and a query that starts after the check below computes itself.
		_, ch := f.store.Watch()
		if f.waiting.Load() > 0 {
			f.current()
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// wait answers a blocking query: the table once its Index is past index,
// or the current one when wait elapses or ctx ends.
func (f *ingressFeed) wait(ctx context.Context, index uint64, wait time.Duration) wire.IngressTable {
	f.waiting.Add(1)
	defer f.waiting.Add(-1)
	return waitFor(ctx, index, wait, f.current, func(t wire.IngressTable) uint64 { return t.Index })
}

// Ingress answers GET /v1/agent/ingress: the cluster's traffic table
// (ingress routes, backends, service addresses, connections) once its
// Index is past index (or when wait ends).
func (c *Controller) Ingress(ctx context.Context, index uint64, wait time.Duration) (wire.IngressTable, error) {
	if !c.Ready() {
		return wire.IngressTable{}, c.notLeader()
	}
	return c.ingress.wait(ctx, index, wait), nil
}
