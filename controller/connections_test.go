package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// mustRegisterServer registers the test node's FSM version, as every
// server does when it starts: the leader then turns service addresses on
// (CmdAssignAddresses passes the version gate).
func mustRegisterServer(t *testing.T, n *testNode) {
	t.Helper()
	cmd, err := raftstore.Encode(raftstore.CmdRegisterServer, state.RegisterServerCmd{Server: state.ServerInfo{
		ID: n.node.ID(), RaftAddr: n.node.Addr(), APIAddr: strings.TrimPrefix(n.api.URL, "http://"), Version: raftstore.FSMVersion}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.node.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "service addresses to be on", func() bool { return n.store.View().AddressesOn() })
}

// mustStartAddressedNode is a test node whose services get addresses.
func mustStartAddressedNode(t *testing.T) *testNode {
	t.Helper()
	n := mustStartNodeWith(t, func(c *Config) { c.ServeIngress = true })
	mustRegisterServer(t, n)
	return n
}

// applyYAML applies a spec through the API as the CLI does: its outcome,
// or the API's refusal.
func applyYAML(t *testing.T, n *testNode, doc string) (wire.ApplyOutcome, *wire.RemoteError) {
	t.Helper()
	out, err := wire.NewClient([]string{n.api.URL}, nil).Apply(context.Background(), []byte(doc))
	if err == nil {
		return out, nil
	}
	var re *wire.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("apply:\n%s\n%v, want an API answer", doc, err)
	}
	return out, re
}

func mustApplyYAML(t *testing.T, n *testNode, doc string) wire.ApplyOutcome {
	t.Helper()
	out, re := applyYAML(t, n, doc)
	if re != nil {
		t.Fatalf("apply:\n%s\nrefused: %d %s", doc, re.Status, re.APIError.Error)
	}
	return out
}

func status(t *testing.T, n *testNode, service string) wire.ServiceStatus {
	t.Helper()
	st, err := wire.NewClient([]string{n.api.URL}, nil).Status(context.Background(), service, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func hasWarning(warnings []string, parts ...string) bool {
	for _, w := range warnings {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

// Service addresses wait for every server to register FSM version 2;
// then every service has one, the lowest free, shown in status.
func TestServiceAddressesTurnOnOnceEveryServerRegisters(t *testing.T) {
	n := mustStartNodeWith(t, nil)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	mustApplyYAML(t, n, "service: web\nimage: "+ref+"\nconnects_to: [api]\n")
	time.Sleep(200 * time.Millisecond) // a few loop passes: the gate holds
	if n.store.View().AddressesOn() {
		t.Fatal("addresses on before the server registered its version")
	}
	st := status(t, n, "web")
	if st.Address != "" || len(st.Connections) != 1 || st.Connections[0].Resolved {
		t.Fatalf("status before addresses: %+v", st)
	}
	mustRegisterServer(t, n)
	mustApplyYAML(t, n, "service: api\nimage: "+ref+"\nexpose: [8080]\n")
	if got := status(t, n, "web").Address; got != "198.18.0.1" {
		t.Errorf("web's address %q, want 198.18.0.1", got)
	}
	st = status(t, n, "api")
	if st.Address != "198.18.0.2" || len(st.Expose) != 1 || st.Expose[0] != (specs.Expose{Port: 8080, Protocol: "http"}) {
		t.Errorf("api's status: address %q, expose %+v", st.Address, st.Expose)
	}
	if c := status(t, n, "web").Connections; len(c) != 1 || !c[0].Resolved || c[0].Address != "198.18.0.2" || len(c[0].Ports) != 1 || c[0].Ports[0].Port != 8080 {
		t.Errorf("web's connection to api: %+v", c)
	}
}

// Apply: a connection to a service that does not exist yet is accepted
// with a warning; to a port an existing service does not expose, refused
// 409 naming both; a target whose revision drops a port its callers use
// is accepted with a warning naming them. Connections change nothing of
// the containers.
func TestApplyChecksConnections(t *testing.T) {
	n := mustStartAddressedNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	doc := func(service, rest string) string { return "service: " + service + "\nimage: " + ref + "\n" + rest }

	out := mustApplyYAML(t, n, doc("web", "connects_to: [api, {service: db, port: 5432}]\n"))
	if !hasWarning(out.Warnings, "connects_to[0]: service api does not exist yet; the connection resolves once it is applied") ||
		!hasWarning(out.Warnings, "connects_to[1]: service db does not exist yet") {
		t.Fatalf("warnings %q, want one per missing target", out.Warnings)
	}
	out = mustApplyYAML(t, n, doc("db", "expose: [8080]\n"))
	if !hasWarning(out.Warnings, "expose: db does not expose port 5432", "web (connects_to[1]) connects to it") {
		t.Errorf("db without 5432: warnings %q, want one naming web", out.Warnings)
	}
	out = mustApplyYAML(t, n, doc("api", ""))
	if !hasWarning(out.Warnings, "expose: api exposes no port", "web (connects_to[0]) connects to api (every port it exposes)") {
		t.Errorf("api without expose: warnings %q, want one naming web", out.Warnings)
	}
	for _, tt := range []struct{ name, rest, want string }{
		{"a port the target does not expose", "connects_to: [{service: db, port: 5432}]\n",
			"connects_to[0]: service admin connects to db:5432, but service db does not expose port 5432 (it exposes 8080/http); add port 5432 to the expose of db and apply db first"},
		{"a target that exposes nothing", "connects_to: [api]\n",
			"connects_to[0]: service admin connects to api (every port it exposes), but service api exposes no port; add expose: [PORT] to api"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, re := applyYAML(t, n, doc("admin", tt.rest))
			if re == nil || re.Status != http.StatusConflict || re.Code != "conflict" || !strings.Contains(re.APIError.Error, tt.want) {
				t.Fatalf("apply = %+v, want 409 conflict containing %q", re, tt.want)
			}
			if _, ok := n.store.View().Service("admin"); ok {
				t.Fatal("a refused apply stored service admin")
			}
		})
	}
	// db exposes 5432 now: web's connection resolves, no warning.
	out = mustApplyYAML(t, n, doc("db", "expose: [8080, {port: 5432, protocol: tcp}]\n"))
	if len(out.Warnings) != 0 {
		t.Errorf("warnings %q, want none", out.Warnings)
	}
	db := status(t, n, "db")
	conns := status(t, n, "web").Connections
	if len(conns) != 2 || conns[0].Service != "api" || conns[0].Resolved || !strings.Contains(conns[0].Reason, "port not exposed: service api exposes no port") ||
		conns[1].Service != "db" || !conns[1].Resolved || conns[1].Address != db.Address || len(conns[1].Ports) != 1 || conns[1].Ports[0] != (specs.Expose{Port: 5432, Protocol: "tcp"}) {
		t.Fatalf("web's connections %+v", conns)
	}
	// Connections and exposed ports are not the container: a change of
	// them is a revision with the same fingerprint (nothing restarts).
	mustApplyYAML(t, n, doc("web", "connects_to: [{service: db, port: 8080}]\nexpose: [9000]\n"))
	revs := n.store.View().Revisions("web")
	if len(revs) != 2 || revs[0].Fingerprint != revs[1].Fingerprint {
		t.Errorf("after a change of connections: %d revisions, same fingerprint %v", len(revs), len(revs) == 2 && revs[0].Fingerprint == revs[1].Fingerprint)
	}
}

// A service being removed is no target: an apply connecting to it is
// warned, its callers' connections do not resolve and leave the feed, and
// a caller being removed has no connection left.
func TestConnectionsToAServiceBeingRemoved(t *testing.T) {
	s := state.NewStore()
	spec := func(name string, expose []specs.Expose, conns ...specs.Connection) state.Revision {
		return state.Revision{Service: name, Spec: specs.Spec{Service: name, Expose: expose, ConnectsTo: conns}, Ref: "r@x", Digest: "x", Fingerprint: "fp-" + name}
	}
	for i, rev := range []state.Revision{
		spec("api", []specs.Expose{{Port: 8080, Protocol: "http"}}),
		spec("web", nil, specs.Connection{Service: "api"}),
		spec("old", nil, specs.Connection{Service: "api", Port: 8080}),
	} {
		if _, err := s.ApplyRevision(uint64(i+2), state.ApplyRevisionCmd{Revision: rev}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ApplyAssignAddresses(5, state.AssignAddressesCmd{}); err != nil {
		t.Fatal(err)
	}
	judge := connectionJudgeOf(s.View())
	if got := resolvedConnections(s.View(), judge); len(got) != 2 {
		t.Fatalf("connections %+v, want web and old to api", got)
	}
	if err := s.ApplyDeleteService(6, state.DeleteServiceCmd{Service: "old"}); err != nil {
		t.Fatal(err)
	}
	if got := resolvedConnections(s.View(), judge); len(got) != 1 || got[0].From != "web" || got[0].VIP != "198.18.0.1" {
		t.Fatalf("connections %+v, want web's only (old is being removed)", got)
	}
	if err := s.ApplyDeleteService(7, state.DeleteServiceCmd{Service: "api"}); err != nil {
		t.Fatal(err)
	}
	view := s.View()
	if got := resolvedConnections(view, judge); len(got) != 0 {
		t.Fatalf("connections %+v, want none: api is being removed", got)
	}
	web, _ := view.Service("web")
	if c := serviceStatus(view, judge, web).Connections; len(c) != 1 || c[0].Resolved || c[0].Reason != "service api is being removed" {
		t.Fatalf("web's connections %+v", c)
	}
	warnings, err := connectionCheck(view, &specs.Spec{Service: "admin", ConnectsTo: []specs.Connection{{Service: "api", Port: 9999}}})
	if err != nil || len(warnings) != 1 || warnings[0] != "connects_to[0]: service api is being removed; the connection resolves once api is applied again" {
		t.Fatalf("connectionCheck = %q, %v", warnings, err)
	}
}

// The policy's connections rule refuses a caller it does not list (403,
// rule connections, field connects_to[i]); a connection a later policy
// forbids shows "denied by policy" in status and leaves the feed.
func TestPolicyConnectionsRule(t *testing.T) {
	n := mustStartAddressedNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	doc := func(service, rest string) string { return "service: " + service + "\nimage: " + ref + "\n" + rest }
	mustApplyYAML(t, n, doc("db", "expose: [{port: 5432, protocol: tcp}]\n"))
	pol, err := policy.Parse([]byte("connections:\n  - {service: db, from: [web]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	mustSetPolicy(t, n, pol)

	_, re := applyYAML(t, n, doc("api", "connects_to: [cache, db]\n"))
	if re == nil || re.Status != http.StatusForbidden || re.Code != "denied" || len(re.APIError.Violations) != 1 {
		t.Fatalf("apply api -> db = %+v, want 403 denied with one violation", re)
	}
	v := re.APIError.Violations[0]
	if v.Field != "connects_to[1]" || v.Rule != policy.RuleConnections || !strings.Contains(v.Reason, "accepts connections only from web") ||
		!strings.Contains(v.Fix, "add api to the from list of the connections entry for db") {
		t.Errorf("violation %+v", v)
	}
	mustApplyYAML(t, n, doc("web", "connects_to: [db]\n"))
	if c := status(t, n, "web").Connections; len(c) != 1 || !c[0].Resolved {
		t.Fatalf("web -> db under the policy that lists web: %+v", c)
	}
	if conns := n.ctrl.ingress.wait(context.Background(), 0, 0).Connections; len(conns) != 1 || conns[0].From != "web" {
		t.Fatalf("feed connections %+v, want web -> db", conns)
	}
	pol, _ = policy.Parse([]byte("connections:\n  - {service: db, from: [admin]}\n"))
	mustSetPolicy(t, n, pol)
	c := status(t, n, "web").Connections
	if len(c) != 1 || c[0].Resolved || !strings.HasPrefix(c[0].Reason, "denied by policy: service db accepts connections only from admin") {
		t.Fatalf("web -> db after the policy changed: %+v", c)
	}
	if conns := n.ctrl.ingress.wait(context.Background(), 0, 0).Connections; len(conns) != 0 {
		t.Fatalf("feed connections %+v, want none: the policy denies web -> db", conns)
	}
}

// Rollbacks pass today's connection rules: --to a revision whose target no
// longer exposes the port is 409 naming the target; --to one the policy
// now denies is 403.
func TestRollbackRechecksConnections(t *testing.T) {
	n := mustStartAddressedNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	doc := func(service, rest string) string {
		return "service: " + service + "\nimage: " + ref + "\nupdate: {monitor: 0s}\n" + rest
	}
	mustApplyYAML(t, n, doc("db", "expose: [5432]\n"))
	mustApplyYAML(t, n, doc("web", "connects_to: [{service: db, port: 5432}]\n")) // web 1
	mustApplyYAML(t, n, doc("web", "env: {A: b}\n"))                              // web 2
	mustApplyYAML(t, n, doc("db", "expose: [6543]\n"))
	code, apiErr := postRollback(t, n, "web", 1)
	if code != http.StatusConflict || apiErr.Code != "conflict" || !strings.Contains(apiErr.Error, "service db does not expose port 5432 (it exposes 6543/http)") ||
		!strings.Contains(apiErr.Error, "revision 1 of web no longer passes today's rules") {
		t.Fatalf("rollback web --to 1 = %d %s %q, want 409 naming db", code, apiErr.Code, apiErr.Error)
	}
	mustApplyYAML(t, n, doc("db", "expose: [5432]\n"))
	pol, _ := policy.Parse([]byte("connections:\n  - {service: db, from: [admin]}\n"))
	mustSetPolicy(t, n, pol)
	code, apiErr = postRollback(t, n, "web", 1)
	if code != http.StatusForbidden || apiErr.Code != "denied" || len(apiErr.Violations) != 1 || apiErr.Violations[0].Rule != policy.RuleConnections {
		t.Fatalf("rollback web --to 1 = %d %s %q, want 403 denied by the connections rule", code, apiErr.Code, apiErr.Error)
	}
	if revs := n.store.View().Revisions("web"); len(revs) != 2 {
		t.Fatalf("a refused rollback stored a revision: %d revisions", len(revs))
	}
	mustSetPolicy(t, n, policy.Default())
	out, err := wire.NewClient([]string{n.api.URL}, nil).Rollback(context.Background(), "web", 1)
	if err != nil || out.Revision != 3 {
		t.Fatalf("rollback under the default policy = %+v, %v", out, err)
	}
}

// The agents' feed carries every service's address, each resolved
// connection once per target port (a bare name: every port the target
// exposes), and the healthy replicas of services that expose ports, with
// the union of their ingress and exposed ports.
func TestIngressFeedCarriesConnections(t *testing.T) {
	n := mustStartAddressedNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	doc := func(service, rest string) string {
		return "service: " + service + "\nimage: " + ref + "\nreplicas: 1\nupdate: {monitor: 0s}\n" + rest
	}
	startFakeAgent(t, n, "h1")
	mustApplyYAML(t, n, doc("db", "expose: [8080, {port: 5432, protocol: tcp}]\ningress: [{listen: 18080, port: 8081}]\n"))
	mustApplyYAML(t, n, doc("web", "connects_to: [db, ghost]\n"))
	mustApplyYAML(t, n, doc("api", "connects_to: [{service: db, port: 5432}]\n"))
	waitUntil(t, 10*time.Second, "db's replica to be healthy", func() bool {
		for _, r := range n.store.View().ServiceReplicas("db") {
			if r.Status.State == state.ReplicaHealthy {
				return true
			}
		}
		return false
	})
	table := n.ctrl.ingress.wait(context.Background(), 0, 0)
	vip := map[string]string{}
	for _, s := range table.Services {
		vip[s.Service] = s.VIP
	}
	if len(vip) != 3 || vip["db"] != "198.18.0.1" || vip["web"] != "198.18.0.2" || vip["api"] != "198.18.0.3" {
		t.Errorf("services %+v", table.Services)
	}
	want := []wire.ServiceConnection{
		{From: "api", To: "db", Port: 5432, Protocol: "tcp", VIP: "198.18.0.1"},
		{From: "web", To: "db", Port: 5432, Protocol: "tcp", VIP: "198.18.0.1"},
		{From: "web", To: "db", Port: 8080, Protocol: "http", VIP: "198.18.0.1"},
	}
	if fmt.Sprint(table.Connections) != fmt.Sprint(want) {
		t.Errorf("connections\n %+v\nwant\n %+v", table.Connections, want)
	}
	var dbBackends []wire.IngressBackend
	for _, b := range table.Backends {
		if b.Service == "db" {
			dbBackends = append(dbBackends, b)
		}
		if b.Service == "web" || b.Service == "api" {
			t.Errorf("backend of %s, which serves no port: %+v", b.Service, b)
		}
	}
	if len(dbBackends) != 1 || fmt.Sprint(dbBackends[0].Ports) != "[5432 8080 8081]" || dbBackends[0].Host != "h1" {
		t.Fatalf("db's backends %+v, want one with ports 5432 8080 8081", dbBackends)
	}

	// Heartbeats change nothing of the table: its index stays.
	before := table.Index
	for range 3 {
		if err := n.ctrl.Report(context.Background(), state.HostReport{Host: "h2"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.ctrl.ingress.wait(context.Background(), 0, 0).Index; got != before {
		t.Errorf("index moved from %d to %d without a change", before, got)
	}
	// An expose-only change keeps the fingerprint: db's replica keeps its
	// revision, and its ports are the current revision's.
	mustApplyYAML(t, n, doc("db", "expose: [8080, 9090, {port: 5432, protocol: tcp}]\ningress: [{listen: 18080, port: 8081}]\n"))
	waitUntil(t, 10*time.Second, "the feed to show db's new port", func() bool {
		for _, b := range n.ctrl.ingress.wait(context.Background(), 0, 0).Backends {
			if b.Service == "db" && fmt.Sprint(b.Ports) == "[5432 8080 8081 9090]" {
				return true
			}
		}
		return false
	})
	if reps := n.store.View().ServiceReplicas("db"); len(reps) != 1 || reps[0].Revision != 1 {
		t.Errorf("db's replicas %+v, want the revision 1 replica adopted", reps)
	}
	table = n.ctrl.ingress.wait(context.Background(), before, 5*time.Second)
	if table.Index <= before || len(table.Connections) != 4 {
		t.Errorf("after db exposes 9090: index %d (was %d), connections %+v", table.Index, before, table.Connections)
	}
}
