package deployer

import (
	"errors"
	"slices"
	"testing"

	"github.com/deployctl/deployctl/specs"
)

func TestOverridesFor(t *testing.T) {
	hardened := specs.Spec{}
	if o, err := OverridesFor(hardened); err != nil || !isZeroOverrides(o) {
		t.Fatalf("a spec without exceptions: %+v %v, want no overrides", o, err)
	}

	s := specs.Spec{NetworkMode: specs.NetworkModeHost, PID: specs.NamespaceHost, IPC: specs.NamespaceHost, UsernsMode: specs.NamespaceHost,
		Volumes: []specs.Volume{{HostPath: "/srv/data", ContainerPath: "/data", ReadOnly: true}, {HostPath: "/srv/logs", ContainerPath: "/logs"}}}
	s.Security.Privileged = true
	s.Security.AppArmor = "my-profile"
	s.Security.Seccomp = specs.SeccompUnconfined
	o, err := OverridesFor(s)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Privileged || o.NetworkMode != "host" || o.PidMode != "host" || o.IpcMode != "host" || o.UsernsMode != "host" ||
		o.AppArmorProfile != "my-profile" || !o.SeccompUnconfined || !slices.Equal(o.Binds, []string{"/srv/data:/data:ro", "/srv/logs:/logs"}) {
		t.Fatalf("overrides %+v", o)
	}

	strict := specs.Spec{}
	strict.Security.Seccomp = specs.SeccompStrict
	if o, err := OverridesFor(strict); err != nil || len(o.SeccompProfile) == 0 {
		t.Fatalf("strict seccomp: %+v %v, want the built-in strict profile", o, err)
	}
	file := specs.Spec{}
	file.Security.Seccomp = "./profile.json"
	if _, err := OverridesFor(file); !errors.Is(err, ErrInvalidOverride) {
		t.Fatalf("a profile file without its content: %v, want ErrInvalidOverride", err)
	}
	file.Security.SeccompProfile = []byte(`{"defaultAction":"SCMP_ACT_ERRNO"}`)
	if o, err := OverridesFor(file); err != nil || string(o.SeccompProfile) != `{"defaultAction":"SCMP_ACT_ERRNO"}` {
		t.Fatalf("profile file: %+v %v", o, err)
	}
}

func isZeroOverrides(o Overrides) bool {
	return !o.Privileged && !o.SeccompUnconfined && o.SeccompProfile == nil && o.AppArmorProfile == "" && o.NetworkMode == "" &&
		o.PidMode == "" && o.IpcMode == "" && o.UsernsMode == "" && len(o.Binds) == 0
}
