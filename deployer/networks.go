package deployer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
)

// ErrNetworkInUse means a network still has containers attached, so it is
// left; the agent tries again later.
var ErrNetworkInUse = errors.New("network still has containers attached")

// bridgeNameOption is the bridge driver's option that names the network's
// Linux bridge interface.
const bridgeNameOption = "com.docker.network.bridge.name"

// maxCreateAttempts bounds how often EnsureServiceNetwork tries another
// subnet after the engine refused one as overlapping (another agent on
// the same engine took it between the listing and the create).
const maxCreateAttempts = 32

// ServiceNetwork is one service's bridge network on one host, with what
// the host's proxy, DNS and firewall need to name it
// (DockerRuntime.ServiceNetworks lists them).
type ServiceNetwork struct {
	// Service is the service whose replicas, and only those, the network
	// holds.
	Service string
	// Name is the Docker network's name, <prefix>-<service>
	// (ServiceNetworkName); ID its Docker ID.
	Name string
	ID   string
	// Bridge is the Linux bridge interface on the host, dc-<hash of
	// Name> (BridgeName): the interface the service's packets come in on.
	Bridge string
	// Subnet is a /24 of the agent's subnet pool; Gateway its first
	// address, the bridge's own address on the host and the containers'
	// DNS server.
	Subnet  netip.Prefix
	Gateway netip.Addr
}

// NetworkPlan says how a host's service networks are named and where
// their subnets come from.
type NetworkPlan struct {
	// Prefix starts every network's name (AgentConfig.Network).
	Prefix string
	// Pool is where subnets come from (AgentConfig.SubnetPool).
	Pool netip.Prefix
	// Labels are added to every network created (AgentConfig.NetworkLabels);
	// the io.deployctl.* labels cannot be overridden.
	Labels map[string]string
}

// EnsureServiceNetwork returns the bridge network of service on host,
// creating it when it is missing: named ServiceNetworkName(plan.Prefix,
// service), labelled LabelManaged, LabelHost and LabelService (and
// plan.Labels), its bridge interface BridgeName(name), its subnet the first
// /24 of plan.Pool that overlaps no network on the engine (whoever made
// it) and no address of this host, its gateway the subnet's first address.
// Docker's default address pools are never used.
//
// An existing network of that name is used only if deployctl made it for
// the same service and host (ErrNotManaged, ErrInvalidNetwork otherwise).
// When the engine refuses a subnet as overlapping, another agent on the
// same engine took it meanwhile: the next free one is tried.
func (r *DockerRuntime) EnsureServiceNetwork(ctx context.Context, host, service string, plan NetworkPlan) (ServiceNetwork, error) {
	if err := checkNetwork(plan.Prefix); err != nil {
		return ServiceNetwork{}, err
	}
	if !specs.IsServiceName(service) {
		return ServiceNetwork{}, fmt.Errorf("%w: service %q: %s", ErrInvalidNetwork, service, specs.ServiceNameRule)
	}
	if host == "" {
		return ServiceNetwork{}, fmt.Errorf("%w: no host id for the network of service %s", ErrInvalidNetwork, service)
	}
	if err := CheckSubnetPool(plan.Pool); err != nil {
		return ServiceNetwork{}, fmt.Errorf("%w: subnet pool: %w", ErrInvalidNetwork, err)
	}
	name := ServiceNetworkName(plan.Prefix, service)
	// One creation at a time in this process: two replicas of a service
	// starting together must not both create its network. Other agents on
	// the same engine are not held by this lock: a create that loses to
	// one of theirs finds the winner by its labels (findServiceNetwork).
	r.netMu.Lock()
	defer r.netMu.Unlock()
	if existing, err := r.findServiceNetwork(ctx, name, host, service); !errors.Is(err, ErrNotFound) {
		return existing, err
	}

	labels := map[string]string{}
	for k, v := range plan.Labels {
		labels[k] = v
	}
	labels[LabelManaged], labels[LabelHost], labels[LabelService] = "true", host, service
	var refused []netip.Prefix
	for attempt := 1; ; attempt++ {
		taken, err := r.takenSubnets(ctx)
		if err != nil {
			return ServiceNetwork{}, err
		}
		taken = append(taken, refused...)
		subnet, ok := FreeSubnet(plan.Pool, taken)
		if !ok {
			return ServiceNetwork{}, fmt.Errorf("create network %s: %w: every /%d of %s overlaps a network on the engine or the network of an address of this host; give a --subnet-pool with room, outside the host's own networks, or remove Docker networks that are no longer used",
				name, ErrSubnetPoolExhausted, ServiceSubnetBits, plan.Pool)
		}
		gateway := GatewayOf(subnet)
		_, err = r.client.NetworkCreate(ctx, name, network.CreateOptions{
			Driver:  "bridge",
			Labels:  labels,
			Options: map[string]string{bridgeNameOption: BridgeName(name)},
			IPAM: &network.IPAM{
				Driver: "default",
				Config: []network.IPAMConfig{{Subnet: subnet.String(), Gateway: gateway.String()}},
			},
		})
		if err == nil {
			// Another agent's create may have passed the engine's name
			// check at the same moment (engines that allow two networks of
			// one name): settle on one, by label, as every racer does.
			return r.findServiceNetwork(ctx, name, host, service)
		}
		// Whatever the engine said (a name conflict, "networks have same
		// bridge name", the subnet the other agent just took), another
		// agent on this engine may have created the network meanwhile:
		// then it is the one to use.
		if existing, ferr := r.findServiceNetwork(ctx, name, host, service); !errors.Is(ferr, ErrNotFound) {
			return existing, ferr
		}
		if isPoolOverlap(err) && attempt < maxCreateAttempts {
			refused = append(refused, subnet)
			continue
		}
		if isBridgeNameConflict(err) && attempt < maxCreateAttempts {
			// Another agent's create of this very network holds the bridge
			// name, but the engine lists the network only once it has
			// committed it (a /24 each, racers pick different subnets and
			// meet here rather than on the subnet): wait for it to appear.
			select {
			case <-ctx.Done():
				return ServiceNetwork{}, fmt.Errorf("create network %s: %w", name, ctx.Err())
			case <-time.After(time.Duration(min(attempt, 10)) * 50 * time.Millisecond):
			}
			if existing, ferr := r.findServiceNetwork(ctx, name, host, service); !errors.Is(ferr, ErrNotFound) {
				return existing, ferr
			}
			continue
		}
		return ServiceNetwork{}, engineError(fmt.Sprintf("create network %s with subnet %s", name, subnet), err)
	}
}

// findServiceNetwork returns the network named name that deployctl made
// for service on host, looked up by its labels rather than by name, so
// that two networks of one name (a create race on an engine that let both
// through) never make it fail as "ambiguous": the oldest (then lowest ID)
// is the one, on every agent alike, and the others, made by deployctl for
// the same host and service, are removed unless a container uses them. A
// network of that name made by someone else, or for another host or
// service, is refused (serviceNetworkOf); none at all is ErrNotFound.
func (r *DockerRuntime) findServiceNetwork(ctx context.Context, name, host, service string) (ServiceNetwork, error) {
	list, err := r.client.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return ServiceNetwork{}, engineError("list networks named "+name, err)
	}
	var mine, others []network.Summary
	for _, n := range list {
		switch {
		case n.Name != name:
			// The engine's name filter matches substrings.
		case n.Labels[LabelManaged] == "true" && n.Labels[LabelHost] == host && n.Labels[LabelService] == service:
			mine = append(mine, n)
		default:
			others = append(others, n)
		}
	}
	if len(mine) == 0 {
		if len(others) > 0 {
			return serviceNetworkOf(others[0], host, service)
		}
		return ServiceNetwork{}, fmt.Errorf("network %s: %w", name, ErrNotFound)
	}
	sort.Slice(mine, func(i, j int) bool {
		if !mine[i].Created.Equal(mine[j].Created) {
			return mine[i].Created.Before(mine[j].Created)
		}
		return mine[i].ID < mine[j].ID
	})
	for _, dup := range mine[1:] {
		// Best effort: a duplicate another agent already attached a
		// container to stays (ErrNetworkInUse) until that one is replaced.
		_ = r.RemoveNetwork(ctx, dup.ID, host, service)
	}
	return serviceNetworkOf(mine[0], host, service)
}

// isBridgeNameConflict reports whether the engine refused a network
// because another network holds its bridge interface's name ("networks
// have same bridge name").
func isBridgeNameConflict(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "same bridge name")
}

// isPoolOverlap reports whether the engine refused a subnet because it
// overlaps one of another network ("Pool overlaps with other one on this
// address space").
func isPoolOverlap(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "overlaps")
}

// takenSubnets are the subnets of every network on the engine and the
// networks of this host's own addresses: a service network overlapping
// one of the latter would hide part of the host's LAN.
func (r *DockerRuntime) takenSubnets(ctx context.Context) ([]netip.Prefix, error) {
	list, err := r.client.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, engineError("list networks", err)
	}
	var taken []netip.Prefix
	for _, n := range list {
		for _, c := range n.IPAM.Config {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil {
				taken = append(taken, p)
			}
		}
	}
	// The agent runs in the engine's network namespace (DESIGN.md), so
	// these are the engine host's addresses; an error only loses the
	// extra care.
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipNet, ok := a.(*net.IPNet); ok {
			if addr, ok := netip.AddrFromSlice(ipNet.IP); ok {
				ones, _ := ipNet.Mask.Size()
				taken = append(taken, netip.PrefixFrom(addr.Unmap(), ones).Masked())
			}
		}
	}
	return taken, nil
}

// serviceNetworkOf reads n as the network of service on host, refusing a
// network deployctl did not make for exactly them.
func serviceNetworkOf(n network.Inspect, host, service string) (ServiceNetwork, error) {
	switch {
	case n.Labels[LabelManaged] != "true":
		return ServiceNetwork{}, fmt.Errorf("network %q: %w (no %s=true label); remove it or give the agent another --network prefix", n.Name, ErrNotManaged, LabelManaged)
	case n.Driver != "bridge":
		return ServiceNetwork{}, fmt.Errorf("%w: network %q has driver %q, want bridge; remove it or give the agent another --network prefix", ErrInvalidNetwork, n.Name, n.Driver)
	case n.Labels[LabelService] != service:
		return ServiceNetwork{}, fmt.Errorf("%w: network %q is deployctl's network of service %q, not of %q; give the agent another --network prefix", ErrInvalidNetwork, n.Name, n.Labels[LabelService], service)
	case n.Labels[LabelHost] != host:
		return ServiceNetwork{}, fmt.Errorf("%w: network %q belongs to host %q, not %q: every host on one Docker Engine needs a --network prefix of its own", ErrInvalidNetwork, n.Name, n.Labels[LabelHost], host)
	}
	sn := ServiceNetwork{Service: service, Name: n.Name, ID: n.ID, Bridge: n.Options[bridgeNameOption]}
	if sn.Bridge == "" {
		sn.Bridge = "br-" + shortID(n.ID) // the engine's own name for it
	}
	for _, c := range n.IPAM.Config {
		subnet, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !subnet.Addr().Is4() {
			continue
		}
		sn.Subnet = subnet.Masked()
		sn.Gateway = GatewayOf(subnet)
		if gw, err := netip.ParseAddr(c.Gateway); err == nil {
			sn.Gateway = gw
		}
		return sn, nil
	}
	return ServiceNetwork{}, fmt.Errorf("%w: network %q has no IPv4 subnet; remove it and the agent creates it again", ErrInvalidNetwork, n.Name)
}

// ServiceNetworks lists the service networks deployctl made for host, by
// service: what the host's proxy listens on (the gateways), its DNS
// answers on and its firewall names (the bridges). A labelled network
// that does not read as one (no IPv4 subnet) is left out.
func (r *DockerRuntime) ServiceNetworks(ctx context.Context, host string) ([]ServiceNetwork, error) {
	list, err := r.client.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelHost+"="+host),
	)})
	if err != nil {
		return nil, engineError("list networks", err)
	}
	var out []ServiceNetwork
	for _, n := range list {
		if n.Labels[LabelService] == "" {
			continue
		}
		if sn, err := serviceNetworkOf(n, host, n.Labels[LabelService]); err == nil {
			out = append(out, sn)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// RemoveNetwork removes a network deployctl made: the network of service
// on host, or with service "" the one network all services of a host
// shared before each got its own (no service label, and the host's label
// or none). Anything else is refused with ErrNotManaged; a network with
// containers attached, running or not, is left with ErrNetworkInUse. One
// that is gone already counts as removed.
func (r *DockerRuntime) RemoveNetwork(ctx context.Context, nameOrID, host, service string) error {
	n, err := r.client.NetworkInspect(ctx, nameOrID, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return engineError("inspect network "+nameOrID, err)
	}
	if n.Name != nameOrID && n.ID != nameOrID {
		return nil // an ID prefix of another network: the one asked for is gone
	}
	labels := n.Labels
	switch {
	case labels[LabelManaged] != "true":
		return fmt.Errorf("remove network %s: %w", n.Name, ErrNotManaged)
	case service != "" && (labels[LabelService] != service || labels[LabelHost] != host):
		return fmt.Errorf("remove network %s: %w: it is the network of service %q on host %q, not of %q on %q", n.Name, ErrNotManaged, labels[LabelService], labels[LabelHost], service, host)
	case service == "" && (labels[LabelService] != "" || (labels[LabelHost] != "" && labels[LabelHost] != host)):
		return fmt.Errorf("remove network %s: %w: it is not the shared network of host %q", n.Name, ErrNotManaged, host)
	}
	// Stopped containers have no endpoint, so the network's own list
	// misses them; they would not start again without it. A container
	// never started knows the network by name only (no network ID yet).
	attached, err := r.client.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("network", n.ID), filters.Arg("network", n.Name))})
	if err != nil {
		return engineError("list the containers of network "+n.Name, err)
	}
	if len(attached) > 0 || len(n.Containers) > 0 {
		return fmt.Errorf("remove network %s: %w (%d)", n.Name, ErrNetworkInUse, max(len(attached), len(n.Containers)))
	}
	if err := r.client.NetworkRemove(ctx, n.ID); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if strings.Contains(err.Error(), "active endpoints") {
			return fmt.Errorf("remove network %s: %w: %w", n.Name, ErrNetworkInUse, err)
		}
		return engineError("remove network "+n.Name, err)
	}
	return nil
}

// Networks lists every network on the engine as the audit's network drift
// reads them (audit.NetworkDrift).
func (r *DockerRuntime) Networks(ctx context.Context) ([]audit.Network, error) {
	list, err := r.client.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, engineError("list networks", err)
	}
	out := make([]audit.Network, 0, len(list))
	for _, n := range list {
		out = append(out, audit.Network{Name: n.Name, ID: n.ID, Managed: n.Labels[LabelManaged] == "true",
			Service: n.Labels[LabelService], Host: n.Labels[LabelHost]})
	}
	return out, nil
}
