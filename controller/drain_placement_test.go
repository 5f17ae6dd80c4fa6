package controller

import (
	"reflect"
	"testing"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

func drainedHost(id string, labels ...string) state.Host {
	h := readyHost(id, labels...)
	h.Availability = state.HostDrain
	return h
}

// A drained host takes no replica (issue 17); its replicas still count
// for max_per_host and host ports where they run, and an unplaced slot
// says how many hosts are draining and that activating one would help.
func TestPlaceSkipsDrainedHosts(t *testing.T) {
	t.Run("spread over the others", func(t *testing.T) {
		c := &placementCluster{hosts: []state.Host{drainedHost("h1"), readyHost("h2"), readyHost("h3")}}
		placed := mustPlaceAll(t, c, webSpec(specs.Placement{}), 0, 1, 2)
		if want := map[int]string{0: "h2", 1: "h3", 2: "h2"}; !reflect.DeepEqual(placed, want) {
			t.Errorf("placed %v, want %v", placed, want)
		}
	})
	t.Run("a pinned slot (replaced in place) does not go to a drained host", func(t *testing.T) {
		c := &placementCluster{hosts: []state.Host{drainedHost("h1"), readyHost("h2")}}
		placed, _, _ := loadOf(c).place(webSpec(specs.Placement{}), nil, []int{0}, map[int]string{0: "h1"})
		if placed[0] != "h2" {
			t.Errorf("placed %v, want slot 0 on h2", placed)
		}
	})
	t.Run("the last host drained: nothing placed, and why", func(t *testing.T) {
		c := &placementCluster{
			hosts:    []state.Host{drainedHost("h1"), downHost("h2")},
			replicas: []state.Replica{running("web", 0, "h1")},
		}
		reasons := mustFailToPlace(t, c, webSpec(specs.Placement{}), 0)
		want := []string{"slot 0 cannot be placed: 2 hosts: 1 down, 1 draining; add hosts, bring the down hosts back or activate a draining host (deployctl host activate)"}
		if !reflect.DeepEqual(reasons, want) {
			t.Errorf("reasons %q, want %q", reasons, want)
		}
	})
	t.Run("max_per_host: the drained host's replica holds no room elsewhere, the others are full", func(t *testing.T) {
		spec := webSpec(specs.Placement{MaxPerHost: 1})
		spec.Update.Order = specs.OrderStartFirst
		c := &placementCluster{
			hosts:    []state.Host{drainedHost("h1"), readyHost("h2"), readyHost("h3")},
			replicas: []state.Replica{running("web", 0, "h1"), running("web", 1, "h2"), running("web", 2, "h3")},
		}
		placed, reasons, noRoom := loadOf(c).place(spec, c.serviceReplicas("web"), []int{0}, nil)
		if len(placed) != 0 || len(noRoom) != 0 {
			t.Fatalf("placed %v, no room %v: the slot's own room is on the drained host and must not be offered", placed, noRoom)
		}
		want := "slot 0 cannot be placed: 3 hosts: 1 draining, 2 already run max_per_host 1 replica of web; " +
			"update.order start-first keeps the old replica running until its replacement is healthy, so with max_per_host a rollout needs a spare host; " +
			"add hosts, activate a draining host (deployctl host activate), raise max_per_host or use update.order: stop-first"
		if !reflect.DeepEqual(reasons, []string{want}) {
			t.Errorf("reasons %q,\nwant %q", reasons, want)
		}
		c.hosts = append(c.hosts, readyHost("h4"))
		if placed := mustPlaceAll(t, c, spec, 0); placed[0] != "h4" {
			t.Errorf("with a spare host, slot 0 went to %v, want h4", placed)
		}
	})
}
