package deployer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// testPool is a pool of its own for a test (bits 23 or 24) in
// 10.100.0.0-10.199.255.255, away from the default pool other tests use,
// so the test knows what is in it.
func testPool(t *testing.T, bits int) netip.Prefix {
	t.Helper()
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + b[0]%100, b[1], 0}), bits).Masked()
}

// mustForeignNetwork creates a bridge network the way someone else would:
// no deployctl labels, only the test's (so cleanup finds it).
func mustForeignNetwork(t *testing.T, env *dockerEnv, name string, subnet netip.Prefix, labels map[string]string) string {
	t.Helper()
	all := map[string]string{labelTest: env.runID}
	for k, v := range labels {
		all[k] = v
	}
	opts := network.CreateOptions{Driver: "bridge", Labels: all}
	if subnet.IsValid() {
		opts.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet.String()}}}
	}
	created, err := env.raw.NetworkCreate(context.Background(), name, opts)
	if err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	return created.ID
}

func TestServiceNetworksWithDocker(t *testing.T) {
	env := mustDockerEnv(t)
	ctx := context.Background()
	hostID := "host-" + env.runID
	t.Cleanup(func() { removeHost(t, env, hostID) })
	plan := env.plan(hostID)

	t.Run("a bridge of its own, named, labelled, from the pool", func(t *testing.T) {
		sn, err := env.rt.EnsureServiceNetwork(ctx, hostID, "web", plan)
		if err != nil {
			t.Fatal(err)
		}
		inspect, err := env.raw.NetworkInspect(ctx, sn.Name, network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pool := plan.Pool
		checks := []struct {
			what string
			ok   bool
			got  any
		}{
			{"name <prefix>-<service>", sn.Name == plan.Prefix+"-web" && inspect.Name == sn.Name && inspect.ID == sn.ID, inspect.Name},
			{"bridge driver", inspect.Driver == "bridge", inspect.Driver},
			{"labels", inspect.Labels[LabelManaged] == "true" && inspect.Labels[LabelHost] == hostID && inspect.Labels[LabelService] == "web" && inspect.Labels[labelTest] == env.runID, inspect.Labels},
			{"bridge interface named dc-<hash>, at most 15 characters", inspect.Options[bridgeNameOption] == BridgeName(sn.Name) && sn.Bridge == BridgeName(sn.Name) && len(sn.Bridge) <= 15, inspect.Options},
			{"explicit subnet and gateway, nothing else", len(inspect.IPAM.Config) == 1 && inspect.IPAM.Config[0].Subnet == sn.Subnet.String() &&
				inspect.IPAM.Config[0].Gateway == sn.Gateway.String() && inspect.IPAM.Config[0].IPRange == "", inspect.IPAM.Config},
			{"a /24 of the pool", sn.Subnet.Bits() == ServiceSubnetBits && pool.Contains(sn.Subnet.Addr()), sn.Subnet},
			{"gateway is the first address", sn.Gateway == sn.Subnet.Addr().Next(), sn.Gateway},
		}
		for _, c := range checks {
			if !c.ok {
				t.Errorf("%s: got %v", c.what, c.got)
			}
		}
		if os.Getenv("DOCKER_HOST") == "" {
			// The engine runs here: the bridge is one of this host's
			// interfaces, with the gateway's address.
			iface, err := net.InterfaceByName(sn.Bridge)
			if err != nil {
				t.Fatalf("bridge interface %s: %v", sn.Bridge, err)
			}
			addrs, _ := iface.Addrs()
			if len(addrs) == 0 || !strings.HasPrefix(addrs[0].String(), sn.Gateway.String()+"/") {
				t.Errorf("bridge %s has addresses %v, want %s", sn.Bridge, addrs, sn.Gateway)
			}
		}

		again, err := env.rt.EnsureServiceNetwork(ctx, hostID, "web", plan)
		if err != nil || again != sn {
			t.Errorf("second EnsureServiceNetwork = %+v, %v; want the same network %+v", again, err, sn)
		}
		api := env.mustServiceNetwork(t, hostID, "api")
		if api.Name == sn.Name || api.Bridge == sn.Bridge || api.Subnet.Overlaps(sn.Subnet) {
			t.Errorf("api's network %+v is not apart from web's %+v", api, sn)
		}
		listed, err := env.rt.ServiceNetworks(ctx, hostID)
		if err != nil {
			t.Fatal(err)
		}
		if len(listed) != 2 || listed[0] != api || listed[1] != sn {
			t.Errorf("ServiceNetworks = %+v, want api's and web's", listed)
		}
	})

	t.Run("refuses networks it did not make for this service and host", func(t *testing.T) {
		mustForeignNetwork(t, env, plan.Prefix+"-foreign", netip.Prefix{}, nil)
		mustForeignNetwork(t, env, plan.Prefix+"-lookalike", netip.Prefix{}, map[string]string{LabelService: "lookalike", LabelHost: hostID})
		other := "other-" + env.runID
		t.Cleanup(func() { removeHost(t, env, other) })
		if _, err := env.rt.EnsureServiceNetwork(ctx, other, "shared", plan); err != nil {
			t.Fatal(err)
		}
		badPool := plan
		badPool.Pool = netip.MustParsePrefix("10.0.0.0/25")
		tests := []struct {
			name, service string
			plan          NetworkPlan
			want          error
			says          string
		}{
			{"someone else's network of that name", "foreign", plan, ErrNotManaged, "no io.deployctl.managed"},
			{"deployctl's labels without managed", "lookalike", plan, ErrNotManaged, "no io.deployctl.managed"},
			{"another host's network on the engine", "shared", plan, ErrInvalidNetwork, "belongs to host " + fmt.Sprintf("%q", other)},
			{"predefined network as prefix", "web", NetworkPlan{Prefix: "host", Pool: plan.Pool}, ErrInvalidNetwork, "predefined"},
			{"no prefix", "web", NetworkPlan{Pool: plan.Pool}, ErrInvalidNetwork, "no network"},
			{"not a service name", "Web_1", plan, ErrInvalidNetwork, "lowercase"},
			{"pool too small", "web2", badPool, ErrInvalidNetwork, "between /8 and /24"},
		}
		for _, tt := range tests {
			_, err := env.rt.EnsureServiceNetwork(ctx, hostID, tt.service, tt.plan)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("%s: EnsureServiceNetwork = %v, want %v saying %q", tt.name, err, tt.want, tt.says)
			}
		}
	})

	t.Run("skips subnets any network on the engine holds, until the pool is full", func(t *testing.T) {
		pool := testPool(t, 22) // four /24s
		first := netip.PrefixFrom(pool.Addr(), ServiceSubnetBits)
		mustForeignNetwork(t, env, "foreign-"+env.runID+"-subnet", first, nil)
		own := NetworkPlan{Prefix: plan.Prefix + "-small", Pool: pool, Labels: plan.Labels}
		var got []netip.Prefix
		for _, service := range []string{"a", "b", "c"} {
			sn, err := env.rt.EnsureServiceNetwork(ctx, hostID, service, own)
			if err != nil {
				t.Fatalf("EnsureServiceNetwork(%s) in %s: %v", service, pool, err)
			}
			got = append(got, sn.Subnet)
		}
		for i, p := range got {
			want := netip.PrefixFrom(uint32Addr(addrUint32(pool.Addr())+uint32(256*(i+1))), ServiceSubnetBits)
			if p != want {
				t.Errorf("network %d got %s, want %s (the first is someone else's)", i, p, want)
			}
		}
		_, err := env.rt.EnsureServiceNetwork(ctx, hostID, "d", own)
		if !errors.Is(err, ErrSubnetPoolExhausted) || !strings.Contains(err.Error(), "--subnet-pool") {
			t.Errorf("fifth network of a /22 = %v, want ErrSubnetPoolExhausted naming --subnet-pool", err)
		}
	})

	t.Run("agents racing on one engine get subnets apart", func(t *testing.T) {
		// Eight runtimes (eight agents, each with its own lock) create at
		// once from a pool of eight: the engine refuses overlaps, the
		// loser takes the next one.
		pool := testPool(t, 21) // eight /24s
		const agents = 8
		results := make([]ServiceNetwork, agents)
		errs := make([]error, agents)
		var wg sync.WaitGroup
		for i := range agents {
			rt, err := NewDockerRuntime()
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			host := fmt.Sprintf("race%d-%s", i, env.runID)
			t.Cleanup(func() { removeHost(t, env, host) })
			p := env.plan(host)
			p.Pool = pool
			wg.Go(func() { results[i], errs[i] = rt.EnsureServiceNetwork(ctx, host, "web", p) })
		}
		wg.Wait()
		for i, sn := range results {
			if errs[i] != nil {
				t.Fatalf("agent %d: %v", i, errs[i])
			}
			if !pool.Contains(sn.Subnet.Addr()) {
				t.Errorf("agent %d got %s, outside %s", i, sn.Subnet, pool)
			}
			for j := range i {
				if results[j].Subnet.Overlaps(sn.Subnet) {
					t.Errorf("agents %d and %d share %s", j, i, sn.Subnet)
				}
			}
		}
	})

	t.Run("RemoveNetwork removes only an unused network of its own", func(t *testing.T) {
		if err := env.rt.Pull(ctx, env.goodRef); err != nil {
			t.Fatal(err)
		}
		sn := env.mustServiceNetwork(t, hostID, "removed")
		// A container that was created and never started has no endpoint
		// yet, but the network is still its network.
		created, err := env.raw.ContainerCreate(ctx, &container.Config{Image: env.goodRef, Labels: map[string]string{labelTest: env.runID}},
			&container.HostConfig{NetworkMode: container.NetworkMode(sn.Name)}, nil, nil, "on-"+sn.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.rt.RemoveNetwork(ctx, sn.ID, hostID, "removed"); !errors.Is(err, ErrNetworkInUse) {
			t.Errorf("RemoveNetwork with a container on it = %v, want ErrNetworkInUse", err)
		}
		if err := env.raw.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		if err := env.rt.RemoveNetwork(ctx, sn.ID, "another-host", "removed"); !errors.Is(err, ErrNotManaged) {
			t.Errorf("RemoveNetwork for another host = %v, want ErrNotManaged", err)
		}
		if err := env.rt.RemoveNetwork(ctx, sn.ID, hostID, ""); !errors.Is(err, ErrNotManaged) {
			t.Errorf("RemoveNetwork of a service network as the shared one = %v, want ErrNotManaged", err)
		}
		if err := env.rt.RemoveNetwork(ctx, sn.ID, hostID, "removed"); err != nil {
			t.Fatalf("RemoveNetwork: %v", err)
		}
		if _, err := env.raw.NetworkInspect(ctx, sn.ID, network.InspectOptions{}); err == nil {
			t.Error("network still there after RemoveNetwork")
		}
		if err := env.rt.RemoveNetwork(ctx, sn.ID, hostID, "removed"); err != nil {
			t.Errorf("RemoveNetwork of a removed network = %v, want nil", err)
		}

		foreign := "foreign-" + env.runID + "-kept"
		mustForeignNetwork(t, env, foreign, netip.Prefix{}, nil)
		if err := env.rt.RemoveNetwork(ctx, foreign, hostID, ""); !errors.Is(err, ErrNotManaged) {
			t.Errorf("RemoveNetwork(foreign) = %v, want ErrNotManaged", err)
		}
		if _, err := env.raw.NetworkInspect(ctx, foreign, network.InspectOptions{}); err != nil {
			t.Errorf("the foreign network is gone: %v", err)
		}
		// The one network every service shared in older versions: managed,
		// no service, no host label.
		legacy := plan.Prefix + "-legacy"
		mustForeignNetwork(t, env, legacy, netip.Prefix{}, map[string]string{LabelManaged: "true"})
		if err := env.rt.RemoveNetwork(ctx, legacy, hostID, ""); err != nil {
			t.Errorf("RemoveNetwork(shared network of an older version) = %v", err)
		}
	})
}

func TestIsPoolOverlap(t *testing.T) {
	if !isPoolOverlap(errors.New("Error response from daemon: Pool overlaps with other one on this address space")) {
		t.Error("the engine's overlap error not recognised")
	}
	if isPoolOverlap(errors.New("network with name x already exists")) || isPoolOverlap(nil) {
		t.Error("another error read as an overlap")
	}
}

// auditingController is a fakeController that also takes audits.
type auditingController struct {
	*fakeController
	amu    sync.Mutex
	audits []audit.HostAudit
}

func (a *auditingController) Audit(_ context.Context, h audit.HostAudit) error {
	a.amu.Lock()
	defer a.amu.Unlock()
	a.audits = append(a.audits, h)
	return nil
}

func (a *auditingController) latestAudit() (audit.HostAudit, bool) {
	a.amu.Lock()
	defer a.amu.Unlock()
	if len(a.audits) == 0 {
		return audit.HostAudit{}, false
	}
	return a.audits[len(a.audits)-1], true
}

// serviceSpec is the test spec for service.
func serviceSpec(service string, opts ...specOption) specs.Spec {
	return testSpec(append([]specOption{func(s *specs.Spec) { s.Service = service }}, opts...)...)
}

func TestAgentServiceNetworks(t *testing.T) {
	env := mustDockerEnv(t)
	ctx := context.Background()

	t.Run("each service on a network of its own, removed with its last container", func(t *testing.T) {
		h := newAgentHarness(t, env)
		prefix := env.prefixFor(h.hostID)
		web := assignment(newReplicaID(t), 1, env.goodRef, serviceSpec("web"))
		api := assignment(newReplicaID(t), 1, env.goodRef, serviceSpec("api"))
		h.ctrl.assign(web, api)
		h.mustStartAgent(t)

		networks := map[string]ServiceNetwork{}
		for _, a := range []state.Assignment{web, api} {
			report := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaHealthy)
			inspect := h.mustInspect(t, report.ContainerID)
			name := prefix + "-" + a.Replica.Service
			sn, err := env.rt.EnsureServiceNetwork(ctx, h.hostID, a.Replica.Service, env.plan(h.hostID))
			if err != nil || sn.Name != name {
				t.Fatalf("network of %s = %+v, %v; want %s", a.Replica.Service, sn, err, name)
			}
			networks[a.Replica.Service] = sn
			ip := netip.MustParseAddr(ReplicaIP(inspect))
			if string(inspect.HostConfig.NetworkMode) != name || len(inspect.NetworkSettings.Networks) != 1 || !sn.Subnet.Contains(ip) ||
				!slices.Equal(inspect.HostConfig.DNS, []string{sn.Gateway.String()}) {
				t.Errorf("%s: network mode %s, networks %v, address %s, DNS %v; want only %s in %s, DNS %s", a.Replica.Service,
					inspect.HostConfig.NetworkMode, inspect.NetworkSettings.Networks, ip, inspect.HostConfig.DNS, name, sn.Subnet, sn.Gateway)
			}
		}
		if networks["web"].Subnet.Overlaps(networks["api"].Subnet) {
			t.Errorf("web and api share addresses: %s, %s", networks["web"].Subnet, networks["api"].Subnet)
		}
		serviceNetworks := func() []string {
			list, err := env.rt.ServiceNetworks(ctx, h.hostID)
			if err != nil {
				t.Fatal(err)
			}
			var services []string
			for _, n := range list {
				services = append(services, n.Service)
			}
			return services
		}
		if got := serviceNetworks(); !slices.Equal(got, []string{"api", "web"}) {
			t.Errorf("service networks %v, want api and web", got)
		}

		h.ctrl.assign(web)
		waitUntil(t, "api's network removed after its last container", func() bool { return slices.Equal(serviceNetworks(), []string{"web"}) })
		if n := len(h.managed(t)); n != 1 {
			t.Errorf("%d containers, want web's only", n)
		}

		// A service that comes back gets a network again.
		again := assignment(newReplicaID(t), 1, env.goodRef, serviceSpec("api"))
		h.ctrl.assign(web, again)
		report := h.ctrl.waitState(t, again.Replica.ID, state.ReplicaHealthy)
		if mode := h.mustInspect(t, report.ContainerID).HostConfig.NetworkMode; string(mode) != prefix+"-api" {
			t.Errorf("api came back on %s, want %s-api", mode, prefix)
		}
		h.ctrl.assign()
		waitUntil(t, "every network removed with the last containers", func() bool { return len(serviceNetworks()) == 0 })
	})

	t.Run("replicas of an older version move to their service's network one at a time", func(t *testing.T) {
		h := newAgentHarness(t, env)
		prefix := env.prefixFor(h.hostID)
		// What an older agent made: one network named like the prefix,
		// labelled managed (and the agent's network labels), and every
		// replica on it.
		legacy := mustForeignNetwork(t, env, prefix, netip.Prefix{}, map[string]string{LabelManaged: "true"})
		r1 := assignment(newReplicaID(t), 1, env.goodRef, serviceSpec("web"))
		r2 := assignment(newReplicaID(t), 2, env.goodRef, serviceSpec("web"))
		user, err := env.rt.ImageUser(ctx, env.goodRef)
		if err != nil {
			t.Fatal(err)
		}
		old := map[string]string{}
		for _, a := range []state.Assignment{r1, r2} {
			cfg, hostCfg, netCfg, err := ContainerOptions(a, h.hostID, prefix, user)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Labels[labelTest] = env.runID
			id, err := env.rt.Create(ctx, ContainerName(a), cfg, hostCfg, netCfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := env.rt.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
			old[a.Replica.ID] = id
		}

		h.ctrl.assign(r1, r2)
		h.mustStartAgent(t)
		for _, a := range []state.Assignment{r1, r2} {
			var report state.StatusReport
			h.ctrl.waitFor(t, a.Replica.ID+" healthy in a new container", func(f *fakeController) bool {
				report = f.latest[a.Replica.ID]
				return report.State == state.ReplicaHealthy && report.ContainerID != old[a.Replica.ID]
			})
			if mode := h.mustInspect(t, report.ContainerID).HostConfig.NetworkMode; string(mode) != prefix+"-web" {
				t.Errorf("%s recreated on %s, want %s-web", a.Replica.ID, mode, prefix)
			}
			h.waitGone(t, old[a.Replica.ID])
		}
		// Never both at once: a running replica counts as serving until
		// its first report says otherwise.
		h.ctrl.mu.Lock()
		serving := map[string]string{r1.Replica.ID: state.ReplicaHealthy, r2.Replica.ID: state.ReplicaHealthy}
		for _, r := range h.ctrl.reports {
			for _, sr := range r.Reports {
				serving[sr.ReplicaID] = sr.State
			}
			if serving[r1.Replica.ID] != state.ReplicaHealthy && serving[r2.Replica.ID] != state.ReplicaHealthy {
				t.Errorf("both replicas out of service at once: %v", serving)
			}
		}
		h.ctrl.mu.Unlock()
		waitUntil(t, "the shared network of the older version removed", func() bool {
			_, err := env.raw.NetworkInspect(ctx, legacy, network.InspectOptions{})
			return err != nil
		})
	})

	t.Run("the audit reports a replica on another service's network", func(t *testing.T) {
		h := newAgentHarness(t, env)
		ctrl := &auditingController{fakeController: h.ctrl}
		web := assignment(newReplicaID(t), 1, env.goodRef, serviceSpec("web"))
		api := assignment(newReplicaID(t), 1, env.goodRef, serviceSpec("api"))
		h.ctrl.assign(web, api)
		h.mustStartAgent(t, func(c *AgentConfig) {
			c.Controller = ctrl
			c.AuditInterval = 300 * time.Millisecond
		})
		report := h.ctrl.waitState(t, web.Replica.ID, state.ReplicaHealthy)
		h.ctrl.waitState(t, api.Replica.ID, state.ReplicaHealthy)
		apiNet := env.mustServiceNetwork(t, h.hostID, "api")
		if err := env.raw.NetworkConnect(ctx, apiNet.ID, report.ContainerID, nil); err != nil {
			t.Fatal(err)
		}
		var found audit.Drift
		waitUntil(t, "an audit with web's network drift", func() bool {
			a, ok := ctrl.latestAudit()
			if !ok {
				return false
			}
			for _, c := range a.Containers {
				for _, d := range c.Drift {
					if c.ReplicaID == web.Replica.ID && d.Field == "NetworkSettings.Networks["+apiNet.Name+"]" {
						found = d
						return true
					}
				}
			}
			return false
		})
		if !strings.Contains(found.Got, "network of service api") {
			t.Errorf("drift %+v does not say whose network it is", found)
		}
		// Until it is disconnected api's network holds web's container:
		// the agent leaves it, whatever else happens to api.
		if err := env.raw.NetworkDisconnect(ctx, apiNet.ID, report.ContainerID, true); err != nil {
			t.Fatal(err)
		}
	})
}

// 100 services on one host: 100 networks, each a /24 of the pool (none
// from Docker's default pools), no two overlapping; an agent that runs
// none of the services removes them all. The networks are made through
// the agent's own call (EnsureServiceNetwork, 100 at once as the agent's
// start tasks would), without the containers: on the 2-core machine the
// engine creates and starts about one container a second, which would
// make this test take minutes (TestAgentServiceNetworks runs the same
// path with containers).
func TestServiceNetworksAtScale(t *testing.T) {
	env := mustDockerEnv(t)
	ctx := context.Background()
	const services = 100
	h := newAgentHarness(t, env)
	plan := env.plan(h.hostID)

	start := time.Now()
	made := make([]ServiceNetwork, services)
	errs := make([]error, services)
	var wg sync.WaitGroup
	for i := range services {
		wg.Go(func() { made[i], errs[i] = env.rt.EnsureServiceNetwork(ctx, h.hostID, fmt.Sprintf("s%03d", i), plan) })
	}
	wg.Wait()
	created := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("network %d: %v", i, err)
		}
	}

	list, err := env.rt.ServiceNetworks(ctx, h.hostID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != services {
		t.Fatalf("%d service networks, want %d", len(list), services)
	}
	// Docker's default pools: 172.17.0.0/16 to 172.31.0.0/16 and
	// 192.168.0.0/16 cut into /20s.
	defaults := []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16")}
	bridges := map[string]bool{}
	for i, n := range list {
		inspect, err := env.raw.NetworkInspect(ctx, n.ID, network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(inspect.IPAM.Config) != 1 || inspect.IPAM.Config[0].Subnet != n.Subnet.String() || inspect.IPAM.Config[0].Gateway != n.Gateway.String() {
			t.Errorf("%s: IPAM %+v, want exactly %s with gateway %s", n.Name, inspect.IPAM.Config, n.Subnet, n.Gateway)
		}
		if n.Subnet.Bits() != ServiceSubnetBits || !plan.Pool.Contains(n.Subnet.Addr()) {
			t.Errorf("%s: subnet %s is not a /24 of %s", n.Name, n.Subnet, plan.Pool)
		}
		for _, d := range defaults {
			if d.Overlaps(n.Subnet) {
				t.Errorf("%s: subnet %s is in Docker's default pool %s", n.Name, n.Subnet, d)
			}
		}
		for _, m := range list[:i] {
			if m.Subnet.Overlaps(n.Subnet) {
				t.Errorf("%s and %s overlap: %s, %s", m.Name, n.Name, m.Subnet, n.Subnet)
			}
		}
		if bridges[n.Bridge] {
			t.Errorf("%s: bridge name %s taken twice", n.Name, n.Bridge)
		}
		bridges[n.Bridge] = true
	}

	// The host runs none of the services: its agent removes every one of
	// their networks.
	start = time.Now()
	h.mustStartAgent(t)
	waitUntil(t, "every service network removed", func() bool {
		left, err := env.rt.ServiceNetworks(ctx, h.hostID)
		return err == nil && len(left) == 0
	})
	t.Logf("%d service networks: created in %s, removed by the agent in %s",
		services, created.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
}
