package specs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// validGoSpec is a complete, valid spec built in Go, as the controller gets
// one from JSON.
func validGoSpec() *Spec {
	return &Spec{
		Service:  "api",
		Image:    "registry.example.com/api@sha256:" + strings.Repeat("0a", 32),
		Replicas: 2,
		Command:  []string{"serve"},
		Env:      map[string]string{"MODE": "prod"},
		Ports:    []Port{{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		Resources: Resources{
			NanoCPUs: 250_000_000, MemoryBytes: 128 << 20, Pids: 64,
		},
		Healthcheck: Healthcheck{
			TCP:      &TCPCheck{Port: 80},
			Interval: time.Second, Timeout: time.Second, Retries: 1,
		},
		Update: Update{
			Parallelism: 1, Order: OrderStopFirst, Monitor: time.Second,
			MaxFailureRatio: 0.5, FailureAction: FailureActionRollback, ProgressDeadline: time.Minute,
		},
		Security: Security{
			User: "app", ReadOnly: true, NoNewPrivileges: true,
			CapDrop: []string{"ALL"}, CapAdd: []string{"NET_BIND_SERVICE"},
		},
		StopGracePeriod: time.Second,
	}
}

func mustValidate(t *testing.T, s *Spec) {
	t.Helper()
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate(%+v):\n%v", s, err)
	}
}

func TestValidateAcceptsGoSpec(t *testing.T) {
	mustValidate(t, validGoSpec())
}

// The same rules hold for a spec built in Go, and its problems have no line.
func TestValidateGoSpecProblems(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Spec)
		field   string
		message string
	}{
		{"no service", func(s *Spec) { s.Service = "" }, "service", "required"},
		{"service ends with hyphen", func(s *Spec) { s.Service = "web-" }, "service", "not ending with a hyphen"},
		{"no image", func(s *Spec) { s.Image = "" }, "image", "required"},
		{"image without tag", func(s *Spec) { s.Image = "localhost:5000/web" }, "image", "no tag or digest"},
		{"negative replicas", func(s *Spec) { s.Replicas = -1 }, "replicas", "-1 is negative; use 0 to scale down"},
		{"NUL in entrypoint", func(s *Spec) { s.Entrypoint = []string{"a", "b\x00"} }, "entrypoint[1]", "NUL"},
		{"env name", func(s *Spec) { s.Env["BAD NAME"] = "x" }, "env.BAD NAME", "not a valid variable name"},
		{"env value NUL", func(s *Spec) { s.Env["MODE"] = "a\x00" }, "env.MODE", "NUL"},
		{"empty host IP", func(s *Spec) { s.Ports[0].HostIP = "" }, "ports[0]", "every interface"},
		{"host IP with zone", func(s *Spec) { s.Ports[0].HostIP = "fe80::1%eth0" }, "ports[0]", "zone"},
		{"no protocol", func(s *Spec) { s.Ports[0].Protocol = "" }, "ports[0]", "not tcp or udp"},
		{"duplicate port", func(s *Spec) { s.Ports = append(s.Ports, s.Ports[0]) }, "ports[1]", "duplicates ports[0]"},
		{"wildcard overlap v6", func(s *Spec) {
			s.Ports = append(s.Ports, Port{HostIP: "::", HostPort: 8080, ContainerPort: 81, Protocol: "tcp"})
		}, "ports[1]", "overlaps ports[0]"},
		{"no CPUs", func(s *Spec) { s.Resources.NanoCPUs = 0 }, "resources.cpus", "greater than 0"},
		{"no memory", func(s *Spec) { s.Resources.MemoryBytes = 0 }, "resources.memory", "minimum of 6M"},
		{"too many pids", func(s *Spec) { s.Resources.Pids = MaxPids + 1 }, "resources.pids", "maximum"},
		{"http and exec", func(s *Spec) {
			s.Healthcheck.TCP = nil
			s.Healthcheck.HTTP = &HTTPCheck{Path: "/", Port: 80}
			s.Healthcheck.Exec = []string{"true"}
		}, "healthcheck", "set only one"},
		{"http without path", func(s *Spec) { s.Healthcheck.TCP = nil; s.Healthcheck.HTTP = &HTTPCheck{Port: 80} }, "healthcheck.http.path", `must start with "/"`},
		{"no interval", func(s *Spec) { s.Healthcheck.Interval = 0 }, "healthcheck.interval", "must be greater than 0 (e.g. 5s)"},
		{"no retries", func(s *Spec) { s.Healthcheck.Retries = 0 }, "healthcheck.retries", "at least 1"},
		{"no order", func(s *Spec) { s.Update.Order = "" }, "update.order", "start-first or stop-first"},
		{"no failure action", func(s *Spec) { s.Update.FailureAction = "" }, "update.failure_action", "rollback or pause"},
		{"no progress deadline", func(s *Spec) { s.Update.ProgressDeadline = 0 }, "update.progress_deadline", "greater than 0"},
		{"nil cap_drop", func(s *Spec) { s.Security.CapDrop = nil }, "security.cap_drop", "not set"},
		{"lower-case capability", func(s *Spec) { s.Security.CapAdd = []string{"net_bind_service"} }, "security.cap_add[0]", "as NET_BIND_SERVICE"},
		{"prefixed capability", func(s *Spec) { s.Security.CapAdd = []string{"CAP_CHOWN"} }, "security.cap_add[0]", "as CHOWN"},
		{"unknown capability", func(s *Spec) { s.Security.CapAdd = []string{"FLY"} }, "security.cap_add[0]", "not a Linux capability"},
		{"root user", func(s *Spec) { s.Security.User = "0:0" }, "security.user", "runs as root"},
		{"constraint without operator", func(s *Spec) { s.Placement.Constraints = []string{"zone"} }, "placement.constraints[0]", "has no operator"},
		{"constraint with NUL", func(s *Spec) { s.Placement.Constraints = []string{"zone == a\x00"} }, "placement.constraints[0]", "control character"},
		{"contradicting constraints", func(s *Spec) { s.Placement.Constraints = []string{"host.id != h1", "node.id==h1"} }, "placement.constraints[1]", "contradicts constraints[0]"},
		{"negative max_per_host", func(s *Spec) { s.Placement.MaxPerHost = -2 }, "placement.max_per_host", "-2 is negative"},
		{"negative stop grace", func(s *Spec) { s.StopGracePeriod = -time.Second }, "stop_grace_period", "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validGoSpec()
			tt.mutate(s)
			err := s.Validate()
			var verr *ValidationError
			if !errors.As(err, &verr) || !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Validate() = %v, want a *ValidationError matching ErrInvalidSpec", err)
			}
			if len(verr.Problems) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(verr.Problems), err)
			}
			p := verr.Problems[0]
			if p.Field != tt.field || p.Line != 0 || !strings.Contains(p.Message, tt.message) {
				t.Errorf("problem = %+v, want field %q, line 0, message containing %q", p, tt.field, tt.message)
			}
		})
	}
}

func TestValidateAllowsRootWhenAsked(t *testing.T) {
	// Every spelling the engine reads as uid 0 is root (issue 16, finding 4).
	for _, user := range []string{"root", "0", "00", "000", "0:10001", "00:10001", "root:app"} {
		s := validGoSpec()
		s.Security.User = user
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "runs as root") {
			t.Errorf("user %q without allow_root: Validate() = %v, want \"runs as root\"", user, err)
		}
		s.Security.AllowRoot = true
		if err := s.Validate(); err != nil {
			t.Errorf("user %q with allow_root: Validate() = %v, want nil", user, err)
		}
	}
}

func TestValidateAllowsRootGroupWhenAsked(t *testing.T) {
	// Group 0 is the other half of root (issue 16, finding 6).
	for _, user := range []string{"10001:0", "10001:00", "app:root", "app:0"} {
		s := validGoSpec()
		s.Security.User = user
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), "allow_root_group") {
			t.Errorf("user %q without allow_root_group: Validate() = %v, want a problem naming allow_root_group", user, err)
		}
		s.Security.AllowRootGroup = true
		if err := s.Validate(); err != nil {
			t.Errorf("user %q with allow_root_group: Validate() = %v, want nil", user, err)
		}
	}
	// allow_root covers the root group: uid 0 is the larger exception.
	s := validGoSpec()
	s.Security.User = "0:0"
	s.Security.AllowRoot = true
	if err := s.Validate(); err != nil {
		t.Errorf("0:0 with allow_root: Validate() = %v, want nil", err)
	}
}

func TestIsRootID(t *testing.T) {
	for _, id := range []string{"root", "0", "00", "+0", "-0", "0000000000"} {
		if !IsRootID(id) {
			t.Errorf("IsRootID(%q) = false, want true", id)
		}
	}
	for _, id := range []string{"", "10001", "Root", "admin", "0x0", " 0", "1"} {
		if IsRootID(id) {
			t.Errorf("IsRootID(%q) = true, want false", id)
		}
	}
}

func TestCheckUser(t *testing.T) {
	valid := []string{"10001", "10001:10001", "app", "app:app", "_svc", "a.b-c", "4294967294"}
	invalid := []string{":", "app:", ":app", "1a", "-app", "a b", "4294967295", "a:b:c", strings.Repeat("a", 33), "+0", "-0", "+10001"}
	for _, user := range valid {
		if msg := checkUser(user, false, false); msg != "" {
			t.Errorf("checkUser(%q) = %q, want accepted", user, msg)
		}
	}
	for _, user := range invalid {
		if msg := checkUser(user, false, false); msg == "" {
			t.Errorf("checkUser(%q) accepted, want refused", user)
		}
	}
}

func TestCheckImageReference(t *testing.T) {
	digest := "sha256:" + strings.Repeat("f0", 32)
	valid := []string{
		"nginx:1.25", "library/nginx:1.25", "docker.io/library/nginx:1.25", "registry.example.com/web:1.4.2",
		"localhost:5000/web:latest", "127.0.0.1:5000/team/web:v1_2", "web@" + digest, "web:1@" + digest,
		"a.b-c__d/e:T-a.g_1", "[::1]:5000/web:1",
	}
	invalid := []string{
		"nginx", "localhost:5000/web", "Web:1", "web:", "web:.x", "a//b:1", "a/b/:1", "-a:1", "a..b:1",
		"web@sha256:" + strings.Repeat("F0", 32), "web@sha512:" + strings.Repeat("0", 128), "web@" + digest + "@" + digest,
		"web:" + strings.Repeat("t", 129), "web :1",
	}
	for _, image := range valid {
		if msg := checkImageReference(image); msg != "" {
			t.Errorf("checkImageReference(%q) = %q, want accepted", image, msg)
		}
	}
	for _, image := range invalid {
		if msg := checkImageReference(image); msg == "" {
			t.Errorf("checkImageReference(%q) accepted, want refused", image)
		}
	}
}

func TestCapabilities(t *testing.T) {
	caps := Capabilities()
	if len(caps) != 42 { // ALL and the 41 capabilities of Linux 5.9 to 6.x
		t.Errorf("len(Capabilities()) = %d, want 42", len(caps))
	}
	caps[0] = "MUTATED"
	if Capabilities()[0] != CapAll {
		t.Errorf("Capabilities() shares its slice between calls")
	}
	for in, want := range map[string]string{"cap_net_raw": "NET_RAW", "Chown": "CHOWN", " all ": "ALL", "CAP_SYS_ADMIN": "SYS_ADMIN"} {
		if got := CanonicalCapability(in); got != want {
			t.Errorf("CanonicalCapability(%q) = %q, want %q", in, got, want)
		}
	}
}

// A spec with only the required fields lists what ApplyDefaults fills;
// after ApplyDefaults it is valid, and a second call changes nothing.
func TestApplyDefaultsCompletesAGoSpec(t *testing.T) {
	s := &Spec{
		Service: "web",
		Image:   "web:1",
		Ports:   []Port{{HostPort: 8080, ContainerPort: 80, Protocol: "UDP"}},
		Healthcheck: Healthcheck{
			HTTP: &HTTPCheck{Port: 80},
		},
		Security: Security{CapAdd: []string{"cap_chown"}},
	}
	var verr *ValidationError
	if err := s.Validate(); !errors.As(err, &verr) {
		t.Fatalf("Validate() before ApplyDefaults = %v, want a *ValidationError", err)
	}
	var fields []string
	for _, p := range verr.Problems {
		fields = append(fields, p.Field)
	}
	wantFields := []string{"ports[0]", "ports[0]", "resources.cpus", "resources.memory", "resources.pids",
		"healthcheck.http.path", "healthcheck.interval", "healthcheck.timeout", "healthcheck.retries",
		"update.parallelism", "update.order", "update.failure_action", "update.progress_deadline",
		"security.cap_drop", "security.cap_add[0]"}
	if !reflect.DeepEqual(fields, wantFields) {
		t.Errorf("problems before ApplyDefaults on fields\n%q\nwant\n%q", fields, wantFields)
	}

	s.ApplyDefaults()
	mustValidate(t, s)
	want := &Spec{
		Service:   "web",
		Image:     "web:1",
		Ports:     []Port{{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "udp"}},
		Resources: Resources{NanoCPUs: DefaultNanoCPUs, MemoryBytes: DefaultMemoryBytes, Pids: DefaultPids},
		Healthcheck: Healthcheck{
			HTTP:     &HTTPCheck{Path: "/", Port: 80},
			Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Retries: DefaultHealthRetries,
		},
		Update: Update{
			Parallelism: 1, Order: OrderStartFirst, FailureAction: FailureActionRollback,
			ProgressDeadline: DefaultUpdateProgressDeadline,
		},
		// Zero is a setting for these, so they stay as they were.
		Security: Security{CapDrop: []string{"ALL"}, CapAdd: []string{"CHOWN"}},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("after ApplyDefaults\n got %+v\nwant %+v", s, want)
	}
	again := s.Clone()
	again.ApplyDefaults()
	if !reflect.DeepEqual(again, s) {
		t.Errorf("ApplyDefaults is not idempotent:\nonce  %+v\ntwice %+v", s, again)
	}
}

func TestApplyDefaultsKeepsAnEmptyCapDrop(t *testing.T) {
	s := validGoSpec()
	s.Security.CapDrop = []string{}
	s.ApplyDefaults()
	if s.Security.CapDrop == nil || len(s.Security.CapDrop) != 0 {
		t.Errorf("cap_drop = %#v, want the empty list kept", s.Security.CapDrop)
	}
}

func TestApplyDefaultsLeavesAParsedSpecAlone(t *testing.T) {
	for _, yaml := range []string{minimalYAML, fullYAML} {
		parsed := mustParse(t, yaml)
		defaulted := parsed.Clone()
		defaulted.ApplyDefaults()
		if !reflect.DeepEqual(defaulted, parsed) {
			t.Errorf("ApplyDefaults changed a parsed spec:\nparsed    %+v\ndefaulted %+v", parsed, defaulted)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	original := mustParse(t, fullYAML)
	clone := original.Clone()
	if !reflect.DeepEqual(clone, original) {
		t.Fatalf("Clone() = %+v, want equal to %+v", clone, original)
	}
	clone.Command[0] = "changed"
	clone.Entrypoint[0] = "changed"
	clone.Env["LOG_LEVEL"] = "changed"
	clone.Ports[0].HostPort = 1
	clone.Healthcheck.HTTP.Port = 1
	clone.Placement.Constraints[0] = "changed"
	clone.Security.CapDrop[0] = "changed"
	clone.Security.CapAdd[0] = "changed"
	if fresh := mustParse(t, fullYAML); !reflect.DeepEqual(original, fresh) {
		t.Errorf("changing the clone changed the original:\n got %+v\nwant %+v", original, fresh)
	}

	withExec := validGoSpec()
	withExec.Healthcheck = Healthcheck{Exec: []string{"true"}}
	execClone := withExec.Clone()
	execClone.Healthcheck.Exec[0] = "false"
	execClone.Healthcheck.TCP = &TCPCheck{Port: 1}
	if withExec.Healthcheck.Exec[0] != "true" || withExec.Healthcheck.TCP != nil {
		t.Errorf("changing the clone's healthcheck changed the original: %+v", withExec.Healthcheck)
	}
	tcpClone := validGoSpec()
	tcpCopy := tcpClone.Clone()
	tcpCopy.Healthcheck.TCP.Port = 1
	if tcpClone.Healthcheck.TCP.Port != 80 {
		t.Errorf("Clone shares the TCP check")
	}
}

func TestCloneKeepsNilAndEmptyApart(t *testing.T) {
	s := &Spec{Command: []string{}, Security: Security{CapDrop: []string{}}, Env: map[string]string{}, Placement: Placement{Constraints: []string{}}}
	c := s.Clone()
	if c.Command == nil || c.Security.CapDrop == nil || c.Env == nil || c.Placement.Constraints == nil {
		t.Errorf("Clone turned empty into nil: %+v", c)
	}
	if c.Entrypoint != nil || c.Security.CapAdd != nil || c.Ports != nil || c.Healthcheck.HTTP != nil {
		t.Errorf("Clone turned nil into empty: %+v", c)
	}
	if (*Spec)(nil).Clone() != nil {
		t.Errorf("nil.Clone() != nil")
	}
}
