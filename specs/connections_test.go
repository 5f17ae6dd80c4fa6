package specs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseExposeAndConnections(t *testing.T) {
	s := mustParse(t, minimalYAML+`expose:
  - {port: 5432, protocol: TCP}
  - 8080
  - port: 9090
connects_to:
  - db
  - {service: api, port: 8080}
  - {service: api, port: 443}
  - auth
`)
	wantExpose := []Expose{{Port: 5432, Protocol: "tcp"}, {Port: 8080, Protocol: "http"}, {Port: 9090, Protocol: "http"}}
	if !reflect.DeepEqual(s.Expose, wantExpose) {
		t.Errorf("expose = %+v, want %+v (sorted by port, protocol lower-case, http by default)", s.Expose, wantExpose)
	}
	wantConns := []Connection{{Service: "api", Port: 443}, {Service: "api", Port: 8080}, {Service: "auth"}, {Service: "db"}}
	if !reflect.DeepEqual(s.ConnectsTo, wantConns) {
		t.Errorf("connects_to = %+v, want %+v (sorted by service and port)", s.ConnectsTo, wantConns)
	}
	// The canonical form is a fixed point of ApplyDefaults; a clone is deep.
	c := s.Clone()
	c.ApplyDefaults()
	if !reflect.DeepEqual(c, s) {
		t.Errorf("ApplyDefaults changed a parsed spec: %+v", c)
	}
	c.Expose[0].Port, c.ConnectsTo[0].Service = 1, "x"
	if s.Expose[0].Port != 5432 || s.ConnectsTo[0].Service != "api" {
		t.Errorf("Clone shares expose or connects_to")
	}
	body, _ := json.Marshal(s)
	for _, want := range []string{`"expose":[{"port":5432,"protocol":"tcp"},`, `"connects_to":[{"service":"api","port":443},`, `{"service":"auth"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("JSON %s lacks %s", body, want)
		}
	}
}

// A spec without the fields has the JSON it had (the fingerprints of
// stored revisions hash it).
func TestExposeAbsentKeepsJSON(t *testing.T) {
	body, _ := json.Marshal(mustParse(t, minimalYAML+"expose: []\nconnects_to: []\n"))
	if strings.Contains(string(body), "expose") || strings.Contains(string(body), "connects_to") {
		t.Errorf("a spec without expose or connects_to has %s", body)
	}
}

func connectionInvalidCases() []invalidCase {
	return []invalidCase{
		{"expose not a list", "expose: 8080\n", "expose", 3, "expected a list"},
		{"expose quoted port", "expose: [\"8080\"]\n", "expose[0]", 3, "write 8080 without quotes"},
		{"expose compose protocol", "expose: [5432/tcp]\n", "expose[0]", 3, "write {port: 5432, protocol: tcp}"},
		{"expose word", "expose: [http]\n", "expose[0]", 3, "expected a port number like 8080, or a mapping"},
		{"expose list item", "expose: [[80]]\n", "expose[0]", 3, "got a list"},
		{"expose port zero", "expose: [0]\n", "expose[0].port", 3, "1 to 65535"},
		{"expose port too big", "expose:\n  - 70000\n", "expose[0].port", 4, "1 to 65535"},
		{"expose port missing", "expose:\n  - protocol: tcp\n", "expose[0].port", 4, "required"},
		{"expose port word", "expose: [{port: web}]\n", "expose[0].port", 3, "expected an integer"},
		{"expose udp", "expose: [{port: 53, protocol: udp}]\n", "expose[0].protocol", 3, "udp is not supported"},
		{"expose protocol word", "expose: [{port: 53, protocol: grpc}]\n", "expose[0].protocol", 3, "write http (the default"},
		{"expose unknown key", "expose:\n  - port: 80\n    protocl: tcp\n", "expose[0].protocl", 5, "did you mean protocol?"},
		{"expose alias key", "expose:\n  - port: 80\n    proto: tcp\n", "expose[0].proto", 5, "did you mean protocol?"},
		{"expose twice", "expose:\n  - 8080\n  - {port: 8080, protocol: tcp}\n", "expose[1]", 5, "already exposed by expose[0]"},
		{"connects_to not a list", "connects_to: db\n", "connects_to", 3, "expected a list"},
		{"connects_to bad name", "connects_to: [Db]\n", "connects_to[0].service", 3, "is not a valid service name"},
		{"connects_to host:port", "connects_to: [\"db:5432\"]\n", "connects_to[0]", 3, "write {service: db, port: 5432}"},
		{"connects_to itself", "connects_to:\n  - api\n  - web\n", "connects_to[1].service", 5, "web cannot connect to itself"},
		{"connects_to service missing", "connects_to:\n  - port: 80\n", "connects_to[0].service", 4, "required"},
		{"connects_to port zero", "connects_to:\n  - {service: db, port: 0}\n", "connects_to[0].port", 4, "leave port out for every port"},
		{"connects_to port negative", "connects_to: [{service: db, port: -1}]\n", "connects_to[0].port", 3, "1 to 65535"},
		{"connects_to port word", "connects_to: [{service: db, port: pg}]\n", "connects_to[0].port", 3, "expected an integer"},
		{"connects_to unknown key", "connects_to:\n  - {service: db, prot: 5432}\n", "connects_to[0].prot", 4, "did you mean port?"},
		{"connects_to alias key", "connects_to:\n  - {service: db, target_port: 5432}\n", "connects_to[0].target_port", 4, "did you mean port?"},
		{"connects_to mapping of a list", "connects_to: [[db]]\n", "connects_to[0]", 3, "expected a service name like db"},
		{"connects_to twice", "connects_to:\n  - db\n  - db\n", "connects_to[1]", 5, "already declared by connects_to[0]"},
		{"connects_to port twice", "connects_to:\n  - {service: db, port: 1}\n  - {service: db, port: 1}\n", "connects_to[1]", 5, "already declared"},
		{"connects_to port after bare", "connects_to:\n  - db\n  - {service: db, port: 5432}\n", "connects_to[1]", 5, "already covered by connects_to[0]"},
		{"connects_to bare after port", "connects_to:\n  - {service: db, port: 5432}\n  - db\n", "connects_to[1]", 5, "covers connects_to[0] (db:5432) already"},
		{"links", "links: [db]\n", "links", 3, "did you mean connects_to?"},
		{"depends_on", "depends_on: [db]\n", "depends_on", 3, "did you mean connects_to?"},
		{"exposes", "exposes: [80]\n", "exposes", 3, "did you mean expose?"},
		{"expose on the host network", "network_mode: host\nexpose: [8080]\n", "network_mode", 3, "host has no service network"},
		{"connects_to without a network", "network_mode: none\nconnects_to: [db]\n", "network_mode", 3, "none has no service network"},
	}
}

func TestParseConnectionsInvalid(t *testing.T) {
	checkInvalidCases(t, connectionInvalidCases())
}

func TestParseConnectionsAccepts(t *testing.T) {
	for _, doc := range []string{
		"expose: [80, 443]\nconnects_to: [db, api]\n",
		// Two ports of one service, and the same port of two services.
		"connects_to:\n  - {service: db, port: 5432}\n  - {service: db, port: 5433}\n  - {service: auth, port: 5432}\n",
		"expose: [{port: 65535, protocol: http}, {port: 1, protocol: tcp}]\n",
		"network_mode: bridge\nexpose: [80]\n",
		"expose: []\nconnects_to: []\n",
		"connects_to: [&x db]\nenv: {A: *x}\n",
	} {
		mustParse(t, minimalYAML+doc)
	}
}

// Validate takes what Parse would produce and any order (a Go caller need
// not sort); it refuses what only Parse canonicalises.
func TestValidateConnectionsFromGo(t *testing.T) {
	s := mustParse(t, minimalYAML)
	s.Expose = []Expose{{Port: 9090, Protocol: "http"}, {Port: 80, Protocol: "tcp"}}
	s.ConnectsTo = []Connection{{Service: "db"}, {Service: "api", Port: 80}}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate of unsorted lists: %v", err)
	}
	s.Expose = []Expose{{Port: 80, Protocol: "TCP"}}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), `expose[0].protocol: write "TCP" as tcp`) {
		t.Errorf("Validate = %v", err)
	}
	s.Expose = []Expose{{Port: 80}}
	s.ApplyDefaults()
	if s.Expose[0].Protocol != "http" {
		t.Errorf("ApplyDefaults left protocol %q", s.Expose[0].Protocol)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate after ApplyDefaults: %v", err)
	}
	s.ConnectsTo = []Connection{{Service: "web"}}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "itself") {
		t.Errorf("Validate of a connection to itself = %v", err)
	}
}

func TestUnknownFieldMessageConnections(t *testing.T) {
	for _, tt := range []struct{ section, name, want string }{
		{"", "connect_to", "unknown field; did you mean connects_to?"},
		{"", "connections", "unknown field; did you mean connects_to?"},
		{"", "exposed_ports", "unknown field; did you mean expose?"},
		{"connects_to", "name", "unknown field; did you mean service?"},
		{"connects_to", "servce", "unknown field; did you mean service?"},
		{"expose", "listen", "unknown field; did you mean ingress.listen?"},
	} {
		if got := unknownFieldMessage(tt.section, tt.name); got != tt.want {
			t.Errorf("unknownFieldMessage(%q, %q) = %q, want %q", tt.section, tt.name, got, tt.want)
		}
	}
}
