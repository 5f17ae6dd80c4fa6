package controller

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Issue 8: ingress claims collide across services at apply, naming both,
// and a refused apply stores nothing.
func TestApplyRefusesIngressConflictsNamingBothServices(t *testing.T) {
	n := mustStartNodeWith(t, func(c *Config) { c.ServeIngress = true })
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	doc := func(service, rest string) string {
		return "service: " + service + "\nimage: " + ref + "\n" + rest
	}
	if code, body := postApply(t, n, doc("api", "ports: [\"0.0.0.0:9000:9000\"]\ningress:\n  - {listen: 80, port: 8080, host: api.example.com}\n  - {listen: 5432, port: 5432, protocol: tcp}\n")); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("first apply: %d %s", code, body)
	}
	for _, tt := range []struct{ name, rest, want string }{
		{"same host and path", "ingress: [{listen: 80, port: 80, host: api.example.com}]\n", "ingress[0]: http listen 80 (host api.example.com, path /) routes the same host and path as ingress[0] of service api"},
		{"same tcp listen", "ingress: [{listen: 5432, port: 5432, protocol: tcp}]\n", "ingress[0]: tcp listen 5432 uses the same tcp listen port as ingress[1] of service api"},
		{"listen on a published port", "ingress: [{listen: 9000, port: 80, protocol: tcp}]\n", "published host port 9000"},
		{"published port on a listen port", "ports: [\"127.0.0.1:5432:5432\"]\n", "ports[0]: published host port 5432 uses the same port as ingress[1] of service api"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := postApply(t, n, doc("web", tt.rest))
			if code != http.StatusConflict || !strings.Contains(body, `"code":"conflict"`) || !strings.Contains(body, tt.want) {
				t.Fatalf("apply = %d %s\nwant 409 conflict containing %q", code, body, tt.want)
			}
			if _, ok := n.store.View().Service("web"); ok {
				t.Fatalf("a refused apply stored service web")
			}
		})
	}
	// Another host, and the first service changing its own entries, pass.
	if code, body := postApply(t, n, doc("web", "ingress: [{listen: 80, port: 80, host: www.example.com}]\n")); code >= 300 {
		t.Fatalf("apply on another host: %d %s", code, body)
	}
	// The first service changing only its ingress gets a new revision
	// that runs the same containers (same fingerprint: nothing restarts).
	if code, body := postApply(t, n, doc("api", "ports: [\"0.0.0.0:9000:9000\"]\ningress:\n  - {listen: 80, port: 8080, host: api.example.com, path: /v2}\n  - {listen: 5432, port: 5432, protocol: tcp}\n")); code >= 300 {
		t.Fatalf("api changing its own ingress: %d %s", code, body)
	}
	revs := n.store.View().Revisions("api")
	if len(revs) != 2 || revs[0].Fingerprint != revs[1].Fingerprint || revs[1].Spec.Ingress[0].Path != "/v2" {
		t.Fatalf("after an ingress-only change: %d revisions, fingerprints equal %v", len(revs), len(revs) == 2 && revs[0].Fingerprint == revs[1].Fingerprint)
	}
}

// Ingress shapes routing, not the container: changing only ingress keeps
// the fingerprint, so a rollout adopts the running replicas.
func TestFingerprintIgnoresIngress(t *testing.T) {
	s := specFor("registry.example.com/web:1")
	before := Fingerprint(*s, "ref")
	s.Ingress = []specs.Ingress{{Listen: 80, Port: 8080, Protocol: "http", Path: "/"}}
	if got := Fingerprint(*s, "ref"); got != before {
		t.Errorf("adding ingress changed the fingerprint")
	}
	s.Ingress[0].Path = "/v2"
	if got := Fingerprint(*s, "ref"); got != before {
		t.Errorf("changing ingress changed the fingerprint")
	}
	s.Ports = []specs.Port{{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 8080, Protocol: "tcp"}}
	if got := Fingerprint(*s, "ref"); got == before {
		t.Errorf("changing ports kept the fingerprint; the test compares nothing")
	}
}

// Issue 9: what a service exposes and whom it connects to shape the
// proxies and the agent's DNS answers, not the container: changing either
// restarts nothing.
func TestFingerprintIgnoresExposeAndConnections(t *testing.T) {
	s := specFor("registry.example.com/web:1")
	before := Fingerprint(*s, "ref")
	s.Expose = []specs.Expose{{Port: 8080, Protocol: "http"}}
	s.ConnectsTo = []specs.Connection{{Service: "db", Port: 5432}}
	if got := Fingerprint(*s, "ref"); got != before {
		t.Errorf("adding expose and connects_to changed the fingerprint")
	}
	s.Expose[0].Protocol = "tcp"
	s.ConnectsTo = append(s.ConnectsTo, specs.Connection{Service: "api"})
	if got := Fingerprint(*s, "ref"); got != before {
		t.Errorf("changing expose and connects_to changed the fingerprint")
	}
	s.Env = map[string]string{"A": "1"}
	if got := Fingerprint(*s, "ref"); got == before {
		t.Errorf("changing env kept the fingerprint; the test compares nothing")
	}
}

// TestApplyRefusesIngressWhileNoHostServesIt: until the agents run the
// proxy, a spec with ingress is refused with the fix instead of being
// stored and silently not served.
func TestApplyRefusesIngressWhileNoHostServesIt(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	code, body := postApply(t, n, "service: web\nimage: "+ref+"\ningress: [{listen: 80, port: 8080}]\n")
	if code != http.StatusBadRequest || !strings.Contains(body, `"code":"invalid_spec"`) || !strings.Contains(body, "ports:") {
		t.Fatalf("apply = %d %s\nwant 400 invalid_spec naming ingress and ports:", code, body)
	}
	if _, ok := n.store.View().Service("web"); ok {
		t.Fatalf("a refused apply stored service web")
	}
}

// A rollback restores a revision's ingress claims: `rollback --to` a
// revision whose listen port another service took since is refused with
// 409 naming that service, and stores nothing.
func TestRollbackRefusesIngressConflicts(t *testing.T) {
	n := mustStartNodeWith(t, func(c *Config) { c.ServeIngress = true })
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	doc := func(service string, listen int) string {
		return fmt.Sprintf("service: %s\nimage: %s\nupdate: {monitor: 0s}\ningress: [{listen: %d, port: 8080}]\n", service, ref, listen)
	}
	for _, d := range []string{doc("api", 8080), doc("api", 8081), doc("web", 8080)} {
		if code, body := postApply(t, n, d); code >= 300 {
			t.Fatalf("apply: %d %s", code, body)
		}
	}
	status, apiErr := postRollback(t, n, "api", 1)
	if status != http.StatusConflict || apiErr.Code != "conflict" || !strings.Contains(apiErr.Error, "service web") {
		t.Fatalf("rollback api --to 1 = %d %q %s, want 409 conflict naming service web", status, apiErr.Code, apiErr.Error)
	}
	if revs := n.store.View().Revisions("api"); len(revs) != 2 {
		t.Fatalf("a refused rollback stored a revision: %d revisions", len(revs))
	}
}

// Two services applied at the same moment with the same listen port: the
// check before the registry lookups passes for both, the one before the
// write lets exactly one through.
func TestConcurrentAppliesCannotBothClaimAPort(t *testing.T) {
	n := mustStartNodeWith(t, func(c *Config) { c.ServeIngress = true })
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	for round := range 8 {
		listen := 31000 + round
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i, service := range []string{fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)} {
			wg.Go(func() {
				codes[i], _ = postApply(t, n, fmt.Sprintf("service: %s\nimage: %s\ningress: [{listen: %d, port: 8080}]\n", service, ref, listen))
			})
		}
		wg.Wait()
		won := 0
		for _, code := range codes {
			switch {
			case code < 300:
				won++
			case code != http.StatusConflict:
				t.Fatalf("round %d: apply answered %d, want 2xx or 409", round, code)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d services claimed listen %d (codes %v), want exactly 1", round, won, listen, codes)
		}
	}
}

// A host's proxy that cannot open a listen port reports it; the service's
// status names the host, the address and the cause, and the next report
// without it clears it. The hop listener's problem is the host's, not the
// service's.
func TestStatusShowsHostsThatCannotOpenAListenPort(t *testing.T) {
	n := mustStartNodeWith(t, func(c *Config) { c.ServeIngress = true })
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	if code, body := postApply(t, n, "service: web\nimage: "+ref+"\ningress: [{listen: 8088, port: 8080}]\n"); code >= 300 {
		t.Fatalf("apply: %d %s", code, body)
	}
	ctx := context.Background()
	problems := []state.ProxyProblem{
		{Addr: "10.0.0.5:7073", Error: "listen: bind: address already in use"},
		{Listen: 8088, Addr: "0.0.0.0:8088", Error: "listen: bind: address already in use"},
		{Listen: 9999, Addr: "0.0.0.0:9999", Error: "listen: bind: permission denied"},
	}
	if err := n.ctrl.Report(ctx, state.HostReport{Host: "h1", ProxyProblems: problems}); err != nil {
		t.Fatal(err)
	}
	view := n.store.View()
	svc, _ := view.Service("web")
	got := serviceStatus(view, connectionJudgeOf(view), svc).IngressProblems
	if len(got) != 1 || got[0].Host != "h1" || got[0].Listen != 8088 || got[0].Addr != "0.0.0.0:8088" {
		t.Fatalf("ingress problems %+v, want host h1's listen 8088 only", got)
	}
	if h, _ := view.Host("h1"); len(h.ProxyProblems) != 3 {
		t.Fatalf("host record problems %+v, want all three", h.ProxyProblems)
	}
	if err := n.ctrl.Report(ctx, state.HostReport{Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	view = n.store.View()
	if got := serviceStatus(view, connectionJudgeOf(view), svc).IngressProblems; len(got) != 0 {
		t.Fatalf("problems after a clean report: %+v", got)
	}
}
