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
