package policy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/internal/registryhost"
	"github.com/deployctl/deployctl/internal/seccompprofile"
	"github.com/deployctl/deployctl/internal/seccomprules"
	"github.com/deployctl/deployctl/specs"
	"github.com/google/go-containerregistry/pkg/name"
)

// Rules a Violation names. Most are the policy key that would allow the
// exception; the last two are fixed rules that no policy changes.
const (
	RuleAllowPrivileged        = "allow_privileged"
	RuleAllowCapabilities      = "allow_capabilities"
	RuleAllowHostNetwork       = "allow_host_network"
	RuleAllowHostPID           = "allow_host_pid"
	RuleAllowHostIPC           = "allow_host_ipc"
	RuleAllowHostUserns        = "allow_host_userns"
	RuleAllowRoot              = "allow_root"
	RuleAllowRootGroup         = "allow_root_group"
	RuleAllowNewPrivileges     = "allow_new_privileges"
	RuleWritableRootfs         = "writable_rootfs"
	RulePortsOnAllInterfaces   = "ports_on_all_interfaces"
	RuleCustomAppArmor         = "custom_apparmor"
	RuleEnvSecrets             = "env_secrets"
	RuleAllowSeccompUnconfined = "allow_seccomp_unconfined"
	// RuleAllowSeccompSyscalls refuses a seccomp profile file that is
	// weaker than Docker's default profile for the container.
	RuleAllowSeccompSyscalls    = "allow_seccomp_syscalls"
	RuleAllowAppArmorUnconfined = "allow_apparmor_unconfined"
	RuleAllowPrivilegedPorts    = "allow_privileged_ports"
	RuleIngressListenPorts      = "ingress_listen_ports"
	RuleVolumePrefixes          = "volume_prefixes"
	RuleRegistries              = "registries"
	// RuleConnections refuses a connects_to entry that the target's
	// connections entry does not allow (connections.go).
	RuleConnections = "connections"
	// RuleProtectedHostPath refuses bind mounts of the host's system
	// directories and of the Docker Engine's socket, whatever the policy.
	RuleProtectedHostPath = "protected_host_path"
	// RuleSeccompProfile refuses a seccomp profile file that is missing
	// from the spec or that the engine would not apply as written.
	RuleSeccompProfile = "seccomp_profile"
)

// MinUnprivilegedPort is the lowest host port published without
// allow_privileged_ports; below it are the "privileged ports" of Unix.
const MinUnprivilegedPort = 1024

// howToSet says how a policy key is changed, for every Fix.
const howToSet = "in the policy (deployctl policy set)"

// dockerDefaultCapabilities are the capabilities the Docker Engine gives a
// container unless they are dropped (moby's oci/caps/defaults.go). A spec
// whose cap_drop lacks ALL keeps those it does not list.
func dockerDefaultCapabilities() []string {
	return []string{
		"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
		"SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
	}
}

// Violation is one thing a spec asks for that the policy refuses.
type Violation struct {
	// Field is the spec field, as in specs.Problem: "security.privileged",
	// "security.cap_add[1]", "volumes[0]", "image".
	Field string `json:"field"`
	// Rule is the policy key that would allow it (one of the Rule*
	// constants), or a fixed rule no policy changes.
	Rule string `json:"rule"`
	// Reason says what the spec asks for and why it is refused.
	Reason string `json:"reason"`
	// Fix says how to change the policy or, for a fixed rule, the spec.
	Fix string `json:"fix"`
}

// String renders "field: reason (rule: X); fix: ...".
func (v Violation) String() string {
	return fmt.Sprintf("%s: %s (rule: %s); fix: %s", v.Field, v.Reason, v.Rule, v.Fix)
}

// DeniedError is the refusal of a spec: every violation, not just the
// first. It matches ErrDenied.
type DeniedError struct {
	Violations []Violation
}

// Error names every violation, one per line after the first.
func (e *DeniedError) Error() string {
	var b strings.Builder
	b.WriteString(ErrDenied.Error())
	if len(e.Violations) == 1 {
		b.WriteString(": ")
		b.WriteString(e.Violations[0].String())
		return b.String()
	}
	fmt.Fprintf(&b, " (%d violations):", len(e.Violations))
	for _, v := range e.Violations {
		b.WriteString("\n  ")
		b.WriteString(v.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrDenied) hold.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// Deny returns a *DeniedError for violations, or nil when there are none,
// so that callers can write `if err := policy.Deny(policy.Check(...))`.
func Deny(violations []Violation) error {
	if len(violations) == 0 {
		return nil
	}
	return &DeniedError{Violations: violations}
}

// Check holds a spec against the policy and returns every violation, in
// spec field order; none means the spec is allowed. registry is the
// image's registry host as RegistryOf gives it; when empty it is taken from
// s.Image. A nil policy is Default().
//
// Check does not verify signatures nor evaluate scans, which need the
// registry and a report: see TrustRules and Policy.Scan. The spec is
// expected to be valid (specs.Spec.Validate); Check does not repeat the
// spec's syntax checks but compares cleaned paths and canonical names.
func Check(p *Policy, s *specs.Spec, registry string) []Violation {
	if p == nil {
		p = Default()
	}
	c := checker{policy: p}
	c.registry(s.Image, registry)
	c.ports(s.Ports)
	c.ingress(s.Ingress)
	c.volumes(s.Volumes)
	c.security(s.Security)
	c.allowIf(s.NetworkMode == specs.NetworkModeHost, p.AllowHostNetwork, "network_mode", RuleAllowHostNetwork,
		"the host's network namespace gives access to every interface and port of the host", "remove network_mode")
	c.allowIf(s.PID == specs.NamespaceHost, p.AllowHostPID, "pid", RuleAllowHostPID,
		"the host's PID namespace shows, and lets signal, every process of the host", "remove pid")
	c.allowIf(s.IPC == specs.NamespaceHost, p.AllowHostIPC, "ipc", RuleAllowHostIPC,
		"the host's IPC namespace shares shared memory and semaphores with every process of the host", "remove ipc")
	c.allowIf(s.UsernsMode == specs.NamespaceHost, p.AllowHostUserns, "userns_mode", RuleAllowHostUserns,
		"the host's user namespace turns off the engine's user remapping, so root in the container is root on the host", "remove userns_mode")
	c.connections(s)
	c.hardening(s)
	return c.violations
}

type checker struct {
	policy     *Policy
	violations []Violation
	warnings   []Violation
}

// Warnings holds a spec against the policy's Level rules and returns what
// it warns about, each a Violation whose Fix says how to refuse or allow it
// for good; the Level rules set to refuse are in Check's violations
// instead. Nothing here refuses the spec: the controller stores the
// warnings with the revision and shows them to whoever applies it. A nil
// policy is Default().
func Warnings(p *Policy, s *specs.Spec) []Violation {
	if p == nil {
		p = Default()
	}
	c := checker{policy: p}
	c.hardening(s)
	return c.warnings
}

// hardening judges the weakened hardening defaults that a Level rules:
// a writable root file system, ports on every interface, an AppArmor
// profile deployctl cannot see enforce.
func (c *checker) hardening(s *specs.Spec) {
	c.level(!s.Security.ReadOnly, c.policy.WritableRootfs, "security.read_only", RuleWritableRootfs,
		"the root file system is writable, so a compromised process can change the image's programs and files",
		"remove security.read_only: false (a tmpfs /tmp stays writable)")
	for i, p := range s.Ports {
		if isWildcardIP(p.HostIP) {
			c.level(true, c.policy.PortsOnAllInterfaces, fmt.Sprintf("ports[%d]", i), RulePortsOnAllInterfaces,
				fmt.Sprintf("host port %d is published on every interface of the host (%s), not only loopback or one address", p.HostPort, p.HostIP),
				"publish on 127.0.0.1 (the default) or one host address")
		}
	}
	for _, name := range s.SecretLikeEnv() {
		c.level(true, c.policy.EnvSecrets, "env."+name, RuleEnvSecrets,
			fmt.Sprintf("env %s looks like a secret: its value is stored in plain text in raft and shown by docker inspect, status and history", name),
			"store it with `deployctl secret create` and list it under secrets: (the service reads /run/secrets/NAME)")
	}
	if a := s.Security.AppArmor; a != "" && a != specs.AppArmorUnconfined && a != dockerDefaultAppArmor {
		c.level(true, c.policy.CustomAppArmor, "security.apparmor", RuleCustomAppArmor,
			fmt.Sprintf("AppArmor profile %q replaces docker-default; deployctl cannot see whether every host loads it in enforce mode (in complain mode it only logs)", a),
			"remove security.apparmor to keep docker-default")
	}
}

// dockerDefaultAppArmor is the engine's own AppArmor profile.
const dockerDefaultAppArmor = "docker-default"

// isWildcardIP reports whether a host IP is an unspecified address
// (0.0.0.0, ::, or an empty one, which the engine reads as 0.0.0.0).
func isWildcardIP(ip string) bool {
	if ip == "" {
		return true
	}
	addr, err := netip.ParseAddr(ip)
	return err == nil && addr.Unmap().IsUnspecified()
}

// level refuses, warns about or allows a weakened default the spec asks
// for, as the policy's Level says.
func (c *checker) level(asked bool, l Level, field, rule, reason, specFix string) {
	if !asked {
		return
	}
	switch l.effective() {
	case LevelRefuse:
		c.add(field, rule, fmt.Sprintf("set %s: warn or allow %s, or %s", rule, howToSet, specFix), "%s", reason)
	case LevelWarn:
		c.warnings = append(c.warnings, Violation{Field: field, Rule: rule, Reason: reason,
			Fix: fmt.Sprintf("%s; or set %s: allow (silence) or refuse %s", specFix, rule, howToSet)})
	}
}

func (c *checker) add(field, rule, fix, format string, args ...any) {
	c.violations = append(c.violations, Violation{Field: field, Rule: rule, Reason: fmt.Sprintf(format, args...), Fix: fix})
}

// allowIf refuses an exception the spec asks for (asked) unless the
// policy's boolean key allows it.
func (c *checker) allowIf(asked, allowed bool, field, rule, reason, specFix string) {
	if asked && !allowed {
		c.add(field, rule, fmt.Sprintf("set %s: true %s, or %s from the spec", rule, howToSet, specFix), "%s", reason)
	}
}

func (c *checker) registry(image, registry string) {
	if len(c.policy.Registries) == 0 {
		return
	}
	if registry == "" {
		var err error
		if registry, err = RegistryOf(image); err != nil {
			c.add("image", RuleRegistries, "fix the image reference", "%v", err)
			return
		}
	}
	for _, allowed := range c.policy.Registries {
		if sameRegistry(allowed, registry) {
			return
		}
	}
	c.add("image", RuleRegistries,
		fmt.Sprintf("push the image to one of the allowed registries, or add %s to registries %s", registry, howToSet),
		"registry %s is not one the policy allows (%s)", registry, strings.Join(c.policy.Registries, ", "))
}

// RegistryOf is the registry host[:port] of an image reference, as
// go-containerregistry names it: "index.docker.io" for Docker Hub. An
// image whose name has no canonical form (registryhost.CanonicalRepository:
// no host, a legacy numeric address such as 127.1, a bad port) is an
// error: the registries check and the trust rules could not tell which
// registry it is.
func RegistryOf(image string) (string, error) {
	ref, err := name.ParseReference(image, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("cannot tell the registry of image %q: %w", image, err)
	}
	if _, err := registryhost.CanonicalRepository(ref.Context().Name()); err != nil {
		return "", fmt.Errorf("cannot tell the registry of image %q: %w", image, err)
	}
	return ref.Context().RegistryStr(), nil
}

// sameRegistry compares registries in the canonical form the trust rules
// use too (registryhost.Canonical): host case, a trailing dot, the default
// port 443, loopback spellings and Docker Hub's names do not matter; any
// other port does. A registry that cannot be canonicalised is compared as
// written, case-insensitively.
func sameRegistry(a, b string) bool {
	return strings.EqualFold(canonicalRegistry(a), canonicalRegistry(b))
}

func canonicalRegistry(r string) string {
	if c, err := registryhost.Canonical(r); err == nil {
		return c
	}
	return r
}

func (c *checker) ports(ports []specs.Port) {
	if c.policy.AllowPrivilegedPorts {
		return
	}
	for i, p := range ports {
		if p.HostPort < MinUnprivilegedPort {
			c.add(fmt.Sprintf("ports[%d]", i), RuleAllowPrivilegedPorts,
				fmt.Sprintf("publish on a host port from %d up, or set %s: true %s", MinUnprivilegedPort, RuleAllowPrivilegedPorts, howToSet),
				"host port %d is a privileged port (below %d)", p.HostPort, MinUnprivilegedPort)
		}
	}
}

// ingress refuses a listen port outside the policy's ranges: every
// host's proxy would open it.
func (c *checker) ingress(entries []specs.Ingress) {
	for i, in := range entries {
		if !c.policy.ingressListenAllowed(in.Listen) {
			c.add(fmt.Sprintf("ingress[%d].listen", i), RuleIngressListenPorts,
				fmt.Sprintf("listen on a port the policy allows (%s), or add %d to %s %s", c.policy.ingressListenText(), in.Listen, RuleIngressListenPorts, howToSet),
				"every host's proxy would listen on port %d, which the policy keeps for the hosts' own services", in.Listen)
		}
	}
}

func (c *checker) volumes(volumes []specs.Volume) {
	for i, v := range volumes {
		field := fmt.Sprintf("volumes[%d]", i)
		hostPath := path.Clean(v.HostPath)
		if reason := protectedHostPath(hostPath); reason != "" {
			c.add(field, RuleProtectedHostPath,
				"no policy can allow it; mount a directory made for the service, like /srv/<service>",
				"%s", reason)
			continue
		}
		if !c.hostPathAllowed(hostPath) {
			allowed := "none"
			if len(c.policy.VolumePrefixes) > 0 {
				allowed = strings.Join(c.policy.VolumePrefixes, ", ")
			}
			c.add(field, RuleVolumePrefixes,
				fmt.Sprintf("add %s, or a directory above it, to volume_prefixes %s", hostPath, howToSet),
				"host path %s is not under the policy's volume prefixes (%s)", hostPath, allowed)
		}
	}
}

func (c *checker) hostPathAllowed(hostPath string) bool {
	return slices.ContainsFunc(c.policy.VolumePrefixes, func(prefix string) bool {
		prefix = path.Clean(prefix)
		return prefix != "/" && isUnder(hostPath, prefix)
	})
}

// isUnder reports whether p is dir or inside it, comparing whole path
// elements ("/srv/data" is not under "/srv/da").
func isUnder(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// protectedHostPath says why a host path can never be mounted, or "". The
// kernel's and devices' trees (/proc, /sys, /dev, /boot) are refused with
// everything under them; the root and the system directories /etc, /usr
// and /lib only as such, so that a policy may allow /etc/ssl/certs. The
// Docker Engine's socket is refused under any path, and so are /run and
// /var/run, which hold it.
func protectedHostPath(hostPath string) string {
	p := path.Clean(hostPath)
	if strings.Contains(strings.ToLower(p), "docker.sock") {
		return fmt.Sprintf("host path %s is the Docker Engine's socket, which gives full control of the host", p)
	}
	for _, tree := range []string{"/proc", "/sys", "/dev", "/boot"} {
		if isUnder(p, tree) {
			return fmt.Sprintf("host path %s is in %s, the host's kernel, devices or boot files", p, tree)
		}
	}
	switch p {
	case "/", "/etc", "/usr", "/lib":
		return fmt.Sprintf("host path %s is a system directory of the host", p)
	case "/run", "/var/run":
		return fmt.Sprintf("host path %s holds the Docker Engine's socket", p)
	}
	return ""
}

func (c *checker) security(s specs.Security) {
	p := c.policy
	c.allowIf(s.Privileged, p.AllowPrivileged, "security.privileged", RuleAllowPrivileged,
		"a privileged container gets every capability and device of the host, without seccomp or AppArmor", "remove security.privileged")
	c.allowIf(s.AllowRoot, p.AllowRoot, "security.allow_root", RuleAllowRoot,
		"the service asks to run as root", "set a non-root security.user and remove security.allow_root")
	c.allowIf(s.AllowRootGroup, p.AllowRootGroup, "security.allow_root_group", RuleAllowRootGroup,
		"the service asks to run with the root group (gid 0), which reads and writes what the image gives group root",
		"set a non-root group in security.user (like \"10001:10001\") and remove security.allow_root_group")
	c.allowIf(!s.NoNewPrivileges, p.AllowNewPrivileges, "security.no_new_privileges", RuleAllowNewPrivileges,
		"without no_new_privileges a setuid-root or file-capability binary in the image gains root or capabilities inside the container",
		"remove security.no_new_privileges: false")
	c.keptCapabilities(s)
	for i, capability := range s.CapAdd {
		canonical := specs.CanonicalCapability(capability)
		if !c.allowsCapability(canonical) {
			c.add(fmt.Sprintf("security.cap_add[%d]", i), RuleAllowCapabilities,
				fmt.Sprintf("add %s to allow_capabilities %s, or remove it from security.cap_add", canonical, howToSet),
				"capability %s is not in the policy's allowed capabilities (%s)", canonical, c.allowedCapabilities())
		}
	}
	c.seccomp(s)
	c.allowIf(s.AppArmor == specs.AppArmorUnconfined, p.AllowAppArmorUnconfined, "security.apparmor", RuleAllowAppArmorUnconfined,
		"the container would run without an AppArmor profile", "remove security.apparmor")
}

// keptCapabilities refuses a cap_drop without ALL that keeps some of the
// engine's default capabilities the policy does not allow: keeping one is
// the same exception as adding it.
func (c *checker) keptCapabilities(s specs.Security) {
	dropped := func(capability string) bool {
		return slices.ContainsFunc(s.CapDrop, func(d string) bool {
			d = specs.CanonicalCapability(d)
			return d == specs.CapAll || d == capability
		})
	}
	var kept []string
	for _, capability := range dockerDefaultCapabilities() {
		if !dropped(capability) && !c.allowsCapability(capability) {
			kept = append(kept, capability)
		}
	}
	if len(kept) > 0 {
		c.add("security.cap_drop", RuleAllowCapabilities,
			fmt.Sprintf("drop ALL and add back what the service needs with cap_add, or add %s to allow_capabilities %s", strings.Join(kept, ", "), howToSet),
			"the container keeps the engine's default capabilities %s, which the policy's allowed capabilities (%s) do not include", strings.Join(kept, ", "), c.allowedCapabilities())
	}
}

func (c *checker) allowsCapability(canonical string) bool {
	return slices.ContainsFunc(c.policy.AllowCapabilities, func(allowed string) bool {
		allowed = specs.CanonicalCapability(allowed)
		return allowed == specs.CapAll || allowed == canonical
	})
}

func (c *checker) allowedCapabilities() string {
	if len(c.policy.AllowCapabilities) == 0 {
		return "none"
	}
	return strings.Join(c.policy.AllowCapabilities, ", ")
}

// seccomp refuses an unconfined container unless the policy allows it,
// a profile file that is missing or that internal/seccompprofile refuses, and a
// profile weaker than Docker's default (seccompStrength). A profile that
// lets every syscall through is refused even when the policy allows
// unconfined containers, as internal/seccompprofile decides: turning seccomp off
// must read as security.seccomp: unconfined in the spec.
func (c *checker) seccomp(s specs.Security) {
	const field = "security.seccomp"
	switch s.SeccompMode() {
	case specs.SeccompUnconfined:
		c.allowIf(true, c.policy.AllowSeccompUnconfined, field, RuleAllowSeccompUnconfined,
			"the container would run without a seccomp profile", "remove security.seccomp")
	case specs.SeccompModeFile:
		if len(s.SeccompProfile) == 0 {
			c.add(field, RuleSeccompProfile, "apply with deployctl apply, which reads the file and sends its content",
				"the spec names the profile file %q but carries no profile", s.Seccomp)
			return
		}
		if err := seccompprofile.Validate(s.SeccompProfile); err != nil {
			c.add(field, RuleSeccompProfile,
				fmt.Sprintf("fix the profile file, or write default or strict (or unconfined, which needs %s: true %s)", RuleAllowSeccompUnconfined, howToSet),
				"profile %s: %v", s.Seccomp, err)
			return
		}
		c.seccompStrength(s)
	}
}

// seccompStrength refuses a profile file that lets the container run a
// syscall Docker's default profile would refuse it (for the capabilities
// the container really gets), whose default action does not refuse, or
// that turns off the speculative store bypass mitigation — unless
// allow_seccomp_syscalls lists those syscalls, or ALL.
//
// The capability set is what the deployer sends the engine: cap_add, and
// cap_drop or ALL when cap_drop is empty. An empty cap_drop reads as "drop
// nothing" elsewhere in the spec, so the profile is judged for that set
// too. A privileged container gets no seccomp filter at all (and its own
// violation), so its profile is not judged.
func (c *checker) seccompStrength(s specs.Security) {
	if s.Privileged || slices.Contains(c.policy.AllowSeccompSyscalls, seccomprules.All) {
		return
	}
	const field = "security.seccomp"
	drop := s.CapDrop
	if len(drop) == 0 {
		drop = []string{specs.CapAll}
	}
	capSets := [][]string{seccomprules.ContainerCapabilities(s.CapAdd, drop, false)}
	if len(s.CapDrop) == 0 {
		capSets = append(capSets, seccomprules.ContainerCapabilities(s.CapAdd, nil, false))
	}
	verdict, err := seccomprules.Judge(s.SeccompProfile, capSets...)
	if err != nil {
		c.add(field, RuleAllowSeccompSyscalls,
			fmt.Sprintf("write security.seccomp: default or strict, or set %s: [%s] %s", RuleAllowSeccompSyscalls, seccomprules.All, howToSet),
			"profile %s cannot be compared with Docker's default profile: %v", s.Seccomp, err)
		return
	}
	verdict = verdict.Except(c.policy.AllowSeccompSyscalls)
	if !verdict.Weaker() {
		return
	}
	caps := "none"
	if len(capSets[0]) > 0 {
		caps = strings.Join(capSets[0], ", ")
	}
	var fix string
	if verdict.DefaultAction != "" || len(verdict.Flags) > 0 {
		fix = fmt.Sprintf("make the profile refuse what it does not list (defaultAction SCMP_ACT_ERRNO) without SECCOMP_FILTER_FLAG_SPEC_ALLOW, write security.seccomp: default or strict, or set %s: [%s] %s",
			RuleAllowSeccompSyscalls, seccomprules.All, howToSet)
	} else {
		names := strings.Join(verdict.SyscallNames(), ", ")
		fix = fmt.Sprintf("refuse %s in the profile (or allow them only with the arguments and capabilities Docker's default does), write security.seccomp: default or strict, or add %s to %s %s",
			names, names, RuleAllowSeccompSyscalls, howToSet)
	}
	c.add(field, RuleAllowSeccompSyscalls, fix,
		"profile %s is weaker than Docker's default seccomp profile for this container (capabilities: %s): %s", s.Seccomp, caps, verdict)
}
