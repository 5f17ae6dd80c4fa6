package specs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseIngress(t *testing.T) {
	s := mustParse(t, minimalYAML+`ingress:
  - listen: 80
    port: 8080
    host: API.Example.com
    path: /v1
  - {listen: 80, port: 8080, host: "*.example.com"}
  - {listen: 5432, port: 5432, protocol: TCP}
  - {listen: 8443, port: 8080}
`)
	want := []Ingress{
		{Listen: 80, Port: 8080, Protocol: "http", Host: "api.example.com", Path: "/v1"},
		{Listen: 80, Port: 8080, Protocol: "http", Host: "*.example.com", Path: "/"},
		{Listen: 5432, Port: 5432, Protocol: "tcp"},
		{Listen: 8443, Port: 8080, Protocol: "http", Path: "/"},
	}
	if len(s.Ingress) != len(want) {
		t.Fatalf("ingress = %+v, want %+v", s.Ingress, want)
	}
	for i := range want {
		if s.Ingress[i] != want[i] {
			t.Errorf("ingress[%d] = %+v, want %+v", i, s.Ingress[i], want[i])
		}
	}
	// The canonical form is what Validate wants: ApplyDefaults changes
	// nothing, and a clone is deep.
	before, _ := json.Marshal(s)
	c := s.Clone()
	c.ApplyDefaults()
	after, _ := json.Marshal(c)
	if string(before) != string(after) {
		t.Errorf("ApplyDefaults changed a parsed spec:\n%s\n%s", before, after)
	}
	c.Ingress[0].Host = "other"
	if s.Ingress[0].Host != "api.example.com" {
		t.Errorf("Clone shares the ingress list")
	}
}

func TestIngressAbsentKeepsJSON(t *testing.T) {
	body, _ := json.Marshal(mustParse(t, minimalYAML))
	if strings.Contains(string(body), "ingress") {
		t.Errorf("a spec without ingress has %s", body)
	}
}

func TestApplyDefaultsIngress(t *testing.T) {
	s := mustParse(t, minimalYAML)
	s.Ingress = []Ingress{{Listen: 80, Port: 8080, Host: "WWW.Example.COM"}, {Listen: 22, Port: 22, Protocol: "TCP"}}
	s.ApplyDefaults()
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate after ApplyDefaults: %v", err)
	}
	if got := s.Ingress[0]; got.Protocol != "http" || got.Host != "www.example.com" || got.Path != "/" {
		t.Errorf("ingress[0] = %+v", got)
	}
	if got := s.Ingress[1]; got.Protocol != "tcp" || got.Path != "" {
		t.Errorf("ingress[1] = %+v", got)
	}
}

func ingressInvalidCases() []invalidCase {
	return []invalidCase{
		{"not a list", "ingress: {listen: 80}\n", "ingress", 3, "expected a list"},
		{"item not a mapping", "ingress: [80]\n", "ingress[0]", 3, "expected a mapping like {listen: 80"},
		{"listen missing", "ingress:\n  - port: 8080\n", "ingress[0].listen", 4, "required"},
		{"port missing", "ingress:\n  - listen: 80\n", "ingress[0].port", 4, "required; name the container port"},
		{"listen zero", "ingress: [{listen: 0, port: 80}]\n", "ingress[0].listen", 3, "1 to 65535"},
		{"listen too big", "ingress: [{listen: 65536, port: 80}]\n", "ingress[0].listen", 3, "1 to 65535"},
		{"listen word", "ingress: [{listen: http, port: 80}]\n", "ingress[0].listen", 3, "expected an integer"},
		{"port too big", "ingress:\n  - listen: 80\n    port: 70000\n", "ingress[0].port", 5, "container port"},
		{"unknown key", "ingress:\n  - listen: 80\n    port: 80\n    hots: a.b\n", "ingress[0].hots", 6, "did you mean host?"},
		{"unknown key far", "ingress:\n  - listen: 80\n    port: 80\n    backend: x\n", "ingress[0].backend", 6, "valid fields are listen, port, protocol, host, path, tls"},
		{"duplicate key", "ingress:\n  - listen: 80\n    port: 80\n    listen: 81\n", "ingress[0].listen", 6, "already set on line 4"},
		{"protocol udp", "ingress: [{listen: 53, port: 53, protocol: udp}]\n", "ingress[0].protocol", 3, "publish it with ports:"},
		{"protocol word", "ingress: [{listen: 53, port: 53, protocol: https}]\n", "ingress[0].protocol", 3, "write http (the default) or tcp"},
		{"host on tcp", "ingress: [{listen: 5432, port: 5432, protocol: tcp, host: db.example.com}]\n", "ingress[0].host", 3, "a tcp entry cannot route by host"},
		{"path on tcp", "ingress: [{listen: 5432, port: 5432, protocol: tcp, path: /}]\n", "ingress[0].path", 3, "a tcp entry cannot route by path"},
		{"host with port", "ingress: [{listen: 80, port: 80, host: \"a.example.com:80\"}]\n", "ingress[0].host", 3, "write the name alone"},
		{"host trailing dot", "ingress: [{listen: 80, port: 80, host: a.example.com.}]\n", "ingress[0].host", 3, "write a.example.com"},
		{"host underscore", "ingress: [{listen: 80, port: 80, host: a_b.example.com}]\n", "ingress[0].host", 3, `the label "a_b"`},
		{"host label dash", "ingress: [{listen: 80, port: 80, host: -a.example.com}]\n", "ingress[0].host", 3, `the label "-a"`},
		{"host empty label", "ingress: [{listen: 80, port: 80, host: a..example.com}]\n", "ingress[0].host", 3, "empty label"},
		{"host wildcard inside", "ingress: [{listen: 80, port: 80, host: a.*.example.com}]\n", "ingress[0].host", 3, "whole first label"},
		{"host wildcard partial", "ingress: [{listen: 80, port: 80, host: \"a*.example.com\"}]\n", "ingress[0].host", 3, "whole first label"},
		{"host bare wildcard", "ingress: [{listen: 80, port: 80, host: \"*\"}]\n", "ingress[0].host", 3, "whole first label"},
		{"host too long", "ingress: [{listen: 80, port: 80, host: " + strings.Repeat("a.", 127) + "aa}]\n", "ingress[0].host", 3, "longer than 253"},
		{"host label too long", "ingress: [{listen: 80, port: 80, host: " + strings.Repeat("a", 64) + ".com}]\n", "ingress[0].host", 3, "1 to 63"},
		{"host unicode", "ingress: [{listen: 80, port: 80, host: bücher.example}]\n", "ingress[0].host", 3, "label"},
		{"path relative", "ingress: [{listen: 80, port: 80, path: api}]\n", "ingress[0].path", 3, "must start with /, like /api"},
		{"path empty", "ingress: [{listen: 80, port: 80, path: \"\"}]\n", "ingress[0].path", 3, "empty"},
		{"path dotdot", "ingress: [{listen: 80, port: 80, path: /a/../b}]\n", "ingress[0].path", 3, `".." segment`},
		{"path dot", "ingress: [{listen: 80, port: 80, path: /a/./b}]\n", "ingress[0].path", 3, `"." segment`},
		{"path double slash", "ingress: [{listen: 80, port: 80, path: /a//b}]\n", "ingress[0].path", 3, "empty segment"},
		{"path trailing slash", "ingress: [{listen: 80, port: 80, path: /api/}]\n", "ingress[0].path", 3, "as /api"},
		{"path query", "ingress: [{listen: 80, port: 80, path: \"/api?x=1\"}]\n", "ingress[0].path", 3, "query"},
		{"path fragment", "ingress: [{listen: 80, port: 80, path: /api#x}]\n", "ingress[0].path", 3, "like /api"},
		{"path space", "ingress: [{listen: 80, port: 80, path: /a b}]\n", "ingress[0].path", 3, "escaped"},
		{"path bad escape", "ingress: [{listen: 80, port: 80, path: /a%zz}]\n", "ingress[0].path", 3, "two hex digits"},
		{"tcp twice", "ingress:\n  - {listen: 22, port: 22, protocol: tcp}\n  - {listen: 22, port: 2222, protocol: tcp}\n",
			"ingress[1]", 5, "tcp listen 22 uses the same tcp listen port as ingress[0] of this spec"},
		{"tcp after http", "ingress:\n  - {listen: 80, port: 80}\n  - {listen: 80, port: 81, protocol: tcp}\n",
			"ingress[1]", 5, "also routed by another protocol"},
		{"same host and path", "ingress:\n  - {listen: 80, port: 80, host: a.example.com, path: /x}\n  - {listen: 80, port: 81, host: A.example.com, path: /x}\n",
			"ingress[1]", 5, "routes the same host and path as ingress[0]"},
		{"same default path", "ingress:\n  - {listen: 80, port: 80}\n  - {listen: 80, port: 81, path: /}\n",
			"ingress[1]", 5, "routes the same host and path"},
		{"ingress on the host network", "network_mode: host\ningress: [{listen: 80, port: 80}]\n", "network_mode", 3, "host cannot serve ingress"},
		{"ingress without a network", "network_mode: none\ningress: [{listen: 80, port: 80}]\n", "network_mode", 3, "none cannot serve ingress"},
		{"listen is a published port", "ports: [\"127.0.0.1:8080:80\"]\ningress:\n  - {listen: 8080, port: 80}\n",
			"ingress[0]", 5, "uses the same port as ports[0] of this spec"},
	}
}

func TestParseIngressInvalid(t *testing.T) {
	checkInvalidCases(t, ingressInvalidCases())
}

func TestParseIngressAccepts(t *testing.T) {
	for _, doc := range []string{
		"ingress:\n  - {listen: 80, port: 80, host: a.example.com}\n  - {listen: 80, port: 81, host: b.example.com}\n",
		"ingress:\n  - {listen: 80, port: 80, host: a.example.com}\n  - {listen: 80, port: 81, host: a.example.com, path: /api}\n",
		"ingress:\n  - {listen: 80, port: 80, host: \"*.example.com\"}\n  - {listen: 80, port: 81, host: a.example.com}\n",
		"ingress:\n  - {listen: 80, port: 80}\n  - {listen: 443, port: 80}\n  - {listen: 22, port: 22, protocol: tcp}\n",
		"ingress: [{listen: 80, port: 80, host: 10.0.0.1, path: \"/a-b_c.d~e/%2F/@x\"}]\n",
		// A udp host port does not collide with a (tcp) listen port.
		"ports: [\"53:53/udp\"]\ningress: [{listen: 53, port: 53, protocol: tcp}]\n",
		"ingress: []\n",
	} {
		mustParse(t, minimalYAML+doc)
	}
}

func TestValidateIngressFromGo(t *testing.T) {
	s := mustParse(t, minimalYAML)
	s.Ingress = []Ingress{{Listen: 80, Port: 80, Protocol: "HTTP", Path: "/"}}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), `write "HTTP" as http`) {
		t.Errorf("Validate = %v", err)
	}
	s.Ingress = []Ingress{{Listen: 80, Port: 80, Protocol: "http", Host: "A.example.com", Path: "/"}}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), `write "A.example.com" as a.example.com`) {
		t.Errorf("Validate = %v", err)
	}
	s.Ingress = []Ingress{{Listen: 80, Port: 80, Protocol: "http"}}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "ingress[0].path: empty") {
		t.Errorf("Validate of an http entry without a path = %v", err)
	}
}

func spec(t *testing.T, service, doc string) *Spec {
	t.Helper()
	return mustParse(t, "service: "+service+"\nimage: registry.example.com/"+service+":1\n"+doc)
}

func TestIngressConflicts(t *testing.T) {
	api := spec(t, "api", "ports: [\"0.0.0.0:9000:9000\"]\ningress:\n  - {listen: 80, port: 8080, host: api.example.com}\n  - {listen: 5432, port: 5432, protocol: tcp}\n")
	web := spec(t, "web", "ingress:\n  - {listen: 80, port: 8080, host: \"*.example.com\"}\n")
	others := []*Spec{web, api}
	cases := []struct {
		name, doc string
		field     string
		message   string // "" means no conflict
	}{
		{"same host and path", "ingress: [{listen: 80, port: 80, host: api.example.com}]\n", "ingress[0]",
			"http listen 80 (host api.example.com, path /) routes the same host and path as ingress[0] of service api (http listen 80 (host api.example.com, path /)); choose another host or path, or change service api first"},
		{"same tcp port", "ingress: [{listen: 5432, port: 5432, protocol: tcp}]\n", "ingress[0]",
			"tcp listen 5432 uses the same tcp listen port as ingress[1] of service api (tcp listen 5432); choose another listen port"},
		{"tcp on an http port", "ingress: [{listen: 80, port: 80, protocol: tcp}]\n", "ingress[0]",
			"tcp listen 80 uses a listen port that is also routed by another protocol in ingress[0] of service api"},
		{"http on a tcp port", "ingress: [{listen: 5432, port: 80}]\n", "ingress[0]",
			"http listen 5432 (host any host, path /) uses a listen port that is also routed by another protocol in ingress[1] of service api"},
		{"listen on a published port", "ingress: [{listen: 9000, port: 80}]\n", "ingress[0]",
			"uses the same port as ports[0] of service api (published host port 9000)"},
		{"published port on a listen port", "ports: [\"5432:5432\"]\n", "ports[0]",
			"published host port 5432 uses the same port as ingress[1] of service api (tcp listen 5432); choose another host port, or serve it through ingress instead"},
		{"other path", "ingress: [{listen: 80, port: 80, host: api.example.com, path: /v2}]\n", "", ""},
		{"other host", "ingress: [{listen: 80, port: 80, host: www.example.com}]\n", "", ""},
		{"wildcard and exact differ", "ingress: [{listen: 80, port: 80, host: \"*.other.com\"}]\n", "", ""},
		{"any host", "ingress: [{listen: 80, port: 80}]\n", "", ""},
		{"udp host port", "ports: [\"5432:5432/udp\"]\n", "", ""},
		{"published ports alone are not ingress's business", "ports: [\"0.0.0.0:9000:9000\"]\n", "", ""},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			problems := IngressConflicts(spec(t, "new", tt.doc), others)
			if tt.message == "" {
				if problems != nil {
					t.Fatalf("IngressConflicts = %v, want none", problems)
				}
				return
			}
			if len(problems) != 1 || problems[0].Field != tt.field || !strings.Contains(problems[0].Message, tt.message) {
				t.Fatalf("IngressConflicts = %v\nwant one on %s containing %q", problems, tt.field, tt.message)
			}
		})
	}
	// The service's own current revision is replaced, not collided with;
	// a tcp entry of web against web's own http entry is Validate's job.
	if p := IngressConflicts(spec(t, "api", "ingress: [{listen: 80, port: 80, host: api.example.com}]\n"), others); p != nil {
		t.Errorf("a service conflicts with itself: %v", p)
	}
	// Every entry is checked, not just the first.
	many := spec(t, "new", "ingress:\n  - {listen: 5432, port: 1, protocol: tcp}\n  - {listen: 9000, port: 1, protocol: tcp}\n  - {listen: 81, port: 1}\n")
	if p := IngressConflicts(many, others); len(p) != 2 || p[0].Field != "ingress[0]" || p[1].Field != "ingress[1]" {
		t.Errorf("IngressConflicts = %v, want ingress[0] and ingress[1]", p)
	}
}
