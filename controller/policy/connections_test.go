package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/specs"
)

// The connections rule: a service with an entry accepts only the callers
// it lists; one without accepts any declared caller.
func TestCheckConnections(t *testing.T) {
	p := mustParse(t, "connections:\n  - {service: db, from: [web, admin]}\n  - {service: vault, from: []}\n")
	spec := func(service string, to ...string) *specs.Spec {
		s := &specs.Spec{Service: service, Image: "registry.example.com/" + service + ":1"}
		for _, t := range to {
			s.ConnectsTo = append(s.ConnectsTo, specs.Connection{Service: t})
		}
		return s
	}
	refused := func(p *Policy, s *specs.Spec) []Violation {
		var out []Violation
		for _, v := range Check(p, s, "registry.example.com") {
			if v.Rule == RuleConnections {
				out = append(out, v)
			}
		}
		return out
	}
	for _, tt := range []struct {
		name string
		spec *specs.Spec
		want []string // refused fields
	}{
		{"a listed caller", spec("web", "db"), nil},
		{"another listed caller", spec("admin", "db"), nil},
		{"a service without an entry", spec("api", "cache", "queue"), nil},
		{"an unlisted caller", spec("api", "cache", "db"), []string{"connects_to[1]"}},
		{"an entry with no caller", spec("web", "vault", "db"), []string{"connects_to[0]"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := refused(p, tt.spec)
			if len(got) != len(tt.want) {
				t.Fatalf("violations %s, want fields %v", describeViolations(got), tt.want)
			}
			for i, v := range got {
				if v.Field != tt.want[i] {
					t.Errorf("violation %d on %s, want %s", i, v.Field, tt.want[i])
				}
			}
		})
	}
	v := refused(p, &specs.Spec{Service: "api", Image: "registry.example.com/api:1", ConnectsTo: []specs.Connection{{Service: "db", Port: 5432}}})
	if len(v) != 1 || v[0].Reason != "api wants to connect to db:5432, but service db accepts connections only from web, admin (the policy's connections entry for db)" ||
		!strings.Contains(v[0].Fix, "add api to the from list of the connections entry for db in the policy (deployctl policy set)") {
		t.Errorf("violation %s", describeViolations(v))
	}
	if err := Deny(v); !errors.Is(err, ErrDenied) {
		t.Errorf("Deny = %v", err)
	}
	if p.ConnectionAllowed("api", "db") || !p.ConnectionAllowed("web", "db") || !p.ConnectionAllowed("api", "cache") {
		t.Error("ConnectionAllowed disagrees with Check")
	}
	if d := p.ConnectionDenial("web", "vault"); !strings.Contains(d, "accepts connections only from no service") {
		t.Errorf("ConnectionDenial = %q", d)
	}
	// The default policy and a policy stored before the key allow any.
	if got := refused(Default(), spec("api", "db")); got != nil {
		t.Errorf("the default policy refuses %s", describeViolations(got))
	}
	var stored Policy
	if err := json.Unmarshal([]byte(`{"allow_capabilities":["NET_BIND_SERVICE"],"version":4}`), &stored); err != nil {
		t.Fatal(err)
	}
	if got := refused(&stored, spec("api", "db")); got != nil || stored.Connections != nil || stored.Validate() != nil {
		t.Errorf("a stored policy without connections refuses %s", describeViolations(got))
	}
	if !(*Policy)(nil).ConnectionAllowed("a", "b") {
		t.Error("a nil policy refuses a connection")
	}
}

func TestParseConnectionsProblems(t *testing.T) {
	for _, tt := range []invalidPolicyCase{
		{"not a list", "connections: {service: db}\n", "connections", 1, "expected a list"},
		{"entry not a mapping", "connections:\n  - db\n", "connections[0]", 2, "expected a mapping of service, from"},
		{"service missing", "connections:\n  - from: [web]\n", "connections[0].service", 2, "required; name the service"},
		{"from missing", "connections:\n  - service: db\n", "connections[0].from", 2, "required; list the services that may connect to db"},
		{"from not a list", "connections:\n  - service: db\n    from: web\n", "connections[0].from", 3, "expected a list"},
		{"bad service", "connections:\n  - {service: DB, from: [web]}\n", "connections[0].service", 2, `"DB" is not a service name`},
		{"bad caller", "connections:\n  - service: db\n    from: [web, web_2]\n", "connections[0].from[1]", 3, `"web_2" is not a service name`},
		{"caller twice", "connections:\n  - service: db\n    from: [web, admin, web]\n", "connections[0].from[2]", 3, "already listed (from[0])"},
		{"caller itself", "connections:\n  - service: db\n    from: [db]\n", "connections[0].from[0]", 3, "cannot connect to itself"},
		{"two entries", "connections:\n  - {service: db, from: [web]}\n  - {service: db, from: [admin]}\n", "connections[1].service", 3, "already has an entry (connections[0])"},
		{"key typo", "connections:\n  - {service: db, from: [web], frm: [x]}\n", "connections[0].frm", 2, "did you mean from?"},
		{"key alias", "connections:\n  - service: db\n    from: [web]\n    callers: [admin]\n", "connections[0].callers", 4, "did you mean from?"},
		{"spec's name", "connects_to: []\n", "connects_to", 1, "did you mean connections?"},
		{"connections key at the top level", "from: [web]\n", "from", 1, "did you mean from in a connections entry?"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			problems := mustProblems(t, tt.yaml)
			if len(problems) != 1 {
				t.Fatalf("got %d problems, want 1:\n%s", len(problems), (&ValidationError{problems}).Error())
			}
			p := problems[0]
			if p.Field != tt.field || p.Line != tt.line || !strings.Contains(p.Message, tt.message) {
				t.Errorf("problem = %q\nwant field %q, line %d, message containing %q", p.String(), tt.field, tt.line, tt.message)
			}
		})
	}
	// The same rules for a policy from Go or JSON.
	p := &Policy{Connections: []ConnectionRule{{Service: "db"}}}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "connections[0].from: required") {
		t.Errorf("Validate = %v", err)
	}
}
