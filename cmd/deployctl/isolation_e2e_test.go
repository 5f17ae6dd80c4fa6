package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// serviceSpec is webSpec under another service name.
func serviceSpec(name, ref string, replicas int, extra string) string {
	return strings.Replace(webSpec(ref, replicas, extra), "service: web\n", "service: "+name+"\n", 1)
}

// execIn runs the webapp binary inside a container with args (its client
// modes: -fetch, -dial, -resolve) and returns its exit code and output.
func execIn(t testing.TB, containerID string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	created, err := env.docker.ContainerExecCreate(ctx, containerID, container.ExecOptions{
		Cmd: append([]string{devimage.BinaryPath}, args...), AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		t.Fatalf("exec create in %s: %v", short(containerID), err)
	}
	attached, err := env.docker.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec attach: %v", err)
	}
	defer attached.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, attached.Reader); err != nil {
		t.Fatalf("exec output: %v", err)
	}
	inspect, err := env.docker.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		t.Fatalf("exec inspect: %v", err)
	}
	return inspect.ExitCode, out.String()
}

// runningOf is the container IDs of a service's current running replicas.
func runningOf(t *testing.T, s *devServer, svc string) []string {
	t.Helper()
	var ids []string
	for id := range currentContainerIDs(mustStatus(t, s, svc)) {
		ids = append(ids, id)
	}
	return ids
}

// containerAddr is a container's address and its network's gateway.
func containerAddr(t testing.TB, id string) (ip, gateway string) {
	t.Helper()
	inspect, err := env.docker.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range inspect.NetworkSettings.Networks {
		return ep.IPAddress, ep.Gateway
	}
	t.Fatalf("container %s has no network", short(id))
	return "", ""
}

// hostAddress is an IPv4 address of this machine other than loopback and
// the service networks', where a host service would listen.
func hostAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !strings.HasPrefix(n.IP.String(), "10.240.") {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine to stand for a host service")
	return ""
}

// TestCLIServiceIsolation (issue 9) proves default deny from inside the
// containers of one --dev host: web declares connects_to: [api] and
// reaches api:8080 by name; lone declares nothing and cannot resolve api
// nor reach its address; nobody reaches an api container by its IP, a
// port api does not expose, or a service of the host itself; replicas of
// one service reach each other; an update of api under web's steady
// requests fails none; dropping the connection stops new connections and
// restarts nothing.
func TestCLIServiceIsolation(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	mustCLI(t, s, 0, serviceSpec("api", env.refs["v1"], 2, "expose: [8080]\n"), "apply", "-")
	webWith := func(extra string) string { return serviceSpec("web", env.refs["v1"], 2, extra) }
	mustCLI(t, s, 0, webWith("connects_to: [api]\n"), "apply", "-")
	mustCLI(t, s, 0, serviceSpec("lone", env.refs["v1"], 1, ""), "apply", "-")

	// A host service: listens on every address of the machine.
	hostSvc, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostSvc.Close()
	go func() {
		for {
			c, err := hostSvc.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	hostPort := hostSvc.Addr().(*net.TCPAddr).Port
	hostIP := hostAddress(t)
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(hostIP, fmt.Sprint(hostPort)), 2*time.Second); err != nil {
		t.Fatalf("control: the host service does not answer on %s: %v", hostIP, err)
	} else {
		_ = c.Close()
	}

	webIDs, apiIDs, loneIDs := runningOf(t, s, "web"), runningOf(t, s, "api"), runningOf(t, s, "lone")
	if len(webIDs) != 2 || len(apiIDs) != 2 || len(loneIDs) != 1 {
		t.Fatalf("replicas web %d api %d lone %d", len(webIDs), len(apiIDs), len(loneIDs))
	}
	web, lone := webIDs[0], loneIDs[0]
	var apiVIP string
	waitFor(t, 60*time.Second, "web's connection to api to resolve", func() bool {
		st := mustStatus(t, s, "web")
		api := mustStatus(t, s, "api")
		apiVIP = api.Address
		return len(st.Connections) == 1 && st.Connections[0].Resolved && apiVIP != ""
	})
	waitFor(t, 30*time.Second, "web to reach api:8080 by name", func() bool {
		code, _ := execIn(t, web, "-fetch", "http://api:8080/")
		return code == 0
	})
	check := func(what string, id string, wantCode int, args ...string) {
		t.Helper()
		if code, out := execIn(t, id, args...); code != wantCode {
			t.Errorf("%s: exit %d, want %d\n%s", what, code, wantCode, out)
		}
	}
	check("web fetches api:8080", web, 0, "-fetch", "http://api:8080/")
	check("lone cannot resolve api", lone, 1, "-resolve", "api")
	check("lone cannot reach api's address", lone, 1, "-dial", apiVIP+":8080")
	apiIP, _ := containerAddr(t, apiIDs[0])
	check("web cannot reach an api container by its IP", web, 1, "-dial", apiIP+":8080")
	check("web cannot reach a port api does not expose", web, 1, "-dial", "api:9090")
	_, webGateway := containerAddr(t, web)
	check("web cannot reach a host service on its gateway", web, 1, "-dial", net.JoinHostPort(webGateway, fmt.Sprint(hostPort)))
	check("web cannot reach a host service on the host's address", web, 1, "-dial", net.JoinHostPort(hostIP, fmt.Sprint(hostPort)))
	check("lone cannot reach a host service on the host's address", lone, 1, "-dial", net.JoinHostPort(hostIP, fmt.Sprint(hostPort)))
	peerIP, _ := containerAddr(t, webIDs[1])
	check("replicas of web reach each other", web, 0, "-dial", peerIP+":8080")

	// An update of api while web sends a steady stream through its name.
	done := make(chan string, 1)
	go func() {
		code, out := execIn(t, web, "-fetch", "http://api:8080/", "-repeat", "25s")
		done <- fmt.Sprintf("exit %d: %s", code, out)
	}()
	time.Sleep(2 * time.Second)
	mustCLI(t, s, 0, serviceSpec("api", env.refs["v11"], 2, "expose: [8080]\n"), "apply", "-")
	stream := <-done
	if !strings.HasPrefix(stream, "exit 0:") || !strings.Contains(stream, "failed=0") {
		t.Errorf("web's requests to api across api's update: %s", stream)
	}
	t.Logf("web -> api across api's update: %s", strings.TrimSpace(stream))

	// Dropping the connection: new connections stop, nothing restarts.
	before := runningOf(t, s, "web")
	mustCLI(t, s, 0, webWith(""), "apply", "-")
	start := time.Now()
	waitFor(t, 30*time.Second, "web to lose api", func() bool {
		code, _ := execIn(t, web, "-dial", "api:8080")
		return code != 0
	})
	t.Logf("connection removed: effective for new connections after %s", time.Since(start).Round(100*time.Millisecond))
	if after := runningOf(t, s, "web"); !sameIDs(before, after) {
		t.Errorf("dropping a connection restarted web: %v -> %v", before, after)
	}
	mustCLI(t, s, 0, webWith("connects_to: [api]\n"), "apply", "-")
	start = time.Now()
	waitFor(t, 30*time.Second, "web to reach api again", func() bool {
		code, _ := execIn(t, web, "-fetch", "http://api:8080/")
		return code == 0
	})
	t.Logf("connection added: effective for new connections after %s", time.Since(start).Round(100*time.Millisecond))
	var st wire.ServiceStatus = mustStatus(t, s, "web")
	if len(st.Connections) != 1 || !st.Connections[0].Resolved {
		t.Errorf("web's connections after re-adding: %+v", st.Connections)
	}

	// Point 6: a policy that lets only web connect to api refuses lone's
	// apply that declares it, with the rule's name, and keeps lone's
	// running revision; web's connection stands.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("connections:\n  - {service: api, from: [web]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, s, 0, "", "policy", "set", filepath.Join(dir, "policy.yaml"))
	loneBefore := mustStatus(t, s, "lone").Revision
	r := mustCLI(t, s, 1, serviceSpec("lone", env.refs["v1"], 1, "connects_to: [api]\n"), "apply", "-")
	if !strings.Contains(r.stderr, "connections") || !strings.Contains(r.stderr, "connects_to[0]") || !strings.Contains(r.stderr, "only from web") {
		t.Errorf("apply of a connection the policy forbids: want the rule and the field named\n%s", r.stderr)
	}
	if got := mustStatus(t, s, "lone").Revision; got != loneBefore {
		t.Errorf("a refused apply changed lone's revision %d -> %d", loneBefore, got)
	}
	check("lone still cannot resolve api", lone, 1, "-resolve", "api")
	check("web still reaches api under the policy", web, 0, "-fetch", "http://api:8080/")
}

func sameIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[string]bool{}
	for _, x := range a {
		set[x] = true
	}
	for _, x := range b {
		if !set[x] {
			return false
		}
	}
	return true
}

// TestClusterServiceIsolation (issue 9) on three servers with mutual TLS:
// web's calls to api:8080 from a container on one host are answered by
// api replicas on all three hosts (through their hosts' proxies); a second
// upstream on the same port (auth:8080) works beside it; lone reaches
// neither; an api container on another host is not reachable by its IP;
// api's update under web's steady stream fails no request.
func TestClusterServiceIsolation(t *testing.T) {
	needEngine(t)
	c := mustStartClusterWith(t, 3, func(i int) []string {
		return []string{"--ingress-addr", fmt.Sprintf("127.0.0.%d", i+2), "--proxy-addr", freeAddr(t)}
	}, "--host-ttl", "3s", "--host-down-grace", "3s")
	c.mustReadyHosts(t, 3)
	apply := func(spec string) {
		t.Helper()
		if r := c.cli(t, c.nodes, spec, "apply", "-"); r.code != 0 {
			t.Fatalf("apply: %d %s %s", r.code, r.stdout, r.stderr)
		}
	}
	apply(serviceSpec("api", env.refs["v1"], 3, "expose: [8080]\n"))
	apply(serviceSpec("auth", env.refs["v11"], 1, "expose: [8080]\n"))
	apply(serviceSpec("web", env.refs["v1"], 3, "connects_to: [api, auth]\n"))
	apply(serviceSpec("lone", env.refs["v1"], 1, ""))
	status := func(svc string) wire.ServiceStatus {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.client().Status(ctx, svc, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	hostOf := map[string]string{} // hostname (short container id) -> host
	running := func(svc string) []wire.InstanceView {
		var out []wire.InstanceView
		for _, in := range status(svc).Instances {
			if in.Current && in.Desired == "running" && in.ContainerID != "" {
				out = append(out, in)
				hostOf[in.ContainerID[:12]] = in.Host
			}
		}
		return out
	}
	apis := running("api")
	spread := map[string]bool{}
	for _, in := range apis {
		spread[in.Host] = true
	}
	if len(apis) != 3 || len(spread) != 3 {
		t.Fatalf("api replicas %d on %d hosts, want 3 on 3", len(apis), len(spread))
	}
	web, lone := running("web")[0], running("lone")[0]
	waitFor(t, 60*time.Second, "web's connections to resolve", func() bool {
		st := status("web")
		return len(st.Connections) == 2 && st.Connections[0].Resolved && st.Connections[1].Resolved
	})
	seen := map[string]bool{}
	waitFor(t, 60*time.Second, "web on one host to be answered by api replicas on all three", func() bool {
		code, out := execIn(t, web.ContainerID, "-fetch", "http://api:8080/")
		if code == 0 {
			for _, line := range strings.Split(out, "\n") {
				if h, ok := strings.CutPrefix(line, "hostname: "); ok && hostOf[h] != "" {
					seen[hostOf[h]] = true
				}
			}
		}
		return len(seen) == 3
	})
	check := func(what string, id string, wantCode int, args ...string) {
		t.Helper()
		if code, out := execIn(t, id, args...); code != wantCode {
			t.Errorf("%s: exit %d, want %d\n%s", what, code, wantCode, out)
		}
	}
	if code, out := execIn(t, web.ContainerID, "-fetch", "http://auth:8080/"); code != 0 || !strings.Contains(out, "webapp v1.1") {
		t.Errorf("web -> auth:8080 (a second upstream on the same port): exit %d\n%s", code, out)
	}
	check("lone cannot resolve api", lone.ContainerID, 1, "-resolve", "api")
	check("lone cannot reach api's address", lone.ContainerID, 1, "-dial", status("api").Address+":8080")
	for _, in := range apis {
		if in.Host == web.Host {
			continue
		}
		ip, _ := containerAddr(t, in.ContainerID)
		check("web cannot reach an api container on another host by its IP", web.ContainerID, 1, "-dial", ip+":8080")
		break
	}
	done := make(chan string, 1)
	go func() {
		code, out := execIn(t, web.ContainerID, "-fetch", "http://api:8080/", "-repeat", "30s")
		done <- fmt.Sprintf("exit %d: %s", code, out)
	}()
	time.Sleep(2 * time.Second)
	apply(serviceSpec("api", env.refs["v11"], 3, "expose: [8080]\n"))
	stream := <-done
	if !strings.HasPrefix(stream, "exit 0:") || !strings.Contains(stream, "failed=0") {
		t.Errorf("web's requests to api across api's update on three hosts: %s", stream)
	}
	t.Logf("web -> api across api's update on three hosts: %s", strings.TrimSpace(stream))
}

// scaleServiceSpec is service i of n for TestCLIServiceIsolationAtScale:
// one replica, exposes 8080, connects to service i+1 (mod n). Its progress
// deadline leaves room for a hundred containers started on two cores.
func scaleServiceSpec(ref string, i, n int) string {
	return fmt.Sprintf(`service: %s
image: %s
replicas: 1
resources: { cpus: 0.1, memory: 24M, pids: 32 }
healthcheck:
  http: { path: /healthz, port: 8080 }
  interval: 1s
  timeout: 1s
  retries: 3
update:
  progress_deadline: 10m
stop_grace_period: 1s
expose: [8080]
connects_to: [%s]
`, scaleName(i%n), ref, scaleName((i+1)%n))
}

func scaleName(i int) string { return fmt.Sprintf("s%03d", i) }

// serviceNetworksOf lists the service networks of a host on the engine:
// service name -> the network's inspect.
func serviceNetworksOf(t *testing.T, hostID string) map[string]network.Inspect {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := env.docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", deployer.LabelManaged+"=true"), filters.Arg("label", deployer.LabelHost+"="+hostID))})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]network.Inspect{}
	for _, n := range list {
		if svc := n.Labels[deployer.LabelService]; svc != "" {
			out[svc] = n
		}
	}
	return out
}

// TestCLIServiceIsolationAtScale (issue 9's proof at size): 100 services
// with one replica each on one host, service i connecting to service i+1.
// Each gets a network of its own, none from Docker's default pools, and
// its container is attached to that network only; from inside every
// container the next service answers by name and the one after it does
// not resolve; removing the services removes all 100 networks.
func TestCLIServiceIsolationAtScale(t *testing.T) {
	needEngine(t)
	const n = 100
	s := mustStartServer(t)
	start := time.Now()
	for i := range n {
		mustCLI(t, s, 0, scaleServiceSpec(env.refs["v1"], i, n), "apply", "--detach", "-")
	}
	c := wire.NewClient([]string{s.addr}, nil)
	ctx := context.Background()
	containerOf := map[string]string{}
	waitFor(t, 10*time.Minute, fmt.Sprintf("%d services with a healthy replica and resolved connections", n), func() bool {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		all, err := c.Services(sctx)
		if err != nil {
			return false
		}
		for _, st := range all {
			if containerOf[st.Service] != "" {
				continue
			}
			full, err := c.Status(sctx, st.Service, 0, 0)
			if err != nil || full.State != "running" || len(full.Connections) != 1 || !full.Connections[0].Resolved {
				continue
			}
			if ids := currentContainerIDs(full); len(ids) == 1 {
				for id := range ids {
					containerOf[st.Service] = id
				}
			}
		}
		return len(containerOf) == n
	})
	t.Logf("%d services applied and running in %s", n, time.Since(start).Round(time.Second))

	nets := serviceNetworksOf(t, s.hostID)
	if len(nets) != n {
		t.Fatalf("%d service networks on the host, want %d", len(nets), n)
	}
	defaults := []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16")}
	pool := netip.MustParsePrefix(deployer.DefaultSubnetPool)
	subnets := map[netip.Prefix]string{}
	for svc, nw := range nets {
		if len(nw.IPAM.Config) != 1 {
			t.Errorf("%s's network %s: IPAM %+v, want one subnet", svc, nw.Name, nw.IPAM.Config)
			continue
		}
		sub, err := netip.ParsePrefix(nw.IPAM.Config[0].Subnet)
		if err != nil || !pool.Contains(sub.Addr()) {
			t.Errorf("%s's network %s: subnet %q is not from the pool %s", svc, nw.Name, nw.IPAM.Config[0].Subnet, pool)
		}
		for _, d := range defaults {
			if d.Overlaps(sub) {
				t.Errorf("%s's network %s: subnet %s is in Docker's default pool %s", svc, nw.Name, sub, d)
			}
		}
		if other, taken := subnets[sub]; taken {
			t.Errorf("%s and %s share the subnet %s", other, svc, sub)
		}
		subnets[sub] = svc
	}
	for svc, id := range containerOf {
		inspect, err := env.docker.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var attached []string
		for name := range inspect.NetworkSettings.Networks {
			attached = append(attached, name)
		}
		if len(attached) != 1 || attached[0] != nets[svc].Name {
			t.Errorf("%s's container is attached to %v, want only %s", svc, attached, nets[svc].Name)
		}
	}

	// From inside every container: the declared connection answers by
	// name, the undeclared one does not resolve.
	start = time.Now()
	for i := range n {
		id := containerOf[scaleName(i)]
		next, after := scaleName((i+1)%n), scaleName((i+2)%n)
		if code, out := execIn(t, id, "-fetch", "http://"+next+":8080/"); code != 0 {
			t.Errorf("%s -> %s:8080 (declared): exit %d\n%s", scaleName(i), next, code, out)
		}
		if code, out := execIn(t, id, "-resolve", after); code != 1 {
			t.Errorf("%s resolves %s (not declared): exit %d, want 1\n%s", scaleName(i), after, code, out)
		}
	}
	t.Logf("%d declared connections answered and %d undeclared names unknown, checked from inside the containers in %s", n, n, time.Since(start).Round(time.Second))

	start = time.Now()
	for i := range n {
		if err := c.Remove(ctx, scaleName(i)); err != nil {
			t.Fatalf("rm %s: %v", scaleName(i), err)
		}
	}
	waitFor(t, 5*time.Minute, "every service network removed", func() bool { return len(serviceNetworksOf(t, s.hostID)) == 0 })
	t.Logf("%d services removed, networks and all, in %s", n, time.Since(start).Round(time.Second))
}

// hopLatency runs webapp's repeated fetch of url inside a container for d
// and returns its latency lines (p50 and p99, in microseconds, on kept
// and on new connections).
func hopLatency(b *testing.B, id, url string, d time.Duration) map[string][2]float64 {
	b.Helper()
	code, out := execIn(b, id, "-fetch", url, "-repeat", d.String())
	if code != 0 {
		b.Fatalf("%s from %s: exit %d\n%s", url, short(id), code, out)
	}
	got := map[string][2]float64{}
	for _, line := range strings.Split(out, "\n") {
		var kind string
		var p50, p99, n float64
		if _, err := fmt.Sscanf(line, "latency_%s p50=%g p99=%g n=%g", &kind, &p50, &p99, &n); err == nil {
			got[strings.TrimSuffix(kind, "_us")] = [2]float64{p50, p99}
		}
	}
	if len(got) != 2 {
		b.Fatalf("no latency lines from webapp:\n%s", out)
	}
	return got
}

// BenchmarkServiceHop measures what a connection between services costs
// (docs/networking.md "What it costs"): web calling api:8080 by name,
// through the host's proxy, against one api replica calling the other by
// its container IP on their shared network (the direct path, with no
// proxy). Same host, same image, same client: one GET every 10 ms for 10 s,
// alternately on a kept connection and on a new one. Reported in
// microseconds: p50 and p99 of each path and kind, and the added p50/p99.
func BenchmarkServiceHop(b *testing.B) {
	needEngine(b)
	s := mustStartBenchServer(b)
	c := wire.NewClient([]string{s.addr}, nil)
	ctx := context.Background()
	for _, spec := range []string{
		serviceSpec("api", env.refs["v1"], 2, "expose: [8080]\n"),
		serviceSpec("web", env.refs["v1"], 1, "connects_to: [api]\n"),
	} {
		out, err := c.Apply(ctx, []byte(spec))
		if err != nil {
			b.Fatal(err)
		}
		svc := strings.TrimPrefix(strings.SplitN(spec, "\n", 2)[0], "service: ")
		if st := waitOutcome(b, c, svc, out.Revision); st.RevisionState != state.RevisionSucceeded {
			b.Fatalf("%s: %s", svc, st.RevisionState)
		}
	}
	ids := func(svc string) []string {
		st, err := c.Status(ctx, svc, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		var out []string
		for id := range currentContainerIDs(st) {
			out = append(out, id)
		}
		return out
	}
	web, apis := ids("web"), ids("api")
	if len(web) != 1 || len(apis) != 2 {
		b.Fatalf("web %d, api %d replicas", len(web), len(apis))
	}
	peer, _ := containerAddr(b, apis[1])
	waitFor(b, 30*time.Second, "web to reach api by name", func() bool {
		code, _ := execIn(b, web[0], "-fetch", "http://api:8080/")
		return code == 0
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		proxied := hopLatency(b, web[0], "http://api:8080/", 10*time.Second)
		direct := hopLatency(b, apis[0], "http://"+net.JoinHostPort(peer, "8080")+"/", 10*time.Second)
		for _, kind := range []string{"kept", "new"} {
			b.ReportMetric(direct[kind][0], "direct-"+kind+"-p50-us")
			b.ReportMetric(direct[kind][1], "direct-"+kind+"-p99-us")
			b.ReportMetric(proxied[kind][0], "proxied-"+kind+"-p50-us")
			b.ReportMetric(proxied[kind][1], "proxied-"+kind+"-p99-us")
			b.ReportMetric(proxied[kind][0]-direct[kind][0], "added-"+kind+"-p50-us")
			b.ReportMetric(proxied[kind][1]-direct[kind][1], "added-"+kind+"-p99-us")
		}
	}
}
