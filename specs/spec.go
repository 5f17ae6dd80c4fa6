// Package specs is the service spec format: parse, validate and fill defaults.
// It is pure: no I/O, no clock, no network. Everything the controller stores
// about what a user asked for is a *Spec produced here.
package specs

import "time"

// Spec is one service as declared by a user, after defaults are filled.
// Field names follow Compose where Compose has one.
//
// NetworkMode, PID, IPC and UsernsMode choose the container's namespaces;
// "" is deployctl's default for each (see the NetworkMode* and Namespace*
// constants). Every field added after the first release is omitted from the
// JSON when unset, so that the fingerprint of an older revision, which
// hashes this JSON, does not change.
type Spec struct {
	Service         string            `yaml:"service" json:"service"`
	Image           string            `yaml:"image" json:"image"`
	Replicas        int               `yaml:"replicas" json:"replicas"`
	Command         []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Entrypoint      []string          `yaml:"entrypoint,omitempty" json:"entrypoint,omitempty"`
	Env             map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Ports           []Port            `yaml:"-" json:"ports,omitempty"`
	Volumes         []Volume          `yaml:"-" json:"volumes,omitempty"`
	Resources       Resources         `yaml:"resources" json:"resources"`
	Healthcheck     Healthcheck       `yaml:"healthcheck" json:"healthcheck"`
	Update          Update            `yaml:"update" json:"update"`
	Placement       Placement         `yaml:"placement" json:"placement,omitzero"`
	Security        Security          `yaml:"security" json:"security"`
	NetworkMode     string            `yaml:"network_mode" json:"network_mode,omitempty"`
	PID             string            `yaml:"pid" json:"pid,omitempty"`
	IPC             string            `yaml:"ipc" json:"ipc,omitempty"`
	UsernsMode      string            `yaml:"userns_mode" json:"userns_mode,omitempty"`
	StopGracePeriod time.Duration     `yaml:"-" json:"stop_grace_period"`
	// Ingress lists the ports every host's proxy listens on for the
	// service and balances over its healthy replicas (see Ingress).
	Ingress []Ingress `yaml:"-" json:"ingress,omitempty"`
	// Expose lists the ports the service offers to other services, which
	// reach them at its service address (see Expose); ConnectsTo the
	// services it may call (see Connection). Neither changes the
	// container: they shape the proxies' paths and the names the agent's
	// DNS answers, so they are not part of the revision fingerprint.
	Expose     []Expose     `yaml:"-" json:"expose,omitempty"`
	ConnectsTo []Connection `yaml:"-" json:"connects_to,omitempty"`
	// Secrets are files the containers receive in memory (see Secret).
	Secrets []Secret `yaml:"-" json:"secrets,omitempty"`
}

// Ingress protocols.
const (
	IngressHTTP = "http"
	IngressTCP  = "tcp"
)

// Ingress is one port that every host's proxy listens on and forwards to
// the service's healthy replicas. An http entry is chosen by Host header
// (Host: "" any name, "api.example.com" exactly that name, "*.example.com"
// one more label in front of example.com) and by the longest Path prefix
// (matched on whole path segments: "/api" takes /api and /api/x, not
// /apix); a tcp entry owns its listen port alone. Host is lower-case and
// Path canonical ("/" when absent) after Parse or ApplyDefaults.
type Ingress struct {
	Listen   int    `json:"listen"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	Host     string `json:"host,omitempty"`
	Path     string `json:"path,omitempty"`
	// TLS, on an http entry, makes the proxies terminate TLS on the listen
	// port with a certificate and key held as secrets (issue 13; see
	// IngressTLS). nil: plain http.
	TLS *IngressTLS `json:"tls,omitempty"`
}

// Port is one published port: "[ip:]host:container[/proto]".
type Port struct {
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
	Protocol      string `json:"protocol"` // "tcp" or "udp"
}

// Volume is one bind mount: "HOST:CONTAINER[:ro|:rw]". Both paths are
// absolute and clean; which host paths may be mounted is the cluster
// policy's decision.
type Volume struct {
	HostPath      string `json:"host_path"`
	ContainerPath string `json:"container_path"`
	ReadOnly      bool   `json:"read_only,omitempty"`
}

// Resources are the cgroup limits of every replica.
type Resources struct {
	NanoCPUs    int64 `json:"nano_cpus"`    // cpus: 0.5 -> 500_000_000
	MemoryBytes int64 `json:"memory_bytes"` // memory: 256M
	Pids        int64 `json:"pids"`
}

// Healthcheck says how the agent probes a replica. Exactly one of HTTP, TCP
// and Exec is set after validation, or none (Kind() == "none"): a replica
// without a check counts as healthy once its container runs.
type Healthcheck struct {
	HTTP        *HTTPCheck    `json:"http,omitempty"`
	TCP         *TCPCheck     `json:"tcp,omitempty"`
	Exec        []string      `json:"exec,omitempty"`
	Interval    time.Duration `json:"interval"`
	Timeout     time.Duration `json:"timeout"`
	Retries     int           `json:"retries"`
	StartPeriod time.Duration `json:"start_period"`
}

// HTTPCheck is a GET that passes on a 2xx or 3xx status.
type HTTPCheck struct {
	Path string `json:"path"`
	Port int    `json:"port"`
}

// TCPCheck passes when a TCP connection opens.
type TCPCheck struct {
	Port int `json:"port"`
}

// Kind names the configured probe: "http", "tcp", "exec" or "none".
func (h Healthcheck) Kind() string {
	switch {
	case h.HTTP != nil:
		return "http"
	case h.TCP != nil:
		return "tcp"
	case len(h.Exec) > 0:
		return "exec"
	}
	return "none"
}

// Update orders. Strings are the spec's own words.
const (
	OrderStartFirst = "start-first"
	OrderStopFirst  = "stop-first"

	FailureActionRollback = "rollback"
	FailureActionPause    = "pause"
)

// Update says how a new revision replaces the running one.
type Update struct {
	Parallelism      int           `json:"parallelism"`
	Delay            time.Duration `json:"delay"`
	Order            string        `json:"order"`
	Monitor          time.Duration `json:"monitor"`
	MaxFailureRatio  float64       `json:"max_failure_ratio"`
	FailureAction    string        `json:"failure_action"`
	ProgressDeadline time.Duration `json:"progress_deadline"`
	// Canary and RollbackOn judge a release by its traffic (issue 15).
	// Pointers, omitted when unset, so that the JSON of a spec without
	// them (and the fingerprints of stored revisions) does not change.
	Canary     *Canary     `json:"canary,omitempty"`
	RollbackOn *RollbackOn `json:"rollback_on,omitempty"`
}

// Canary sends Weight (0 < Weight < 1) of the service's requests, across
// every proxy whatever the replica counts, to the new revision's first
// batch for Duration once that batch is healthy, before the rollout goes
// on with its other batches.
type Canary struct {
	Weight   float64       `json:"weight"`
	Duration time.Duration `json:"duration"`
}

// RollbackOn are the thresholds a release's traffic is judged against:
// the requests the proxies sent to the new revision's replicas, 5xx
// answers and transport failures as errors (ErrorRate, a fraction; nil:
// not judged) and their p99 latency (LatencyP99; 0: not judged), once at
// least MinRequests of them were seen. A breach fails the release like a
// health failure (update.failure_action).
type RollbackOn struct {
	ErrorRate   *float64      `json:"error_rate,omitempty"`
	LatencyP99  time.Duration `json:"latency_p99,omitempty"`
	MinRequests int           `json:"min_requests"`
}

// Placement restricts the hosts a replica may run on. Every constraint must
// hold on a host ("zone == a", "disk != hdd", "node.id == h3"; see
// ParseConstraint), and a host runs at most MaxPerHost replicas of the
// service (0: no limit).
type Placement struct {
	Constraints []string `json:"constraints,omitempty"`
	MaxPerHost  int      `json:"max_per_host,omitempty"`
}

// Security is the per-service part of the hardened run options.
type Security struct {
	User      string `json:"user,omitempty"` // "" means the image's user (checked non-root at run time)
	AllowRoot bool   `json:"allow_root,omitempty"`
	// AllowRootGroup lets the container run with group 0 (root) as its
	// primary group: chosen in User ("10001:0") or by the image's
	// /etc/passwd entry of the user. Like AllowRoot, an exception the
	// cluster policy must allow (allow_root_group). AllowRoot implies it.
	AllowRootGroup  bool     `json:"allow_root_group,omitempty"`
	ReadOnly        bool     `json:"read_only"`
	NoNewPrivileges bool     `json:"no_new_privileges"`
	CapDrop         []string `json:"cap_drop"`
	CapAdd          []string `json:"cap_add,omitempty"`
	// Privileged gives the container every capability and device of the
	// host: an exception the cluster policy must allow.
	Privileged bool `json:"privileged,omitempty"`
	// Seccomp is "" or SeccompDefault (the engine's profile), SeccompUnconfined,
	// SeccompStrict, or the path of a profile file (see SeccompMode).
	Seccomp string `json:"seccomp,omitempty"`
	// SeccompProfile is the content of the file Seccomp names. The CLI
	// reads it (this package does no I/O); it is stored in the revision
	// and sent to the engine inline, so hosts need no copy of the file.
	SeccompProfile []byte `yaml:"-" json:"seccomp_profile,omitempty"`
	// AppArmor is "" (the engine's default profile), AppArmorUnconfined,
	// or the name of a profile loaded on the hosts.
	AppArmor string `json:"apparmor,omitempty"`
}
