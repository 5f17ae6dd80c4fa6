package audit

import (
	"strings"

	"github.com/docker/docker/api/types/system"
)

// EngineInfo is what a Docker Engine reports about its own security
// features (`docker info`: SecurityOptions and the swarm state). Hardening
// reads it to choose options that only make sense where the host supports
// them (an AppArmor profile); the checks read it to tell "not applicable on
// this host" from "not set".
//
// The zero value means nothing is known: checks that depend on the engine
// report "info" instead of guessing.
type EngineInfo struct {
	// Reported is true when the fields below come from an engine. Without
	// it a false field means "unknown", not "absent".
	Reported bool `json:"reported"`
	// AppArmor: "name=apparmor" — the host has AppArmor enabled and the
	// engine confines containers with it.
	AppArmor bool `json:"apparmor"`
	// SELinux: "name=selinux" — the engine runs with --selinux-enabled.
	SELinux bool `json:"selinux"`
	// Seccomp: "name=seccomp,..." — the engine filters syscalls.
	Seccomp bool `json:"seccomp"`
	// SeccompDefault: the engine's seccomp profile is its built-in default
	// ("profile=default"), not a daemon-wide custom file.
	SeccompDefault bool `json:"seccomp_default"`
	// Userns: "name=userns" — the engine remaps container users
	// (userns-remap), so root in a container is not root on the host.
	Userns bool `json:"userns"`
	// Rootless: "name=rootless" — the engine itself runs unprivileged.
	Rootless bool `json:"rootless"`
	// SwarmState is the engine's swarm LocalNodeState ("inactive",
	// "pending", "active", "error", "locked"); "" when not reported.
	SwarmState string `json:"swarm_state"`
	// Version is the engine's release ("20.10.24+dfsg1"); "" when not
	// reported.
	Version string `json:"version,omitempty"`
}

// EngineInfoFromSystem reads the security features out of the engine's
// `docker info` answer.
func EngineInfoFromSystem(info system.Info) EngineInfo {
	engine := ParseSecurityOptions(info.SecurityOptions)
	engine.SwarmState = string(info.Swarm.LocalNodeState)
	engine.Version = info.ServerVersion
	return engine
}

// ParseSecurityOptions reads the engine's SecurityOptions list. Entries are
// comma-separated key=value pairs led by the feature's name
// ("name=seccomp,profile=default", "name=apparmor", "name=userns"); engines
// before API 1.26 sent the bare name ("apparmor", "seccomp"), which is
// accepted too. Unknown features are ignored.
func ParseSecurityOptions(options []string) EngineInfo {
	engine := EngineInfo{Reported: true}
	for _, option := range options {
		name, attrs := "", map[string]string{}
		for i, part := range strings.Split(option, ",") {
			key, value, found := strings.Cut(strings.TrimSpace(part), "=")
			switch {
			case !found && i == 0:
				name = key
			case key == "name":
				name = value
			case found:
				attrs[key] = value
			}
		}
		switch name {
		case "apparmor":
			engine.AppArmor = true
		case "selinux":
			engine.SELinux = true
		case "seccomp":
			engine.Seccomp = true
			// Old engines name no profile: they only had the built-in one.
			profile, named := attrs["profile"]
			engine.SeccompDefault = !named || profile == "default" || profile == "builtin"
		case "userns":
			engine.Userns = true
		case "rootless":
			engine.Rootless = true
		}
	}
	return engine
}
