package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/specs"
)

// Every host's proxy opens an ingress entry's listen port: the policy
// bounds which (issue 8; a spec author must not take a host service's
// port on every host at once).
func TestIngressListenPorts(t *testing.T) {
	spec := func(ports ...int) *specs.Spec {
		s := &specs.Spec{Service: "web", Image: "registry.example.com/web:1"}
		for _, p := range ports {
			s.Ingress = append(s.Ingress, specs.Ingress{Listen: p, Port: 8080, Protocol: "http", Path: "/"})
		}
		return s
	}
	refused := func(p *Policy, s *specs.Spec) []string {
		var fields []string
		for _, v := range Check(p, s, "registry.example.com") {
			if v.Rule == RuleIngressListenPorts {
				fields = append(fields, v.Field)
			}
		}
		return fields
	}
	def := Default()
	if got := refused(def, spec(80, 443, 8080, 65535)); got != nil {
		t.Errorf("the default policy refuses %v", got)
	}
	got := refused(def, spec(80, 22, 53))
	if strings.Join(got, ",") != "ingress[1].listen,ingress[2].listen" {
		t.Errorf("the default policy refuses %v, want ports 22 and 53", got)
	}
	var v []Violation
	for _, x := range Check(def, spec(22), "registry.example.com") {
		if x.Rule == RuleIngressListenPorts {
			v = append(v, x)
		}
	}
	if len(v) != 1 || !strings.Contains(v[0].Fix, "add 22 to ingress_listen_ports") || !strings.Contains(v[0].Fix, "80, 443, 1024-65535") {
		t.Errorf("violation %+v does not name the allowed ports and the fix", v)
	}

	narrow := mustParse(t, "ingress_listen_ports: [\"443\", 30000-32767]\n")
	if got := refused(narrow, spec(443, 30000, 32767, 80, 8080)); strings.Join(got, ",") != "ingress[3].listen,ingress[4].listen" {
		t.Errorf("a narrow policy refuses %v, want 80 and 8080", got)
	}
	none := mustParse(t, "ingress_listen_ports: []\n")
	if none.IngressListenPorts == nil || len(refused(none, spec(443))) != 1 {
		t.Errorf("an empty list must allow no ingress: %+v", none.IngressListenPorts)
	}
	// A policy stored before the key existed has none: the default holds.
	var stored Policy
	if err := json.Unmarshal([]byte(`{"allow_capabilities":["NET_BIND_SERVICE"],"version":3}`), &stored); err != nil {
		t.Fatal(err)
	}
	if got := refused(&stored, spec(22, 8080)); strings.Join(got, ",") != "ingress[0].listen" {
		t.Errorf("a stored policy without the key refuses %v, want the default's answer (22 only)", got)
	}
	// The JSON keeps an empty list apart from none.
	b, _ := json.Marshal(none)
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil || back.IngressListenPorts == nil {
		t.Errorf("empty list lost in JSON: %s", b)
	}
}

func TestIngressListenPortsValidation(t *testing.T) {
	for _, tt := range []struct{ value, want string }{
		{`["http"]`, `ingress_listen_ports[0]: "http" is not a port or a range`},
		{`["0"]`, `"0" is outside 1-65535`},
		{`["9000-8000"]`, `write the lower port first, like "8000-9000"`},
		{`["80-70000"]`, `outside 1-65535`},
	} {
		_, err := Parse([]byte("ingress_listen_ports: " + tt.value + "\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ingress_listen_ports: %s = %v, want an error containing %q", tt.value, err, tt.want)
		}
	}
	if _, err := Parse([]byte("ingress_ports: [\"80\"]\n")); err == nil || !strings.Contains(err.Error(), "did you mean ingress_listen_ports?") {
		t.Errorf("alias: %v", err)
	}
}
