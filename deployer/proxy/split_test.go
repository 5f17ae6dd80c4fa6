package proxy

import (
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/traffic"
)

// splitTargets: web on this host (s1, s2, s3 stable, c1 canary) and on
// another host (hop targets h1 stable, hc canary, at one proxy address).
func splitTargets(canaryHealthy, stableHealthy bool) []DesiredTarget {
	t := func(id, addr string, canary, healthy bool) DesiredTarget {
		hop := strings.HasPrefix(id, "h")
		return DesiredTarget{TargetKey: TargetKey{Service: "web", ID: id, Addr: addr, Hop: hop}, Healthy: healthy, Canary: canary}
	}
	return []DesiredTarget{
		t("s1", "10.0.1.1:80", false, stableHealthy), t("s2", "10.0.1.2:80", false, stableHealthy), t("s3", "10.0.1.3:80", false, stableHealthy),
		t("c1", "10.0.1.4:80", true, canaryHealthy), t("h1", "10.0.0.9:7000", false, stableHealthy), t("hc", "10.0.0.9:7000", true, canaryHealthy),
	}
}

// picks makes n new picks (each released at once) and counts them by
// target ID, checking that the side returned is the target's.
func picks(t *testing.T, tb *Table, n int) map[string]int {
	t.Helper()
	p := tb.pools[poolKey{"web", 0}]
	canary := map[string]bool{}
	for _, c := range tb.Current().Targets {
		canary[c.ID] = c.Canary
	}
	split := p.lists.Load().weight > 0
	out := map[string]int{}
	for range n {
		tg, s := p.pick()
		if tg == nil {
			out[""]++
			continue
		}
		switch {
		case !split && s != anySide:
			t.Fatalf("picked on side %d without a split", s)
		case split && (s == canarySide) != canary[tg.key.ID]:
			t.Fatalf("picked %s (canary %v) on side %d", tg.key.ID, canary[tg.key.ID], s)
		}
		out[tg.key.ID]++
		tg.release()
	}
	return out
}

// TestSplitSendsTheWeightToTheCanary: with a 10% split, 10,000 new picks
// send 8-12% to the canary's targets (this host's and another host's),
// whatever the number of targets on each side (2 canary, 4 stable here:
// without a split the canary would get a third).
func TestSplitSendsTheWeightToTheCanary(t *testing.T) {
	tb := NewTable(nil)
	tb.Apply(Desired{Targets: splitTargets(true, true), Canaries: map[string]float64{"web": 0.1}})
	got := picks(t, tb, 10000)
	canary := got["c1"] + got["hc"]
	if canary < 800 || canary > 1200 {
		t.Errorf("canary got %d of 10,000 picks, want 800-1,200 (10%%): %v", canary, got)
	}
	if got["c1"] == 0 || got["hc"] == 0 || got["h1"] == 0 || got[""] != 0 {
		t.Errorf("picks %v: want every target of both sides, this host's and the other's", got)
	}

	// Without the split the same targets share evenly: a third to the canary.
	tb.Apply(Desired{Targets: splitTargets(true, true)})
	got = picks(t, tb, 6000)
	if canary := got["c1"] + got["hc"]; canary < 1700 || canary > 2300 {
		t.Errorf("without a split the canary got %d of 6,000, want about 2,000: %v", canary, got)
	}
}

// TestSplitWithOneSideDown: a side without a healthy target leaves every
// request to the other; no healthy target at all is no pick.
func TestSplitWithOneSideDown(t *testing.T) {
	tb := NewTable(nil)
	weights := map[string]float64{"web": 0.5}
	tb.Apply(Desired{Targets: splitTargets(false, true), Canaries: weights})
	if got := picks(t, tb, 1000); got["c1"]+got["hc"] != 0 || got[""] != 0 {
		t.Errorf("no healthy canary: %v, want everything on the stable side", got)
	}
	tb.Apply(Desired{Targets: splitTargets(true, false), Canaries: weights})
	if got := picks(t, tb, 1000); got["c1"]+got["hc"] != 1000 {
		t.Errorf("no healthy stable target: %v, want everything on the canary", got)
	}
	tb.Apply(Desired{Targets: splitTargets(false, false), Canaries: weights})
	if got := picks(t, tb, 10); got[""] != 10 {
		t.Errorf("nothing healthy: %v, want no pick", got)
	}
}

// TestSplitRegroupsWithoutDrain: a target whose Canary flag changes (the
// canary promoted) is the same target: listed in Regroup, not drained, its
// requests in flight kept, and picked on its new side.
func TestSplitRegroupsWithoutDrain(t *testing.T) {
	tb := NewTable(nil)
	weights := map[string]float64{"web": 0.5}
	targets := splitTargets(true, true)
	tb.Apply(Desired{Targets: targets, Canaries: weights})
	c1 := targets[3].TargetKey
	held := tb.targets[c1]
	held.inflight.Add(1)
	targets[3].Canary = false
	ch := tb.Apply(Desired{Targets: targets, Canaries: weights})
	if !reflect.DeepEqual(ch.Regroup, []TargetKey{c1}) || len(ch.Drain)+len(ch.Add) != 0 || ch.Unchanged {
		t.Fatalf("changes %+v, want c1 regrouped only", ch)
	}
	if tb.targets[c1] != held || held.State() != Healthy || held.inflight.Load() != 1 {
		t.Fatalf("c1 after the regroup: state %v, %d in flight; want the same healthy target", held.State(), held.inflight.Load())
	}
	held.inflight.Add(-1)
	// Now only hc is canary: it gets half of the picks, c1 a share of the rest.
	got := picks(t, tb, 2000)
	if got["hc"] < 850 || got["hc"] > 1150 || got["c1"] == 0 {
		t.Errorf("after the regroup: %v, want hc about 1,000 and c1 some", got)
	}
	if ch := tb.Apply(Desired{Targets: targets, Canaries: weights}); !ch.Unchanged {
		t.Errorf("the same Desired again: %+v, want unchanged", ch)
	}
	if ch := tb.Apply(Desired{Targets: targets, Canaries: map[string]float64{"web": 0.2}}); ch.Unchanged {
		t.Error("a new weight was taken as unchanged")
	}
}

// TestSplitRetryStaysOnItsSide: a canary request refused by one canary
// replica is retried on another canary replica, not on a stable one; when
// the canary has no other, on a stable one (the request gets through).
func TestSplitRetryStaysOnItsSide(t *testing.T) {
	c2 := startBackend(t, "c2", nil)
	s1 := startBackend(t, "s1", nil)
	dead := DesiredTarget{TargetKey: TargetKey{Service: "web", ID: "c1", Addr: refusedAddr(t)}, Healthy: true, Canary: true}
	canary := c2.target(true)
	canary.Canary = true
	tb := NewTable(nil)
	px := startProxy(t, tb)
	weights := map[string]float64{"web": 1} // every request to the canary
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{dead, canary, s1.target(true)}, Canaries: weights})
	busy := tb.targets[canary.TargetKey]
	busy.inflight.Add(5) // c1 is picked first
	code, body := get(t, http.DefaultClient, http.MethodGet, px.URL+"/", nil)
	busy.inflight.Add(-5)
	if code != http.StatusOK || body != "c2" {
		t.Fatalf("retry on the canary side: %d %q, want c2", code, body)
	}
	if s1.served.Load() != 0 {
		t.Fatal("a canary request was retried on a stable replica while another canary replica was healthy")
	}

	tb2 := NewTable(nil)
	px2 := startProxy(t, tb2)
	tb2.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{dead, s1.target(true)}, Canaries: weights})
	if code, body := get(t, http.DefaultClient, http.MethodGet, px2.URL+"/", nil); code != http.StatusOK || body != "s1" {
		t.Fatalf("retry with no other canary replica: %d %q, want s1", code, body)
	}
	got := takeUntil(t, tb2, "both attempts", func(m map[string]traffic.Figures) bool { return m["c1"].Requests+m["s1"].Requests == 2 })
	if got["c1"].Errors != 1 {
		t.Errorf("figures %+v, want c1's refusal counted", got)
	}
}

// hopSplitHost is host B: web's replicas b1 (stable) and c1 (canary) on
// this host behind a hop listener, with a split when weight > 0.
func hopSplitHost(t *testing.T, weight float64, canaryHealthy bool) (*Table, string) {
	t.Helper()
	b1 := startBackend(t, "b1", nil)
	c1 := startBackend(t, "c1", nil)
	canary := hopTarget(c1)
	canary.Canary, canary.Healthy = true, canaryHealthy
	tb := NewTable(nil)
	var weights map[string]float64
	if weight > 0 {
		weights = map[string]float64{"web": weight}
	}
	tb.Apply(Desired{Routes: []Route{hopRoute}, Targets: []DesiredTarget{hopTarget(b1), canary}, Canaries: weights})
	return tb, startHopListener(t, tb, nil)
}

func hopGet(t *testing.T, addr, side string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Header.Set(HeaderHopService, "web")
	req.Header.Set(HeaderHopPort, "8080")
	if side != "" {
		req.Header.Set(HeaderHopCanary, side)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String(), resp.Header
}

// TestHopPicksTheSendersSide: the hop listener sends a request to one of
// its replicas of the side the sender chose; none healthy there: 503 with
// HeaderHopUnavailable (the sender tries elsewhere). A host whose own view
// has no split (the change still on its way) takes any side.
func TestHopPicksTheSendersSide(t *testing.T) {
	_, hop := hopSplitHost(t, 0.1, true)
	for range 20 {
		if code, body, _ := hopGet(t, hop, "1"); code != http.StatusOK || body != "c1" {
			t.Fatalf("canary side: %d %q, want c1", code, body)
		}
		if code, body, _ := hopGet(t, hop, "0"); code != http.StatusOK || body != "b1" {
			t.Fatalf("stable side: %d %q, want b1", code, body)
		}
	}
	seen := map[string]int{}
	for range 40 {
		_, body, _ := hopGet(t, hop, "")
		seen[body]++
	}
	if seen["b1"] == 0 || seen["c1"] == 0 {
		t.Errorf("no side asked: %v, want both replicas", seen)
	}

	_, hop = hopSplitHost(t, 0.1, false)
	code, body, h := hopGet(t, hop, "1")
	if code != http.StatusServiceUnavailable || h.Get(HeaderHopUnavailable) == "" || !strings.Contains(body, "canary") {
		t.Fatalf("no healthy canary replica here: %d %q, want 503 with %s", code, body, HeaderHopUnavailable)
	}

	_, hop = hopSplitHost(t, 0, true) // this host's view has no split
	seen = map[string]int{}
	for range 40 {
		code, body, _ := hopGet(t, hop, "1")
		if code != http.StatusOK {
			t.Fatalf("no split here: %d %q", code, body)
		}
		seen[body]++
	}
	if seen["b1"] == 0 || seen["c1"] == 0 {
		t.Errorf("no split here, canary asked: %v, want both replicas", seen)
	}
}

// TestSplitHoldsThroughHops: host A has no replica of its own; B's stable
// and canary replicas are two hop targets at B's proxy. A's 20% split
// reaches B's canary replica about 20% of the time (by B's own figures),
// where without the side passed on B would balance them half and half.
func TestSplitHoldsThroughHops(t *testing.T) {
	hostB, hop := hopSplitHost(t, 0.2, true)
	hostA := NewTable(nil)
	hostA.Apply(Desired{Routes: []Route{hopRoute}, Canaries: map[string]float64{"web": 0.2}, Targets: []DesiredTarget{
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "b1", Addr: hop, Hop: true}, Healthy: true},
		{TargetKey: TargetKey{Service: "web", Port: 8080, ID: "c1", Addr: hop, Hop: true}, Healthy: true, Canary: true},
	}})
	edge := startProxy(t, hostA)
	const n = 1000
	for i := range n {
		if code, body := get(t, http.DefaultClient, http.MethodGet, edge.URL+"/", nil); code != http.StatusOK {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	got := takeUntil(t, hostB, "every request on B", func(m map[string]traffic.Figures) bool { return m["b1"].Requests+m["c1"].Requests == n })
	if c := got["c1"].Requests; c < 150 || c > 250 {
		t.Errorf("B's canary replica got %d of %d, want 150-250 (20%%): %+v", c, n, got)
	}
}

// TestTCPSplitHoldsThroughHops: the same for tcp connections through a
// TCP hop (the side in the upgrade request's headers).
func TestTCPSplitHoldsThroughHops(t *testing.T) {
	stable, canary := startEcho(t, "b"), startEcho(t, "c")
	hostB := NewTable(nil)
	cb := dbTarget("c", canary.ln.Addr().String(), false)
	cb.Canary = true
	weights := map[string]float64{"db": 0.3}
	hostB.Apply(Desired{Routes: []Route{dbHopRoute}, Targets: []DesiredTarget{dbTarget("b", stable.ln.Addr().String(), false), cb}, Canaries: weights})
	hop := startHopListener(t, hostB, nil)
	hostA := NewTable(nil)
	ingress := startTCPProxy(t, hostA)
	ca := dbTarget("c", hop, true)
	ca.Canary = true
	hostA.Apply(Desired{Routes: []Route{dbHopRoute}, Targets: []DesiredTarget{dbTarget("b", hop, true), ca}, Canaries: weights})
	const n = 300
	seen := map[string]int{}
	for i := range n {
		c := dialLine(t, ingress)
		got, err := c.ask("x")
		_ = c.Close()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		name, _, _ := strings.Cut(got, ":")
		seen[name]++
	}
	if seen["c"] < 50 || seen["c"] > 130 {
		t.Errorf("canary got %d of %d connections, want 50-130 (30%%): %v", seen["c"], n, seen)
	}
	figures := takeUntil(t, hostB, "every connection on B", func(m map[string]traffic.Figures) bool { return m["b"].Requests+m["c"].Requests == n })
	if figures["c"].Requests != uint64(seen["c"]) {
		t.Errorf("B counted %d connections to c, the clients saw %d", figures["c"].Requests, seen["c"])
	}
}
