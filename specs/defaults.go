package specs

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Defaults. Parse fills every absent field with these; ApplyDefaults fills
// only the fields whose zero value is not a valid setting (see ApplyDefaults).
const (
	DefaultReplicas = 1

	DefaultNanoCPUs    = 1_000_000_000     // 1 CPU
	DefaultMemoryBytes = 512 * 1024 * 1024 // 512M
	DefaultPids        = 256

	DefaultHealthInterval    = 5 * time.Second
	DefaultHealthTimeout     = 2 * time.Second
	DefaultHealthRetries     = 3
	DefaultHealthStartPeriod = 0
	DefaultHTTPCheckPath     = "/"

	DefaultUpdateParallelism      = 1
	DefaultUpdateDelay            = 0
	DefaultUpdateOrder            = OrderStartFirst
	DefaultUpdateMonitor          = 10 * time.Second
	DefaultUpdateMaxFailureRatio  = 0
	DefaultUpdateFailureAction    = FailureActionRollback
	DefaultUpdateProgressDeadline = 5 * time.Minute
	// DefaultRollbackMinRequests is how many requests to the new revision
	// update.rollback_on waits for before it judges: fewer say too little
	// about an error rate of a few percent.
	DefaultRollbackMinRequests = 50

	DefaultReadOnly        = true
	DefaultNoNewPrivileges = true

	DefaultStopGracePeriod = 10 * time.Second

	// DefaultHostIP is where a published port binds when the spec names no
	// address: loopback, because publishing on every interface is what
	// CIS Docker 5.13 warns about. Write "0.0.0.0:8080:8080" to mean it.
	DefaultHostIP   = "127.0.0.1"
	DefaultProtocol = "tcp"

	DefaultIngressProtocol = IngressHTTP
	DefaultIngressPath     = "/"
)

// DefaultCapDrop is the cap_drop of a spec that does not say: drop every
// capability, and let cap_add put back the few a service needs.
func DefaultCapDrop() []string { return []string{CapAll} }

// newDefaultSpec is a spec with every field at its default; Parse overwrites
// the fields the YAML sets, so an absent field keeps its default while an
// explicit zero ("replicas: 0", "read_only: false") is kept as written.
func newDefaultSpec() *Spec {
	return &Spec{
		Replicas: DefaultReplicas,
		Resources: Resources{
			NanoCPUs:    DefaultNanoCPUs,
			MemoryBytes: DefaultMemoryBytes,
			Pids:        DefaultPids,
		},
		Healthcheck: Healthcheck{
			Interval:    DefaultHealthInterval,
			Timeout:     DefaultHealthTimeout,
			Retries:     DefaultHealthRetries,
			StartPeriod: DefaultHealthStartPeriod,
		},
		Update: Update{
			Parallelism:      DefaultUpdateParallelism,
			Delay:            DefaultUpdateDelay,
			Order:            DefaultUpdateOrder,
			Monitor:          DefaultUpdateMonitor,
			MaxFailureRatio:  DefaultUpdateMaxFailureRatio,
			FailureAction:    DefaultUpdateFailureAction,
			ProgressDeadline: DefaultUpdateProgressDeadline,
		},
		Security: Security{
			ReadOnly:        DefaultReadOnly,
			NoNewPrivileges: DefaultNoNewPrivileges,
			CapDrop:         DefaultCapDrop(),
		},
		StopGracePeriod: DefaultStopGracePeriod,
	}
}

// ApplyDefaults fills the fields of a spec built in Go (or decoded from JSON)
// that are unset, and puts names in canonical form (capability names
// upper-cased without "CAP_", protocols and ingress hosts lower-cased). It
// is idempotent.
//
// A Go zero value cannot say "absent", so only fields whose zero value is
// refused by Validate are filled: CPUs, memory, pids, healthcheck interval,
// timeout and retries, the HTTP check path, update parallelism, order,
// failure action and progress deadline, update.rollback_on's min_requests,
// a port's host IP and protocol, an ingress entry's protocol (http) and,
// for http, its path (/), an exposed port's protocol (http, lower-cased),
// and a nil cap_drop (an empty, non-nil cap_drop means "drop nothing" and is kept).
// Fields whose zero is a legitimate setting (replicas 0, monitor 0s,
// stop_grace_period 0s, read_only false, no_new_privileges false) are left
// as they are: Parse is what defaults them when the YAML leaves them out.
// Hence ApplyDefaults never changes a spec that passes Validate.
func (s *Spec) ApplyDefaults() {
	r := &s.Resources
	if r.NanoCPUs == 0 {
		r.NanoCPUs = DefaultNanoCPUs
	}
	if r.MemoryBytes == 0 {
		r.MemoryBytes = DefaultMemoryBytes
	}
	if r.Pids == 0 {
		r.Pids = DefaultPids
	}

	for i := range s.Ports {
		p := &s.Ports[i]
		if p.HostIP == "" {
			p.HostIP = DefaultHostIP
		}
		if p.Protocol == "" {
			p.Protocol = DefaultProtocol
		}
		p.Protocol = strings.ToLower(p.Protocol)
	}

	for i := range s.Ingress {
		in := &s.Ingress[i]
		if in.Protocol == "" {
			in.Protocol = DefaultIngressProtocol
		}
		in.Protocol = strings.ToLower(in.Protocol)
		in.Host = strings.ToLower(in.Host)
		if in.Protocol == IngressHTTP && in.Path == "" {
			in.Path = DefaultIngressPath
		}
	}

	s.applySecretDefaults()

	for i := range s.Expose {
		e := &s.Expose[i]
		if e.Protocol == "" {
			e.Protocol = DefaultExposeProtocol
		}
		e.Protocol = strings.ToLower(e.Protocol)
	}

	h := &s.Healthcheck
	if h.Interval == 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout == 0 {
		h.Timeout = DefaultHealthTimeout
	}
	if h.Retries == 0 {
		h.Retries = DefaultHealthRetries
	}
	if h.HTTP != nil && h.HTTP.Path == "" {
		h.HTTP.Path = DefaultHTTPCheckPath
	}

	u := &s.Update
	if u.Parallelism == 0 {
		u.Parallelism = DefaultUpdateParallelism
	}
	if u.Order == "" {
		u.Order = DefaultUpdateOrder
	}
	if u.FailureAction == "" {
		u.FailureAction = DefaultUpdateFailureAction
	}
	if u.ProgressDeadline == 0 {
		u.ProgressDeadline = DefaultUpdateProgressDeadline
	}
	if u.RollbackOn != nil && u.RollbackOn.MinRequests == 0 {
		u.RollbackOn.MinRequests = DefaultRollbackMinRequests
	}

	sec := &s.Security
	if sec.CapDrop == nil {
		sec.CapDrop = DefaultCapDrop()
	}
	for i, c := range sec.CapDrop {
		sec.CapDrop[i] = CanonicalCapability(c)
	}
	for i, c := range sec.CapAdd {
		sec.CapAdd[i] = CanonicalCapability(c)
	}
}

// Clone returns a deep copy: nothing of the copy is shared with s. A nil
// slice or map stays nil and an empty one stays empty, because an empty
// cap_drop means something else than an absent one.
func (s *Spec) Clone() *Spec {
	if s == nil {
		return nil
	}
	c := *s
	c.Command = slices.Clone(s.Command)
	c.Entrypoint = slices.Clone(s.Entrypoint)
	c.Env = maps.Clone(s.Env)
	c.Ports = slices.Clone(s.Ports)
	c.Volumes = slices.Clone(s.Volumes)
	c.Ingress = slices.Clone(s.Ingress)
	for i, in := range c.Ingress {
		if in.TLS != nil {
			tls := *in.TLS
			c.Ingress[i].TLS = &tls
		}
	}
	c.Expose = slices.Clone(s.Expose)
	c.ConnectsTo = slices.Clone(s.ConnectsTo)
	c.Secrets = slices.Clone(s.Secrets)
	for i, sec := range c.Secrets {
		if sec.UID != nil {
			uid := *sec.UID
			c.Secrets[i].UID = &uid
		}
		if sec.GID != nil {
			gid := *sec.GID
			c.Secrets[i].GID = &gid
		}
	}
	if s.Healthcheck.HTTP != nil {
		http := *s.Healthcheck.HTTP
		c.Healthcheck.HTTP = &http
	}
	if s.Healthcheck.TCP != nil {
		tcp := *s.Healthcheck.TCP
		c.Healthcheck.TCP = &tcp
	}
	c.Healthcheck.Exec = slices.Clone(s.Healthcheck.Exec)
	c.Placement.Constraints = slices.Clone(s.Placement.Constraints)
	c.Security.CapDrop = slices.Clone(s.Security.CapDrop)
	c.Security.CapAdd = slices.Clone(s.Security.CapAdd)
	c.Security.SeccompProfile = slices.Clone(s.Security.SeccompProfile)
	if s.Update.Canary != nil {
		canary := *s.Update.Canary
		c.Update.Canary = &canary
	}
	if s.Update.RollbackOn != nil {
		on := *s.Update.RollbackOn
		if on.ErrorRate != nil {
			rate := *on.ErrorRate
			on.ErrorRate = &rate
		}
		c.Update.RollbackOn = &on
	}
	return &c
}
