package deployer

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

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
)

// ErrRootUser means the container would run as root without the spec saying
// so. ErrNotPinned means an image reference is not repository@sha256:digest.
// ErrInvalidNetwork means the network is not a user-defined one.
var (
	ErrRootUser       = errors.New("container would run as root")
	ErrNotPinned      = errors.New("image reference is not pinned to a digest")
	ErrInvalidNetwork = errors.New("not a user-defined network")
)

// ContainerOptions turns one assignment into the engine's create options,
// with every hardened default applied. It is pure: imageUser is the image
// config's User, which the caller looked up, so this needs no engine.
func ContainerOptions(a state.Assignment, hostID, networkName, imageUser string) (*container.Config, *container.HostConfig, *network.NetworkingConfig, error) {
	spec := a.Revision.Spec
	if err := CheckPinned(a.Revision.Ref); err != nil {
		return nil, nil, nil, err
	}
	if err := checkNetwork(networkName); err != nil {
		return nil, nil, nil, err
	}
	user := spec.Security.User
	if user == "" {
		user = imageUser
	}
	if isRootUser(user) && !spec.Security.AllowRoot {
		who := fmt.Sprintf("the image's user is %q", imageUser)
		if spec.Security.User != "" {
			who = fmt.Sprintf("security.user is %q", spec.Security.User)
		}
		return nil, nil, nil, fmt.Errorf("%w: %s; set security.user to a non-root uid (e.g. \"10001:10001\") or, if root is really needed, security.allow_root: true", ErrRootUser, who)
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
		// A private cgroup namespace hides the host's cgroup tree; PID, IPC
		// and UTS stay empty, which is the engine's private default.
		CgroupnsMode:   container.CgroupnsModePrivate,
		Privileged:     false,
		ReadonlyRootfs: spec.Security.ReadOnly,
		Tmpfs:          map[string]string{"/tmp": TmpfsOptions},
		Init:           nil,
		Resources: container.Resources{
			NanoCPUs: spec.Resources.NanoCPUs,
			Memory:   spec.Resources.MemoryBytes,
		},
	}
	if len(spec.Security.CapAdd) > 0 {
		hostCfg.CapAdd = strslice.StrSlice(append([]string(nil), spec.Security.CapAdd...))
	}
	if spec.Security.NoNewPrivileges {
		// Only no-new-privileges: the engine's default seccomp and AppArmor
		// profiles stay in force because nothing here overrides them.
		hostCfg.SecurityOpt = []string{NoNewPrivileges}
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
			// The service name as alias lets replicas of other services on
			// the same network find this one through the engine's DNS.
			networkName: {Aliases: []string{spec.Service}},
		},
	}
	return cfg, hostCfg, netCfg, nil
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

// isRootUser reports whether a container user ("uid[:gid]" or
// "name[:group]", "" meaning the engine's default) runs as root.
func isRootUser(user string) bool {
	uid, _, _ := strings.Cut(user, ":")
	return uid == "" || uid == "0" || uid == "root"
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
