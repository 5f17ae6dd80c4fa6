package proxy

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// keepPicking makes a refused address come back after a microsecond, by a
// dial check that always passes: for tests of what happens to requests
// that land on a refusing target, which ejection would otherwise stop
// after the first.
func keepPicking(tb *Table) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.ejectFirst, tb.ejectMax = time.Microsecond, time.Microsecond
	tb.dialCheck = func(context.Context, string) error { return nil }
}

// TestEjectRefusingAddress: host B's proxy is down (its address refuses),
// and two replicas are hop targets at that one address. Requests that may
// not be retried (POST) fail at most once: the first refusal ejects every
// target at the address, and later requests go to the live replica only.
// When B's proxy listens again, a dial check brings both back.
func TestEjectRefusingAddress(t *testing.T) {
	live := startBackend(t, "live", nil)
	deadAddr := refusedAddr(t)
	tb := NewTable(nil)
	tb.mu.Lock()
	tb.ejectFirst, tb.ejectMax = 20*time.Millisecond, 40*time.Millisecond
	tb.mu.Unlock()
	defer tb.Close()
	px := startProxy(t, tb)
	hop := func(id string) DesiredTarget {
		return DesiredTarget{TargetKey: TargetKey{Service: "web", ID: id, Addr: deadAddr, Hop: true}, Healthy: true}
	}
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{live.target(true), hop("b1"), hop("b2")}})

	failed := 0
	for range 200 {
		code, body := get(t, px.Client(), http.MethodPost, px.URL+"/", strings.NewReader("x"))
		switch code {
		case http.StatusOK:
		case http.StatusBadGateway:
			failed++
		default:
			t.Fatalf("POST: %d %s", code, body)
		}
	}
	if failed > 1 {
		t.Fatalf("%d POSTs failed on a refusing address; ejection should stop it after the first", failed)
	}
	if failed == 0 {
		t.Fatal("no POST failed: the refusing address was never picked, the test proves nothing")
	}
	ejected := 0
	for _, tg := range tb.Current().Targets {
		if tg.Addr == deadAddr {
			if !tg.Ejected || tg.State != Healthy {
				t.Errorf("target %s: state %s ejected %v, want healthy and ejected", tg.TargetKey, tg.State, tg.Ejected)
			}
			ejected++
		}
	}
	if ejected != 2 {
		t.Fatalf("%d targets at the refusing address, want both ejected", ejected)
	}

	// B's proxy is back: the dial check re-admits its targets.
	ln, err := net.Listen("tcp", deadAddr)
	if err != nil {
		t.Skipf("the refused port was taken meanwhile: %v", err)
	}
	var served atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = w.Write([]byte("b"))
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for served.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the address never came back: %+v", tb.Current().Targets)
		}
		if code, body := get(t, px.Client(), http.MethodGet, px.URL+"/", nil); code != http.StatusOK {
			t.Fatalf("GET after B came back: %d %s", code, body)
		}
	}
	for _, tg := range tb.Current().Targets {
		if tg.Ejected {
			t.Errorf("target %s still ejected after its address answered", tg.TargetKey)
		}
	}
}

// TestRetryAvoidsTheFailedAddress: the retry of a refused GET never goes
// to another target at the same address (two replicas behind one dead
// host's proxy), so no GET fails even before the ejection takes effect.
func TestRetryAvoidsTheFailedAddress(t *testing.T) {
	live := startBackend(t, "live", nil)
	deadAddr := refusedAddr(t)
	tb := NewTable(nil)
	keepPicking(tb) // every request may land on the dead address
	px := startProxy(t, tb)
	var targets []DesiredTarget
	for _, id := range []string{"b1", "b2", "b3", "b4"} {
		targets = append(targets, DesiredTarget{TargetKey: TargetKey{Service: "web", ID: id, Addr: deadAddr, Hop: true}, Healthy: true})
	}
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: append(targets, live.target(true))})
	for range 200 {
		if code, body := get(t, px.Client(), http.MethodGet, px.URL+"/", nil); code != http.StatusOK {
			t.Fatalf("GET: %d %s (a retry went to the same dead address)", code, body)
		}
	}
	if tb.Counts()["web"].Retries == 0 {
		t.Fatal("nothing was retried: the dead address was never picked")
	}
}

// TestEjectionIsForgottenWithItsTargets: an address no target uses any
// more leaves the ejection list (its dial check stops), and a new target
// at an ejected address starts ejected.
func TestEjectionIsForgottenWithItsTargets(t *testing.T) {
	deadAddr := refusedAddr(t)
	tb := NewTable(nil)
	defer tb.Close()
	k1 := TargetKey{Service: "web", ID: "b1", Addr: deadAddr, Hop: true}
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{{TargetKey: k1, Healthy: true}}})
	tb.eject(deadAddr)
	k2 := TargetKey{Service: "web", ID: "b2", Addr: deadAddr, Hop: true}
	tb.Apply(Desired{Routes: []Route{webRoute}, Targets: []DesiredTarget{{TargetKey: k1, Healthy: true}, {TargetKey: k2, Healthy: true}}})
	for _, tg := range tb.Current().Targets {
		if !tg.Ejected {
			t.Errorf("%s not ejected", tg.TargetKey)
		}
	}
	if p := tb.pools[poolKey{"web", 0}]; pickOne(p) != nil {
		t.Fatal("an ejected target was picked")
	}
	// Both leave: drained, then forgotten.
	tb.Apply(Desired{Routes: []Route{webRoute}})
	for _, k := range []TargetKey{k1, k2} {
		if err := tb.Drain(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	tb.Apply(Desired{Routes: []Route{webRoute}})
	tb.mu.Lock()
	left := len(tb.ejections)
	tb.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d ejections left for addresses no target uses", left)
	}
}
