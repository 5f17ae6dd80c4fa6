package deployer

import (
	"fmt"

	"github.com/deployctl/deployctl/internal/seccompprofile"
	"github.com/deployctl/deployctl/specs"
)

// OverridesFor turns the exceptions a spec asks for (which the cluster
// policy admitted at apply) into run-option overrides. A spec that asks for
// none gets the zero Overrides: the hardened defaults.
func OverridesFor(s specs.Spec) (Overrides, error) {
	o := Overrides{
		Privileged:      s.Security.Privileged,
		AppArmorProfile: s.Security.AppArmor,
		PidMode:         s.PID,
		IpcMode:         s.IPC,
		UsernsMode:      s.UsernsMode,
	}
	if s.NetworkMode != specs.NetworkModeBridge {
		// "bridge" (or "") is deployctl's own network, not docker0.
		o.NetworkMode = s.NetworkMode
	}
	switch s.Security.SeccompMode() {
	case specs.SeccompUnconfined:
		o.SeccompUnconfined = true
	case specs.SeccompStrict:
		profile, err := seccompprofile.Strict()
		if err != nil {
			return Overrides{}, fmt.Errorf("security.seccomp: strict: %w", err)
		}
		o.SeccompProfile = profile
	case specs.SeccompModeFile:
		if len(s.Security.SeccompProfile) == 0 {
			return Overrides{}, fmt.Errorf("%w: security.seccomp names a profile file but the revision carries no profile", ErrInvalidOverride)
		}
		o.SeccompProfile = s.Security.SeccompProfile
	}
	for _, v := range s.Volumes {
		b := v.HostPath + ":" + v.ContainerPath
		if v.ReadOnly {
			b += ":ro"
		}
		o.Binds = append(o.Binds, b)
	}
	return o, nil
}
