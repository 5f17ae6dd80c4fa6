package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller/scangate"
	"github.com/deployctl/deployctl/controller/signature"
	"github.com/deployctl/deployctl/specs"
)

const fullPolicyYAML = `allow_privileged: true
allow_capabilities: [net_bind_service, CAP_NET_ADMIN]
allow_host_network: true
allow_host_pid: true
allow_host_ipc: true
allow_host_userns: true
allow_root: true
allow_root_group: true
allow_new_privileges: true
writable_rootfs: allow
ports_on_all_interfaces: refuse
custom_apparmor: warn
allow_seccomp_unconfined: true
allow_apparmor_unconfined: true
allow_privileged_ports: true
ingress_listen_ports: ["443", 8000-8999]
volume_prefixes: [/srv, /var/lib/deployctl-volumes]
registries: [registry.example.com, "127.0.0.1:5000", docker.io]
trust:
  - match: registry.example.com/team/*
    keys: [keys/team.pub, keys/release.pub]
  - {match: "127.0.0.1:5000/*", keys: [keys/ci.pub]}
scan:
  mode: enforce
  max_severity: critical
  ignore: [CVE-2024-0001]
  max_age: 7d
require_userns: true
connections:
  - {service: db, from: [web, admin]}
  - service: vault
    from: []
`

func mustParse(t *testing.T, yaml string) *Policy {
	t.Helper()
	p, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse:\n%s\nfailed:\n%v", yaml, err)
	}
	return p
}

// mustProblems parses a policy that must be invalid and returns its
// problems.
func mustProblems(t *testing.T, yaml string) []specs.Problem {
	t.Helper()
	p, err := Parse([]byte(yaml))
	if err == nil {
		t.Fatalf("Parse:\n%s\nsucceeded (%+v), want an error", yaml, p)
	}
	var verr *ValidationError
	if p != nil || !errors.Is(err, ErrInvalidPolicy) || !errors.As(err, &verr) || len(verr.Problems) == 0 {
		t.Fatalf("Parse = %+v, %v (%T); want no policy and a *ValidationError with problems matching ErrInvalidPolicy", p, err, err)
	}
	return verr.Problems
}

// mustPublicKeyPEM makes a fresh ECDSA P-256 key and returns its public
// half as cosign writes cosign.pub, and its private half in PEM.
func mustPublicKeyPEM(t *testing.T) (public, private []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privateDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privateDER})
}

func TestDefault(t *testing.T) {
	p := Default()
	want := &Policy{AllowCapabilities: []string{"NET_BIND_SERVICE"}, IngressListenPorts: []string{"80", "443", "1024-65535"}, Scan: scangate.Policy{Mode: scangate.ModeOff}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Default() = %+v, want %+v", p, want)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	p.AllowCapabilities[0] = "SYS_ADMIN"
	if Default().AllowCapabilities[0] != "NET_BIND_SERVICE" {
		t.Errorf("Default() shares its capability list between calls")
	}
}

func TestParseFullPolicy(t *testing.T) {
	got := mustParse(t, fullPolicyYAML)
	want := &Policy{
		AllowPrivileged: true, AllowCapabilities: []string{"NET_BIND_SERVICE", "NET_ADMIN"},
		AllowHostNetwork: true, AllowHostPID: true, AllowHostIPC: true, AllowHostUserns: true,
		AllowRoot: true, AllowSeccompUnconfined: true, AllowAppArmorUnconfined: true, AllowPrivilegedPorts: true,
		AllowRootGroup: true, AllowNewPrivileges: true,
		WritableRootfs: LevelAllow, PortsOnAllInterfaces: LevelRefuse, CustomAppArmor: LevelWarn,
		IngressListenPorts: []string{"443", "8000-8999"},
		VolumePrefixes:     []string{"/srv", "/var/lib/deployctl-volumes"},
		Registries:         []string{"registry.example.com", "127.0.0.1:5000", "docker.io"},
		Trust: []TrustEntry{
			{Match: "registry.example.com/team/*", Keys: []string{"keys/team.pub", "keys/release.pub"}},
			{Match: "127.0.0.1:5000/*", Keys: []string{"keys/ci.pub"}},
		},
		Scan:          scangate.Policy{Mode: "enforce", MaxSeverity: "critical", Ignore: []string{"CVE-2024-0001"}, MaxAge: 7 * 24 * time.Hour},
		RequireUserns: true,
		Connections:   []ConnectionRule{{Service: "db", From: []string{"web", "admin"}}, {Service: "vault", From: []string{}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(fullPolicyYAML)\n got %+v\nwant %+v", got, want)
	}
	if got.KeysLoaded() {
		t.Errorf("KeysLoaded() = true before the CLI read the keys")
	}
}

// Absent keys keep Default's values; an explicit empty list is kept.
func TestParseDefaults(t *testing.T) {
	if got := mustParse(t, "{}\n"); !reflect.DeepEqual(got, Default()) {
		t.Errorf("Parse({}) = %+v, want Default() %+v", got, Default())
	}
	if got := mustParse(t, "# comment\nallow_root: false\nscan:\n"); !reflect.DeepEqual(got, Default()) {
		t.Errorf("Parse with false and null = %+v, want Default()", got)
	}
	none := mustParse(t, "allow_capabilities: []\n")
	if none.AllowCapabilities == nil || len(none.AllowCapabilities) != 0 {
		t.Errorf("allow_capabilities: [] = %#v, want an empty, non-nil list", none.AllowCapabilities)
	}
	if got := mustParse(t, "scan: {mode: warn, max_age: 0}\n").Scan; got.Mode != scangate.ModeWarn || got.MaxAge != 0 {
		t.Errorf("scan = %+v, want warn with no age limit", got)
	}
	aliased := mustParse(t, "registries: &r [registry.example.com]\ntrust: [{match: 'registry.example.com/*', keys: [k.pub]}]\n")
	if !reflect.DeepEqual(aliased.Registries, []string{"registry.example.com"}) {
		t.Errorf("registries = %v", aliased.Registries)
	}
}

// allow_seccomp_syscalls keeps syscall names as written and ALL in any
// case as ALL, and survives Clone.
func TestParseSeccompSyscalls(t *testing.T) {
	p := mustParse(t, "allow_seccomp_syscalls: [keyctl, clone, all]\n")
	if want := []string{"keyctl", "clone", "ALL"}; !reflect.DeepEqual(p.AllowSeccompSyscalls, want) {
		t.Fatalf("allow_seccomp_syscalls = %v, want %v", p.AllowSeccompSyscalls, want)
	}
	c := p.Clone()
	c.AllowSeccompSyscalls[0] = "changed"
	if p.AllowSeccompSyscalls[0] != "keyctl" {
		t.Fatal("Clone shares allow_seccomp_syscalls")
	}
	if Default().AllowSeccompSyscalls != nil {
		t.Fatal("the default policy lets profiles allow syscalls beyond Docker's default")
	}
}

type invalidPolicyCase struct {
	name    string
	yaml    string
	field   string
	line    int
	message string
}

// invalidPolicyCases each hold exactly one problem.
func invalidPolicyCases() []invalidPolicyCase {
	return []invalidPolicyCase{
		{"typo", "allow_privilegd: true\n", "allow_privilegd", 1, "unknown field; did you mean allow_privileged?"},
		{"spec field name", "allow_root: false\nprivileged: true\n", "privileged", 2, "did you mean allow_privileged?"},
		{"singular registry", "registry: [a.example.com]\n", "registry", 1, "did you mean registries?"},
		{"volumes", "volumes: [/srv]\n", "volumes", 1, "did you mean volume_prefixes?"},
		{"scan key at the top level", "mode: enforce\n", "mode", 1, "did you mean scan.mode?"},
		{"trust key at the top level", "match: 'x/*'\n", "match", 1, "did you mean match in a trust entry?"},
		{"top-level key in scan", "scan:\n  registries: []\n", "scan.registries", 2, "did you mean registries (at the top level)?"},
		{"far from anything", "xyzzy: 1\n", "xyzzy", 1, "valid fields are allow_privileged, allow_capabilities"},
		{"version is the controller's", "version: 3\n", "version", 1, "unknown field"},
		{"bool as a word", "allow_root: yes\n", "allow_root", 1, "expected true or false; got \"yes\""},
		{"bool as a number", "allow_host_pid: 1\n", "allow_host_pid", 1, "expected true or false"},
		{"duplicate key", "allow_root: true\nallow_root: false\n", "allow_root", 2, "already set on line 1"},
		{"merge key", "scan:\n  <<: {mode: warn}\n", "scan", 2, "merge keys"},
		{"unknown capability", "allow_capabilities:\n  - NET_BIND_SERVICE\n  - NET_ADMN\n", "allow_capabilities[1]", 3, "did you mean NET_ADMIN?"},
		{"capabilities not a list", "allow_capabilities: NET_ADMIN\n", "allow_capabilities", 1, "expected a list"},
		{"capability a mapping", "allow_capabilities: [{a: b}]\n", "allow_capabilities[0]", 1, "expected a string; got a mapping"},
		{"relative prefix", "volume_prefixes: [srv]\n", "volume_prefixes[0]", 1, "not an absolute path"},
		{"root prefix", "volume_prefixes:\n  - /srv\n  - /\n", "volume_prefixes[1]", 3, "would allow every host path"},
		{"prefix with dot dot", "volume_prefixes: [/srv/../etc]\n", "volume_prefixes[0]", 1, `contains ".."`},
		{"prefix with trailing slash", "volume_prefixes: [/srv/]\n", "volume_prefixes[0]", 1, `write "/srv/" as /srv`},
		{"prefix /etc", "volume_prefixes: [/etc]\n", "volume_prefixes[0]", 1, "system directory of the host, so it cannot be a prefix"},
		{"prefix in /proc", "volume_prefixes: [/proc/1]\n", "volume_prefixes[0]", 1, "in /proc"},
		{"prefix /var/run", "volume_prefixes: [/var/run]\n", "volume_prefixes[0]", 1, "holds the Docker Engine's socket"},
		{"prefix of the socket", "volume_prefixes: [/srv/docker.sock]\n", "volume_prefixes[0]", 1, "Docker Engine's socket"},
		{"registry with scheme", "registries: ['https://registry.example.com']\n", "registries[0]", 1, "without a scheme or path"},
		{"registry with path", "registries: [registry.example.com/team]\n", "registries[0]", 1, "without a scheme or path"},
		{"registry empty", "registries: ['']\n", "registries[0]", 1, "is not a registry"},
		{"registry with user", "registries: ['me@registry.example.com']\n", "registries[0]", 1, "not a registry host[:port]"},
		{"trust not a list", "trust: {match: x}\n", "trust", 1, "expected a list"},
		{"trust entry not a mapping", "trust:\n  - registry.example.com/*\n", "trust[0]", 2, "expected a mapping of match, keys"},
		{"trust entry without keys", "trust:\n  - match: 'registry.example.com/*'\n", "trust[0].keys", 2, "no keys"},
		{"trust entry with empty keys", "trust:\n  - match: 'registry.example.com/*'\n    keys: []\n", "trust[0].keys", 3, "no keys"},
		{"trust entry without match", "trust:\n  - keys: [k.pub]\n", "trust[0].match", 2, "empty"},
		{"trust bad pattern", "trust:\n  - match: 'registry.example.com/[team'\n    keys: [k.pub]\n", "trust[0].match", 2, "not a valid pattern"},
		{"trust key typo", "trust:\n  - match: 'r.example/x/*'\n    keys: [k.pub]\n    matches: 'y/*'\n", "trust[0].matches", 4, "did you mean match?"},
		{"trust empty key path", "trust:\n  - match: 'r.example/x/*'\n    keys: [k.pub, '']\n", "trust[0].keys[1]", 3, "empty"},
		{"scan mode", "scan:\n  mode: block\n", "scan.mode", 2, `"block"; use off, warn or enforce`},
		{"scan severity", "scan: {max_severity: severe}\n", "scan.max_severity", 1, "use one of unknown, low"},
		{"scan age", "scan:\n  max_age: 7 days\n", "scan.max_age", 2, "use a Go duration (36h) or days/weeks (7d, 2w)"},
		{"scan empty ignore", "scan:\n  ignore:\n    - CVE-1\n    - ''\n", "scan.ignore[1]", 4, "is empty"},
		{"scan key typo", "scan: {max_sevrity: high}\n", "scan.max_sevrity", 1, "did you mean max_severity?"},
		{"level not a level", "writable_rootfs: maybe\n", "writable_rootfs", 1, `"maybe" is not a level; write refuse, warn or allow`},
		{"level as a bool", "custom_apparmor: true\n", "custom_apparmor", 1, "is not a level"},
		{"spec name for no_new_privileges", "no_new_privileges: false\n", "no_new_privileges", 1, "did you mean allow_new_privileges?"},
		{"spec name for read_only", "read_only: false\n", "read_only", 1, "did you mean writable_rootfs?"},
		{"new privileges as a word", "allow_new_privileges: yes\n", "allow_new_privileges", 1, "expected true or false"},
		{"scan not a mapping", "scan: enforce\n", "scan", 1, "expected a mapping of mode, max_severity, ignore, max_age"},
		{"seccomp syscall typo", "allow_seccomp_syscalls: [keyctl, add_kee]\n", "allow_seccomp_syscalls[1]", 1, `"add_kee" is not a syscall of libseccomp's table; list syscall names such as keyctl, or ALL for any profile; did you mean add_key?`},
		{"seccomp weaker spelled as a flag", "seccomp_weaker_than_default: true\n", "seccomp_weaker_than_default", 1, "did you mean allow_seccomp_syscalls?"},
	}
}

func TestParseReportsEachInvalidCase(t *testing.T) {
	for _, tt := range invalidPolicyCases() {
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
}

func TestParseDocumentProblems(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		line    int
		message string
	}{
		{"empty", "", 0, "the policy is empty; write {}"},
		{"only a comment", "# nothing\n", 0, "the policy is empty"},
		{"a list", "- allow_root: true\n", 1, "a policy is a mapping"},
		{"syntax", "allow_root: true\nregistries: [a\n", 2, "invalid YAML"},
		{"two documents", "allow_root: true\n---\nallow_pid: true\n", 2, "second YAML document starts here; write one policy per file"},
		{"control character", "allow_root: true\x07\n", 1, "the policy must be UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustProblems(t, tt.yaml)[0]
			if p.Line != tt.line || !strings.Contains(p.Message, tt.message) {
				t.Errorf("first problem = %q, want line %d and a message containing %q", p.String(), tt.line, tt.message)
			}
		})
	}
}

func TestParseCollectsEveryProblem(t *testing.T) {
	problems := mustProblems(t, `allow_root: yes
allow_privilegd: true
volume_prefixes: [/, /srv]
scan:
  mode: strict
`)
	want := []specs.Problem{
		{Field: "allow_root", Line: 1, Message: `expected true or false; got "yes"`},
		{Field: "allow_privilegd", Line: 2, Message: "unknown field; did you mean allow_privileged?"},
		{Field: "volume_prefixes[0]", Line: 3, Message: "/ would allow every host path; list the directories volumes may come from, like /srv"},
		{Field: "scan.mode", Line: 5, Message: `"strict"; use off, warn or enforce`},
	}
	if !reflect.DeepEqual(problems, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", (&ValidationError{problems}).Error(), (&ValidationError{want}).Error())
	}
}

// The same rules hold for a policy built in Go or from JSON, where they
// have no line; with the keys loaded, the keys are parsed too.
func TestValidateGoPolicy(t *testing.T) {
	public, private := mustPublicKeyPEM(t)
	withTrust := func(e TrustEntry) func(*Policy) {
		return func(p *Policy) { p.Trust = []TrustEntry{e} }
	}
	tests := []struct {
		name    string
		mutate  func(*Policy)
		field   string
		message string
	}{
		{"unknown capability", func(p *Policy) { p.AllowCapabilities = []string{"FLY"} }, "allow_capabilities[0]", "not a Linux capability"},
		{"unclean prefix", func(p *Policy) { p.VolumePrefixes = []string{"/srv//data"} }, "volume_prefixes[0]", "as /srv/data"},
		{"bad registry", func(p *Policy) { p.Registries = []string{"a b"} }, "registries[0]", "not a registry"},
		{"scan mode", func(p *Policy) { p.Scan.Mode = "on" }, "scan.mode", "use off, warn or enforce"},
		{"scan age", func(p *Policy) { p.Scan.MaxAge = -time.Hour }, "scan.max_age", "negative"},
		{"negative version", func(p *Policy) { p.Version = -1 }, "version", "negative"},
		{"fewer PEM than keys", withTrust(TrustEntry{Match: "r.example/r/*", Keys: []string{"a.pub", "b.pub"}, KeysPEM: [][]byte{public}}), "trust[0].keys", "2 keys but 1 PEM"},
		{"garbage PEM", withTrust(TrustEntry{Match: "r.example/r/*", Keys: []string{"a.pub"}, KeysPEM: [][]byte{[]byte("not a key")}}), "trust[0].keys", "a.pub: trust key is not a usable public key"},
		{"private key", withTrust(TrustEntry{Match: "r.example/r/*", Keys: []string{"cosign.key"}, KeysPEM: [][]byte{private}}), "trust[0].keys", "is a private key"},
		{"bad pattern with keys", withTrust(TrustEntry{Match: "r.example/[", Keys: []string{"a.pub"}, KeysPEM: [][]byte{public}}), "trust[0].match", "not a valid pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			tt.mutate(p)
			err := p.Validate()
			var verr *ValidationError
			if !errors.As(err, &verr) || !errors.Is(err, ErrInvalidPolicy) || len(verr.Problems) != 1 {
				t.Fatalf("Validate() = %v, want one problem matching ErrInvalidPolicy", err)
			}
			if got := verr.Problems[0]; got.Field != tt.field || got.Line != 0 || !strings.Contains(got.Message, tt.message) {
				t.Errorf("problem = %+v, want field %q, line 0, message containing %q", got, tt.field, tt.message)
			}
		})
	}
}

func TestTrustRulesWithKeysLoaded(t *testing.T) {
	public, _ := mustPublicKeyPEM(t)
	p := mustParse(t, "trust:\n  - {match: 'registry.example.com/*', keys: [team.pub]}\n  - {match: '*/*', keys: [a.pub, b.pub]}\n")
	p.Trust[0].KeysPEM = [][]byte{public}
	if p.KeysLoaded() {
		t.Errorf("KeysLoaded() = true with the second entry unloaded")
	}
	p.Trust[1].KeysPEM = [][]byte{public, public}
	if !p.KeysLoaded() {
		t.Errorf("KeysLoaded() = false with every key loaded")
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	rules := p.TrustRules()
	want := []signature.TrustRule{
		{Match: "registry.example.com/*", Keys: []signature.Key{{Name: "team.pub", PEM: public}}},
		{Match: "*/*", Keys: []signature.Key{{Name: "a.pub", PEM: public}, {Name: "b.pub", PEM: public}}},
	}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("TrustRules() = %+v, want %+v", rules, want)
	}
	if err := (&signature.Verifier{Rules: rules}).Validate(); err != nil {
		t.Errorf("the verifier refuses the rules: %v", err)
	}
}

func TestCloneIsDeep(t *testing.T) {
	public, _ := mustPublicKeyPEM(t)
	p := mustParse(t, fullPolicyYAML)
	p.Trust[0].KeysPEM = [][]byte{public, public}
	c := p.Clone()
	if !reflect.DeepEqual(c, p) {
		t.Fatalf("Clone() = %+v, want %+v", c, p)
	}
	c.AllowCapabilities[0] = "X"
	c.VolumePrefixes[0] = "X"
	c.Registries[0] = "X"
	c.Trust[0].Keys[0] = "X"
	c.Trust[0].KeysPEM[0][0] = 'X'
	c.Scan.Ignore[0] = "X"
	c.Connections[0].From[0] = "X"
	fresh := mustParse(t, fullPolicyYAML)
	fresh.Trust[0].KeysPEM = [][]byte{public, public}
	if !reflect.DeepEqual(p, fresh) {
		t.Errorf("changing the clone changed the original:\n got %+v\nwant %+v", p, fresh)
	}
	if (*Policy)(nil).Clone() != nil {
		t.Errorf("nil.Clone() != nil")
	}
	empty := (&Policy{AllowCapabilities: []string{}}).Clone()
	if empty.AllowCapabilities == nil || empty.Trust != nil {
		t.Errorf("Clone() mixed up nil and empty: %+v", empty)
	}
}

// The controller stores the policy as JSON, keys' PEM and version included.
func TestPolicyJSONRoundTrip(t *testing.T) {
	public, _ := mustPublicKeyPEM(t)
	p := mustParse(t, fullPolicyYAML)
	p.Trust[0].KeysPEM = [][]byte{public, public}
	p.Trust[1].KeysPEM = [][]byte{public}
	p.Version = 7
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var decoded Policy
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&decoded, p) {
		t.Errorf("after JSON\n got %+v\nwant %+v", &decoded, p)
	}
	if err := decoded.Validate(); err != nil {
		t.Errorf("Validate() after JSON = %v", err)
	}
	if !strings.Contains(string(data), `"allow_capabilities":["NET_BIND_SERVICE","NET_ADMIN"]`) || !strings.Contains(string(data), `"version":7`) {
		t.Errorf("JSON keys are not snake_case: %s", data)
	}
}
