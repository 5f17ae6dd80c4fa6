package specs

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Limits that Validate enforces beyond the obvious.
const (
	MaxReplicas = 10_000
	MinNanoCPUs = 10_000_000       // 0.01 CPU: Docker refuses less
	MaxNanoCPUs = 1024_000_000_000 // 1024 CPUs
	MaxPids     = 4_194_304        // PID_MAX_LIMIT on 64-bit Linux
	// MinProbePeriod keeps a mistyped "interval: 1ns" from spinning a probe
	// loop; it is also Docker's minimum healthcheck interval.
	MinProbePeriod = time.Millisecond
	// MaxMinRequests bounds update.rollback_on.min_requests: every
	// release waits for that many requests to its new revision, so more
	// than this is a typo rather than a plan.
	MaxMinRequests = 10_000_000
)

// Validate checks a spec that is already built (by Parse, in Go, or from
// JSON) against the same rules Parse applies, and returns a *ValidationError
// listing every problem, each with Line 0. It expects a complete spec: call
// ApplyDefaults first on a spec that may have unset fields.
func (s *Spec) Validate() error {
	if problems := s.problems(); len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

// problems runs every rule and collects what fails, in field order.
func (s *Spec) problems() []Problem {
	var v validator
	v.service(s.Service)
	v.image(s.Image)
	v.replicas(s.Replicas)
	v.strings("command", s.Command)
	v.strings("entrypoint", s.Entrypoint)
	v.env(s.Env)
	v.ports(s.Ports)
	v.volumes(s.Volumes)
	v.resources(s.Resources)
	v.healthcheck(s.Healthcheck)
	v.update(s.Update)
	v.judgedTraffic(s)
	v.placement(s.Placement)
	v.security(s.Security)
	v.namespaces(s)
	v.nonNegative("stop_grace_period", s.StopGracePeriod, "10s")
	v.ingress(s.Ingress, s.Ports)
	v.ingressTLS(s.Ingress)
	v.expose(s.Expose)
	v.connections(s.Service, s.ConnectsTo)
	v.secrets(s.Secrets)
	return v.problems
}

type validator struct {
	problems []Problem
}

func (v *validator) addf(field, format string, args ...any) {
	v.problems = append(v.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) service(service string) {
	if service == "" {
		v.addf("service", "required; name the service, like web")
		return
	}
	if !isServiceName(service) {
		v.addf("service", "%q is not a valid name; use 1 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (like web-api)", service)
	}
}

// isServiceName accepts a DNS label that starts with a letter, because the
// name becomes part of container names and hostnames.
func isServiceName(s string) bool {
	if len(s) < 1 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

func (v *validator) image(image string) {
	if image == "" {
		v.addf("image", "required; name the image with a tag or a digest, like registry.example.com/web:1.4.2")
		return
	}
	if err := checkImageReference(image); err != "" {
		v.addf("image", "%q %s", image, err)
	}
}

// checkImageReference returns what is wrong with an image reference, or "".
// go-containerregistry checks the grammar loosely (weak validation, so a
// Docker Hub short name like "nginx:1.25" is fine); the path components and
// the digest are checked here as Docker's reference grammar has them.
func checkImageReference(image string) string {
	const fix = "write registry/repository:tag or registry/repository@sha256:<64 hex digits>"
	base, digest, hasDigest := strings.Cut(image, "@")
	if hasDigest {
		hex, ok := strings.CutPrefix(digest, "sha256:")
		if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
			return fmt.Sprintf("has digest %q; a digest is sha256: followed by 64 lowercase hex digits", digest)
		}
	}
	// NewTag and NewDigest say what is wrong; ParseReference, which tries
	// both, only says "could not parse reference".
	var repository name.Repository
	if hasDigest {
		ref, err := name.NewDigest(image, name.WeakValidation)
		if err != nil {
			return fmt.Sprintf("is not a valid image reference (%v); %s", err, fix)
		}
		repository = ref.Context()
	} else {
		ref, err := name.NewTag(image, name.WeakValidation)
		if err != nil {
			return fmt.Sprintf("is not a valid image reference (%v); %s", err, fix)
		}
		repository = ref.Context()
	}
	for component := range strings.SplitSeq(repository.RepositoryStr(), "/") {
		if !isPathComponent(component) {
			return fmt.Sprintf("is not a valid image reference: path component %q must be lowercase letters and digits, separated by '.', '_', '__' or '-'; %s", component, fix)
		}
	}
	// A tag is after the last ':' that follows the last '/' ("host:5000/web"
	// has a port, not a tag).
	lastSlash := strings.LastIndex(base, "/")
	_, tag, hasTag := strings.Cut(base[lastSlash+1:], ":")
	switch {
	case hasTag && (tag[0] == '.' || tag[0] == '-'):
		return fmt.Sprintf("has tag %q, which must start with a letter, a digit or '_'", tag)
	case !hasTag && !hasDigest:
		return "has no tag or digest; add one, like " + base + ":1.0 (an implicit :latest is refused, because it says nothing about what runs)"
	}
	return ""
}

// isPathComponent is Docker's path-component grammar:
// [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*.
func isPathComponent(c string) bool {
	isAlnum := func(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') }
	if c == "" || !isAlnum(c[0]) || !isAlnum(c[len(c)-1]) {
		return false
	}
	for i := 0; i < len(c); {
		if isAlnum(c[i]) {
			i++
			continue
		}
		start := i
		for i < len(c) && !isAlnum(c[i]) {
			i++
		}
		separator := c[start:i]
		if separator != "." && separator != "_" && separator != "__" && strings.Trim(separator, "-") != "" {
			return false
		}
	}
	return true
}

func (v *validator) replicas(replicas int) {
	switch {
	case replicas < 0:
		v.addf("replicas", "%d is negative; use 0 to scale down", replicas)
	case replicas > MaxReplicas:
		v.addf("replicas", "%d is more than the maximum of %d", replicas, MaxReplicas)
	}
}

// strings checks a command-like list: the kernel cannot pass a NUL byte in
// an argument.
func (v *validator) strings(field string, list []string) {
	for i, s := range list {
		if strings.ContainsRune(s, 0) {
			v.addf(fmt.Sprintf("%s[%d]", field, i), "contains a NUL byte, which cannot be passed to a process")
		}
	}
}

func (v *validator) env(env map[string]string) {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys) // problems in a stable order
	for _, k := range keys {
		field := "env." + k
		if !isEnvName(k) {
			v.addf(field, "%q is not a valid variable name; use letters, digits and underscores, not starting with a digit (like LOG_LEVEL)", k)
		}
		if strings.ContainsRune(env[k], 0) {
			v.addf(field, "the value contains a NUL byte, which cannot be passed to a process")
		}
	}
}

func isEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

func (v *validator) ports(ports []Port) {
	bound := map[hostPort]*hostPortUse{}
	for i, p := range ports {
		field := fmt.Sprintf("ports[%d]", i)
		before := len(v.problems)
		var addr netip.Addr
		if p.HostIP == "" {
			v.addf(field, "the host IP is empty, which would publish on every interface; write 0.0.0.0 to mean that, or %s to bind loopback", DefaultHostIP)
		} else if ip, err := parseHostIP(p.HostIP); err != nil {
			v.addf(field, "%v", err)
		} else {
			addr = ip.Unmap()
		}
		if p.HostPort < 1 || p.HostPort > 65535 {
			v.addf(field, "host port %d is not a port number (1 to 65535)", p.HostPort)
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			v.addf(field, "container port %d is not a port number (1 to 65535)", p.ContainerPort)
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			v.addf(field, "protocol %q is not tcp or udp", p.Protocol)
		}
		if len(v.problems) > before {
			continue
		}
		key := hostPort{p.HostPort, p.Protocol}
		use := bound[key]
		if use == nil {
			use = &hostPortUse{byAddr: map[netip.Addr]int{}, wildcard: -1}
			bound[key] = use
		}
		if earlier, conflict := use.conflict(addr); conflict != "" {
			v.addf(field, "%s %s ports[%d] (%s); each host port can be published once per address", p, conflict, earlier, ports[earlier])
			continue
		}
		use.add(addr, i)
	}
}

type hostPort struct {
	port     int
	protocol string
}

// hostPortUse is what binds one host port and protocol so far: the index of
// the port on each address, and of the one on the unspecified address.
type hostPortUse struct {
	byAddr   map[netip.Addr]int
	first    int
	wildcard int // -1 when none
}

// conflict says whether binding addr collides with what is bound already,
// and with which port. An unspecified address (0.0.0.0 or ::) binds every
// address, so it collides with any other address.
func (u *hostPortUse) conflict(addr netip.Addr) (int, string) {
	if earlier, ok := u.byAddr[addr]; ok {
		return earlier, "duplicates"
	}
	if u.wildcard >= 0 {
		return u.wildcard, "overlaps"
	}
	if addr.IsUnspecified() && len(u.byAddr) > 0 {
		return u.first, "overlaps"
	}
	return 0, ""
}

func (u *hostPortUse) add(addr netip.Addr, index int) {
	if len(u.byAddr) == 0 {
		u.first = index
	}
	u.byAddr[addr] = index
	if addr.IsUnspecified() {
		u.wildcard = index
	}
}

func (v *validator) resources(r Resources) {
	cpus := strconv.FormatFloat(float64(r.NanoCPUs)/1e9, 'f', -1, 64)
	switch {
	case r.NanoCPUs <= 0:
		v.addf("resources.cpus", "%s must be greater than 0; write a number of CPUs, like 0.5 or 2", cpus)
	case r.NanoCPUs < MinNanoCPUs:
		v.addf("resources.cpus", "%s is below Docker's minimum of 0.01", cpus)
	case r.NanoCPUs > MaxNanoCPUs:
		v.addf("resources.cpus", "%s is more than the maximum of 1024", cpus)
	}
	if r.MemoryBytes < MinMemoryBytes {
		v.addf("resources.memory", "%s is below Docker's minimum of 6M; write at least 6M, like 256M", FormatMemory(r.MemoryBytes))
	}
	switch {
	case r.Pids < 1:
		v.addf("resources.pids", "%d must be at least 1; it caps the number of processes, like 256", r.Pids)
	case r.Pids > MaxPids:
		v.addf("resources.pids", "%d is more than the kernel's maximum of %d", r.Pids, MaxPids)
	}
}

func (v *validator) healthcheck(h Healthcheck) {
	kinds := 0
	if h.HTTP != nil {
		kinds++
		path := h.HTTP.Path
		if !strings.HasPrefix(path, "/") {
			v.addf("healthcheck.http.path", "%q must start with \"/\", like /healthz", path)
		} else if _, err := url.ParseRequestURI(path); err != nil || strings.ContainsFunc(path, isSpaceOrControl) {
			v.addf("healthcheck.http.path", "%q is not a URL path; write a path like /healthz (escape spaces as %%20)", path)
		}
		v.probePort("healthcheck.http.port", h.HTTP.Port)
	}
	if h.TCP != nil {
		kinds++
		v.probePort("healthcheck.tcp.port", h.TCP.Port)
	}
	if len(h.Exec) > 0 {
		kinds++
		if h.Exec[0] == "" {
			v.addf("healthcheck.exec[0]", "the command is empty; name a program, like [curl, -f, http://localhost:8080/]")
		}
		v.strings("healthcheck.exec", h.Exec)
	}
	if kinds > 1 {
		v.addf("healthcheck", "http, tcp and exec are alternatives; set only one")
	}
	v.probePeriod("healthcheck.interval", h.Interval, "5s")
	v.probePeriod("healthcheck.timeout", h.Timeout, "2s")
	if h.Retries < 1 {
		v.addf("healthcheck.retries", "%d must be at least 1 (e.g. 3)", h.Retries)
	}
	v.nonNegative("healthcheck.start_period", h.StartPeriod, "0s")
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func (v *validator) probePort(field string, port int) {
	if port < 1 || port > 65535 {
		v.addf(field, "%d is not a port number; write the container port to probe (1 to 65535), like 8080", port)
	}
}

func (v *validator) probePeriod(field string, d time.Duration, example string) {
	switch {
	case d <= 0:
		v.addf(field, "must be greater than 0 (e.g. %s)", example)
	case d < MinProbePeriod:
		v.addf(field, "%s is below the minimum of %s (e.g. %s)", d, MinProbePeriod, example)
	}
}

func (v *validator) nonNegative(field string, d time.Duration, example string) {
	if d < 0 {
		v.addf(field, "%s is negative; write 0s or more (e.g. %s)", d, example)
	}
}

func (v *validator) update(u Update) {
	if u.Parallelism < 1 {
		v.addf("update.parallelism", "%d must be at least 1; it is how many replicas are replaced at a time", u.Parallelism)
	}
	v.nonNegative("update.delay", u.Delay, "0s")
	if u.Order != OrderStartFirst && u.Order != OrderStopFirst {
		v.addf("update.order", "%q is not an order; write %s or %s", u.Order, OrderStartFirst, OrderStopFirst)
	}
	v.nonNegative("update.monitor", u.Monitor, "10s")
	if math.IsNaN(u.MaxFailureRatio) || u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 {
		v.addf("update.max_failure_ratio", "%v must be between 0 and 1; it is the fraction of replicas allowed to fail, like 0.2", u.MaxFailureRatio)
	}
	if u.FailureAction != FailureActionRollback && u.FailureAction != FailureActionPause {
		v.addf("update.failure_action", "%q is not a failure action; write %s or %s", u.FailureAction, FailureActionRollback, FailureActionPause)
	}
	if u.ProgressDeadline <= 0 {
		v.addf("update.progress_deadline", "must be greater than 0 (e.g. 5m)")
	}
	if c := u.Canary; c != nil {
		if math.IsNaN(c.Weight) || c.Weight <= 0 || c.Weight >= 1 {
			v.addf("update.canary.weight", "%s must be above 0%% and below 100%%; it is the share of the service's requests the canary gets, like 10%%", percentText(c.Weight))
		}
		if c.Duration <= 0 {
			v.addf("update.canary.duration", "must be greater than 0 (e.g. 30s); it is how long the canary runs once healthy")
		}
	}
	if r := u.RollbackOn; r != nil {
		if r.ErrorRate == nil && r.LatencyP99 == 0 {
			v.addf("update.rollback_on", "names no threshold; set error_rate, latency_p99 or both, like {error_rate: 2%%, latency_p99: 500ms}")
		}
		if e := r.ErrorRate; e != nil && (math.IsNaN(*e) || *e < 0 || *e >= 1) {
			v.addf("update.rollback_on.error_rate", "%s must be at least 0%% and below 100%% (a release can never exceed 100%%); write the share of failed requests that fails the release, like 2%%", percentText(*e))
		}
		if r.LatencyP99 < 0 {
			v.addf("update.rollback_on.latency_p99", "%s is negative; write the p99 latency that fails the release, like 500ms", r.LatencyP99)
		}
		if r.MinRequests < 1 || r.MinRequests > MaxMinRequests {
			v.addf("update.rollback_on.min_requests", "%d must be between 1 and %d; it is how many requests to the new revision are needed to judge it (default %d)", r.MinRequests, MaxMinRequests, DefaultRollbackMinRequests)
		}
	}
}

// judgedTraffic refuses update.rollback_on on a service no proxy sends
// requests to (no ingress, nothing exposed): no release of it could ever
// gather the evidence, so every one would fail at its progress deadline.
// A canary alone is allowed there: it still holds the first batch for its
// duration before the rollout goes on.
func (v *validator) judgedTraffic(s *Spec) {
	if s.Update.RollbackOn != nil && len(s.Ingress) == 0 && len(s.Expose) == 0 {
		v.addf("update.rollback_on", "the service has no ingress and exposes no port, so no proxy sends it requests and no release could be judged; add ingress or expose, or remove rollback_on")
	}
}

// percentText writes a fraction as the percentage a spec would say: 0.1
// is "10%".
func percentText(f float64) string {
	return strconv.FormatFloat(f*100, 'g', -1, 64) + "%"
}

func (v *validator) security(s Security) {
	if s.User != "" {
		if msg := checkUser(s.User, s.AllowRoot, s.AllowRootGroup); msg != "" {
			v.addf("security.user", "%s", msg)
		}
	}
	if s.CapDrop == nil {
		v.addf("security.cap_drop", "not set; write [ALL] to drop every capability (the default), or [] to keep Docker's default set")
	}
	dropped := v.capabilities("security.cap_drop", s.CapDrop)
	v.capabilities("security.cap_add", s.CapAdd)
	for i, c := range s.CapAdd {
		if dropped[c] {
			v.addf(fmt.Sprintf("security.cap_add[%d]", i), "%s is also in cap_drop; list it in one of them", c)
		}
	}
	v.seccomp(s)
	v.apparmor(s.AppArmor)
}

// capabilities checks a capability list and returns the set of its names.
func (v *validator) capabilities(field string, caps []string) map[string]bool {
	seen := make(map[string]bool, len(caps))
	for i, c := range caps {
		item := fmt.Sprintf("%s[%d]", field, i)
		canonical := CanonicalCapability(c)
		switch {
		case !isCapability(canonical):
			msg := fmt.Sprintf("%q is not a Linux capability (see capabilities(7))", c)
			if best, ok := closest(canonical, Capabilities()); ok {
				msg += "; did you mean " + best + "?"
			}
			v.addf(item, "%s", msg)
		case c != canonical:
			v.addf(item, "write %q as %s", c, canonical)
		case seen[c]:
			v.addf(item, "%s is listed twice; remove one", c)
		}
		seen[c] = true
	}
	return seen
}

// checkUser accepts "uid", "uid:gid", "name" and "name:group", and refuses a
// root user unless allowRoot and a root group unless allowRootGroup or
// allowRoot (uid 0 is more than gid 0, so allow_root covers both). Root is
// decided as the engine decides it: a numeric part is a number whatever its
// spelling ("00" is uid 0), and the names root and, for the group, root
// stand for id 0. Other names are resolved by the agent against the image's
// /etc/passwd and /etc/group, which the spec cannot see.
func checkUser(user string, allowRoot, allowRootGroup bool) string {
	const fix = `write uid, uid:gid, name or name:group, like "10001:10001"`
	parts := strings.Split(user, ":")
	if len(parts) > 2 {
		return fmt.Sprintf("%q has more than one ':'; %s", user, fix)
	}
	for _, part := range parts {
		if !isUserOrGroup(part) {
			return fmt.Sprintf("%q is not a user; %s", user, fix)
		}
	}
	if IsRootID(parts[0]) && !allowRoot {
		return fmt.Sprintf(`%q runs as root; use a non-root user, like "10001:10001", or set allow_root: true if the service must run as root`, user)
	}
	if len(parts) == 2 && IsRootID(parts[1]) && !allowRootGroup && !allowRoot {
		return fmt.Sprintf(`%q runs with the root group (gid 0), which reads and writes what the image gives group root; use a non-root group, like "%s:10001", or set allow_root_group: true if the service needs it`, user, parts[0])
	}
	return ""
}

// IsRootID reports whether a user or group of a "user[:group]" string
// stands for id 0: the name root, or any decimal spelling of 0 ("0",
// "00"). The engine reads numbers with strconv.Atoi, so a sign ("+0",
// "-0") is zero too; isUserOrGroup refuses signs in a spec, and the agent
// checks what an image says with the same rule.
func IsRootID(s string) bool {
	if s == "root" {
		return true
	}
	n, err := strconv.Atoi(s)
	return err == nil && n == 0
}

// isUserOrGroup accepts a numeric id below 2^32-1 (the kernel's "no id") or
// a POSIX-portable name of at most 32 characters not starting with '-'.
func isUserOrGroup(s string) bool {
	if s == "" {
		return false
	}
	if s[0] >= '0' && s[0] <= '9' {
		id, err := strconv.ParseUint(s, 10, 32)
		return err == nil && id < math.MaxUint32
	}
	if len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '.' && r != '-' {
			return false
		}
	}
	return true
}

// IsServiceName reports whether s is a valid service name (what the
// service field requires): the API checks names in paths with it.
func IsServiceName(s string) bool { return isServiceName(s) }

// ServiceNameRule is how a valid service name is spelled.
const ServiceNameRule = "use 1 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (like web-api)"
