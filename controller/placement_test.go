package controller

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller/rollout"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// placementCluster is a literal cluster for placement tests: the hosts,
// every replica record, and the revisions whose ports those replicas publish.
type placementCluster struct {
	hosts     []state.Host
	replicas  []state.Replica
	revisions []state.Revision
}

func (c *placementCluster) Hosts() []state.Host { return c.hosts }

func (c *placementCluster) EachHostReplica(host string, fn func(state.Replica)) {
	for _, r := range c.replicas {
		if r.Host == host {
			fn(r)
		}
	}
}

func (c *placementCluster) Revision(service string, number int) (state.Revision, bool) {
	for _, rev := range c.revisions {
		if rev.Service == service && rev.Number == number {
			return rev, true
		}
	}
	return state.Revision{}, false
}

func (c *placementCluster) serviceReplicas(service string) []state.Replica {
	var out []state.Replica
	for _, r := range c.replicas {
		if r.Service == service {
			out = append(out, r)
		}
	}
	return out
}

// place runs one placement of spec's service on a fresh load of the cluster.
func (c *placementCluster) place(spec specs.Spec, slots ...int) (map[int]string, []string) {
	placed, reasons, _ := loadOf(c).place(spec, c.serviceReplicas(spec.Service), slots, nil)
	return placed, reasons
}

// readyHost is a ready host with labels written "key=value".
func readyHost(id string, labels ...string) state.Host {
	h := state.Host{ID: id, State: state.HostReady}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		if h.Labels == nil {
			h.Labels = map[string]string{}
		}
		h.Labels[k] = v
	}
	return h
}

func downHost(id string, labels ...string) state.Host {
	h := readyHost(id, labels...)
	h.State = state.HostDown
	return h
}

// running is a replica desired running; revision 1 unless the test says.
func running(service string, slot int, host string) state.Replica {
	return state.Replica{
		ID: fmt.Sprintf("%s-%d-%s", service, slot, host), Service: service, Slot: slot,
		Revision: 1, Host: host, Desired: state.DesiredRunning,
	}
}

func stopped(service string, slot int, host string) state.Replica {
	r := running(service, slot, host)
	r.ID += "-stopped"
	r.Desired = state.DesiredStopped
	return r
}

func webSpec(placement specs.Placement) specs.Spec {
	return specs.Spec{Service: "web", Replicas: 3, Placement: placement, Update: specs.Update{Order: specs.OrderStopFirst}}
}

// revisionWithPorts is revision 1 of service, publishing ports.
func revisionWithPorts(service string, ports ...string) state.Revision {
	rev := state.Revision{Service: service, Number: 1, Spec: specs.Spec{Service: service}}
	for _, text := range ports {
		p, err := specs.ParsePort(text)
		if err != nil {
			panic(err) // a typo in a test table
		}
		rev.Spec.Ports = append(rev.Spec.Ports, p)
	}
	return rev
}

func mustPlaceAll(t *testing.T, c *placementCluster, spec specs.Spec, slots ...int) map[int]string {
	t.Helper()
	placed, reasons := c.place(spec, slots...)
	if len(reasons) > 0 || len(placed) != len(slots) {
		t.Fatalf("place(%v) = %v, reasons %q; want every slot placed", slots, placed, reasons)
	}
	return placed
}

func mustFailToPlace(t *testing.T, c *placementCluster, spec specs.Spec, slots ...int) []string {
	t.Helper()
	placed, reasons := c.place(spec, slots...)
	if len(placed) != 0 || len(reasons) == 0 {
		t.Fatalf("place(%v) = %v, reasons %q; want no slot placed and a reason", slots, placed, reasons)
	}
	return reasons
}

func TestPlaceSpreads(t *testing.T) {
	tests := []struct {
		name    string
		cluster placementCluster
		slots   []int
		want    map[int]string
		because string
	}{
		{
			name:    "empty hosts in ID order, then round again",
			cluster: placementCluster{hosts: []state.Host{readyHost("h3"), readyHost("h1"), readyHost("h2")}},
			slots:   []int{0, 1, 2, 3, 4},
			want:    map[int]string{0: "h1", 1: "h2", 2: "h3", 3: "h1", 4: "h2"},
			because: "ties on both counts go to the lowest ID, and a placed replica counts for the next slot",
		},
		{
			name: "fewest of this service first, then fewest in all",
			cluster: placementCluster{
				hosts: []state.Host{readyHost("h1"), readyHost("h2"), readyHost("h3")},
				replicas: []state.Replica{
					running("web", 0, "h1"),
					running("db", 0, "h2"), running("db", 1, "h2"),
					running("db", 2, "h3"),
					// Stopped replicas hold nothing.
					stopped("web", 1, "h3"), stopped("db", 3, "h3"),
				},
			},
			slots:   []int{1, 2},
			want:    map[int]string{1: "h3", 2: "h2"},
			because: "h1 has web already; h3 has fewer replicas in all than h2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustPlaceAll(t, &tt.cluster, webSpec(specs.Placement{}), tt.slots...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("placed %v, want %v: %s", got, tt.want, tt.because)
			}
		})
	}
}

// Placing more slots than eligible hosts shows exactly which hosts are
// eligible: the spread puts a replica on every one of them.
func TestPlaceConstraints(t *testing.T) {
	hosts := []state.Host{
		readyHost("h1", "zone=a", "disk=ssd"),
		readyHost("h2", "zone=a", "disk=hdd"),
		readyHost("h3", "zone=b", "disk=ssd", "gpu=yes"),
		readyHost("h4"), // no labels at all
	}
	tests := []struct {
		constraints []string
		eligible    []string
	}{
		{nil, []string{"h1", "h2", "h3", "h4"}},
		{[]string{"zone == a"}, []string{"h1", "h2"}},
		{[]string{"zone != a"}, []string{"h3", "h4"}}, // h4 has no zone: != matches
		{[]string{"disk != hdd"}, []string{"h1", "h3", "h4"}},
		{[]string{"gpu == yes"}, []string{"h3"}}, // == on a missing label never matches
		{[]string{"zone == a", "disk != hdd"}, []string{"h1"}},
		{[]string{"node.id == h2"}, []string{"h2"}},
		{[]string{"host.id != h1", "zone != b"}, []string{"h2", "h4"}},
		{[]string{"zone==b"}, []string{"h3"}}, // as a Go-built spec may write it
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.constraints, ","), func(t *testing.T) {
			c := &placementCluster{hosts: hosts}
			placed := mustPlaceAll(t, c, webSpec(specs.Placement{Constraints: tt.constraints}), 0, 1, 2, 3, 4, 5, 6, 7)
			used := slices.Sorted(maps.Values(placed))
			used = slices.Compact(used)
			if !reflect.DeepEqual(used, tt.eligible) {
				t.Errorf("replicas went to %v (%v), want exactly %v", used, placed, tt.eligible)
			}
		})
	}
}

func TestPlaceMaxPerHost(t *testing.T) {
	t.Run("counts the replicas placed in the same call", func(t *testing.T) {
		c := &placementCluster{hosts: []state.Host{readyHost("h1"), readyHost("h2"), readyHost("h3")}}
		placed, reasons := c.place(webSpec(specs.Placement{MaxPerHost: 1}), 0, 1, 2, 3)
		if want := map[int]string{0: "h1", 1: "h2", 2: "h3"}; !reflect.DeepEqual(placed, want) {
			t.Errorf("placed %v, want %v", placed, want)
		}
		want := []string{"slot 3 cannot be placed: 3 hosts: 3 already run max_per_host 1 replica of web; add hosts or raise max_per_host"}
		if !reflect.DeepEqual(reasons, want) {
			t.Errorf("reasons %q, want %q", reasons, want)
		}
	})
	t.Run("counts every revision desired running, not stopped ones", func(t *testing.T) {
		old := func(r state.Replica) state.Replica { r.Revision = 7; return r }
		c := &placementCluster{
			hosts: []state.Host{readyHost("h1"), readyHost("h2")},
			replicas: []state.Replica{
				old(running("web", 0, "h1")), running("web", 1, "h1"),
				old(running("web", 2, "h2")), stopped("web", 3, "h2"), stopped("web", 4, "h2"),
				running("db", 0, "h2"), running("db", 1, "h2"), // other services do not count
			},
		}
		placed, reasons := c.place(webSpec(specs.Placement{MaxPerHost: 2}), 3, 4)
		if want := map[int]string{3: "h2"}; !reflect.DeepEqual(placed, want) {
			t.Errorf("placed %v, want %v", placed, want)
		}
		if want := "slot 4 cannot be placed: 2 hosts: 2 already run max_per_host 2 replicas of web"; len(reasons) != 1 || !strings.HasPrefix(reasons[0], want) {
			t.Errorf("reasons %q, want one starting %q", reasons, want)
		}
	})
	t.Run("start-first replacement needs a spare host", func(t *testing.T) {
		c := &placementCluster{
			hosts:    []state.Host{readyHost("h1"), readyHost("h2")},
			replicas: []state.Replica{running("web", 0, "h1"), running("web", 1, "h2")},
		}
		spec := webSpec(specs.Placement{MaxPerHost: 1})
		spec.Update.Order = specs.OrderStartFirst
		reasons := mustFailToPlace(t, c, spec, 0)
		want := "slot 0 cannot be placed: 2 hosts: 2 already run max_per_host 1 replica of web; " +
			"update.order start-first keeps the old replica running until its replacement is healthy, so with max_per_host a rollout needs a spare host; " +
			"add hosts, raise max_per_host or use update.order: stop-first"
		if !reflect.DeepEqual(reasons, []string{want}) {
			t.Errorf("reasons %q,\nwant %q", reasons, want)
		}

		c.hosts = append(c.hosts, readyHost("h3"))
		if placed := mustPlaceAll(t, c, spec, 0); placed[0] != "h3" {
			t.Errorf("with a spare host, slot 0 went to %v, want h3", placed)
		}
	})
	t.Run("zero is no limit", func(t *testing.T) {
		c := &placementCluster{hosts: []state.Host{readyHost("h1")}}
		mustPlaceAll(t, c, webSpec(specs.Placement{}), 0, 1, 2)
	})
}

func TestPublishedPortClashes(t *testing.T) {
	tests := []struct {
		used, wanted string
		clash        bool
	}{
		{"127.0.0.1:8080:80", "127.0.0.1:8080:81", true},
		{"127.0.0.1:8080:80", "127.0.0.2:8080:80", false},
		{"127.0.0.1:8080:80", "127.0.0.1:8081:80", false},
		{"127.0.0.1:8080:80/tcp", "127.0.0.1:8080:80/udp", false},
		{"0.0.0.0:8080:80", "127.0.0.1:8080:80", true},
		{"127.0.0.1:8080:80", "0.0.0.0:8080:80", true},
		{"[::]:8080:80", "10.0.0.1:8080:80", true},
		{"[::1]:8080:80", "[::1]:8080:81", true},
		{"[::1]:8080:80", "127.0.0.1:8080:80", false},
		{"[::ffff:127.0.0.1]:8080:80", "127.0.0.1:8080:80", true},
	}
	for _, tt := range tests {
		used, err := specs.ParsePort(tt.used)
		if err != nil {
			t.Fatal(err)
		}
		wanted, err := specs.ParsePort(tt.wanted)
		if err != nil {
			t.Fatal(err)
		}
		if got := publishedPortOf(wanted).clashes(publishedPortOf(used)); got != tt.clash {
			t.Errorf("%s clashes with %s in use = %v, want %v", tt.wanted, tt.used, got, tt.clash)
		}
	}
}

func TestPlacePortConflicts(t *testing.T) {
	web := webSpec(specs.Placement{})
	web.Ports = revisionWithPorts("web", "8080:80").Spec.Ports
	c := &placementCluster{
		hosts:     []state.Host{readyHost("h1"), readyHost("h2"), readyHost("h3")},
		replicas:  []state.Replica{running("proxy", 0, "h1")},
		revisions: []state.Revision{revisionWithPorts("proxy", "0.0.0.0:8080:8080")},
	}
	placed, reasons := c.place(web, 0, 1, 2)
	// h1's proxy takes 8080 on every address; each web replica takes it on
	// its own host for the next slot.
	if want := map[int]string{0: "h2", 1: "h3"}; !reflect.DeepEqual(placed, want) {
		t.Errorf("placed %v, want %v", placed, want)
	}
	// The port named is the spec's, so every host counts under one cause.
	want := []string{"slot 2 cannot be placed: 3 hosts: 3 have host port 127.0.0.1:8080/tcp in use; add hosts or free the port"}
	if !reflect.DeepEqual(reasons, want) {
		t.Errorf("reasons %q, want %q", reasons, want)
	}

	// Another address or protocol on the same port does not clash.
	other := webSpec(specs.Placement{})
	other.Service = "metrics"
	other.Ports = revisionWithPorts("metrics", "127.0.0.2:8080:80", "127.0.0.1:8080:80/udp").Spec.Ports
	loopbackProxy := &placementCluster{
		hosts:     []state.Host{readyHost("h1")},
		replicas:  []state.Replica{running("proxy", 0, "h1")},
		revisions: []state.Revision{revisionWithPorts("proxy", "127.0.0.1:8080:8080/tcp")},
	}
	mustPlaceAll(t, loopbackProxy, other, 0)
}

func TestPlaceSkipsDownHosts(t *testing.T) {
	c := &placementCluster{
		hosts: []state.Host{downHost("h1"), readyHost("h2"), downHost("h3")},
		// A down host's replicas do not make it look busy or free.
		replicas: []state.Replica{running("web", 0, "h3")},
	}
	placed := mustPlaceAll(t, c, webSpec(specs.Placement{}), 1, 2)
	if want := map[int]string{1: "h2", 2: "h2"}; !reflect.DeepEqual(placed, want) {
		t.Errorf("placed %v, want %v (every slot on the only ready host)", placed, want)
	}

	c.hosts[1].State = state.HostDown
	reasons := mustFailToPlace(t, c, webSpec(specs.Placement{}), 1)
	if want := []string{"slot 1 cannot be placed: 3 hosts: 3 down; add hosts or bring the down hosts back"}; !reflect.DeepEqual(reasons, want) {
		t.Errorf("reasons %q, want %q", reasons, want)
	}
}

func TestPlaceReasons(t *testing.T) {
	startFirst := func(s specs.Spec) specs.Spec { s.Update.Order = specs.OrderStartFirst; return s }
	withPort := func(s specs.Spec) specs.Spec {
		s.Ports = revisionWithPorts("web", "0.0.0.0:443:443").Spec.Ports
		return s
	}
	tests := []struct {
		name    string
		cluster placementCluster
		spec    specs.Spec
		slots   []int
		want    []string
	}{
		{
			name:  "no host at all",
			spec:  webSpec(specs.Placement{}),
			slots: []int{0},
			want:  []string{"slot 0 cannot be placed: no ready host: none has joined the cluster yet; start an agent"},
		},
		{
			name: "one cause per host, the first check it fails",
			cluster: placementCluster{
				hosts:    []state.Host{downHost("h1", "zone=a"), readyHost("h2", "zone=b"), readyHost("h3", "zone=a")},
				replicas: []state.Replica{running("web", 0, "h3")},
			},
			spec:  webSpec(specs.Placement{Constraints: []string{"zone == a"}, MaxPerHost: 1}),
			slots: []int{2},
			want: []string{`slot 2 cannot be placed: 3 hosts: 1 down, 1 fails constraint "zone == a", 1 already runs max_per_host 1 replica of web; ` +
				"add hosts, bring the down hosts back, relax the constraint or raise max_per_host"},
		},
		{
			name: "each failed constraint counted apart, in spec order",
			cluster: placementCluster{hosts: []state.Host{
				readyHost("h1", "zone=b", "disk=ssd"), readyHost("h2", "zone=a", "disk=hdd"), readyHost("h3", "disk=hdd"),
			}},
			spec:  webSpec(specs.Placement{Constraints: []string{"zone == a", "disk != hdd"}}),
			slots: []int{0},
			want: []string{`slot 0 cannot be placed: 3 hosts: 2 fail constraint "zone == a", 1 fails constraint "disk != hdd"; ` +
				"add hosts or relax the constraints"},
		},
		{
			name:    "slots failing alike share a reason",
			cluster: placementCluster{hosts: []state.Host{readyHost("h1")}},
			spec:    webSpec(specs.Placement{Constraints: []string{"node.id == h9"}}),
			slots:   []int{1, 2, 4},
			want:    []string{`slots 1, 2, 4 cannot be placed: 1 host: 1 fails constraint "node.id == h9"; add hosts or relax the constraint`},
		},
		{
			name: "port held by the replaced replica under start-first",
			cluster: placementCluster{
				hosts:     []state.Host{readyHost("h1")},
				replicas:  []state.Replica{running("web", 0, "h1")},
				revisions: []state.Revision{revisionWithPorts("web", "0.0.0.0:443:443")},
			},
			spec:  startFirst(withPort(webSpec(specs.Placement{}))),
			slots: []int{0, 1},
			want: []string{
				"slot 0 cannot be placed: 1 host: 1 has host port 0.0.0.0:443/tcp in use; " +
					"update.order start-first keeps the old replica and its host port until its replacement is healthy; add hosts or use update.order: stop-first",
				"slot 1 cannot be placed: 1 host: 1 has host port 0.0.0.0:443/tcp in use; add hosts or free the port",
			},
		},
		{
			name:    "a constraint that does not parse (a record written by hand)",
			cluster: placementCluster{hosts: []state.Host{readyHost("h1")}},
			spec:    webSpec(specs.Placement{Constraints: []string{"zone = a"}}),
			slots:   []int{0, 1},
			want:    []string{`slots 0, 1 cannot be placed: placement constraint "zone = a" is invalid (` + mustConstraintError("zone = a") + `); fix the spec`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reasons := mustFailToPlace(t, &tt.cluster, tt.spec, tt.slots...)
			if !reflect.DeepEqual(reasons, tt.want) {
				t.Errorf("reasons:\n%s\nwant:\n%s", strings.Join(reasons, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func mustConstraintError(text string) string {
	_, err := specs.ParseConstraint(text)
	if err == nil {
		panic(text + " parses")
	}
	return err.Error()
}

// The same cluster gives the same placement and reasons whatever order the
// hosts and replicas are listed in.
func TestPlaceIsDeterministic(t *testing.T) {
	hosts := []state.Host{
		readyHost("h1", "zone=a"), readyHost("h2", "zone=a"), readyHost("h3", "zone=b"),
		readyHost("h4", "zone=a"), downHost("h5", "zone=a"),
	}
	replicas := []state.Replica{running("web", 0, "h2"), running("db", 0, "h1"), running("db", 1, "h4")}
	spec := webSpec(specs.Placement{Constraints: []string{"zone == a"}, MaxPerHost: 1})
	slots := []int{1, 2, 3}

	var firstPlaced map[int]string
	var firstReasons []string
	for i, order := range permutations(len(hosts)) {
		c := &placementCluster{replicas: replicas}
		for _, j := range order {
			c.hosts = append(c.hosts, hosts[j])
		}
		if i%2 == 1 {
			c.replicas = slices.Clone(replicas)
			slices.Reverse(c.replicas)
		}
		placed, reasons := c.place(spec, slots...)
		if i == 0 {
			firstPlaced, firstReasons = placed, reasons
			if want := map[int]string{1: "h1", 2: "h4"}; !reflect.DeepEqual(placed, want) {
				t.Fatalf("placed %v, want %v", placed, want)
			}
			want := []string{`slot 3 cannot be placed: 5 hosts: 1 down, 1 fails constraint "zone == a", 3 already run max_per_host 1 replica of web; ` +
				"add hosts, bring the down hosts back, relax the constraint or raise max_per_host"}
			if !reflect.DeepEqual(reasons, want) {
				t.Fatalf("reasons %q, want %q", reasons, want)
			}
			continue
		}
		if !reflect.DeepEqual(placed, firstPlaced) || !reflect.DeepEqual(reasons, firstReasons) {
			t.Fatalf("host order %v: placed %v, reasons %q; first order gave %v, %q", order, placed, reasons, firstPlaced, firstReasons)
		}
	}
}

// permutations lists every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, rest := range permutations(n - 1) {
		for at := 0; at <= len(rest); at++ {
			p := slices.Insert(slices.Clone(rest), at, n-1)
			out = append(out, p)
		}
	}
	return out
}

// newClusterLoad reads hosts, their labels and the ports of the replicas
// they run from the state tables.
func TestNewClusterLoadReadsTables(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	store := state.NewStore()
	proxy := revisionWithPorts("proxy", "0.0.0.0:8080:8080")
	proxy.Ref, proxy.Fingerprint = "proxy@sha256:1", "fp-proxy"
	if _, err := store.ApplyRevision(1, state.ApplyRevisionCmd{Now: now, Revision: proxy}); err != nil {
		t.Fatal(err)
	}
	svc, _ := store.View().Service("proxy")
	if err := store.ApplyRolloutStep(2, state.RolloutStepCmd{
		Now: now, Service: "proxy", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
		Create: []state.Replica{{ID: "p0", Service: "proxy", Slot: 0, Revision: 1, Fingerprint: "fp-proxy", Host: "h1"}},
	}); err != nil {
		t.Fatal(err)
	}
	for i, h := range []state.HostReport{
		{Host: "h1", Labels: map[string]string{"zone": "a"}},
		{Host: "h2", Labels: map[string]string{"zone": "a"}},
		{Host: "h3", Labels: map[string]string{"zone": "b"}},
		{Host: "h4", Labels: map[string]string{"zone": "a"}},
	} {
		if err := store.ApplyHostReport(uint64(3+i), state.HostReportCmd{Now: now, Report: h}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.ApplySetHostState(7, state.SetHostStateCmd{Now: now, Host: "h4", State: state.HostDown, ExpectSeenAt: now}); err != nil {
		t.Fatal(err)
	}

	load := newClusterLoad(store.View())
	var summary []string
	for _, h := range load.hosts {
		summary = append(summary, fmt.Sprintf("%s ready=%v zone=%s total=%d ports=%d", h.id, h.ready, h.labels["zone"], h.total, len(h.ports)))
	}
	want := []string{"h1 ready=true zone=a total=1 ports=1", "h2 ready=true zone=a total=0 ports=0", "h3 ready=true zone=b total=0 ports=0", "h4 ready=false zone=a total=0 ports=0"}
	if !reflect.DeepEqual(summary, want) {
		t.Fatalf("load:\n%s\nwant:\n%s", strings.Join(summary, "\n"), strings.Join(want, "\n"))
	}

	web := webSpec(specs.Placement{Constraints: []string{"zone == a"}})
	web.Ports = revisionWithPorts("web", "8080:80").Spec.Ports
	placed, reasons, _ := load.place(web, store.View().ServiceReplicas("web"), []int{0, 1}, nil)
	if want := map[int]string{0: "h2"}; !reflect.DeepEqual(placed, want) {
		t.Errorf("placed %v, want %v (h1's port is taken, h3 is in zone b)", placed, want)
	}
	if len(reasons) != 1 || !strings.HasPrefix(reasons[0], `slot 1 cannot be placed: 4 hosts: 1 down, 1 fails constraint "zone == a", 2 have host port 127.0.0.1:8080/tcp in use`) {
		t.Errorf("reasons %q", reasons)
	}
}

// require_userns: only hosts whose engine runs with userns-remap take
// replicas, and a slot that cannot be placed says so.
func TestPlacementRequiresUserns(t *testing.T) {
	cl := &clusterLoad{requireUserns: true, hosts: []*hostLoad{
		{id: "plain", ready: true, ports: map[publishedPort]int{}},
		{id: "remapped", ready: true, userns: true, ports: map[publishedPort]int{}},
	}}
	spec := specs.Spec{Service: "web", Replicas: 2}
	placed, reasons, _ := cl.place(spec, nil, []int{0}, nil)
	if placed[0] != "remapped" || len(reasons) != 0 {
		t.Fatalf("placed %v, reasons %v; want slot 0 on the userns host", placed, reasons)
	}
	cl.hosts = cl.hosts[:1]
	placed, reasons, _ = cl.place(spec, nil, []int{1}, nil)
	if len(placed) != 0 || len(reasons) != 1 || !strings.Contains(reasons[0], "require_userns") {
		t.Fatalf("placed %v, reasons %v; want a refusal naming require_userns", placed, reasons)
	}
}

// A start-first replacement that only its own slot's room can take is
// reported as NoRoom, with the host and the room: max_per_host, a host
// port, or a constraint only the old replica's host meets. Room held by
// another slot, or a host the slot cannot use anyway, is not.
func TestPlaceFindsOwnRoom(t *testing.T) {
	startFirst := func(p specs.Placement, ports ...string) specs.Spec {
		spec := webSpec(p)
		spec.Update.Order = specs.OrderStartFirst
		spec.Ports = revisionWithPorts("web", ports...).Spec.Ports
		return spec
	}
	noRoomOf := func(c *placementCluster, spec specs.Spec, slot int) map[int]rollout.NoRoom {
		t.Helper()
		placed, reasons, noRoom := loadOf(c).place(spec, c.serviceReplicas("web"), []int{slot}, nil)
		if len(placed) != 0 || len(reasons) != 1 {
			t.Fatalf("placed %v reasons %q, want slot %d unplaced", placed, reasons, slot)
		}
		return noRoom
	}
	three := []state.Host{readyHost("h1", "zone=a"), readyHost("h2", "zone=b"), readyHost("h3", "zone=c")}
	t.Run("max_per_host on three hosts", func(t *testing.T) {
		c := &placementCluster{hosts: three, replicas: []state.Replica{running("web", 0, "h1"), running("web", 1, "h2"), running("web", 2, "h3")}}
		got := noRoomOf(c, startFirst(specs.Placement{MaxPerHost: 1}), 1)
		if want := map[int]rollout.NoRoom{1: {Host: "h2", Cause: "max_per_host 1"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("noRoom %v, want %v", got, want)
		}
	})
	t.Run("a host port", func(t *testing.T) {
		c := &placementCluster{hosts: three[:1], replicas: []state.Replica{running("web", 0, "h1")},
			revisions: []state.Revision{revisionWithPorts("web", "80:80")}}
		got := noRoomOf(c, startFirst(specs.Placement{}, "80:80"), 0)
		if want := map[int]rollout.NoRoom{0: {Host: "h1", Cause: "host port 127.0.0.1:80/tcp"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("noRoom %v, want %v", got, want)
		}
	})
	t.Run("a constraint only the old host meets", func(t *testing.T) {
		c := &placementCluster{hosts: three, replicas: []state.Replica{running("web", 0, "h1")}}
		got := noRoomOf(c, startFirst(specs.Placement{MaxPerHost: 1, Constraints: []string{"zone == a"}}), 0)
		if want := map[int]rollout.NoRoom{0: {Host: "h1", Cause: "max_per_host 1"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("noRoom %v, want %v", got, want)
		}
	})
	t.Run("the old host fails the new constraint: no own room", func(t *testing.T) {
		c := &placementCluster{hosts: three[:2], replicas: []state.Replica{running("web", 0, "h1"), running("web", 1, "h2")}}
		if got := noRoomOf(c, startFirst(specs.Placement{MaxPerHost: 1, Constraints: []string{"zone == b"}}), 0); got != nil {
			t.Fatalf("noRoom %v, want none: h1 fails the constraint, h2 is slot 1's", got)
		}
	})
	t.Run("a stopping container holds its host until confirmed", func(t *testing.T) {
		draining := stopped("web", 0, "h1")
		draining.Status.State = state.ReplicaHealthy
		c := &placementCluster{hosts: three[:1], replicas: []state.Replica{draining}}
		got := noRoomOf(c, startFirst(specs.Placement{MaxPerHost: 1}), 0)
		if want := map[int]rollout.NoRoom{0: {Host: "h1", Cause: "max_per_host 1"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("noRoom %v, want %v", got, want)
		}
		_, reasons, _ := loadOf(c).place(startFirst(specs.Placement{MaxPerHost: 1}), c.serviceReplicas("web"), []int{0}, nil)
		if want := "slot 0 cannot be placed: waiting for replica web-0-h1-stopped to stop on h1 (max_per_host 1)"; !slices.Equal(reasons, []string{want}) {
			t.Fatalf("reasons %q, want %q", reasons, want)
		}
		c.replicas[0].Status.State = state.ReplicaStopped
		if placed := mustPlaceAll(t, c, startFirst(specs.Placement{MaxPerHost: 1}), 0); placed[0] != "h1" {
			t.Fatalf("placed %v once the stop is confirmed, want h1", placed)
		}
	})
	t.Run("a pinned slot goes to its host when it can", func(t *testing.T) {
		c := &placementCluster{hosts: three}
		placed, _, _ := loadOf(c).place(startFirst(specs.Placement{MaxPerHost: 1}), nil, []int{0, 1}, map[int]string{1: "h3"})
		if want := map[int]string{0: "h1", 1: "h3"}; !reflect.DeepEqual(placed, want) {
			t.Fatalf("placed %v, want %v", placed, want)
		}
	})
	t.Run("place does not change the load until commit", func(t *testing.T) {
		c := &placementCluster{hosts: three[:1]}
		load := loadOf(c)
		spec := startFirst(specs.Placement{}, "80:80")
		for range 2 {
			if placed, _, _ := load.place(spec, nil, []int{0}, nil); placed[0] != "h1" {
				t.Fatalf("placed %v, want h1", placed)
			}
		}
		load.commit(spec, map[int]string{0: "h1"})
		if placed, _, _ := load.place(spec, nil, []int{1}, nil); len(placed) != 0 {
			t.Fatalf("placed %v after commit took port 80 on h1", placed)
		}
	})
}

// TestPlaceHeapPicksWhatAScanPicks: unpinned slots are placed from a heap
// of the candidates (issue 12); a slot pinned to a host that does not
// exist is placed by the scan of every host that came before it. On random
// clusters (down and draining hosts, other services' load, max_per_host,
// a published port) both give the same hosts and the same reasons.
func TestPlaceHeapPicksWhatAScanPicks(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 34))
	for round := range 300 {
		c := &placementCluster{revisions: []state.Revision{revisionWithPorts("web", "8080:80"), revisionWithPorts("db")}}
		nHosts := 1 + rng.IntN(12)
		for i := range nHosts {
			h := readyHost(fmt.Sprintf("h%02d", i))
			switch rng.IntN(8) {
			case 0:
				h.State = state.HostDown
			case 1:
				h.Availability = state.HostDrain
			}
			c.hosts = append(c.hosts, h)
			for j := range rng.IntN(4) {
				c.replicas = append(c.replicas, running("db", 100*i+j, h.ID))
			}
			if rng.IntN(3) == 0 {
				c.replicas = append(c.replicas, running("web", 50+i, h.ID))
			}
		}
		spec := webSpec(specs.Placement{MaxPerHost: rng.IntN(4)})
		if rng.IntN(4) == 0 {
			spec.Ports = revisionWithPorts("web", "8080:80").Spec.Ports
		}
		slots := make([]int, 1+rng.IntN(20))
		nowhere := map[int]string{}
		for i := range slots {
			slots[i] = i
			nowhere[i] = "no-such-host"
		}
		heapPlaced, heapReasons, _ := loadOf(c).place(spec, c.serviceReplicas("web"), slots, nil)
		scanPlaced, scanReasons, _ := loadOf(c).place(spec, c.serviceReplicas("web"), slots, nowhere)
		if !reflect.DeepEqual(heapPlaced, scanPlaced) || !reflect.DeepEqual(heapReasons, scanReasons) {
			t.Fatalf("round %d: heap placed %v %q, scan placed %v %q", round, heapPlaced, heapReasons, scanPlaced, scanReasons)
		}
	}
}
