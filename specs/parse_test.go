package specs

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimalYAML is the smallest valid spec; cases append to it, so their own
// lines start at 3.
const minimalYAML = "service: web\nimage: registry.example.com/web:1.4.2\n"

const fullYAML = `service: web
image: registry.example.com/web:1.4.2
replicas: 3
command: [serve, --port, 8080]
entrypoint: ["/bin/app"]
env: { LOG_LEVEL: info, PORT: 8080, DEBUG: yes, RATIO: 0.5, ON: true }
ports: ["127.0.0.1:8080:8080", "0.0.0.0:9090:90/udp", "[::1]:7070:70/TCP", "8443:443"]
resources: { cpus: 0.5, memory: 256M, pids: 128 }
healthcheck:
  http: { path: /healthz, port: 8080 }
  interval: 10s
  timeout: 3s
  retries: 5
  start_period: 1m30s
update:
  parallelism: 2
  delay: 1s
  order: stop-first
  monitor: 20s
  max_failure_ratio: 0.25
  failure_action: pause
  progress_deadline: 10m
placement:
  constraints: ["zone==a", "disk != hdd", node.id == h3]
  max_per_host: 1
security:
  user: "10001:10001"
  allow_root: false
  read_only: false
  no_new_privileges: true
  cap_drop: [all]
  cap_add: [cap_net_bind_service, Chown]
stop_grace_period: 30s
`

func mustParse(t *testing.T, yaml string) *Spec {
	t.Helper()
	spec, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse:\n%s\nfailed:\n%v", yaml, err)
	}
	return spec
}

// mustProblems parses a spec that must be invalid and returns its problems.
func mustProblems(t *testing.T, yaml string) []Problem {
	t.Helper()
	spec, err := Parse([]byte(yaml))
	if err == nil {
		t.Fatalf("Parse:\n%s\nsucceeded (%+v), want an error", yaml, spec)
	}
	if spec != nil {
		t.Errorf("Parse returned a spec along with an error")
	}
	if !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("errors.Is(%v, ErrInvalidSpec) = false", err)
	}
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error %T is not a *ValidationError", err)
	}
	if len(verr.Problems) == 0 {
		t.Fatalf("ValidationError without problems")
	}
	return verr.Problems
}

func TestParseFullSpec(t *testing.T) {
	got := mustParse(t, fullYAML)
	want := &Spec{
		Service:    "web",
		Image:      "registry.example.com/web:1.4.2",
		Replicas:   3,
		Command:    []string{"serve", "--port", "8080"},
		Entrypoint: []string{"/bin/app"},
		Env:        map[string]string{"LOG_LEVEL": "info", "PORT": "8080", "DEBUG": "yes", "RATIO": "0.5", "ON": "true"},
		Ports: []Port{
			{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 8080, Protocol: "tcp"},
			{HostIP: "0.0.0.0", HostPort: 9090, ContainerPort: 90, Protocol: "udp"},
			{HostIP: "::1", HostPort: 7070, ContainerPort: 70, Protocol: "tcp"},
			{HostIP: "127.0.0.1", HostPort: 8443, ContainerPort: 443, Protocol: "tcp"},
		},
		Resources: Resources{NanoCPUs: 500_000_000, MemoryBytes: 256 << 20, Pids: 128},
		Healthcheck: Healthcheck{
			HTTP:        &HTTPCheck{Path: "/healthz", Port: 8080},
			Interval:    10 * time.Second,
			Timeout:     3 * time.Second,
			Retries:     5,
			StartPeriod: 90 * time.Second,
		},
		Update: Update{
			Parallelism:      2,
			Delay:            time.Second,
			Order:            OrderStopFirst,
			Monitor:          20 * time.Second,
			MaxFailureRatio:  0.25,
			FailureAction:    FailureActionPause,
			ProgressDeadline: 10 * time.Minute,
		},
		Placement: Placement{
			Constraints: []string{"zone == a", "disk != hdd", "node.id == h3"},
			MaxPerHost:  1,
		},
		Security: Security{
			User:            "10001:10001",
			ReadOnly:        false,
			NoNewPrivileges: true,
			CapDrop:         []string{"ALL"},
			CapAdd:          []string{"NET_BIND_SERVICE", "CHOWN"},
		},
		StopGracePeriod: 30 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(fullYAML)\n got %+v\nwant %+v", got, want)
	}
}

func TestParseFillsDefaults(t *testing.T) {
	s := mustParse(t, minimalYAML)
	checks := []struct {
		field     string
		got, want any
	}{
		{"replicas", s.Replicas, 1},
		{"command", s.Command, []string(nil)},
		{"entrypoint", s.Entrypoint, []string(nil)},
		{"env", s.Env, map[string]string(nil)},
		{"ports", s.Ports, []Port(nil)},
		{"resources.cpus", s.Resources.NanoCPUs, int64(1_000_000_000)},
		{"resources.memory", s.Resources.MemoryBytes, int64(512 << 20)},
		{"resources.pids", s.Resources.Pids, int64(256)},
		{"healthcheck kind", s.Healthcheck.Kind(), "none"},
		{"healthcheck.interval", s.Healthcheck.Interval, 5 * time.Second},
		{"healthcheck.timeout", s.Healthcheck.Timeout, 2 * time.Second},
		{"healthcheck.retries", s.Healthcheck.Retries, 3},
		{"healthcheck.start_period", s.Healthcheck.StartPeriod, time.Duration(0)},
		{"update.parallelism", s.Update.Parallelism, 1},
		{"update.delay", s.Update.Delay, time.Duration(0)},
		{"update.order", s.Update.Order, "start-first"},
		{"update.monitor", s.Update.Monitor, 10 * time.Second},
		{"update.max_failure_ratio", s.Update.MaxFailureRatio, 0.0},
		{"update.failure_action", s.Update.FailureAction, "rollback"},
		{"update.progress_deadline", s.Update.ProgressDeadline, 5 * time.Minute},
		{"placement", s.Placement, Placement{}},
		{"security.user", s.Security.User, ""},
		{"security.allow_root", s.Security.AllowRoot, false},
		{"security.read_only", s.Security.ReadOnly, true},
		{"security.no_new_privileges", s.Security.NoNewPrivileges, true},
		{"security.cap_drop", s.Security.CapDrop, []string{"ALL"}},
		{"security.cap_add", s.Security.CapAdd, []string(nil)},
		{"stop_grace_period", s.StopGracePeriod, 10 * time.Second},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("default %s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
}

func TestParseNestedDefaults(t *testing.T) {
	s := mustParse(t, minimalYAML+"ports: [\"8080:80\"]\nhealthcheck:\n  http: {port: 8080}\n")
	if want := (Port{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}); s.Ports[0] != want {
		t.Errorf("port = %+v, want %+v (loopback and tcp by default)", s.Ports[0], want)
	}
	if s.Healthcheck.HTTP == nil || s.Healthcheck.HTTP.Path != "/" {
		t.Errorf("http check = %+v, want path /", s.Healthcheck.HTTP)
	}
}

// An explicit zero, false or empty list is kept, not replaced by the default.
func TestParseKeepsExplicitZeros(t *testing.T) {
	s := mustParse(t, minimalYAML+`replicas: 0
update: {monitor: 0s, delay: 0}
security: {read_only: false, no_new_privileges: false, cap_drop: []}
stop_grace_period: 0s
`)
	if s.Replicas != 0 || s.Update.Monitor != 0 || s.StopGracePeriod != 0 {
		t.Errorf("replicas, monitor, stop_grace_period = %d, %v, %v; want all zero", s.Replicas, s.Update.Monitor, s.StopGracePeriod)
	}
	if s.Security.ReadOnly || s.Security.NoNewPrivileges {
		t.Errorf("read_only, no_new_privileges = %v, %v; want false, false", s.Security.ReadOnly, s.Security.NoNewPrivileges)
	}
	if s.Security.CapDrop == nil || len(s.Security.CapDrop) != 0 {
		t.Errorf("cap_drop = %#v, want an empty, non-nil list", s.Security.CapDrop)
	}
}

// A field set to null counts as absent.
func TestParseNullIsAbsent(t *testing.T) {
	s := mustParse(t, minimalYAML+"replicas:\nhealthcheck:\nsecurity: {read_only: ~}\n")
	if s.Replicas != DefaultReplicas || s.Healthcheck.Kind() != "none" || !s.Security.ReadOnly {
		t.Errorf("got replicas %d, healthcheck %s, read_only %v; want the defaults", s.Replicas, s.Healthcheck.Kind(), s.Security.ReadOnly)
	}
}

func TestParseValueForms(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(*Spec) bool
	}{
		{"cpus as a string", "resources: {cpus: '0.25'}", func(s *Spec) bool { return s.Resources.NanoCPUs == 250_000_000 }},
		{"cpus as an integer", "resources: {cpus: 2}", func(s *Spec) bool { return s.Resources.NanoCPUs == 2_000_000_000 }},
		{"memory as bytes", "resources: {memory: 268435456}", func(s *Spec) bool { return s.Resources.MemoryBytes == 256<<20 }},
		{"memory with KiB", "resources: {memory: 8192KiB}", func(s *Spec) bool { return s.Resources.MemoryBytes == 8<<20 }},
		{"user as a number", "security: {user: 10001}", func(s *Spec) bool { return s.Security.User == "10001" }},
		{"user name and group", "security: {user: 'app:app'}", func(s *Spec) bool { return s.Security.User == "app:app" }},
		{"root allowed", "security: {user: root, allow_root: true}", func(s *Spec) bool { return s.Security.User == "root" && s.Security.AllowRoot }},
		{"tcp check", "healthcheck: {tcp: {port: 5432}}", func(s *Spec) bool { return s.Healthcheck.TCP.Port == 5432 && s.Healthcheck.Kind() == "tcp" }},
		{"exec check with numbers", "healthcheck: {exec: [sleep, 1]}", func(s *Spec) bool { return reflect.DeepEqual(s.Healthcheck.Exec, []string{"sleep", "1"}) }},
		{"max failure ratio 1", "update: {max_failure_ratio: 1}", func(s *Spec) bool { return s.Update.MaxFailureRatio == 1 }},
		{"digest", "image: web@sha256:" + strings.Repeat("ab", 32), func(s *Spec) bool { return strings.HasSuffix(s.Image, strings.Repeat("ab", 32)) }},
		{"image with registry port", "image: localhost:5000/team/web:v1", func(s *Spec) bool { return s.Image == "localhost:5000/team/web:v1" }},
		{"constraints in canonical form", `placement: {constraints: ["zone==a", "  disk!=  hdd ", "host.id == h-1"]}`, func(s *Spec) bool {
			return reflect.DeepEqual(s.Placement.Constraints, []string{"zone == a", "disk != hdd", "host.id == h-1"})
		}},
		{"constraint values with spaces and slashes", "placement:\n  constraints:\n    - kubernetes.io/arch == arm64\n    - rack != row 3", func(s *Spec) bool {
			return reflect.DeepEqual(s.Placement.Constraints, []string{"kubernetes.io/arch == arm64", "rack != row 3"})
		}},
		{"max_per_host zero is no limit", "placement: {max_per_host: 0}", func(s *Spec) bool { return reflect.DeepEqual(s.Placement, Placement{}) }},
		{"max_per_host above replicas", "replicas: 2\nplacement: {max_per_host: 5}", func(s *Spec) bool { return s.Placement.MaxPerHost == 5 }},
		{"trailing empty document", "replicas: 2\n---\n", func(s *Spec) bool { return s.Replicas == 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The case's fields come after minimalYAML, so a repeated
			// service or image must replace it instead.
			yaml := minimalYAML + tt.yaml + "\n"
			if strings.HasPrefix(tt.yaml, "image:") {
				yaml = "service: web\n" + tt.yaml + "\n"
			}
			if s := mustParse(t, yaml); !tt.check(s) {
				t.Errorf("Parse(%q) = %+v, which fails the check", yaml, s)
			}
		})
	}
}

func TestParseFollowsAliases(t *testing.T) {
	s := mustParse(t, "service: &name web\nimage: registry.example.com/web:1\nenv: {SERVICE: *name}\ncommand: &cmd [run]\nentrypoint: *cmd\n")
	if s.Env["SERVICE"] != "web" || !reflect.DeepEqual(s.Entrypoint, []string{"run"}) {
		t.Errorf("env %v, entrypoint %v; want the aliased values", s.Env, s.Entrypoint)
	}
}

type invalidCase struct {
	name  string
	yaml  string // appended to minimalYAML unless it starts with "service:" or "image:"
	field string
	line  int
	// message is a part of the problem's message, often its fix.
	message string
}

func (c invalidCase) document() string {
	if strings.HasPrefix(c.yaml, "service:") || strings.HasPrefix(c.yaml, "image:") {
		return c.yaml
	}
	return minimalYAML + c.yaml
}

// invalidCases each hold exactly one problem. Lines count from 1 in the
// whole document; minimalYAML takes lines 1 and 2.
func invalidCases() []invalidCase {
	return []invalidCase{
		{"service missing", "image: web:1\n", "service", 0, "required"},
		{"service uppercase", "service: Web\nimage: web:1\n", "service", 1, "lowercase letters"},
		{"service starts with digit", "service: 1web\nimage: web:1\n", "service", 1, "starting with a letter"},
		{"service too long", "service: " + strings.Repeat("a", 64) + "\nimage: web:1\n", "service", 1, "1 to 63"},
		{"service is a list", "service: [web]\nimage: web:1\n", "service", 1, "expected a string; got a list"},
		{"service with a binary tag", "service: !!binary d2Vi\nimage: web:1\n", "service", 1, "tag !!binary is not supported"},
		{"service with a custom tag", "service: !name web\nimage: web:1\n", "service", 1, "tag !name is not supported"},
		{"image missing", "service: web\n", "image", 0, "required"},
		{"image without tag", "service: web\nimage: registry.example.com/web\n", "image", 2, "no tag or digest"},
		{"image with bad digest", "service: web\nimage: web@sha256:1234\n", "image", 2, "64 lowercase hex digits"},
		{"image with md5 digest", "service: web\nimage: web@md5:" + strings.Repeat("a", 32) + "\n", "image", 2, "sha256:"},
		{"image uppercase", "service: web\nimage: Web:1\n", "image", 2, "not a valid image reference"},
		{"image bad path", "service: web\nimage: a/-b:1\n", "image", 2, "path component"},
		{"replicas word", "replicas: three\n", "replicas", 3, "expected an integer; got \"three\""},
		{"replicas negative", "replicas: -1\n", "replicas", 3, "-1 is negative; use 0 to scale down"},
		{"replicas too many", "replicas: 10001\n", "replicas", 3, "maximum of 10000"},
		{"replicas float", "replicas: 1.5\n", "replicas", 3, "expected an integer"},
		{"replicas quoted", "replicas: \"3\"\n", "replicas", 3, "expected an integer"},
		{"command not a list", "command: run\n", "command", 3, "expected a list"},
		{"command item is a map", "command: [run, {a: b}]\n", "command[1]", 3, "expected a string; got a mapping"},
		{"command with NUL", "command: [\"a\\0b\"]\n", "command[0]", 3, "NUL"},
		{"entrypoint not a list", "entrypoint: {a: b}\n", "entrypoint", 3, "expected a list"},
		{"env list", "env: [A=1]\n", "env", 3, "expected a mapping of names to values"},
		{"env bad name", "env:\n  1A: x\n", "env.1A", 4, "not a valid variable name"},
		{"env name with dash", "env: {A-B: x}\n", "env.A-B", 3, "not a valid variable name"},
		{"env null value", "env:\n  A:\n", "env.A", 4, "has no value"},
		{"env nested value", "env: {A: [1]}\n", "env.A", 3, "expected a string"},
		{"env duplicate", "env:\n  A: 1\n  A: 2\n", "env.A", 5, "already set on line 4"},
		{"port without host", "ports: [\"8080\"]\n", "ports[0]", 3, "host and the container port"},
		{"port as integer", "ports:\n  - 8080\n", "ports[0]", 4, "host and the container port"},
		{"port out of range", "ports: [\"70000:80\"]\n", "ports[0]", 3, "1 to 65535"},
		{"port zero", "ports: [\"0:80\"]\n", "ports[0]", 3, "1 to 65535"},
		{"container port out of range", "ports: [\"80:65536\"]\n", "ports[0]", 3, "container port"},
		{"port bad ip", "ports: [\"300.1.1.1:80:80\"]\n", "ports[0]", 3, "not an IP address"},
		{"port bad protocol", "ports: [\"80:80/sctp\"]\n", "ports[0]", 3, "not tcp or udp"},
		{"port range", "ports: [\"8000-8010:8000-8010\"]\n", "ports[0]", 3, "ranges are not supported"},
		{"port unbracketed ipv6", "ports: [\"::1:80:80\"]\n", "ports[0]", 3, "brackets"},
		{"port duplicate", "ports:\n  - 8080:80\n  - 127.0.0.1:8080:81\n", "ports[1]", 5, "duplicates ports[0]"},
		{"port overlaps wildcard", "ports:\n  - 8080:80\n  - 0.0.0.0:8080:81\n", "ports[1]", 5, "overlaps ports[0]"},
		{"port long syntax", "ports:\n  - target: 80\n    published: 8080\n", "ports[0]", 4, "long port syntax is not supported"},
		{"port after a wildcard", "ports:\n  - 0.0.0.0:8080:80\n  - 127.0.0.1:8080:81/tcp\n", "ports[1]", 5, "overlaps ports[0]"},
		{"same port, other protocol, then a clash", "ports: [\"53:53/udp\", \"53:53\", \"[::]:53:54/udp\"]\n", "ports[2]", 3, "overlaps ports[0]"},
		{"ports not a list", "ports: \"80:80\"\n", "ports", 3, "expected a list"},
		{"cpus zero", "resources: {cpus: 0}\n", "resources.cpus", 3, "greater than 0"},
		{"cpus negative", "resources:\n  cpus: -1\n", "resources.cpus", 4, "greater than 0"},
		{"cpus too small", "resources: {cpus: 0.001}\n", "resources.cpus", 3, "minimum of 0.01"},
		{"cpus too many", "resources: {cpus: 2048}\n", "resources.cpus", 3, "maximum of 1024"},
		{"cpus word", "resources: {cpus: many}\n", "resources.cpus", 3, "expected a number of CPUs"},
		{"cpus infinite", "resources: {cpus: .inf}\n", "resources.cpus", 3, "between 0.01 and 1024"},
		{"memory word", "resources:\n  memory: lots\n", "resources.memory", 4, `"lots" is not a size; write a number with a unit, like 256M or 1G`},
		{"memory too small", "resources: {memory: 4M}\n", "resources.memory", 3, "minimum of 6M"},
		{"memory fraction", "resources: {memory: 1.5G}\n", "resources.memory", 3, "whole number"},
		{"memory unit", "resources: {memory: 1T}\n", "resources.memory", 3, "unknown unit"},
		{"pids zero", "resources: {pids: 0}\n", "resources.pids", 3, "at least 1"},
		{"pids negative", "resources: {pids: -1}\n", "resources.pids", 3, "at least 1"},
		{"resources not a mapping", "resources: 1\n", "resources", 3, "expected a mapping of cpus, memory, pids"},
		{"two probes", "healthcheck:\n  http: {port: 80}\n  tcp: {port: 80}\n", "healthcheck", 3, "set only one"},
		{"http path relative", "healthcheck: {http: {path: healthz, port: 80}}\n", "healthcheck.http.path", 3, `must start with "/"`},
		{"http path with space", "healthcheck: {http: {path: /a b, port: 80}}\n", "healthcheck.http.path", 3, "not a URL path"},
		{"http port missing", "healthcheck:\n  http: {path: /}\n", "healthcheck.http.port", 4, "not a port number"},
		{"http port word", "healthcheck: {http: {port: http}}\n", "healthcheck.http.port", 3, "expected an integer"},
		{"tcp port out of range", "healthcheck:\n  tcp:\n    port: 99999\n", "healthcheck.tcp.port", 5, "not a port number"},
		{"exec empty", "healthcheck: {exec: []}\n", "healthcheck.exec", 3, "empty"},
		{"exec string", "healthcheck: {exec: curl localhost}\n", "healthcheck.exec", 3, "expected a list"},
		{"exec empty program", "healthcheck: {exec: [\"\", x]}\n", "healthcheck.exec[0]", 3, "command is empty"},
		{"interval zero", "healthcheck:\n  interval: 0s\n", "healthcheck.interval", 4, "must be greater than 0 (e.g. 5s)"},
		{"interval tiny", "healthcheck: {interval: 1ns}\n", "healthcheck.interval", 3, "below the minimum"},
		{"interval without unit", "healthcheck: {interval: 5}\n", "healthcheck.interval", 3, "no unit"},
		{"interval word", "healthcheck: {interval: often}\n", "healthcheck.interval", 3, "not a duration"},
		{"timeout zero", "healthcheck: {timeout: 0s}\n", "healthcheck.timeout", 3, "greater than 0"},
		{"timeout negative", "healthcheck: {timeout: -1s}\n", "healthcheck.timeout", 3, "greater than 0"},
		{"retries zero", "healthcheck: {retries: 0}\n", "healthcheck.retries", 3, "at least 1"},
		{"start period negative", "healthcheck: {start_period: -1s}\n", "healthcheck.start_period", 3, "negative"},
		{"parallelism zero", "update: {parallelism: 0}\n", "update.parallelism", 3, "at least 1"},
		{"delay negative", "update: {delay: -5s}\n", "update.delay", 3, "negative"},
		{"order unknown", "update: {order: random}\n", "update.order", 3, "start-first or stop-first"},
		{"monitor negative", "update: {monitor: -1m}\n", "update.monitor", 3, "negative"},
		{"ratio above 1", "update: {max_failure_ratio: 1.5}\n", "update.max_failure_ratio", 3, "between 0 and 1"},
		{"ratio negative", "update: {max_failure_ratio: -0.1}\n", "update.max_failure_ratio", 3, "between 0 and 1"},
		{"ratio nan", "update: {max_failure_ratio: .nan}\n", "update.max_failure_ratio", 3, "between 0 and 1"},
		{"ratio word", "update: {max_failure_ratio: half}\n", "update.max_failure_ratio", 3, "expected a fraction"},
		{"failure action unknown", "update: {failure_action: ignore}\n", "update.failure_action", 3, "rollback or pause"},
		{"progress deadline zero", "update: {progress_deadline: 0s}\n", "update.progress_deadline", 3, "greater than 0"},
		{"user root", "security: {user: root}\n", "security.user", 3, "allow_root: true"},
		{"user uid 0", "security: {user: 0}\n", "security.user", 3, "runs as root"},
		{"user 0 with group", "security: {user: \"0:1000\"}\n", "security.user", 3, "runs as root"},
		{"user root with group", "security: {user: \"root:app\"}\n", "security.user", 3, "runs as root"},
		{"user syntax", "security: {user: \"a:b:c\"}\n", "security.user", 3, "more than one ':'"},
		{"user empty group", "security: {user: \"app:\"}\n", "security.user", 3, "not a user"},
		{"read only word", "security: {read_only: yes}\n", "security.read_only", 3, "expected true or false"},
		{"no new privileges number", "security: {no_new_privileges: 1}\n", "security.no_new_privileges", 3, "expected true or false"},
		{"cap unknown", "security:\n  cap_add: [NET_BIND_SERVICE, NET_ADMN]\n", "security.cap_add[1]", 4, "did you mean NET_ADMIN?"},
		{"cap twice", "security: {cap_drop: [ALL, all]}\n", "security.cap_drop[1]", 3, "listed twice"},
		{"cap in both", "security: {cap_drop: [NET_RAW], cap_add: [CAP_NET_RAW]}\n", "security.cap_add[0]", 3, "also in cap_drop"},
		{"cap_drop not a list", "security: {cap_drop: ALL}\n", "security.cap_drop", 3, "expected a list"},
		{"privileged word", "security:\n  privileged: yes\n", "security.privileged", 4, "expected true or false"},
		{"seccomp typo", "security: {seccomp: unconfind}\n", "security.seccomp", 3, "is not default, unconfined or strict; did you mean unconfined?"},
		{"seccomp bare name", "security: {seccomp: myprofile}\n", "security.seccomp", 3, "contains a / or ends in .json"},
		{"seccomp upper case", "security: {seccomp: Strict}\n", "security.seccomp", 3, "did you mean strict?"},
		{"seccomp list", "security: {seccomp: [a.json]}\n", "security.seccomp", 3, "expected a string; got a list"},
		{"apparmor with space", "security:\n  apparmor: my profile\n", "security.apparmor", 4, "not an AppArmor profile name"},
		{"apparmor upper case unconfined", "security: {apparmor: Unconfined}\n", "security.apparmor", 3, "as unconfined"},
		{"apparmor slash", "security: {apparmor: /etc/apparmor.d/web}\n", "security.apparmor", 3, "not an AppArmor profile name"},
		{"network mode typo", "network_mode: hots\n", "network_mode", 3, "did you mean host?"},
		{"network mode of a container", "network_mode: container:db\n", "network_mode", 3, "sharing another container's namespace is not supported"},
		{"network mode far off", "network_mode: overlay\n", "network_mode", 3, "write bridge (deployctl's network, the default), host or none"},
		{"host network with ports", "ports: [\"8080:80\"]\nnetwork_mode: host\n", "network_mode", 4, "remove ports"},
		{"no network with ports", "network_mode: none\nports: [\"8080:80\"]\n", "network_mode", 3, "the container has no network"},
		{"pid of a container", "pid: container:db\n", "pid", 3, "not supported"},
		{"pid typo", "pid: hostt\n", "pid", 3, "did you mean host?"},
		{"ipc shareable", "ipc: shareable\n", "ipc", 3, "is not an IPC mode; write private or host"},
		{"ipc number", "ipc: [host]\n", "ipc", 3, "expected a string"},
		{"userns private", "userns_mode: private\n", "userns_mode", 3, "is not a user namespace mode"},
		{"volume named", "volumes: [data:/data]\n", "volumes[0]", 3, "named volumes are not supported"},
		{"volume relative container path", "volumes:\n  - /srv/data:data\n", "volumes[0]", 4, "not absolute"},
		{"volume dot dot", "volumes: [/srv/../etc:/etc]\n", "volumes[0]", 3, `contains ".."`},
		{"volume trailing slash", "volumes: [/srv/data/:/data]\n", "volumes[0]", 3, "as /srv/data"},
		{"volume selinux label", "volumes: [/srv/data:/data:Z]\n", "volumes[0]", 3, "not ro or rw"},
		{"volume one path", "volumes: [/srv/data]\n", "volumes[0]", 3, "give both the host and the container path"},
		{"volume on container root", "volumes: [\"/srv/data:/\"]\n", "volumes[0]", 3, "cannot be /"},
		{"volumes on one container path", "volumes:\n  - /srv/a:/data\n  - /srv/b:/data:ro\n", "volumes[1]", 5, "already mounted by volumes[0]"},
		{"volume long syntax", "volumes:\n  - type: bind\n    source: /srv\n", "volumes[0]", 4, "long volume syntax is not supported"},
		{"volumes not a list", "volumes: /srv:/data\n", "volumes", 3, "expected a list"},
		{"privileged at the top level", "privileged: true\n", "privileged", 3, "did you mean security.privileged?"},
		{"privileged typo", "security: {privilegd: true}\n", "security.privilegd", 3, "did you mean privileged?"},
		{"compose security_opt", "security_opt: [seccomp=unconfined]\n", "security_opt", 3, "did you mean security.seccomp or security.apparmor?"},
		{"seccomp_profile in the spec", "security: {seccomp_profile: x}\n", "security.seccomp_profile", 3, "did you mean seccomp?"},
		{"docker run --net", "net: host\n", "net", 3, "did you mean network_mode?"},
		{"pid_mode", "pid_mode: host\n", "pid_mode", 3, "did you mean pid?"},
		{"userns", "userns: host\n", "userns", 3, "did you mean userns_mode?"},
		{"seccomp at the top level", "seccomp: strict\n", "seccomp", 3, "did you mean security.seccomp?"},
		{"constraint without operator", "placement: {constraints: [zone a]}\n", "placement.constraints[0]", 3, "has no operator"},
		{"constraint with a single =", "placement:\n  constraints:\n    - zone = a\n", "placement.constraints[0]", 5, "a single = is not one"},
		{"constraint key with a space", "placement: {constraints: [\"zo ne == a\"]}\n", "placement.constraints[0]", 3, "may only hold letters"},
		{"constraint key with a colon", "placement: {constraints: [\"zone:x == a\"]}\n", "placement.constraints[0]", 3, "may only hold letters"},
		{"constraint without value", "placement: {constraints: [\"zone ==\"]}\n", "placement.constraints[0]", 3, "has no value after =="},
		{"constraint without key", "placement: {constraints: [\"!= a\"]}\n", "placement.constraints[0]", 3, "has no key before !="},
		{"constraint with two operators", "placement: {constraints: [\"zone == a != b\"]}\n", "placement.constraints[0]", 3, "more than one operator"},
		{"constraint with ===", "placement: {constraints: [\"zone === a\"]}\n", "placement.constraints[0]", 3, "more than one operator"},
		{"constraint with compose prefix", "placement: {constraints: [\"node.labels.zone == a\"]}\n", "placement.constraints[0]", 3, `like "zone == a"`},
		{"constraints contradict", "placement:\n  constraints:\n    - zone == a\n    - zone == b\n", "placement.constraints[1]", 6, "contradicts constraints[0]"},
		{"constraint and its negation", "placement: {constraints: [zone == a, zone != a]}\n", "placement.constraints[1]", 3, "no host can satisfy both"},
		{"both host id spellings", "placement: {constraints: [node.id == h1, host.id == h2]}\n", "placement.constraints[1]", 3, "contradicts constraints[0]"},
		{"constraint repeated", "placement: {constraints: [zone==a, zone == a]}\n", "placement.constraints[1]", 3, "repeats constraints[0]"},
		{"constraint as a mapping", "placement:\n  constraints:\n    - zone: a\n", "placement.constraints[0]", 5, "expected a string; got a mapping"},
		{"constraints not a list", "placement: {constraints: zone == a}\n", "placement.constraints", 3, "expected a list"},
		{"max_per_host negative", "placement: {max_per_host: -1}\n", "placement.max_per_host", 3, "use 0 for no limit"},
		{"max_per_host word", "placement: {max_per_host: one}\n", "placement.max_per_host", 3, "expected an integer"},
		{"placement not a mapping", "placement: [zone == a]\n", "placement", 3, "expected a mapping of constraints, max_per_host"},
		{"compose max_replicas_per_node", "placement: {max_replicas_per_node: 1}\n", "placement.max_replicas_per_node", 3, "did you mean max_per_host?"},
		{"constraint typo", "placement: {constraint: [zone == a]}\n", "placement.constraint", 3, "did you mean constraints?"},
		{"constraints at the top level", "constraints: [zone == a]\n", "constraints", 3, "did you mean placement.constraints?"},
		{"stop grace negative", "stop_grace_period: -10s\n", "stop_grace_period", 3, "negative"},
		{"stop grace number", "stop_grace_period: 10\n", "stop_grace_period", 3, "no unit"},
		{"unknown field", "replicaz: 3\n", "replicaz", 3, "unknown field; did you mean replicas?"},
		{"unknown nested field", "healthcheck:\n  intervall: 3s\n", "healthcheck.intervall", 4, "did you mean interval?"},
		{"field in the wrong section", "cpus: 2\n", "cpus", 3, "did you mean resources.cpus?"},
		{"compose spelling", "environment: {A: b}\n", "environment", 3, "did you mean env?"},
		{"unknown far from anything", "xyzzy: 1\n", "xyzzy", 3, "valid fields are service, image"},
		{"duplicate key", "replicas: 1\nreplicas: 2\n", "replicas", 4, "already set on line 3"},
		{"merge key", "update:\n  <<: {delay: 1s}\n", "update", 4, "merge keys"},
		{"complex key", "? [a]\n: b\n", "", 3, "plain name"},
	}
}

func TestParseReportsEachInvalidCase(t *testing.T) {
	checkInvalidCases(t, invalidCases())
}

func TestParseCollectsEveryProblem(t *testing.T) {
	problems := mustProblems(t, `service: web
image: registry.example.com/web:1.4.2
replicaz: 3
resources:
  memory: lots
healthcheck:
  interval: 0s
`)
	want := []Problem{
		{Field: "replicaz", Line: 3, Message: "unknown field; did you mean replicas?"},
		{Field: "resources.memory", Line: 5, Message: `"lots" is not a size; write a number with a unit, like 256M or 1G`},
		{Field: "healthcheck.interval", Line: 7, Message: "must be greater than 0 (e.g. 5s)"},
	}
	if !reflect.DeepEqual(problems, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", (&ValidationError{problems}).Error(), (&ValidationError{want}).Error())
	}
}

// A value that fails to decode is reported once, not also by the validation
// of the field it was meant for.
func TestParseReportsAFieldOnce(t *testing.T) {
	problems := mustProblems(t, minimalYAML+"healthcheck:\n  http: {port: abc}\nports: [\"x\", \"8080:80\"]\n")
	var fields []string
	for _, p := range problems {
		fields = append(fields, p.Field)
	}
	if want := []string{"healthcheck.http.port", "ports[0]"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("problem fields = %q, want %q", fields, want)
	}
}

func TestParseDocumentProblems(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		line    int
		message string
	}{
		{"empty", "", 0, "the spec is empty"},
		{"only comments", "# nothing\n", 0, "the spec is empty"},
		{"unclosed flow list", "service: web\nimage: [a\nreplicas: 1\n", 2, "invalid YAML: did not find expected ',' or ']'"},
		{"unclosed flow mapping", minimalYAML + "\n\nenv: {A: b\n", 5, "invalid YAML: did not find expected ',' or '}'"},
		{"bad block mapping", minimalYAML + "env:\n  A: b\n - x\n", 5, "invalid YAML: did not find expected key"},
		{"bad indentation", "service: web\n  image: x\n", 2, "invalid YAML: mapping values are not allowed"},
		{"error on the first line", "\tservice: web\n", 1, "invalid YAML"},
		{"unterminated string", minimalYAML + "\nenv: {A: \"x}\n", 4, "invalid YAML: found unexpected end of stream"},
		{"scalar document", "web\n", 1, "a spec is a mapping"},
		{"list document", "- service: web\n", 1, "a spec is a mapping"},
		{"two documents", minimalYAML + "---\nservice: api\n", 3, "second YAML document"},
		{"not UTF-8", "service: web\nimage: \xff\n", 2, "column 8: the spec must be UTF-8"},
		{"empty then a second document", "---\n---\nservice: web\n", 2, "second YAML document starts here; write one spec per file"},
		{"control character", "service: web\x01\n", 1, "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := mustProblems(t, tt.yaml)
			p := problems[0]
			if p.Field != "" || p.Line != tt.line || !strings.Contains(p.Message, tt.message) {
				t.Errorf("first problem = %q (line %d), want line %d, no field, message containing %q", p.String(), p.Line, tt.line, tt.message)
			}
		})
	}
}

func TestValidationErrorText(t *testing.T) {
	err := &ValidationError{Problems: []Problem{
		{Field: "replicaz", Line: 4, Message: "unknown field; did you mean replicas?"},
		{Field: "image", Message: "required"},
		{Line: 2, Message: "invalid YAML: oops"},
	}}
	want := "line 4: replicaz: unknown field; did you mean replicas?\nimage: required\nline 2: invalid YAML: oops"
	if got := err.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	if !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("errors.Is(ValidationError, ErrInvalidSpec) = false")
	}
}

func TestUnknownFieldMessage(t *testing.T) {
	tests := []struct{ section, name, want string }{
		{"", "replicaz", "unknown field; did you mean replicas?"},
		{"", "Replicas", "unknown field; did you mean replicas?"},
		{"", "helthcheck", "unknown field; did you mean healthcheck?"},
		{"", "stopGracePeriod", "unknown field; did you mean stop_grace_period?"},
		{"healthcheck", "startPeriod", "unknown field; did you mean start_period?"},
		{"", "memory", "unknown field; did you mean resources.memory?"},
		{"", "user", "unknown field; did you mean security.user?"},
		{"healthcheck", "image", "unknown field; did you mean image (at the top level)?"},
		{"healthcheck", "test", "unknown field; did you mean exec?"},
		{"resources", "qq", "unknown field; valid fields are cpus, memory, pids"},
		{"", "max_per_host", "unknown field; did you mean placement.max_per_host?"},
		{"placement", "maxPerHost", "unknown field; did you mean max_per_host?"},
		{"placement", "max_replicas_per_node", "unknown field; did you mean max_per_host?"},
	}
	for _, tt := range tests {
		if got := unknownFieldMessage(tt.section, tt.name); got != tt.want {
			t.Errorf("unknownFieldMessage(%q, %q) = %q, want %q", tt.section, tt.name, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"replicaz", "replicas", 1},
		{"kitten", "sitting", 3}, {"flaw", "lawn", 2}, {"héllo", "hello", 1},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := editDistance(tt.b, tt.a); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (symmetry)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestProblemJSON(t *testing.T) {
	got, err := json.Marshal([]Problem{{Field: "replicas", Line: 3, Message: "m"}, {Message: "doc"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"field":"replicas","line":3,"message":"m"},{"message":"doc"}]`; string(got) != want {
		t.Errorf("json = %s, want %s", got, want)
	}
}

// checkInvalidCases parses each case's document and checks that it has
// exactly the one problem the case names: field, line and message.
func checkInvalidCases(t *testing.T, cases []invalidCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			problems := mustProblems(t, tt.document())
			if len(problems) != 1 {
				t.Fatalf("got %d problems, want 1:\n%s", len(problems), (&ValidationError{problems}).Error())
			}
			p := problems[0]
			if p.Field != tt.field || p.Line != tt.line || !strings.Contains(p.Message, tt.message) {
				t.Errorf("problem = %q (field %q, line %d)\nwant field %q, line %d, message containing %q",
					p.String(), p.Field, p.Line, tt.field, tt.line, tt.message)
			}
		})
	}
}
