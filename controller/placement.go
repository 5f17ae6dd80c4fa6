package controller

import (
	"fmt"
	"sort"
	"strings"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// hostLoad is what placement knows of one ready host.
type hostLoad struct {
	id string
	// total counts the replicas desired running on the host, all services.
	total int
	// ports holds the host ports published on it: "ip:port/proto".
	ports map[string]bool
}

// clusterLoad summarises the hosts once per controller pass, so placing a
// replica does not walk every replica of the cluster.
type clusterLoad struct {
	hosts []*hostLoad
}

func newClusterLoad(t *state.Tables) *clusterLoad {
	cl := &clusterLoad{}
	for _, h := range t.Hosts() {
		if h.State != state.HostReady {
			continue
		}
		hl := &hostLoad{id: h.ID, ports: map[string]bool{}}
		for _, r := range t.HostReplicas(h.ID) {
			if r.Desired != state.DesiredRunning {
				continue
			}
			hl.total++
			if rev, ok := t.Revision(r.Service, r.Revision); ok {
				for _, p := range rev.Spec.Ports {
					hl.ports[portKey(p)] = true
				}
			}
		}
		cl.hosts = append(cl.hosts, hl)
	}
	return cl
}

func portKey(p specs.Port) string { return fmt.Sprintf("%s:%d/%s", p.HostIP, p.HostPort, p.Protocol) }

// conflicts reports a published port of spec already taken on the host. An
// address of "" or 0.0.0.0 clashes with every address on the same port.
func (h *hostLoad) conflicts(spec specs.Spec) (string, bool) {
	for _, p := range spec.Ports {
		for used := range h.ports {
			ip, rest, _ := strings.Cut(used, ":")
			if rest != fmt.Sprintf("%d/%s", p.HostPort, p.Protocol) {
				continue
			}
			if ip == p.HostIP || ip == "" || ip == "0.0.0.0" || p.HostIP == "" || p.HostIP == "0.0.0.0" {
				return portKey(p), true
			}
		}
	}
	return "", false
}

// place picks a host for each slot: among ready hosts without a port
// conflict, the one with the fewest replicas of this service, then the
// fewest replicas in all, then the lowest ID (deterministic). It updates
// the load as it goes so that a batch spreads. A slot that cannot be placed
// gets a reason instead.
func (cl *clusterLoad) place(spec specs.Spec, serviceReplicas []state.Replica, slots []int) (map[int]string, []string) {
	perHost := map[string]int{}
	for _, r := range serviceReplicas {
		if r.Desired == state.DesiredRunning {
			perHost[r.Host]++
		}
	}
	placed := map[int]string{}
	var reasons []string
	for _, slot := range slots {
		var candidates []*hostLoad
		var conflicts []string
		for _, h := range cl.hosts {
			if port, bad := h.conflicts(spec); bad {
				conflicts = append(conflicts, h.id+" (port "+port+" in use)")
				continue
			}
			candidates = append(candidates, h)
		}
		if len(candidates) == 0 {
			reason := fmt.Sprintf("slot %d cannot be placed: no ready host", slot)
			if len(conflicts) > 0 {
				reason = fmt.Sprintf("slot %d cannot be placed: every ready host has its published port in use: %s; use update.order: stop-first for services that publish host ports, or add hosts",
					slot, strings.Join(conflicts, ", "))
			}
			reasons = append(reasons, reason)
			continue
		}
		sort.SliceStable(candidates, func(i, j int) bool {
			a, b := candidates[i], candidates[j]
			if perHost[a.id] != perHost[b.id] {
				return perHost[a.id] < perHost[b.id]
			}
			if a.total != b.total {
				return a.total < b.total
			}
			return a.id < b.id
		})
		h := candidates[0]
		placed[slot] = h.id
		perHost[h.id]++
		h.total++
		for _, p := range spec.Ports {
			h.ports[portKey(p)] = true
		}
	}
	return placed, reasons
}
