package specs

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// isolationYAML sets every field of the container-isolation issue.
const isolationYAML = minimalYAML + `volumes:
  - /srv/web/static:/static:ro
  - /srv/web/cache:/cache:rw
  - /var/lib/web:/data
network_mode: host
pid: host
ipc: private
userns_mode: host
security:
  user: root
  allow_root: true
  privileged: true
  seccomp: ./profiles/web.json
  apparmor: docker-web_1.0
`

func TestParseIsolationFields(t *testing.T) {
	s := mustParse(t, isolationYAML)
	wantVolumes := []Volume{
		{HostPath: "/srv/web/static", ContainerPath: "/static", ReadOnly: true},
		{HostPath: "/srv/web/cache", ContainerPath: "/cache"},
		{HostPath: "/var/lib/web", ContainerPath: "/data"},
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"volumes", s.Volumes, wantVolumes},
		{"network_mode", s.NetworkMode, "host"},
		{"pid", s.PID, "host"},
		{"ipc", s.IPC, "private"},
		{"userns_mode", s.UsernsMode, "host"},
		{"security.privileged", s.Security.Privileged, true},
		{"security.seccomp", s.Security.Seccomp, "./profiles/web.json"},
		{"security.seccomp mode", s.Security.SeccompMode(), SeccompModeFile},
		{"security.seccomp_profile", s.Security.SeccompProfile, []byte(nil)},
		{"security.apparmor", s.Security.AppArmor, "docker-web_1.0"},
		{"security.allow_root", s.Security.AllowRoot, true},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
}

func TestParseIsolationDefaults(t *testing.T) {
	s := mustParse(t, minimalYAML)
	if s.Volumes != nil || s.NetworkMode != "" || s.PID != "" || s.IPC != "" || s.UsernsMode != "" {
		t.Errorf("volumes %v, network_mode %q, pid %q, ipc %q, userns_mode %q; want all unset",
			s.Volumes, s.NetworkMode, s.PID, s.IPC, s.UsernsMode)
	}
	sec := s.Security
	if sec.Privileged || sec.Seccomp != "" || sec.SeccompProfile != nil || sec.AppArmor != "" {
		t.Errorf("security = %+v; want privileged false and seccomp, profile, apparmor unset", sec)
	}
	if got := sec.SeccompMode(); got != SeccompDefault {
		t.Errorf("SeccompMode() = %q, want %q", got, SeccompDefault)
	}
	if got := s.EffectiveNetworkMode(); got != NetworkModeBridge {
		t.Errorf("EffectiveNetworkMode() = %q, want %q", got, NetworkModeBridge)
	}
}

func TestParseIsolationValueForms(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(*Spec) bool
	}{
		{"bridge is stored as the default", "network_mode: bridge", func(s *Spec) bool {
			return s.NetworkMode == "" && s.EffectiveNetworkMode() == NetworkModeBridge
		}},
		{"seccomp default is stored as the default", "security: {seccomp: default}", func(s *Spec) bool {
			return s.Security.Seccomp == "" && s.Security.SeccompMode() == SeccompDefault
		}},
		{"seccomp unconfined", "security: {seccomp: unconfined}", func(s *Spec) bool { return s.Security.SeccompMode() == SeccompUnconfined }},
		{"seccomp strict", "security: {seccomp: strict}", func(s *Spec) bool { return s.Security.SeccompMode() == SeccompStrict }},
		{"seccomp file by .json", "security: {seccomp: web.json}", func(s *Spec) bool {
			return s.Security.Seccomp == "web.json" && s.Security.SeccompMode() == SeccompModeFile
		}},
		{"seccomp absolute file", "security: {seccomp: /etc/deployctl/web}", func(s *Spec) bool { return s.Security.SeccompMode() == SeccompModeFile }},
		{"apparmor unconfined", "security: {apparmor: unconfined}", func(s *Spec) bool { return s.Security.AppArmor == AppArmorUnconfined }},
		{"network none without ports", "network_mode: none", func(s *Spec) bool { return s.EffectiveNetworkMode() == NetworkModeNone }},
		{"ipc host", "ipc: host", func(s *Spec) bool { return s.IPC == NamespaceHost }},
		{"privileged false", "security: {privileged: false}", func(s *Spec) bool { return !s.Security.Privileged }},
		{"empty volume list", "volumes: []", func(s *Spec) bool { return s.Volumes != nil && len(s.Volumes) == 0 }},
		{"volume with spaces around", "volumes: [' /srv/a:/a:ro ']", func(s *Spec) bool {
			return reflect.DeepEqual(s.Volumes, []Volume{{HostPath: "/srv/a", ContainerPath: "/a", ReadOnly: true}})
		}},
		{"one host path on two container paths", "volumes: [/srv/a:/a, /srv/a:/b:ro]", func(s *Spec) bool { return len(s.Volumes) == 2 }},
		{"ports stay with the bridge", "network_mode: bridge\nports: [\"8080:80\"]", func(s *Spec) bool { return len(s.Ports) == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := minimalYAML + tt.yaml + "\n"
			if s := mustParse(t, yaml); !tt.check(s) {
				t.Errorf("Parse(%q) = %+v, which fails the check", yaml, s)
			}
		})
	}
}

// Writing a default out in full ("network_mode: bridge", "seccomp:
// default") must not change the revision's fingerprint, which hashes the
// spec's JSON.
func TestParseDefaultsWrittenOutKeepTheJSON(t *testing.T) {
	plain := mustJSON(t, mustParse(t, minimalYAML))
	explicit := mustJSON(t, mustParse(t, minimalYAML+"network_mode: bridge\nsecurity: {seccomp: default, privileged: false}\nvolumes: []\n"))
	if plain != explicit {
		t.Errorf("JSON with the defaults written out\n%s\ndiffers from\n%s", explicit, plain)
	}
}

// The JSON of specs that use none of the new fields is byte for byte what
// the package produced before they existed (captured from the previous
// commit), so the fingerprints of stored revisions do not change.
func TestJSONOfSpecsWithoutNewFieldsIsUnchanged(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"minimal", minimalYAML, `{"service":"web","image":"registry.example.com/web:1.4.2","replicas":1,"resources":{"nano_cpus":1000000000,"memory_bytes":536870912,"pids":256},"healthcheck":{"interval":5000000000,"timeout":2000000000,"retries":3,"start_period":0},"update":{"parallelism":1,"delay":0,"order":"start-first","monitor":10000000000,"max_failure_ratio":0,"failure_action":"rollback","progress_deadline":300000000000},"security":{"read_only":true,"no_new_privileges":true,"cap_drop":["ALL"]},"stop_grace_period":10000000000}`},
		{"full", fullYAML, `{"service":"web","image":"registry.example.com/web:1.4.2","replicas":3,"command":["serve","--port","8080"],"entrypoint":["/bin/app"],"env":{"DEBUG":"yes","LOG_LEVEL":"info","ON":"true","PORT":"8080","RATIO":"0.5"},"ports":[{"host_ip":"127.0.0.1","host_port":8080,"container_port":8080,"protocol":"tcp"},{"host_ip":"0.0.0.0","host_port":9090,"container_port":90,"protocol":"udp"},{"host_ip":"::1","host_port":7070,"container_port":70,"protocol":"tcp"},{"host_ip":"127.0.0.1","host_port":8443,"container_port":443,"protocol":"tcp"}],"resources":{"nano_cpus":500000000,"memory_bytes":268435456,"pids":128},"healthcheck":{"http":{"path":"/healthz","port":8080},"interval":10000000000,"timeout":3000000000,"retries":5,"start_period":90000000000},"update":{"parallelism":2,"delay":1000000000,"order":"stop-first","monitor":20000000000,"max_failure_ratio":0.25,"failure_action":"pause","progress_deadline":600000000000},"placement":{"constraints":["zone == a","disk != hdd","node.id == h3"],"max_per_host":1},"security":{"user":"10001:10001","read_only":false,"no_new_privileges":true,"cap_drop":["ALL"],"cap_add":["NET_BIND_SERVICE","CHOWN"]},"stop_grace_period":30000000000}`},
	}
	for _, tt := range tests {
		if got := mustJSON(t, mustParse(t, tt.yaml)); got != tt.want {
			t.Errorf("JSON of the %s spec changed:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestIsolationFieldsSurviveJSON(t *testing.T) {
	s := mustParse(t, isolationYAML)
	s.Security.SeccompProfile = []byte(`{"defaultAction":"SCMP_ACT_ERRNO"}`)
	var decoded Spec
	if err := json.Unmarshal([]byte(mustJSON(t, s)), &decoded); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&decoded, s) {
		t.Errorf("after a JSON round trip\n got %+v\nwant %+v", &decoded, s)
	}
	mustValidate(t, &decoded)
}

func mustJSON(t *testing.T, s *Spec) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	return string(b)
}

func TestParseVolume(t *testing.T) {
	tests := []struct {
		in   string
		want Volume
	}{
		{"/srv/data:/data", Volume{"/srv/data", "/data", false}},
		{"/srv/data:/data:rw", Volume{"/srv/data", "/data", false}},
		{"/srv/data:/data:ro", Volume{"/srv/data", "/data", true}},
		{"/:/host", Volume{"/", "/host", false}}, // syntax only: the policy refuses "/"
		{"/a..b/c:/d", Volume{"/a..b/c", "/d", false}},
		{" /a:/b ", Volume{"/a", "/b", false}},
	}
	for _, tt := range tests {
		got, err := ParseVolume(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseVolume(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseVolumeRefuses(t *testing.T) {
	tests := []struct{ in, message string }{
		{"", "give both the host and the container path"},
		{"/srv/data", "give both the host and the container path"},
		{"/a:/b:/c:ro", "too many ':'"},
		{"data:/data", "named volumes are not supported"},
		{"./data:/data", `host path "./data" is not absolute`},
		{"/srv/data:data", `container path "data" is not absolute`},
		{"/srv/../etc:/data", `contains ".."`},
		{"/srv:/data/../x", `contains ".."`},
		{"/srv/data/:/data", "write the host path \"/srv/data/\" as /srv/data"},
		{"/srv//data:/data", "as /srv/data"},
		{"/srv/./data:/data", "as /srv/data"},
		{"/srv:/data/", "write the container path \"/data/\" as /data"},
		{"/srv:/", "cannot be /"},
		{"/srv:/data:z", `mode "z" is not ro or rw`},
		{"/srv:/data:RO", `mode "RO" is not ro or rw`},
		{"/srv:/data:", `mode "" is not ro or rw`},
		{":/data", "host path is empty"},
		{"/srv::ro", "container path is empty"},
		{"/srv/a\tb:/data", "control character"},
	}
	for _, tt := range tests {
		_, err := ParseVolume(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.message) || !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ParseVolume(%q) error = %v, want one containing %q and matching ErrInvalidSpec", tt.in, err, tt.message)
		}
	}
}

func TestVolumeStringRoundTrips(t *testing.T) {
	for _, v := range []Volume{{"/srv/a", "/a", false}, {"/srv/b", "/b", true}} {
		got, err := ParseVolume(v.String())
		if err != nil || got != v {
			t.Errorf("ParseVolume(%q) = %+v, %v; want %+v", v.String(), got, err, v)
		}
	}
	if got := (Volume{"/srv/b", "/b", true}).String(); got != "/srv/b:/b:ro" {
		t.Errorf("String() = %q, want /srv/b:/b:ro", got)
	}
}

// The same rules hold for a spec built in Go or decoded from JSON, where
// Parse's canonical forms are not guaranteed.
func TestValidateIsolationProblems(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Spec)
		field   string
		message string
	}{
		{"profile content without a file", func(s *Spec) { s.Security.SeccompProfile = []byte("{}") }, "security.seccomp", "not a profile file"},
		{"profile content with unconfined", func(s *Spec) {
			s.Security.Seccomp = SeccompUnconfined
			s.Security.SeccompProfile = []byte("{}")
		}, "security.seccomp", `seccomp is "unconfined"`},
		{"seccomp with spaces", func(s *Spec) { s.Security.Seccomp = " ./a.json" }, "security.seccomp", "spaces"},
		{"seccomp with NUL", func(s *Spec) { s.Security.Seccomp = "./a\x00.json" }, "security.seccomp", "control character"},
		{"apparmor too long", func(s *Spec) { s.Security.AppArmor = strings.Repeat("a", 256) }, "security.apparmor", "at most 255"},
		{"volume host path unclean", func(s *Spec) { s.Volumes = []Volume{{HostPath: "/srv/", ContainerPath: "/d"}} }, "volumes[0]", "as /srv"},
		{"volume host path with colon", func(s *Spec) { s.Volumes = []Volume{{HostPath: "/srv/a:b", ContainerPath: "/d"}} }, "volumes[0]", "contains ':'"},
		{"volume without container path", func(s *Spec) { s.Volumes = []Volume{{HostPath: "/srv"}} }, "volumes[0]", "container path is empty"},
		{"volumes on one container path", func(s *Spec) {
			s.Volumes = []Volume{{HostPath: "/srv/a", ContainerPath: "/d"}, {HostPath: "/srv/b", ContainerPath: "/d", ReadOnly: true}}
		}, "volumes[1]", "/d is already mounted by volumes[0] (/srv/a:/d)"},
		{"host network with ports", func(s *Spec) { s.NetworkMode = NetworkModeHost }, "network_mode", "binds the host's ports itself"},
		{"no network with ports", func(s *Spec) { s.NetworkMode = NetworkModeNone }, "network_mode", "has no network"},
		{"upper-case network mode", func(s *Spec) { s.NetworkMode = "HOST" }, "network_mode", "did you mean host?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validGoSpec()
			tt.mutate(s)
			err := s.Validate()
			var verr *ValidationError
			if !errors.As(err, &verr) || len(verr.Problems) != 1 {
				t.Fatalf("Validate() = %v, want exactly one problem", err)
			}
			if p := verr.Problems[0]; p.Field != tt.field || !strings.Contains(p.Message, tt.message) {
				t.Errorf("problem = %+v, want field %q, message containing %q", p, tt.field, tt.message)
			}
		})
	}
}

// Validate accepts the spellings Parse would store differently, so that
// ApplyDefaults still never has to change a valid spec.
func TestValidateAcceptsNonCanonicalDefaults(t *testing.T) {
	s := validGoSpec()
	s.NetworkMode = NetworkModeBridge
	s.Security.Seccomp = SeccompDefault
	s.Security.AppArmor = "docker-default"
	s.Security.Privileged = true
	s.Security.SeccompProfile = nil
	mustValidate(t, s)
	withFile := validGoSpec()
	withFile.Security.Seccomp = "/etc/deployctl/web.json"
	withFile.Security.SeccompProfile = []byte(`{"defaultAction":"SCMP_ACT_ERRNO"}`)
	withFile.Volumes = []Volume{{HostPath: "/srv/a", ContainerPath: "/a", ReadOnly: true}}
	withFile.PID, withFile.IPC, withFile.UsernsMode = NamespaceHost, NamespaceHost, NamespaceHost
	mustValidate(t, withFile)
}

func TestCloneCopiesIsolationFields(t *testing.T) {
	s := mustParse(t, isolationYAML)
	s.Security.SeccompProfile = []byte("{}")
	c := s.Clone()
	if !reflect.DeepEqual(c, s) {
		t.Fatalf("Clone() = %+v, want %+v", c, s)
	}
	c.Volumes[0].HostPath = "/changed"
	c.Security.SeccompProfile[0] = '['
	if s.Volumes[0].HostPath != "/srv/web/static" || s.Security.SeccompProfile[0] != '{' {
		t.Errorf("changing the clone changed the original: %+v", s)
	}
	empty := (&Spec{Volumes: []Volume{}, Security: Security{SeccompProfile: []byte{}}}).Clone()
	if empty.Volumes == nil || empty.Security.SeccompProfile == nil {
		t.Errorf("Clone turned empty into nil: %+v", empty)
	}
	if none := (&Spec{}).Clone(); none.Volumes != nil || none.Security.SeccompProfile != nil {
		t.Errorf("Clone turned nil into empty: %+v", none)
	}
}
