package specs

import (
	"fmt"
	"strings"
)

// Values of network_mode, pid, ipc and userns_mode. An empty value is
// deployctl's default: its own bridge network, and private PID, IPC and
// user namespaces (the engine's defaults).
const (
	// NetworkModeBridge is deployctl's network, the same as "": Parse
	// stores it as "" so that writing it out changes no fingerprint.
	NetworkModeBridge = "bridge"
	NetworkModeHost   = "host"
	NetworkModeNone   = "none"
	// NamespaceHost shares the host's namespace (pid, ipc, userns_mode).
	NamespaceHost = "host"
	// IPCPrivate asks for a private IPC namespace whatever the engine's
	// default-ipc-mode is.
	IPCPrivate = "private"
)

// Values of security.seccomp other than a file path, and what SeccompMode
// answers.
const (
	// SeccompDefault is the engine's default profile, the same as "":
	// Parse stores it as "".
	SeccompDefault    = "default"
	SeccompUnconfined = "unconfined"
	// SeccompStrict is deployctl's profile, stricter than the engine's
	// (seccompprofile.Strict).
	SeccompStrict = "strict"
	// SeccompModeFile is what SeccompMode answers when security.seccomp is
	// the path of a profile file; it is not a value of the field.
	SeccompModeFile = "file"
)

// AppArmorUnconfined runs the container without an AppArmor profile.
const AppArmorUnconfined = "unconfined"

// maxAppArmorName bounds a profile name (the kernel's limit is larger; no
// real profile name comes close).
const maxAppArmorName = 255

// SeccompMode says how security.seccomp confines the container:
// SeccompDefault (for "" too), SeccompUnconfined, SeccompStrict, or
// SeccompModeFile, in which case Seccomp is the file's path and
// SeccompProfile its content.
func (s Security) SeccompMode() string {
	switch s.Seccomp {
	case "", SeccompDefault:
		return SeccompDefault
	case SeccompUnconfined, SeccompStrict:
		return s.Seccomp
	}
	return SeccompModeFile
}

// EffectiveNetworkMode is NetworkModeBridge (deployctl's network, for ""
// too), NetworkModeHost or NetworkModeNone.
func (s *Spec) EffectiveNetworkMode() string {
	if s.NetworkMode == "" {
		return NetworkModeBridge
	}
	return s.NetworkMode
}

// canonicalNetworkMode is what Parse stores: "" for deployctl's network.
func canonicalNetworkMode(mode string) string {
	if mode == NetworkModeBridge {
		return ""
	}
	return mode
}

// canonicalSeccomp is what Parse stores: "" for the engine's profile.
func canonicalSeccomp(value string) string {
	if value == SeccompDefault {
		return ""
	}
	return value
}

// namespaces checks network_mode, pid, ipc and userns_mode: syntax only,
// since whether a host namespace may be shared is the cluster policy's
// decision. It also refuses published ports without deployctl's network,
// where the engine would drop them without an error, and ingress, expose
// and connects_to, which the proxy serves from and to replicas on that
// network.
func (v *validator) namespaces(s *Spec) {
	switch s.NetworkMode {
	case "", NetworkModeBridge:
	case NetworkModeHost, NetworkModeNone:
		if len(s.Ports) > 0 {
			v.addf("network_mode", "%s cannot publish ports: %s; remove ports, or remove network_mode to use deployctl's network",
				s.NetworkMode, networkWithoutPorts(s.NetworkMode))
		}
		if len(s.Ingress) > 0 {
			v.addf("network_mode", "%s cannot serve ingress: the proxy reaches replicas on deployctl's network; remove ingress, or remove network_mode",
				s.NetworkMode)
		}
		if len(s.Expose) > 0 || len(s.ConnectsTo) > 0 {
			v.addf("network_mode", "%s has no service network, so it can neither expose ports to other services nor connect to them; remove expose and connects_to, or remove network_mode",
				s.NetworkMode)
		}
	default:
		v.addf("network_mode", "%s", choiceMessage(s.NetworkMode, "a network mode",
			"write bridge (deployctl's network, the default), host or none", NetworkModeBridge, NetworkModeHost, NetworkModeNone))
	}
	if s.PID != "" && s.PID != NamespaceHost {
		v.addf("pid", "%s", choiceMessage(s.PID, "a PID mode",
			"write host to share the host's PID namespace, or leave pid out", NamespaceHost))
	}
	if s.IPC != "" && s.IPC != IPCPrivate && s.IPC != NamespaceHost {
		v.addf("ipc", "%s", choiceMessage(s.IPC, "an IPC mode",
			"write private or host, or leave ipc out for the engine's default", IPCPrivate, NamespaceHost))
	}
	if s.UsernsMode != "" && s.UsernsMode != NamespaceHost {
		v.addf("userns_mode", "%s", choiceMessage(s.UsernsMode, "a user namespace mode",
			"write host to opt out of the engine's user namespace remapping, or leave userns_mode out", NamespaceHost))
	}
}

func networkWithoutPorts(mode string) string {
	if mode == NetworkModeHost {
		return "the service binds the host's ports itself"
	}
	return "the container has no network"
}

// choiceMessage refuses a value that is not one of choices, suggesting the
// nearest one. Sharing another container's namespace ("container:NAME") is
// named, since it is what Docker users would try.
func choiceMessage(value, what, fix string, choices ...string) string {
	if strings.HasPrefix(value, "container:") {
		return fmt.Sprintf("%q: sharing another container's namespace is not supported; %s", value, fix)
	}
	msg := fmt.Sprintf("%q is not %s; %s", value, what, fix)
	if best, ok := closest(value, choices); ok {
		msg += "; did you mean " + best + "?"
	}
	return msg
}

// seccomp checks security.seccomp and its profile content. A file path
// must contain a '/' or end in ".json", so that a misspelt keyword
// ("unconfind") is caught here instead of failing as a missing file.
func (v *validator) seccomp(s Security) {
	switch s.SeccompMode() {
	case SeccompModeFile:
		value := s.Seccomp
		switch {
		case strings.ContainsFunc(value, isControl):
			v.addf("security.seccomp", "the profile path contains a control character")
		case strings.TrimSpace(value) != value:
			v.addf("security.seccomp", "%q has spaces around it; remove them", value)
		case !strings.Contains(value, "/") && !strings.HasSuffix(value, ".json"):
			msg := fmt.Sprintf("%q is not default, unconfined or strict", value)
			if best, ok := closest(value, []string{SeccompDefault, SeccompUnconfined, SeccompStrict}); ok {
				msg += "; did you mean " + best + "?"
			}
			v.addf("security.seccomp", "%s; a profile file's path contains a / or ends in .json, like ./seccomp.json", msg)
		}
	default:
		if len(s.SeccompProfile) > 0 {
			v.addf("security.seccomp", "a profile's content is set, but seccomp is %q, not a profile file; clear the profile or name its file", s.SeccompMode())
		}
	}
}

// apparmor checks security.apparmor: "", unconfined, or a profile name.
func (v *validator) apparmor(profile string) {
	switch {
	case profile == "" || profile == AppArmorUnconfined:
	case strings.EqualFold(profile, AppArmorUnconfined):
		v.addf("security.apparmor", "write %q as %s", profile, AppArmorUnconfined)
	case len(profile) > maxAppArmorName || !isAppArmorName(profile):
		v.addf("security.apparmor", "%q is not an AppArmor profile name; use letters, digits, '_', '.' and '-' (at most %d), or unconfined", profile, maxAppArmorName)
	}
}

func isAppArmorName(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '.' && r != '-' {
			return false
		}
	}
	return s != ""
}

// volumes checks every bind mount's paths and refuses two mounts on one
// container path, which the engine refuses at container creation.
func (v *validator) volumes(volumes []Volume) {
	mounted := make(map[string]int, len(volumes))
	for i, vol := range volumes {
		field := fmt.Sprintf("volumes[%d]", i)
		if msg := checkVolume(vol); msg != "" {
			v.addf(field, "%s", msg)
			continue
		}
		if earlier, dup := mounted[vol.ContainerPath]; dup {
			v.addf(field, "%s is already mounted by volumes[%d] (%s); mount each container path once", vol.ContainerPath, earlier, volumes[earlier])
			continue
		}
		mounted[vol.ContainerPath] = i
	}
}
