package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// The status table shows each ingress entry and, for a host whose proxy
// cannot open one of its listen ports, a warning with the host, the
// address, the cause and the fix.
func TestPrintStatusShowsIngressAndItsProblems(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, wire.ServiceStatus{
		Service: "web", Revision: 2,
		Ingress: []specs.Ingress{
			{Listen: 80, Protocol: "http", Host: "a.example.com", Path: "/api", Port: 8080},
			{Listen: 5432, Protocol: "tcp", Port: 5432},
		},
		IngressProblems: []wire.HostProxyProblem{{Host: "h2", ProxyProblem: state.ProxyProblem{Listen: 80, Addr: "0.0.0.0:80", Error: "listen: bind: address already in use"}}},
	})
	for _, want := range []string{
		"ingress:   http :80 host=a.example.com path=/api -> 8080\n",
		"ingress:   tcp :5432 -> 5432\n",
		"warning:   host h2 cannot listen on 0.0.0.0:80 (listen: bind: address already in use): its proxy keeps trying; free the port or change listen\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
}

// Issue 9: the status shows the service's address, what it exposes and one
// line per declared connection, unresolved ones flagged with the reason.
func TestPrintStatusShowsConnections(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, wire.ServiceStatus{
		Service: "web", Revision: 3, Address: "198.18.0.2",
		Expose: []specs.Expose{{Port: 5432, Protocol: "tcp"}, {Port: 8080, Protocol: "http"}},
		Connections: []wire.ConnectionStatus{
			{Service: "api", Resolved: true, Address: "198.18.0.1", Ports: []specs.Expose{{Port: 8080, Protocol: "http"}, {Port: 9090, Protocol: "http"}}},
			{Service: "auth", Reason: "no such service: auth does not exist; the connection resolves once it is applied"},
			{Service: "db", Port: 5432, Resolved: true, Address: "198.18.0.3", Ports: []specs.Expose{{Port: 5432, Protocol: "tcp"}}},
			{Service: "vault", Port: 8200, Reason: "denied by policy: service vault accepts connections only from admin"},
		},
	})
	for _, want := range []string{
		"address:   198.18.0.2\n",
		"expose:    5432/tcp, 8080/http\n",
		"connects:  api -> 198.18.0.1 8080/http, 9090/http\n",
		"connects:  auth  UNRESOLVED: no such service: auth does not exist; the connection resolves once it is applied\n",
		"connects:  db:5432 -> 198.18.0.3 5432/tcp\n",
		"connects:  vault:8200  UNRESOLVED: denied by policy: service vault accepts connections only from admin\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
	// A service without connections or an address shows neither.
	out.Reset()
	printStatus(&out, wire.ServiceStatus{Service: "web"})
	if strings.Contains(out.String(), "address:") || strings.Contains(out.String(), "connects:") {
		t.Errorf("status of a plain service:\n%s", out.String())
	}
	// Before addresses are on, the line says why there is none.
	out.Reset()
	printStatus(&out, wire.ServiceStatus{Service: "web", Expose: []specs.Expose{{Port: 80, Protocol: "http"}}})
	if !strings.Contains(out.String(), "address:   none yet") {
		t.Errorf("status without an address:\n%s", out.String())
	}
}
