package deployer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/seccompprofile"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/go-connections/nat"
	digest "github.com/opencontainers/go-digest"
)

// Labels on every container and network deployctl creates. The agent lists,
// adopts and removes containers by these labels only: a container without
// LabelManaged is never touched.
const (
	LabelManaged     = "io.deployctl.managed"
	LabelService     = "io.deployctl.service"
	LabelRevision    = "io.deployctl.revision"
	LabelHost        = "io.deployctl.host"
	LabelReplica     = "io.deployctl.replica"
	LabelSlot        = "io.deployctl.slot"
	LabelFingerprint = "io.deployctl.fingerprint"
	// LabelProbe names how the agent probes the replica (the spec's
	// healthcheck kind: http, tcp, exec or none). The audit reads it for
	// CIS 5.27: an HTTP or TCP probe runs from the agent, so the engine has
	// no HEALTHCHECK to show, yet health is checked at runtime.
	LabelProbe = audit.LabelProbe
)

// Hardened defaults that the spec does not choose.
const (
	// TmpfsOptions give a writable /tmp when the root file system is
	// read-only; noexec keeps it from becoming a place to run dropped files.
	TmpfsOptions = "rw,noexec,nosuid,nodev,size=64m,mode=1777"
	// MaxRestarts bounds the engine's own restarts of a crashing process.
	// The agent reports the first restart as a failure anyway; the bound
	// keeps a crash loop from spinning while nobody removes the container.
	MaxRestarts = 5
	// NoNewPrivileges is the security option that makes setuid binaries and
	// file capabilities useless inside the container.
	NoNewPrivileges = "no-new-privileges"
	// AppArmorDefaultProfile is the engine's own AppArmor profile. It is
	// named explicitly where the host has AppArmor, so the choice shows in
	// HostConfig.SecurityOpt and no daemon default can replace it.
	AppArmorDefaultProfile = "docker-default"
)

// CPU shares (the relative weight under contention, CIS 5.12) follow the
// CPU limit: Docker's convention is 1024 for one CPU.
const (
	cpuSharesPerCPU = 1024
	// minCPUShares is the kernel's smallest cpu.shares.
	minCPUShares = 2
	// maxCPUShares is the kernel's largest cpu.shares (cgroup v1).
	maxCPUShares = 262144
	// engineDefaultCPUShares is what a container without a setting gets;
	// the benchmark's audit reads this value, like 0, as "not set".
	engineDefaultCPUShares = 1024
)

// ErrRootUser means the container would run as root (uid 0, as the image's
// account files resolve its user) without the spec saying so; ErrRootGroup
// the same for gid 0. ErrNotPinned means an image reference is not repository@sha256:digest.
// ErrInvalidNetwork means the network is not a user-defined one.
// ErrUnsafeMount means a bind mount would expose a sensitive host path, the
// engine's socket or shared mount propagation (CIS 5.6, 5.32, 5.20); it is
// refused whatever the spec says. ErrInvalidOverride means an Overrides
// value is not one ContainerOptions knows.
var (
	ErrRootUser        = errors.New("container would run as root")
	ErrRootGroup       = errors.New("container would run with the root group")
	ErrNotPinned       = errors.New("image reference is not pinned to a digest")
	ErrInvalidNetwork  = errors.New("not a user-defined network")
	ErrUnsafeMount     = errors.New("unsafe mount")
	ErrInvalidOverride = errors.New("invalid override of a hardened default")
)

// EngineInfo is what the host's engine reports about its security features;
// see DockerRuntime.EngineInfo and audit.EngineInfo.
type EngineInfo = audit.EngineInfo

// Overrides are the hardened defaults that a service gives up, or replaces,
// on purpose. The zero value changes nothing. Each field is one spec field
// (security.privileged, security.seccomp, security.apparmor, network_mode,
// pid, ipc, userns_mode, volumes): wiring a spec field is setting its
// Overrides field from it. Whatever the spec says, the mounts that CIS
// forbids are refused (ErrUnsafeMount).
type Overrides struct {
	// Privileged runs the container privileged: every capability and
	// device, no seccomp, no AppArmor default (CIS 5.5 warns).
	Privileged bool
	// SeccompUnconfined turns the engine's seccomp filter off
	// (seccomp=unconfined; CIS 5.22 warns).
	SeccompUnconfined bool
	// SeccompProfile is a seccomp profile in the engine's JSON format that
	// replaces the engine's default, sent inline (package seccomp: Strict
	// or a validated user file). Empty keeps the engine's default.
	SeccompProfile []byte
	// AppArmorProfile replaces the default AppArmor profile: "unconfined"
	// or the name of a profile loaded on the host. Empty means
	// docker-default where the host has AppArmor.
	AppArmorProfile string
	// NetworkMode is "" (the agent's user-defined bridge), "host" (share
	// the host's network stack; CIS 5.10 warns) or "none" (no network).
	// Neither "host" nor "none" can publish ports.
	NetworkMode string
	// PidMode is "" (a private PID namespace) or "host" (CIS 5.16 warns).
	PidMode string
	// IpcMode is "" (the engine's private default), "private", "none" or
	// "host" (CIS 5.17 warns).
	IpcMode string
	// UsernsMode is "" (the engine's user namespace setting) or "host"
	// (CIS 5.31 warns).
	UsernsMode string
	// Binds are bind mounts and named volumes in the engine's
	// "source:target[:options]" form. Sensitive host paths (CIS 5.6), the
	// engine socket (5.32) and shared propagation (5.20) are refused.
	Binds []string
}

// Option adds to what ContainerOptions knows beyond the assignment.
type Option func(*buildOptions)

// buildOptions is what the Options say.
type buildOptions struct {
	engine    EngineInfo
	overrides Overrides
	accounts  ImageAccounts
	dns       netip.Addr
}

// WithEngine says what the host's engine supports (DockerRuntime.EngineInfo):
// where it has AppArmor, containers are confined with docker-default
// explicitly (CIS 5.2).
func WithEngine(info EngineInfo) Option {
	return func(b *buildOptions) { b.engine = info }
}

// WithImageAccounts gives the image's /etc/passwd and /etc/group
// (DockerRuntime.ImageAccounts), against which the container's user is
// resolved. Without it a user name cannot be resolved and is refused.
func WithImageAccounts(acc ImageAccounts) Option {
	return func(b *buildOptions) { b.accounts = acc }
}

// WithDNS makes server the container's only DNS server
// (HostConfig.Dns): the gateway of its service network, where the agent
// answers the names of the service's declared connections and relays the
// rest (docs/networking.md). On a user-defined network the engine's own
// resolver (127.0.0.11 in the container) answers container names on the
// network and forwards every other query there. Until the agent answers on
// the gateway, names outside the network (the internet's too) may not
// resolve inside the containers: that is expected for now. Ignored for
// network_mode host and none.
func WithDNS(server netip.Addr) Option {
	return func(b *buildOptions) { b.dns = server }
}

// WithOverrides applies the service's deliberate exceptions to the hardened
// defaults.
func WithOverrides(o Overrides) Option {
	return func(b *buildOptions) { b.overrides = o }
}

// ContainerOptions turns one assignment into the engine's create options,
// with every hardened default applied. It is pure: imageUser is the image
// config's User, which the caller looked up, so this needs no engine; what
// the engine supports comes in through WithEngine, exceptions the service
// asks for through WithOverrides. networkName is the network of the
// replica's service on this host (ServiceNetworkName), its DNS server the
// network's gateway through WithDNS. docs/cis.md maps each option to the
// CIS Docker Benchmark control it satisfies.
func ContainerOptions(a state.Assignment, hostID, networkName, imageUser string, opts ...Option) (*container.Config, *container.HostConfig, *network.NetworkingConfig, error) {
	var build buildOptions
	for _, opt := range opts {
		opt(&build)
	}
	over := build.overrides
	spec := a.Revision.Spec
	if err := CheckPinned(a.Revision.Ref); err != nil {
		return nil, nil, nil, err
	}
	if err := checkNetwork(networkName); err != nil {
		return nil, nil, nil, err
	}
	if err := checkNamespaceOverrides(over); err != nil {
		return nil, nil, nil, err
	}
	if err := checkBinds(over.Binds); err != nil {
		return nil, nil, nil, err
	}
	securityOpt, err := securityOptions(spec.Security, over, build.engine)
	if err != nil {
		return nil, nil, nil, err
	}
	user, err := containerUser(spec.Security, imageUser, build.accounts)
	if err != nil {
		return nil, nil, nil, err
	}

	exposed, bindings, err := portOptions(spec.Ports)
	if err != nil {
		return nil, nil, nil, err
	}

	cfg := &container.Config{
		Image:        a.Revision.Ref,
		User:         user,
		Env:          sortedEnv(spec.Env),
		ExposedPorts: exposed,
		Labels:       ContainerLabels(a, hostID),
		Healthcheck:  engineHealthcheck(spec.Healthcheck),
	}
	if len(spec.Command) > 0 {
		cfg.Cmd = strslice.StrSlice(append([]string(nil), spec.Command...))
	}
	if len(spec.Entrypoint) > 0 {
		cfg.Entrypoint = strslice.StrSlice(append([]string(nil), spec.Entrypoint...))
	}
	if spec.StopGracePeriod > 0 {
		seconds := stopTimeoutSeconds(spec.StopGracePeriod)
		cfg.StopTimeout = &seconds
	}

	capDrop := spec.Security.CapDrop
	if len(capDrop) == 0 {
		capDrop = []string{"ALL"}
	}
	hostCfg := &container.HostConfig{
		NetworkMode:   container.NetworkMode(networkName),
		PortBindings:  bindings,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: MaxRestarts},
		CapDrop:       strslice.StrSlice(append([]string(nil), capDrop...)),
		// A private cgroup namespace hides the host's cgroup tree; PID, IPC,
		// UTS and user namespaces stay empty, which is the engine's private
		// default, unless an override asks for the host's.
		CgroupnsMode:   container.CgroupnsModePrivate,
		PidMode:        container.PidMode(over.PidMode),
		IpcMode:        container.IpcMode(over.IpcMode),
		UsernsMode:     container.UsernsMode(over.UsernsMode),
		Privileged:     over.Privileged,
		ReadonlyRootfs: spec.Security.ReadOnly,
		Tmpfs:          map[string]string{"/tmp": TmpfsOptions},
		Init:           nil,
		// SecurityOpt never disables the engine's default seccomp profile
		// unless an override says so: see securityOptions.
		SecurityOpt: securityOpt,
		// No Devices, DeviceCgroupRules or CgroupParent: nothing of the
		// host's hardware or cgroup tree is handed in. OomKillDisable and
		// MemorySwappiness stay nil: the OOM killer keeps working (false is
		// the engine's default, and an explicit false only earns a warning
		// on cgroup v2), swappiness is moot with MemorySwap = Memory.
		Resources: container.Resources{
			NanoCPUs:  spec.Resources.NanoCPUs,
			CPUShares: CPUShares(spec.Resources.NanoCPUs),
			Memory:    spec.Resources.MemoryBytes,
		},
	}
	if len(over.Binds) > 0 {
		hostCfg.Binds = append([]string(nil), over.Binds...)
	}
	if len(spec.Security.CapAdd) > 0 {
		hostCfg.CapAdd = strslice.StrSlice(append([]string(nil), spec.Security.CapAdd...))
	}
	if spec.Resources.MemoryBytes > 0 {
		// Equal to Memory: no swap on top of the memory limit.
		hostCfg.Resources.MemorySwap = spec.Resources.MemoryBytes
	}
	if spec.Resources.Pids > 0 {
		pids := spec.Resources.Pids
		hostCfg.Resources.PidsLimit = &pids
	}

	netCfg := &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{
			// The network is the service's own, so through the engine's
			// DNS the alias names the service's replicas to each other
			// only; other services' names come from the agent (WithDNS).
			networkName: {Aliases: []string{spec.Service}},
		},
	}
	switch over.NetworkMode {
	case "":
		if build.dns.IsValid() {
			hostCfg.DNS = []string{build.dns.String()}
		}
	case network.NetworkHost, network.NetworkNone:
		if len(spec.Ports) > 0 {
			return nil, nil, nil, fmt.Errorf("%w: network_mode %s cannot publish ports; remove ports or the network_mode", ErrInvalidNetwork, over.NetworkMode)
		}
		hostCfg.NetworkMode = container.NetworkMode(over.NetworkMode)
		// Aliases exist only on user-defined networks.
		netCfg = &network.NetworkingConfig{}
	default:
		return nil, nil, nil, fmt.Errorf("%w: network_mode %q; want host or none (or nothing for the agent's network)", ErrInvalidOverride, over.NetworkMode)
	}
	return cfg, hostCfg, netCfg, nil
}

// CPUShares is the CPU weight (HostConfig.CpuShares) for a CPU limit of
// nanoCPUs: 1024 per CPU, at least 2, at most the kernel's 262144; 0 when
// there is no limit to derive it from. Exactly 1024 becomes 1023, the same
// weight within 0.1%: 1024 is also what a container that sets nothing gets,
// and the benchmark's audit (CIS 5.12) cannot tell the two apart.
func CPUShares(nanoCPUs int64) int64 {
	if nanoCPUs <= 0 {
		return 0
	}
	const nanoPerCPU = 1_000_000_000
	if nanoCPUs >= maxCPUShares*nanoPerCPU/cpuSharesPerCPU {
		return maxCPUShares
	}
	shares := max(nanoCPUs*cpuSharesPerCPU/nanoPerCPU, minCPUShares)
	if shares == engineDefaultCPUShares {
		shares--
	}
	return shares
}

// engineHealthcheck is the engine HEALTHCHECK a spec's check gives the
// container. The spec's check replaces the image's, as in Compose and
// Swarm:
//   - exec becomes the engine HEALTHCHECK, so `docker inspect` and `docker
//     ps` show the health the agent also follows (CIS 5.27);
//   - http and tcp are probed by the agent from the host (an image FROM
//     scratch has no client that could run them inside), and the image's
//     own HEALTHCHECK is switched off (NONE). Kept, it would run next to
//     the agent's probe at the image's interval, judging nothing the
//     rollout reads: at 50 replicas its execs saturated the engine and
//     delayed every health report by 14-17 s (issue 12). CIS 5.27 is still
//     met: health is checked at runtime, by the agent, and the container's
//     io.deployctl.probe label says so (the audit reports it as info);
//   - no check in the spec keeps the image's HEALTHCHECK (nil), the only
//     runtime check such a container has.
func engineHealthcheck(h specs.Healthcheck) *container.HealthConfig {
	switch h.Kind() {
	case "exec":
		return &container.HealthConfig{
			Test:        append([]string{"CMD"}, h.Exec...),
			Interval:    engineDuration(h.Interval),
			Timeout:     engineDuration(h.Timeout),
			StartPeriod: engineDuration(h.StartPeriod),
			Retries:     h.Retries,
		}
	case "http", "tcp":
		return &container.HealthConfig{Test: []string{"NONE"}}
	}
	return nil
}

// engineDuration rounds a positive duration below the engine's minimum of
// 1ms up to it; 0 keeps the engine's default.
func engineDuration(d time.Duration) time.Duration {
	if d > 0 && d < time.Millisecond {
		return time.Millisecond
	}
	return d
}

// securityOptions is HostConfig.SecurityOpt: no-new-privileges when the
// spec asks (the default), an AppArmor profile (the override's, else
// docker-default where the host has AppArmor and the container is not
// privileged), and a seccomp setting only when an override replaces the
// engine's default profile. nil when there is nothing to say.
func securityOptions(sec specs.Security, over Overrides, engine EngineInfo) ([]string, error) {
	var opts []string
	if sec.NoNewPrivileges {
		opts = append(opts, NoNewPrivileges)
	}
	switch {
	case strings.ContainsAny(over.AppArmorProfile, ",= \t\n"):
		return nil, fmt.Errorf("%w: AppArmor profile %q is not a profile name", ErrInvalidOverride, over.AppArmorProfile)
	case over.AppArmorProfile != "":
		opts = append(opts, "apparmor="+over.AppArmorProfile)
	case engine.AppArmor && !over.Privileged:
		opts = append(opts, "apparmor="+AppArmorDefaultProfile)
	}
	switch {
	case over.SeccompUnconfined && len(over.SeccompProfile) > 0:
		return nil, fmt.Errorf("%w: seccomp cannot be both unconfined and a profile", ErrInvalidOverride)
	case over.SeccompUnconfined:
		opts = append(opts, seccompprofile.SecurityOptPrefix+"unconfined")
	case len(over.SeccompProfile) > 0:
		inline, err := seccompprofile.Inline(over.SeccompProfile)
		if err != nil {
			return nil, fmt.Errorf("%w: seccomp profile: %w", ErrInvalidOverride, err)
		}
		opts = append(opts, inline)
	}
	return opts, nil
}

// checkNamespaceOverrides accepts only the namespace modes that make sense
// for a replica: private (the default) or the host's. Sharing another
// container's namespace ("container:<id>") is refused: deployctl does not
// know container IDs at spec time.
func checkNamespaceOverrides(over Overrides) error {
	checks := []struct {
		field, value string
		allowed      []string
	}{
		{"pid", over.PidMode, []string{"", "host"}},
		{"ipc", over.IpcMode, []string{"", "private", "none", "host"}},
		{"userns_mode", over.UsernsMode, []string{"", "host"}},
	}
	for _, c := range checks {
		ok := false
		for _, allowed := range c.allowed {
			ok = ok || c.value == allowed
		}
		if !ok {
			return fmt.Errorf("%w: %s %q; want one of %q", ErrInvalidOverride, c.field, c.value, c.allowed[1:])
		}
	}
	return nil
}

// checkBinds refuses bind mounts that CIS forbids, whatever the spec's own
// validation let through: defence in depth, because a mount of /etc or of
// the engine socket hands the host to the container.
func checkBinds(binds []string) error {
	for _, bind := range binds {
		source, target, options, ok := audit.SplitBind(bind)
		if !ok {
			return fmt.Errorf("%w: volume %q: want source:target[:options]", ErrInvalidOverride, bind)
		}
		if !strings.HasPrefix(target, "/") || path.Clean(target) == "/" {
			return fmt.Errorf("%w: volume %q: the target must be an absolute path other than /", ErrInvalidOverride, bind)
		}
		var reasons []string
		if audit.IsSensitiveHostPath(source) {
			reasons = append(reasons, fmt.Sprintf("%s is a sensitive host path (CIS 5.6: none of %v)", source, audit.SensitiveHostDirs()))
		}
		if audit.ExposesEngineSocket(source) {
			reasons = append(reasons, fmt.Sprintf("%s exposes the Docker socket (CIS 5.32)", source))
		}
		for _, opt := range options {
			if audit.IsSharedPropagation(opt) {
				reasons = append(reasons, fmt.Sprintf("%s propagation lets mounts reach the host (CIS 5.20)", opt))
			}
		}
		if len(reasons) > 0 {
			return fmt.Errorf("%w: volume %q: %s", ErrUnsafeMount, bind, strings.Join(reasons, "; "))
		}
	}
	return nil
}

// EngineInfo asks the engine which security features it has (`docker info`:
// SecurityOptions and the swarm state), for WithEngine and for the audit.
func (r *DockerRuntime) EngineInfo(ctx context.Context) (EngineInfo, error) {
	info, err := r.client.Info(ctx)
	if err != nil {
		return EngineInfo{}, engineError("engine info", err)
	}
	return audit.EngineInfoFromSystem(info), nil
}

// ContainerLabels are the labels of the replica's container.
func ContainerLabels(a state.Assignment, hostID string) map[string]string {
	return map[string]string{
		LabelManaged:     "true",
		LabelService:     a.Replica.Service,
		LabelRevision:    strconv.Itoa(a.Revision.Number),
		LabelHost:        hostID,
		LabelReplica:     a.Replica.ID,
		LabelSlot:        strconv.Itoa(a.Replica.Slot),
		LabelFingerprint: a.Revision.Fingerprint,
		LabelProbe:       a.Revision.Spec.Healthcheck.Kind(),
	}
}

// ContainerName is deployctl-<service>-<slot>-<first 8 of the replica ID>:
// readable in `docker ps`, unique per replica.
func ContainerName(a state.Assignment) string {
	id := a.Replica.ID
	if len(id) > 8 {
		id = id[:8]
	}
	return fmt.Sprintf("deployctl-%s-%d-%s", a.Replica.Service, a.Replica.Slot, id)
}

// CheckPinned accepts only repository@sha256:<hex>, without a tag: what
// runs must be exactly what was resolved at apply time.
func CheckPinned(ref string) error {
	parsed, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrNotPinned, ref, err)
	}
	canonical, ok := parsed.(reference.Canonical)
	if !ok {
		return fmt.Errorf("%w: %q has no @sha256: digest; the controller resolves tags to digests at apply time", ErrNotPinned, ref)
	}
	if _, tagged := parsed.(reference.Tagged); tagged {
		return fmt.Errorf("%w: %q carries a tag as well as a digest; use repository@sha256:<digest> alone", ErrNotPinned, ref)
	}
	if canonical.Digest().Algorithm() != digest.SHA256 {
		return fmt.Errorf("%w: %q: digest algorithm %s, want sha256", ErrNotPinned, ref, canonical.Digest().Algorithm())
	}
	return nil
}

// containerUser resolves the user the container runs as (security.user,
// else the image's USER) against the image's account files, refuses uid 0
// without security.allow_root and gid 0 without security.allow_root_group
// (or allow_root), and returns the numeric "uid:gid" the container is
// created with. Numeric, the engine resolves nothing again: what runs is
// what was checked. A numeric user that no passwd entry or group names
// would get gid 0 from the engine by default; it gets gid = uid instead.
func containerUser(sec specs.Security, imageUser string, acc ImageAccounts) (string, error) {
	user, source, fix := sec.User, "security.user", "set security.user to a non-root uid:gid (e.g. \"10001:10001\")"
	if user == "" {
		user, source = imageUser, "the image's USER"
		fix = "set security.user to a non-root uid:gid (e.g. \"10001:10001\") or change the image's USER"
	}
	id, err := ResolveUser(user, acc)
	if err != nil {
		return "", fmt.Errorf("%w (%s is %q); %s", err, source, user, fix)
	}
	if id.UID == 0 && !sec.AllowRoot {
		what := fmt.Sprintf("%s is %q, which is uid 0", source, user)
		switch name, _, _ := strings.Cut(user, ":"); {
		case user == "":
			what = "the image sets no USER, so the engine runs it as uid 0"
		case !specs.IsRootID(name):
			what += " in the image's /etc/passwd"
		}
		return "", fmt.Errorf("%w: %s; %s, or, if root is really needed, security.allow_root: true", ErrRootUser, what, fix)
	}
	if id.DefaultGroup {
		id.GID = id.UID
	}
	if id.GID == 0 && !sec.AllowRootGroup && !sec.AllowRoot {
		return "", fmt.Errorf("%w: %s is %q, whose group is gid 0 (root); %s, or, if the service needs group root, security.allow_root_group: true", ErrRootGroup, source, user, fix)
	}
	return strconv.Itoa(id.UID) + ":" + strconv.Itoa(id.GID), nil
}

func checkNetwork(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: no network given", ErrInvalidNetwork)
	case name == network.NetworkHost, name == network.NetworkBridge, name == network.NetworkNone, name == network.NetworkDefault:
		return fmt.Errorf("%w: %q is a predefined network; replicas run on a user-defined bridge", ErrInvalidNetwork, name)
	case strings.HasPrefix(name, "container:"):
		return fmt.Errorf("%w: %q shares another container's network stack", ErrInvalidNetwork, name)
	}
	return nil
}

func portOptions(ports []specs.Port) (nat.PortSet, nat.PortMap, error) {
	if len(ports) == 0 {
		return nil, nil, nil
	}
	exposed := nat.PortSet{}
	bindings := nat.PortMap{}
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		port, err := nat.NewPort(proto, strconv.Itoa(p.ContainerPort))
		if err != nil {
			return nil, nil, fmt.Errorf("port %d/%s: %w", p.ContainerPort, proto, err)
		}
		exposed[port] = struct{}{}
		hostPort := ""
		if p.HostPort > 0 {
			hostPort = strconv.Itoa(p.HostPort)
		}
		bindings[port] = append(bindings[port], nat.PortBinding{HostIP: p.HostIP, HostPort: hostPort})
	}
	return exposed, bindings, nil
}

// sortedEnv renders the env map as KEY=value lines in key order, so equal
// specs give equal create options.
func sortedEnv(env map[string]string) []string {
	if len(env) == 0 {
		return nil
	}
	lines := make([]string, 0, len(env))
	for k, v := range env {
		lines = append(lines, k+"="+v)
	}
	sort.Strings(lines)
	return lines
}

// stopTimeoutSeconds rounds up: the engine takes whole seconds, and a grace
// period must never shrink.
func stopTimeoutSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
