package audit_test

import (
	"testing"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

func TestParseSecurityOptions(t *testing.T) {
	tests := []struct {
		name    string
		options []string
		want    audit.EngineInfo
	}{
		{"none", nil, audit.EngineInfo{Reported: true}},
		{"engine 20.10 without AppArmor", []string{"name=seccomp,profile=default"},
			audit.EngineInfo{Reported: true, Seccomp: true, SeccompDefault: true}},
		{"Ubuntu host", []string{"name=apparmor", "name=seccomp,profile=builtin", "name=cgroupns"},
			audit.EngineInfo{Reported: true, AppArmor: true, Seccomp: true, SeccompDefault: true}},
		{"custom daemon seccomp profile", []string{"name=seccomp,profile=/etc/docker/seccomp.json"},
			audit.EngineInfo{Reported: true, Seccomp: true}},
		{"SELinux, userns-remap, rootless", []string{"name=selinux", "name=userns", "name=rootless"},
			audit.EngineInfo{Reported: true, SELinux: true, Userns: true, Rootless: true}},
		{"legacy bare names", []string{"apparmor", "seccomp"},
			audit.EngineInfo{Reported: true, AppArmor: true, Seccomp: true, SeccompDefault: true}},
		{"attributes before the name", []string{"profile=default,name=seccomp"},
			audit.EngineInfo{Reported: true, Seccomp: true, SeccompDefault: true}},
		{"unknown features ignored", []string{"name=future", "name=apparmorx"}, audit.EngineInfo{Reported: true}},
	}
	for _, tt := range tests {
		if got := audit.ParseSecurityOptions(tt.options); got != tt.want {
			t.Errorf("%s: ParseSecurityOptions(%q) = %+v, want %+v", tt.name, tt.options, got, tt.want)
		}
	}
}

func TestEngineInfoFromSystem(t *testing.T) {
	info := system.Info{
		SecurityOptions: []string{"name=apparmor", "name=seccomp,profile=default"},
		Swarm:           swarm.Info{LocalNodeState: swarm.LocalNodeStateActive},
		ServerVersion:   "20.10.24+dfsg1",
	}
	want := audit.EngineInfo{Reported: true, AppArmor: true, Seccomp: true, SeccompDefault: true, SwarmState: "active", Version: "20.10.24+dfsg1"}
	if got := audit.EngineInfoFromSystem(info); got != want {
		t.Errorf("EngineInfoFromSystem = %+v, want %+v", got, want)
	}
}
