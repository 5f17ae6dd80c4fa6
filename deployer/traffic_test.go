package deployer

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deployer/proxy"
	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/hashicorp/go-hclog"
)

// TestIngressDesiredCanaries: the cluster's splits and every replica's
// side reach the proxy's Desired: remote replicas as hop targets with
// their flag, local ones with the flag the table lists for them; a local
// replica of a split service the table does not list yet gets no request
// (its side is unknown), one it listed before keeps its side; without
// the split, nothing is held back.
func TestIngressDesiredCanaries(t *testing.T) {
	g := newIngressRunner(IngressConfig{Source: &fixedIngress{}}, "h1", hclog.NewNullLogger())
	table := &wire.IngressTable{
		Backends: []wire.IngressBackend{
			{Service: "web", Replica: "r1", Host: "h1", ProxyAddr: "10.0.0.1:7000", Ports: []int{80}, Canary: true},
			{Service: "web", Replica: "r2", Host: "h2", ProxyAddr: "10.0.0.2:7000", Ports: []int{80}, Canary: true},
			{Service: "web", Replica: "r3", Host: "h1", ProxyAddr: "10.0.0.1:7000", Ports: []int{80}},
			{Service: "web", Replica: "r5", Host: "h2", ProxyAddr: "10.0.0.2:7000", Ports: []int{80}},
		},
		Canaries: []wire.CanarySplit{{Service: "web", Weight: 0.1}},
	}
	g.cluster = table
	local := func(replica string) localTarget {
		return localTarget{service: "web", replica: replica, container: "c" + replica, ip: "172.30.0.2", ports: []int{80}, healthy: true}
	}
	g.local = []localTarget{local("r1"), local("r3"), local("r4")}
	type side struct{ healthy, canary bool }
	sides := func(want proxy.Desired) map[string]side {
		out := map[string]side{}
		for _, tg := range want.Targets {
			out[replicaOfTarget(tg.ID)] = side{tg.Healthy, tg.Canary}
		}
		return out
	}

	want := g.desired()
	if want.Canaries["web"] != 0.1 || len(want.Canaries) != 1 {
		t.Fatalf("canaries %v, want web at 0.1", want.Canaries)
	}
	expect := map[string]side{"r1": {true, true}, "r2": {true, true}, "r3": {true, false}, "r4": {false, false}, "r5": {true, false}}
	if got := sides(want); !maps.Equal(got, expect) {
		t.Fatalf("targets (healthy, canary) %v, want %v", got, expect)
	}

	// r1 leaves the table (late heartbeat): it keeps its side here.
	g.cluster = &wire.IngressTable{Backends: table.Backends[1:], Canaries: table.Canaries}
	if got := sides(g.desired()); got["r1"] != (side{true, true}) || got["r4"] != (side{false, false}) {
		t.Fatalf("after r1 left the table: %v, want r1 still healthy on the canary side, r4 held back", got)
	}
	// The split ends: every healthy local replica serves.
	g.cluster = &wire.IngressTable{Backends: table.Backends}
	want = g.desired()
	if len(want.Canaries) != 0 || sides(want)["r4"] != (side{true, false}) || len(g.sides) != 0 {
		t.Fatalf("without a split: canaries %v, targets %v, sides kept %v", want.Canaries, sides(want), g.sides)
	}
}

// takeQueue is a figures source that hands out queued takes, then empty
// ones.
type takeQueue struct {
	mu    sync.Mutex
	queue []map[string]traffic.Figures
	takes int
}

func (q *takeQueue) push(m map[string]traffic.Figures) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.queue = append(q.queue, m)
}

func (q *takeQueue) take() map[string]traffic.Figures {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.takes++
	if len(q.queue) == 0 {
		return nil
	}
	m := q.queue[0]
	q.queue = q.queue[1:]
	return m
}

func (q *takeQueue) drained() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue) == 0
}

// TestTrafficShipper: figures go out by replica (a replica's targets
// summed), nothing is sent for an empty take, and reports the controller
// refuses are dropped (not resent with the next) with one warning.
func TestTrafficShipper(t *testing.T) {
	ctrl := newFakeController("h1")
	q := &takeQueue{}
	logs := &lockedBuffer{}
	s := &trafficShipper{host: "h1", ctrl: ctrl, take: q.take, interval: 5 * time.Millisecond,
		log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	q.push(map[string]traffic.Figures{
		"r1/aaa": {Requests: 2, Errors: 1, Latency: map[int]uint64{3: 1}},
		"r1/bbb": {Requests: 1, Latency: map[int]uint64{3: 1}},
		"r2":     {Requests: 4},
	})
	ctrl.waitFor(t, "the first traffic report", func(f *fakeController) bool { return len(f.traffic) == 1 })
	waitUntil(t, "a few empty takes", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.takes >= 5 })
	ctrl.mu.Lock()
	got := ctrl.traffic
	ctrl.mu.Unlock()
	r1 := got[0].Replicas["r1"]
	if len(got) != 1 || got[0].Host != "h1" || len(got[0].Replicas) != 2 || r1.Requests != 3 || r1.Errors != 1 || r1.Latency[3] != 2 || got[0].Replicas["r2"].Requests != 4 {
		t.Fatalf("reports %+v, want one from h1: r1 3 requests (1 error, 2 in bucket 3), r2 4", got)
	}

	ctrl.setDown(true)
	for range 3 {
		q.push(map[string]traffic.Figures{"r1/aaa": {Requests: 100}})
	}
	waitUntil(t, "the refused reports", q.drained)
	ctrl.setDown(false)
	q.push(map[string]traffic.Figures{"r1/aaa": {Requests: 7}})
	ctrl.waitFor(t, "the report after the outage", func(f *fakeController) bool { return len(f.traffic) == 2 })
	ctrl.mu.Lock()
	after := ctrl.traffic[1]
	ctrl.mu.Unlock()
	if after.Replicas["r1"].Requests != 7 {
		t.Fatalf("after the outage: %+v, want 7 requests (the refused figures dropped)", after)
	}
	if n := strings.Count(logs.String(), "cannot send the proxy's traffic figures"); n != 1 {
		t.Fatalf("%d warnings for 3 refused reports, want 1:\n%s", n, logs)
	}
}

// TestIngressTrafficReachesTheController: requests through the agent's
// ingress port to a local replica are reported under the replica's ID
// (not the target's, which carries the container).
func TestIngressTrafficReachesTheController(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer backend.Close()
	host, portText, _ := net.SplitHostPort(strings.TrimPrefix(backend.URL, "http://"))
	backendPort, _ := strconv.Atoi(portText)
	listen := freePort(t)
	src := &fixedIngress{table: wire.IngressTable{Index: 3, Routes: []wire.IngressRoute{
		{Service: "web", Listen: listen, Protocol: "http", Path: "/", Port: backendPort},
	}}}
	g := newIngressRunner(IngressConfig{Source: src, ListenIP: "127.0.0.1"}, "h1", hclog.NewNullLogger())
	ctrl := newFakeController("h1")
	s := &trafficShipper{host: "h1", ctrl: ctrl, take: g.table.TakeTraffic, interval: 10 * time.Millisecond, log: hclog.NewNullLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { g.run(ctx) })
	wg.Go(func() { s.run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	g.setLocal([]localTarget{{service: "web", replica: "r1", container: "0123456789abcdef", ip: host, ports: []int{backendPort}, healthy: true}})

	url := "http://127.0.0.1:" + strconv.Itoa(listen)
	waitUntil(t, "the replica behind the ingress port", func() bool {
		resp, err := http.Get(url + "/")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	resp, err := http.Get(url + "/fail")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	var sum traffic.Figures
	var others []wire.TrafficReport
	ctrl.waitFor(t, "the failed request reported", func(f *fakeController) bool {
		sum, others = traffic.Figures{}, nil
		for _, r := range f.traffic {
			if len(r.Replicas) != 1 || r.Host != "h1" {
				others = append(others, r)
			}
			sum.Add(r.Replicas["r1"])
		}
		return sum.Errors == 1
	})
	if sum.Requests < 2 || len(others) != 0 {
		t.Fatalf("r1's figures %+v, other reports %+v; want at least the 200 and the 500 of r1, nothing else", sum, others)
	}
}
