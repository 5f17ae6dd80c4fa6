// Package audit judges a running container's configuration against the
// container-runtime section (5) of the CIS Docker Benchmark, and finds drift
// between what deployctl asked the engine for and what the engine reports.
//
// Everything here is a pure function of the engine's answers (container
// inspect and `docker info`): no engine calls, no clock. The agent collects
// the answers; this package only reads them.
package audit

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/deployctl/deployctl/internal/seccomprules"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"
)

// Benchmark is the edition whose section 5 numbering and titles the checks
// follow. Editions before it (v1.2.0 to v1.5.0) had no 5.1 swarm control, so
// their 5.N is v1.6.0's 5.(N+1).
const Benchmark = "CIS Docker Benchmark v1.6.0"

// Statuses of a Result.
const (
	// StatusPass: the container meets the control.
	StatusPass = "pass"
	// StatusWarn: it does not, or a person must confirm a setting that
	// deployctl never makes.
	StatusWarn = "warn"
	// StatusInfo: the control cannot be judged from inspect and engine
	// info (it needs a process list, an exec log, a person), or does not
	// apply on this host; Value says which.
	StatusInfo = "info"
)

// LabelProbe is the container label that names how the deployctl agent
// probes the replica ("http", "tcp", "exec", "none"). Control 5.27 reads it:
// an HTTP or TCP probe runs from the agent, so the engine has no HEALTHCHECK
// to show, yet health is checked at runtime.
const LabelProbe = "io.deployctl.probe"

// Result is one control judged for one container.
type Result struct {
	// ID is the control's number in Benchmark, e.g. "5.5".
	ID    string `json:"id"`
	Title string `json:"title"`
	// Status is StatusPass, StatusWarn or StatusInfo.
	Status string `json:"status"`
	// Field names what was read: Engine API inspect fields
	// ("HostConfig.Privileged") or engine info ("Info.SecurityOptions").
	Field string `json:"field"`
	// Value is what was read, in words.
	Value string `json:"value"`
}

// Control is one section 5 control: its number, title and the Engine API
// field(s) its check reads.
type Control struct {
	ID    string
	Title string
	Field string
}

// Controls lists every control of section 5 of Benchmark, in order. Checks
// returns one Result per Control, in this order.
func Controls() []Control {
	all := controls()
	out := make([]Control, len(all))
	for i, c := range all {
		out[i] = c.Control
	}
	return out
}

// Checks judges container c against every control of section 5 of
// Benchmark. info is the engine's answer to `docker info` (see
// EngineInfoFromSystem); the zero EngineInfo makes engine-dependent controls
// "info". A nil part of c (HostConfig, Config, ...) reads as unset, which
// warns wherever a setting is required.
func Checks(c container.InspectResponse, info EngineInfo) []Result {
	v := newView(c, info)
	all := controls()
	results := make([]Result, 0, len(all))
	for _, ctl := range all {
		status, value := ctl.judge(v)
		results = append(results, Result{ID: ctl.ID, Title: ctl.Title, Status: status, Field: ctl.Field, Value: value})
	}
	return results
}

// control is a Control with the function that judges it.
type control struct {
	Control
	judge func(v *view) (status, value string)
}

// view is a container's inspect with every nil part replaced by its zero
// value, so that judges read fields without nil checks.
type view struct {
	base     container.ContainerJSONBase
	hc       container.HostConfig
	cfg      container.Config
	mounts   []hostMount
	networks []string
	info     EngineInfo
}

// hostMount is one bind mount of a host path, whichever field declared it.
type hostMount struct {
	source, target, propagation string
}

func newView(c container.InspectResponse, info EngineInfo) *view {
	v := &view{info: info}
	if c.ContainerJSONBase != nil {
		v.base = *c.ContainerJSONBase
		if c.HostConfig != nil {
			v.hc = *c.HostConfig
		}
	}
	if c.Config != nil {
		v.cfg = *c.Config
	}
	if c.NetworkSettings != nil {
		for name := range c.NetworkSettings.Networks {
			v.networks = append(v.networks, name)
		}
		sort.Strings(v.networks)
	}
	v.mounts = hostMounts(c.Mounts, v.hc)
	return v
}

// hostMounts gathers the bind mounts of host paths from the engine's mount
// list and from the two HostConfig fields that request them: a container
// that is created but was never started, or a hand-written inspect, may
// have only the latter.
func hostMounts(points []container.MountPoint, hc container.HostConfig) []hostMount {
	var out []hostMount
	seen := map[hostMount]bool{}
	add := func(m hostMount) {
		if !strings.HasPrefix(m.source, "/") || seen[m] {
			return
		}
		seen[m] = true
		out = append(out, m)
	}
	for _, p := range points {
		if p.Type == mount.TypeBind || p.Type == "" {
			add(hostMount{p.Source, p.Destination, string(p.Propagation)})
		}
	}
	for _, bind := range hc.Binds {
		source, target, options, ok := SplitBind(bind)
		if !ok {
			continue
		}
		propagation := ""
		for _, opt := range options {
			if isPropagation(opt) {
				propagation = opt
			}
		}
		add(hostMount{source, target, propagation})
	}
	for _, m := range hc.Mounts {
		if m.Type != mount.TypeBind {
			continue
		}
		propagation := ""
		if m.BindOptions != nil {
			propagation = string(m.BindOptions.Propagation)
		}
		add(hostMount{m.Source, m.Target, propagation})
	}
	return out
}

// SplitBind splits a HostConfig.Binds entry, "source:target[:options]",
// into its parts; ok is false when it has not two or three parts.
func SplitBind(bind string) (source, target string, options []string, ok bool) {
	parts := strings.Split(bind, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", "", nil, false
	}
	if len(parts) == 3 {
		options = strings.Split(parts[2], ",")
	}
	return parts[0], parts[1], options, true
}

// IsSharedPropagation reports whether a mount's propagation mode lets
// mounts made inside the container appear on the host (CIS 5.20).
func IsSharedPropagation(mode string) bool {
	return mode == string(mount.PropagationShared) || mode == string(mount.PropagationRShared)
}

func isPropagation(opt string) bool {
	switch mount.Propagation(opt) {
	case mount.PropagationShared, mount.PropagationRShared, mount.PropagationSlave,
		mount.PropagationRSlave, mount.PropagationPrivate, mount.PropagationRPrivate:
		return true
	}
	return false
}

// controls is section 5 of Benchmark, every control in order.
func controls() []control {
	return []control{
		{Control{"5.1", "Ensure swarm mode is not Enabled, if not needed", "Info.Swarm.LocalNodeState"}, judgeSwarm},
		{Control{"5.2", "Ensure that, if applicable, an AppArmor Profile is enabled", "AppArmorProfile"}, judgeAppArmor},
		{Control{"5.3", "Ensure that, if applicable, SELinux security options are set", "ProcessLabel, HostConfig.SecurityOpt"}, judgeSELinux},
		{Control{"5.4", "Ensure that Linux kernel capabilities are restricted within containers", "HostConfig.CapDrop, HostConfig.CapAdd"}, judgeCapabilities},
		{Control{"5.5", "Ensure that privileged containers are not used", "HostConfig.Privileged"}, judgePrivileged},
		{Control{"5.6", "Ensure sensitive host system directories are not mounted on containers", "Mounts, HostConfig.Binds, HostConfig.Mounts"}, judgeSensitiveMounts},
		{Control{"5.7", "Ensure sshd is not run within containers", "Path"}, judgeSSHD},
		{Control{"5.8", "Ensure privileged ports are not mapped within containers", "HostConfig.PortBindings"}, judgePrivilegedPorts},
		{Control{"5.9", "Ensure that only needed ports are open on the container", "HostConfig.PortBindings, Config.ExposedPorts"}, judgeNeededPorts},
		{Control{"5.10", "Ensure that the host's network namespace is not shared", "HostConfig.NetworkMode"}, judgeHostNetwork},
		{Control{"5.11", "Ensure that the memory usage for containers is limited", "HostConfig.Memory"}, judgeMemory},
		{Control{"5.12", "Ensure that CPU priority is set appropriately on containers", "HostConfig.CpuShares"}, judgeCPUShares},
		{Control{"5.13", "Ensure that the container's root filesystem is mounted as read only", "HostConfig.ReadonlyRootfs"}, judgeReadonlyRootfs},
		{Control{"5.14", "Ensure that incoming container traffic is bound to a specific host interface", "HostConfig.PortBindings"}, judgeHostInterface},
		{Control{"5.15", "Ensure that the 'on-failure' container restart policy is set to '5'", "HostConfig.RestartPolicy"}, judgeRestartPolicy},
		{Control{"5.16", "Ensure that the host's process namespace is not shared", "HostConfig.PidMode"}, judgeHostPID},
		{Control{"5.17", "Ensure that the host's IPC namespace is not shared", "HostConfig.IpcMode"}, judgeHostIPC},
		{Control{"5.18", "Ensure that host devices are not directly exposed to containers", "HostConfig.Devices, HostConfig.DeviceCgroupRules, HostConfig.DeviceRequests"}, judgeDevices},
		{Control{"5.19", "Ensure that the default ulimit is overwritten at runtime if needed", "HostConfig.Ulimits"}, judgeUlimits},
		{Control{"5.20", "Ensure mount propagation mode is not set to shared", "Mounts[].Propagation"}, judgePropagation},
		{Control{"5.21", "Ensure that the host's UTS namespace is not shared", "HostConfig.UTSMode"}, judgeHostUTS},
		{Control{"5.22", "Ensure the default seccomp profile is not Disabled", "HostConfig.SecurityOpt, HostConfig.Privileged, HostConfig.CapAdd, HostConfig.CapDrop"}, judgeSeccomp},
		{Control{"5.23", "Ensure that docker exec commands are not used with the privileged option", "ExecIDs"}, judgeExecPrivileged},
		{Control{"5.24", "Ensure that docker exec commands are not used with the user=root option", "ExecIDs"}, judgeExecRoot},
		{Control{"5.25", "Ensure that cgroup usage is confirmed", "HostConfig.CgroupParent"}, judgeCgroupParent},
		{Control{"5.26", "Ensure that the container is restricted from acquiring additional privileges", "HostConfig.SecurityOpt"}, judgeNoNewPrivileges},
		{Control{"5.27", "Ensure that container health is checked at runtime", "Config.Healthcheck, Config.Labels[" + LabelProbe + "]"}, judgeHealthcheck},
		{Control{"5.28", "Ensure that Docker commands always make use of the latest version of their image", "Config.Image"}, judgeImage},
		{Control{"5.29", "Ensure that the PIDs cgroup limit is used", "HostConfig.PidsLimit"}, judgePidsLimit},
		{Control{"5.30", "Ensure that Docker's default bridge 'docker0' is not used", "HostConfig.NetworkMode, NetworkSettings.Networks"}, judgeDefaultBridge},
		{Control{"5.31", "Ensure that the host's user namespaces are not shared", "HostConfig.UsernsMode"}, judgeHostUserns},
		{Control{"5.32", "Ensure that the Docker socket is not mounted inside any containers", "Mounts, HostConfig.Binds, HostConfig.Mounts"}, judgeEngineSocket},
	}
}

// passIf is StatusPass when ok holds, StatusWarn otherwise.
func passIf(ok bool) string {
	if ok {
		return StatusPass
	}
	return StatusWarn
}

func judgeSwarm(v *view) (string, string) {
	switch v.info.SwarmState {
	case "":
		return StatusInfo, "engine info not given"
	case "inactive":
		return StatusPass, "inactive"
	}
	return StatusWarn, v.info.SwarmState + " (deployctl does not use swarm mode)"
}

func judgeAppArmor(v *view) (string, string) {
	profile := v.base.AppArmorProfile
	switch {
	case !v.info.Reported:
		return StatusInfo, fmt.Sprintf("%q; engine info not given", profile)
	case !v.info.AppArmor:
		return StatusInfo, fmt.Sprintf("%q; the host has no AppArmor", profile)
	}
	return passIf(profile != "" && profile != "unconfined"), strconv.Quote(profile)
}

func judgeSELinux(v *view) (string, string) {
	value := fmt.Sprintf("ProcessLabel %q, SecurityOpt %v", v.base.ProcessLabel, v.hc.SecurityOpt)
	switch {
	case !v.info.Reported:
		return StatusInfo, value + "; engine info not given"
	case !v.info.SELinux:
		return StatusInfo, value + "; the engine runs without SELinux"
	}
	disabled := slices.ContainsFunc(v.hc.SecurityOpt, func(opt string) bool {
		return opt == "label=disable" || opt == "label:disable"
	})
	return passIf(v.base.ProcessLabel != "" && !disabled), value
}

// capName normalises a capability as the engine does: upper case, with the
// CAP_ prefix, except ALL.
func capName(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if c == "ALL" || strings.HasPrefix(c, "CAP_") {
		return c
	}
	return "CAP_" + c
}

func judgeCapabilities(v *view) (string, string) {
	value := fmt.Sprintf("CapDrop %v, CapAdd %v", []string(v.hc.CapDrop), []string(v.hc.CapAdd))
	if v.hc.Privileged {
		return StatusWarn, value + "; privileged: every capability"
	}
	dropsAll := slices.ContainsFunc(v.hc.CapDrop, func(c string) bool { return capName(c) == "ALL" })
	return passIf(dropsAll && len(v.hc.CapAdd) == 0), value
}

func judgePrivileged(v *view) (string, string) {
	return passIf(!v.hc.Privileged), strconv.FormatBool(v.hc.Privileged)
}

func judgeSensitiveMounts(v *view) (string, string) {
	var bad []string
	for _, m := range v.mounts {
		if IsSensitiveHostPath(m.source) {
			bad = append(bad, m.source+":"+m.target)
		}
	}
	if len(bad) > 0 {
		return StatusWarn, "host paths " + strings.Join(bad, ", ")
	}
	return StatusPass, fmt.Sprintf("%d bind mount(s), none of %v", len(v.mounts), SensitiveHostDirs())
}

func judgeSSHD(v *view) (string, string) {
	if path.Base(v.base.Path) == "sshd" {
		return StatusWarn, "main process " + v.base.Path
	}
	return StatusInfo, fmt.Sprintf("main process %q; other processes cannot be seen in inspect", v.base.Path)
}

// bindings renders the port bindings as ip:port->container lines, sorted;
// "*" stands for a host port the engine picks.
func bindings(pm nat.PortMap) []string {
	var out []string
	for port, list := range pm {
		for _, b := range list {
			out = append(out, bindingText(b, port))
		}
	}
	sort.Strings(out)
	return out
}

func bindingText(b nat.PortBinding, port nat.Port) string {
	hostPort := b.HostPort
	if hostPort == "" {
		hostPort = "*"
	}
	return fmt.Sprintf("%s:%s->%s", b.HostIP, hostPort, port)
}

// hostPortRange reads a binding's HostPort: "8080", "8000-8010", or "" (an
// ephemeral port the engine picks above 1023).
func hostPortRange(hostPort string) (low, high int, ok bool) {
	if hostPort == "" {
		return 0, 0, false
	}
	lowText, highText, isRange := strings.Cut(hostPort, "-")
	low, errLow := strconv.Atoi(lowText)
	if !isRange {
		return low, low, errLow == nil
	}
	high, errHigh := strconv.Atoi(highText)
	return low, high, errLow == nil && errHigh == nil
}

func judgePrivilegedPorts(v *view) (string, string) {
	var bad []string
	for port, list := range v.hc.PortBindings {
		for _, b := range list {
			// Unparseable host ports are warned about: the check must not
			// pass what it cannot read.
			if low, _, ok := hostPortRange(b.HostPort); (ok && low > 0 && low < 1024) || (!ok && b.HostPort != "") {
				bad = append(bad, bindingText(b, port))
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return StatusWarn, "host ports below 1024: " + strings.Join(bad, ", ")
	}
	return StatusPass, fmt.Sprintf("%v", bindings(v.hc.PortBindings))
}

func judgeNeededPorts(v *view) (string, string) {
	published := bindings(v.hc.PortBindings)
	if len(published) == 0 {
		return StatusPass, "no published ports"
	}
	return StatusInfo, fmt.Sprintf("published %v: a person confirms each is needed", published)
}

func judgeHostNetwork(v *view) (string, string) {
	mode := string(v.hc.NetworkMode)
	return passIf(mode != "host"), strconv.Quote(mode)
}

func judgeMemory(v *view) (string, string) {
	return passIf(v.hc.Memory > 0), strconv.FormatInt(v.hc.Memory, 10)
}

// engineDefaultCPUShares is the weight of a container that sets none; the
// benchmark's audit reads it, like 0, as "not set".
const engineDefaultCPUShares = 1024

func judgeCPUShares(v *view) (string, string) {
	shares := v.hc.CPUShares
	value := fmt.Sprintf("%d (NanoCpus %d)", shares, v.hc.NanoCPUs)
	return passIf(shares > 0 && shares != engineDefaultCPUShares), value
}

func judgeReadonlyRootfs(v *view) (string, string) {
	return passIf(v.hc.ReadonlyRootfs), strconv.FormatBool(v.hc.ReadonlyRootfs)
}

// isWildcardIP is a HostIP that binds every interface of the host.
func isWildcardIP(ip string) bool {
	return ip == "" || ip == "0.0.0.0" || ip == "::" || ip == "[::]"
}

func judgeHostInterface(v *view) (string, string) {
	var bad []string
	for port, list := range v.hc.PortBindings {
		for _, b := range list {
			if isWildcardIP(b.HostIP) {
				bad = append(bad, bindingText(b, port))
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return StatusWarn, "bound to every interface: " + strings.Join(bad, ", ")
	}
	return StatusPass, fmt.Sprintf("%v", bindings(v.hc.PortBindings))
}

func judgeRestartPolicy(v *view) (string, string) {
	p := v.hc.RestartPolicy
	value := fmt.Sprintf("%q, MaximumRetryCount %d", p.Name, p.MaximumRetryCount)
	return passIf(p.Name == container.RestartPolicyOnFailure && p.MaximumRetryCount >= 1 && p.MaximumRetryCount <= 5), value
}

func judgeHostPID(v *view) (string, string) {
	return passIf(v.hc.PidMode != "host"), strconv.Quote(string(v.hc.PidMode))
}

func judgeHostIPC(v *view) (string, string) {
	return passIf(v.hc.IpcMode != "host"), strconv.Quote(string(v.hc.IpcMode))
}

func judgeDevices(v *view) (string, string) {
	var devices []string
	for _, d := range v.hc.Devices {
		devices = append(devices, d.PathOnHost+":"+d.PathInContainer)
	}
	value := fmt.Sprintf("Devices %v, DeviceCgroupRules %v, DeviceRequests %d", devices, v.hc.DeviceCgroupRules, len(v.hc.DeviceRequests))
	if v.hc.Privileged {
		return StatusWarn, value + "; privileged: every host device"
	}
	return passIf(len(devices) == 0 && len(v.hc.DeviceCgroupRules) == 0 && len(v.hc.DeviceRequests) == 0), value
}

func judgeUlimits(v *view) (string, string) {
	if len(v.hc.Ulimits) == 0 {
		return StatusInfo, "the engine's default ulimits"
	}
	var limits []string
	for _, u := range v.hc.Ulimits {
		limits = append(limits, fmt.Sprintf("%s=%d:%d", u.Name, u.Soft, u.Hard))
	}
	return StatusInfo, fmt.Sprintf("overridden: %v; a person confirms they are needed", limits)
}

func judgePropagation(v *view) (string, string) {
	var bad []string
	for _, m := range v.mounts {
		if IsSharedPropagation(m.propagation) {
			bad = append(bad, m.source+":"+m.target+" "+m.propagation)
		}
	}
	if len(bad) > 0 {
		return StatusWarn, "shared propagation: " + strings.Join(bad, ", ")
	}
	return StatusPass, fmt.Sprintf("%d bind mount(s), none shared", len(v.mounts))
}

func judgeHostUTS(v *view) (string, string) {
	return passIf(v.hc.UTSMode != "host"), strconv.Quote(string(v.hc.UTSMode))
}

// securityOpt splits a SecurityOpt entry at its first '=' or ':' (the
// engine accepts both; profiles inline JSON after the '=').
func securityOpt(opt string) (key, value string) {
	i := strings.IndexAny(opt, "=:")
	if i < 0 {
		return opt, ""
	}
	return opt[:i], opt[i+1:]
}

// judgeSeccomp warns where the container runs without a seccomp filter,
// and where its custom profile is weaker than Docker's default for the
// capabilities the engine gave it: the same judge
// (internal/seccomprules.Judge) as the cluster policy at apply time.
func judgeSeccomp(v *view) (string, string) {
	profile := "the engine's default profile"
	unconfined := false
	custom := ""
	for _, opt := range v.hc.SecurityOpt {
		if key, value := securityOpt(opt); key == "seccomp" {
			// The last entry wins, as in the engine.
			unconfined, custom = false, ""
			switch value {
			case "unconfined":
				unconfined = true
				profile = "unconfined"
			case "builtin":
				profile = "the engine's default profile"
			default:
				custom = value
				profile = fmt.Sprintf("a custom profile (%d bytes)", len(value))
			}
		}
	}
	switch {
	case unconfined:
		return StatusWarn, "seccomp=unconfined"
	case v.hc.Privileged:
		return StatusWarn, "privileged: the engine applies no seccomp profile"
	case v.info.Reported && !v.info.Seccomp:
		return StatusWarn, profile + "; but the engine has no seccomp support"
	case custom == "":
		return StatusPass, profile
	}
	caps := seccomprules.ContainerCapabilities(v.hc.CapAdd, v.hc.CapDrop, v.hc.Privileged)
	verdict, err := seccomprules.Judge([]byte(custom), caps)
	switch {
	case err != nil:
		return StatusWarn, fmt.Sprintf("%s that cannot be compared with Docker's default: %v", profile, err)
	case verdict.Weaker():
		return StatusWarn, fmt.Sprintf("%s weaker than Docker's default for capabilities %s: %s", profile, capsText(caps), verdict)
	}
	return StatusPass, profile + ", at least as strict as Docker's default"
}

func capsText(caps []string) string {
	if len(caps) == 0 {
		return "none"
	}
	return strings.Join(caps, ", ")
}

func judgeExecPrivileged(v *view) (string, string) {
	return StatusInfo, fmt.Sprintf("%d exec session(s) running; their options are in the engine's exec_create events, not in inspect", len(v.base.ExecIDs))
}

func judgeExecRoot(v *view) (string, string) {
	return StatusInfo, fmt.Sprintf("%d exec session(s) running; their users are in the engine's exec_create events, not in inspect", len(v.base.ExecIDs))
}

func judgeCgroupParent(v *view) (string, string) {
	if v.hc.CgroupParent == "" {
		return StatusPass, "the engine's default cgroup parent"
	}
	return StatusWarn, fmt.Sprintf("%q: deployctl never sets it; a person confirms it", v.hc.CgroupParent)
}

// HasNoNewPrivileges reports whether a SecurityOpt list turns on
// no-new-privileges ("no-new-privileges", or with ":true" or "=true").
func HasNoNewPrivileges(opts []string) bool {
	on := false
	for _, opt := range opts {
		if key, value := securityOpt(opt); key == "no-new-privileges" {
			// The last entry wins, as in the engine.
			on = value == "" || value == "true"
		}
	}
	return on
}

func judgeNoNewPrivileges(v *view) (string, string) {
	return passIf(HasNoNewPrivileges(v.hc.SecurityOpt)), fmt.Sprintf("%v", v.hc.SecurityOpt)
}

func judgeHealthcheck(v *view) (string, string) {
	if hc := v.cfg.Healthcheck; hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
		return StatusPass, fmt.Sprintf("engine HEALTHCHECK %v every %s", hc.Test, hc.Interval)
	}
	switch probe := v.cfg.Labels[LabelProbe]; probe {
	case "http", "tcp", "exec":
		return StatusInfo, fmt.Sprintf("the deployctl agent probes (%s); the engine has no HEALTHCHECK, so `docker inspect` shows no health", probe)
	}
	return StatusWarn, "no engine HEALTHCHECK and no agent probe"
}

func judgeImage(v *view) (string, string) {
	image := v.cfg.Image
	if strings.Contains(image, "@sha256:") {
		return StatusInfo, fmt.Sprintf("%q: pinned to a digest at apply time; a newer image comes with a new revision", image)
	}
	return StatusInfo, fmt.Sprintf("%q: not pinned; which version runs depends on when it was pulled", image)
}

func judgePidsLimit(v *view) (string, string) {
	if v.hc.PidsLimit == nil {
		return StatusWarn, "unset"
	}
	return passIf(*v.hc.PidsLimit > 0), strconv.FormatInt(*v.hc.PidsLimit, 10)
}

func judgeDefaultBridge(v *view) (string, string) {
	mode := string(v.hc.NetworkMode)
	value := fmt.Sprintf("%q, networks %v", mode, v.networks)
	onBridge := mode == "" || mode == "bridge" || mode == "default" || slices.Contains(v.networks, "bridge")
	return passIf(!onBridge), value
}

func judgeHostUserns(v *view) (string, string) {
	value := strconv.Quote(string(v.hc.UsernsMode))
	switch {
	case v.hc.UsernsMode == "host":
		return StatusWarn, value
	case v.info.Reported && !v.info.Userns:
		value += "; the engine runs without userns-remap, so container uids are host uids"
	}
	return StatusPass, value
}

func judgeEngineSocket(v *view) (string, string) {
	var bad []string
	for _, m := range v.mounts {
		if ExposesEngineSocket(m.source) {
			bad = append(bad, m.source+":"+m.target)
		}
	}
	if len(bad) > 0 {
		return StatusWarn, "exposes the engine socket: " + strings.Join(bad, ", ")
	}
	return StatusPass, fmt.Sprintf("%d bind mount(s), none reaches %s", len(v.mounts), engineSocketName)
}
