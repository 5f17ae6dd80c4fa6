package audit

import (
	"sort"

	"github.com/docker/docker/api/types/container"
)

// Network is what the network drift needs to know of one network on the
// engine: whether deployctl created it and for which service.
type Network struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Managed says deployctl created it (label io.deployctl.managed=true).
	Managed bool `json:"managed"`
	// Service is the service whose replicas it holds (label
	// io.deployctl.service): "" for any network that is not a service
	// network, such as the one network all services shared before
	// deployctl gave each service its own.
	Service string `json:"service,omitempty"`
	// Host is the host whose agent created it (label io.deployctl.host).
	Host string `json:"host,omitempty"`
}

// NetworkDrift holds the networks container c is attached to against the
// one network its replica belongs on: want, the network of its service
// on this host (or "host" or "none" for a service that asks for that
// network mode). service is the replica's service, networks the engine's
// networks by name (a name missing there reads as one deployctl did not
// create).
//
// A replica attached to anything more than its own network can reach
// what deployctl keeps it from: another service's replicas directly,
// around the proxy and the declared connections, or whatever a foreign
// network joins. Each such network is one Drift,
// NetworkSettings.Networks[<name>], whose Got says what the network is;
// a replica missing from its own network is one too. nil when the
// container is where it belongs.
func NetworkDrift(c container.InspectResponse, service, want string, networks map[string]Network) []Drift {
	attached := map[string]bool{}
	if c.NetworkSettings != nil {
		for name := range c.NetworkSettings.Networks {
			attached[name] = true
		}
	}
	names := make([]string, 0, len(attached))
	for name := range attached {
		if name != want {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var d drifts
	if !attached[want] {
		d.add(networkField(want), "attached (the network of service "+service+")", "not attached")
	}
	for _, name := range names {
		d.add(networkField(name), "not attached (a replica of "+service+" joins "+want+" only)", "attached: "+describeNetwork(networks[name], service))
	}
	if len(d) == 0 {
		return nil
	}
	return d
}

func networkField(name string) string { return "NetworkSettings.Networks[" + name + "]" }

// describeNetwork says what a network a replica should not be on is.
func describeNetwork(n Network, service string) string {
	switch {
	case n.Name == "" || !n.Managed:
		return "a network deployctl did not create"
	case n.Service == "":
		return "deployctl's network shared by every service (an older version's; the agent recreates the replica on its service's own network)"
	case n.Service != service:
		return "the network of service " + n.Service + ", whose replicas it reaches directly, around the proxy"
	case n.Host != "":
		return "another network of service " + service + " (host " + n.Host + ")"
	}
	return "another network of service " + service
}
