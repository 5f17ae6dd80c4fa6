package proxy

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

func key(service, id string) TargetKey {
	return TargetKey{Service: service, ID: id, Addr: "10.0.0.1:" + id}
}

func healthy(k TargetKey) DesiredTarget { return DesiredTarget{TargetKey: k, Healthy: true} }

func TestPlanTargets(t *testing.T) {
	a, b, c, d, e := key("web", "1"), key("web", "2"), key("web", "3"), key("web", "4"), key("web", "5")
	cur := Current{Targets: []CurrentTarget{
		{TargetKey: a, State: Healthy}, {TargetKey: b, State: Adding}, {TargetKey: c, State: Healthy},
		{TargetKey: d, State: Draining}, {TargetKey: e, State: Gone},
	}}
	n := key("web", "9")
	want := Desired{Targets: []DesiredTarget{
		{TargetKey: a, Healthy: false}, // checks fail: down, no new requests
		healthy(b),                     // up
		healthy(n),                     // new and healthy
		healthy(d),                     // draining stays draining
		// c is gone from Desired: drain it; e is Gone and unlisted: forget it.
	}}
	ch := Plan(cur, want)
	check := func(name string, got, want []TargetKey) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("Add", ch.Add, []TargetKey{n})
	check("Up", ch.Up, []TargetKey{b, n})
	check("Down", ch.Down, []TargetKey{a})
	check("Drain", ch.Drain, []TargetKey{c})
	check("Forget", ch.Forget, []TargetKey{e})
	if ch.Unchanged {
		t.Error("Unchanged with changes")
	}
	// A replica back at another address is another target.
	moved := a
	moved.Addr = "10.0.0.2:1"
	ch = Plan(Current{Targets: []CurrentTarget{{TargetKey: a, State: Healthy}}}, Desired{Targets: []DesiredTarget{healthy(moved)}})
	check("Add (moved)", ch.Add, []TargetKey{moved})
	check("Drain (moved)", ch.Drain, []TargetKey{a})
	// The same input twice, in any order, changes nothing.
	ch = Plan(Current{Targets: []CurrentTarget{{TargetKey: a, State: Healthy}}}, Desired{Targets: []DesiredTarget{healthy(a), healthy(a)}})
	if !ch.Unchanged {
		t.Errorf("Plan of what is held = %+v, want Unchanged", ch)
	}
}

func TestPlanRoutes(t *testing.T) {
	cur := Current{Routes: []Route{
		{Listen: 80, Protocol: HTTP, Host: "a.example.com", Path: "/", Service: "a"},
		{Listen: 5432, Protocol: TCP, Service: "db"},
		{Listen: 9000, Protocol: TCP, Service: "q"},
	}}
	want := Desired{Routes: []Route{
		{Listen: 80, Protocol: HTTP, Host: "a.example.com", Path: "/", Service: "a"},
		{Listen: 80, Protocol: HTTP, Host: "b.example.com", Path: "/", Service: "b"},
		{Listen: 80, Protocol: HTTP, Host: "b.example.com", Path: "/", Service: "c"}, // same host+path: refused
		{Listen: 80, Protocol: TCP, Service: "d"},                                    // tcp on an http port: refused
		{Listen: 5432, Protocol: TCP, Service: "db"},
		{Listen: 5432, Protocol: TCP, Service: "db2"}, // second tcp: refused
		{Listen: 9000, Protocol: HTTP, Path: "/", Service: "q"},
		{Listen: 443, Protocol: HTTP, Path: "/", Service: "a"},
	}}
	ch := Plan(cur, want)
	if got, want := ch.Open, []Port{{443, HTTP}, {9000, HTTP}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Open = %v, want %v", got, want)
	}
	if got, want := ch.Close, []Port{{9000, TCP}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Close = %v, want %v", got, want)
	}
	refused := []Route{
		{Listen: 80, Protocol: HTTP, Host: "b.example.com", Path: "/", Service: "c"},
		{Listen: 80, Protocol: TCP, Service: "d"},
		{Listen: 5432, Protocol: TCP, Service: "db2"},
	}
	if !reflect.DeepEqual(ch.Refused, refused) {
		t.Errorf("Refused = %v, want %v", ch.Refused, refused)
	}
	if len(ch.Routes) != 5 {
		t.Errorf("Routes = %v, want 5", ch.Routes)
	}
}

func TestMatchHTTP(t *testing.T) {
	tb := NewTable(nil)
	r := func(host, path, service string) Route {
		return Route{Listen: 80, Protocol: HTTP, Host: host, Path: path, Service: service}
	}
	tb.Apply(Desired{Routes: []Route{
		r("api.example.com", "/", "api"),
		r("api.example.com", "/v2", "api2"),
		r("*.example.com", "/", "wild"),
		r("*.example.com", "/static", "static"),
		r("", "/", "any"),
		r("", "/admin", "admin"),
	}})
	cases := []struct{ host, path, want string }{
		{"api.example.com", "/", "api"},
		{"API.Example.com:80", "/x", "api"},
		{"api.example.com.", "/v2/users", "api2"},
		{"api.example.com", "/v2", "api2"},
		{"api.example.com", "/v2x", "api"},         // whole segments
		{"api.example.com", "/x/../v2/a", "api2"},  // cleaned
		{"api.example.com", "/v2/../admin", "api"}, // cleaned out of /v2
		{"www.example.com", "/", "wild"},           // wildcard
		{"www.example.com", "/static/app.js", "static"},
		{"a.b.example.com", "/", "any"}, // one label only
		{"example.com", "/", "any"},     // not the parent itself
		{"other.org", "/admin/x", "admin"},
		{"api.example.com", "/admin", "api"}, // exact host wins when its path matches
		{"[::1]:80", "/", "any"},
	}
	rt := tb.routes.Load()
	for _, c := range cases {
		got := rt.matchHTTP(80, c.host, c.path)
		if got == nil || got.Service != c.want {
			t.Errorf("match(%q, %q) = %v, want %s", c.host, c.path, got, c.want)
		}
	}
	if got := rt.matchHTTP(81, "api.example.com", "/"); got != nil {
		t.Errorf("match on a port without routes = %v", got)
	}
	tb.Apply(Desired{Routes: []Route{r("api.example.com", "/v2", "api2")}})
	if got := tb.routes.Load().matchHTTP(80, "api.example.com", "/v1"); got != nil {
		t.Errorf("match with no matching path = %v", got.Service)
	}
}

// With two targets both are always compared, so power of two choices is
// least outstanding requests: the loaded target gets nothing new. With
// three, the loaded one loses every pair it is in.
func TestPickLeastOutstanding(t *testing.T) {
	for _, n := range []int{2, 3} {
		tb := NewTable(nil)
		var want Desired
		for i := range n {
			want.Targets = append(want.Targets, healthy(key("web", string(rune('a'+i)))))
		}
		tb.Apply(want)
		p := tb.pools[poolKey{"web", 0}]
		loaded := tb.targets[key("web", "a")]
		loaded.inflight.Add(5)
		for range 200 {
			tg := pickOne(p)
			if tg == loaded {
				t.Fatalf("%d targets: picked the loaded target", n)
			}
			tg.release()
		}
		// Excluding the only other healthy target of two leaves the loaded one.
		if n == 2 {
			other := tb.targets[key("web", "b")]
			if tg := pickExcluding(p, other); tg != loaded {
				t.Fatalf("pick(exclude b) = %v, want a", tg)
			}
		}
	}
}

func TestPickSpreadsEvenly(t *testing.T) {
	tb := NewTable(nil)
	var want Desired
	for i := range 4 {
		want.Targets = append(want.Targets, healthy(key("web", string(rune('a'+i)))))
	}
	tb.Apply(want)
	p := tb.pools[poolKey{"web", 0}]
	counts := map[string]int{}
	var held []*target
	for range 400 { // every pick stays in flight: the counts must even out
		tg := pickOne(p)
		counts[tg.key.ID]++
		held = append(held, tg)
	}
	for id, c := range counts {
		if c < 90 || c > 110 {
			t.Errorf("target %s got %d of 400 outstanding requests, want about 100: %v", id, c, counts)
		}
	}
	for _, tg := range held {
		tg.release()
	}
}

func TestOnlyHealthyTargetsArePicked(t *testing.T) {
	tb := NewTable(nil)
	a, b := key("web", "a"), key("web", "b")
	tb.Apply(Desired{Targets: []DesiredTarget{{TargetKey: a}, {TargetKey: b}}})
	if tg := pickOne(tb.pools[poolKey{"web", 0}]); tg != nil {
		t.Fatalf("picked %v while every target is adding", tg.key)
	}
	tb.Apply(Desired{Targets: []DesiredTarget{{TargetKey: a}, healthy(b)}})
	for range 50 {
		tg := pickOne(tb.pools[poolKey{"web", 0}])
		if tg == nil || tg.key != b {
			t.Fatalf("picked %v, want only b", tg)
		}
		tg.release()
	}
	tb.Apply(Desired{Targets: []DesiredTarget{healthy(a), {TargetKey: b}}}) // b's checks fail
	for range 50 {
		tg := pickOne(tb.pools[poolKey{"web", 0}])
		if tg == nil || tg.key != a {
			t.Fatalf("picked %v, want only a", tg)
		}
		tg.release()
	}
}

func TestDrainWaitsForInFlight(t *testing.T) {
	tb := NewTable(nil)
	a, b := key("web", "a"), key("web", "b")
	tb.Apply(Desired{Targets: []DesiredTarget{healthy(a)}})
	p := tb.pools[poolKey{"web", 0}]
	held := pickOne(p)
	ch := tb.Apply(Desired{Targets: []DesiredTarget{healthy(b)}})
	if !reflect.DeepEqual(ch.Drain, []TargetKey{a}) {
		t.Fatalf("Drain = %v", ch.Drain)
	}
	for range 50 {
		tg := pickOne(p)
		if tg.key != b {
			t.Fatalf("a draining target got a new request")
		}
		tg.release()
	}
	done := make(chan error, 1)
	go func() { done <- tb.Drain(context.Background(), a) }()
	select {
	case err := <-done:
		t.Fatalf("Drain returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	held.release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the last request")
	}
	// Gone, and a Desired that still lists it (a lagging view) does not bring it back.
	ch = tb.Apply(Desired{Targets: []DesiredTarget{healthy(a), healthy(b)}})
	if len(ch.Add) != 0 || len(ch.Up) != 0 {
		t.Fatalf("a drained target came back: %+v", ch)
	}
	ch = tb.Apply(Desired{Targets: []DesiredTarget{healthy(b)}})
	if !reflect.DeepEqual(ch.Forget, []TargetKey{a}) {
		t.Fatalf("Forget = %v, want a", ch.Forget)
	}
	if err := tb.Drain(context.Background(), a); !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("Drain of a forgotten target = %v", err)
	}
	// Once nothing is listed, nothing is kept.
	ch = tb.Apply(Desired{})
	if err := tb.Drain(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	tb.Apply(Desired{})
	if len(tb.targets) != 0 || len(tb.pools) != 0 {
		t.Fatalf("an empty Desired keeps %d targets and %d pools", len(tb.targets), len(tb.pools))
	}
	if !reflect.DeepEqual(ch.Drain, []TargetKey{b}) {
		t.Fatalf("Drain = %v, want b", ch.Drain)
	}
}

func TestDrainDeadline(t *testing.T) {
	tb := NewTable(nil)
	a := key("web", "a")
	tb.Apply(Desired{Targets: []DesiredTarget{healthy(a)}})
	held := pickOne(tb.pools[poolKey{"web", 0}])
	defer held.release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := tb.Drain(ctx, a)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want the deadline", err)
	}
	if got := tb.Current().Targets[0].State; got != Gone {
		t.Fatalf("state after a drain past its deadline = %v, want gone", got)
	}
}

// The race Drain must win: a pick that read the healthy list just before
// the drain either is waited for by Drain or sees the drain and lets go.
// The picker checks, while it still holds the target, that Drain has not
// returned; run with -race.
func TestDrainRacesPick(t *testing.T) {
	picked := 0
	for range 500 {
		tb := NewTable(nil)
		a := key("web", "a")
		tb.Apply(Desired{Targets: []DesiredTarget{healthy(a)}})
		p := tb.pools[poolKey{"web", 0}]
		var drained atomic.Bool
		violation := make(chan bool, 1)
		go func() {
			tg := pickOne(p)
			if tg == nil {
				violation <- false
				return
			}
			time.Sleep(time.Millisecond)
			v := drained.Load()
			tg.release()
			violation <- v
		}()
		if err := tb.Drain(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		drained.Store(true)
		if <-violation {
			t.Fatal("Drain returned while a pick held the target")
		}
		if tb.InFlight(a) == 0 && tb.Current().Targets[0].State == Gone {
			picked++
		}
	}
	if picked == 0 {
		t.Fatal("no run ended drained")
	}
}

// pickOne is a new request's pick (the side aside).
func pickOne(p *pool) *target {
	tg, _ := p.pick()
	return tg
}

// pickExcluding is a retry's pick after a failure on failed.
func pickExcluding(p *pool, failed *target) *target {
	tg, _ := p.pickAgain(allHosts, anySide, failed)
	return tg
}
