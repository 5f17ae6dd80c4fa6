package deployer

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/enginetest"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
)

const pinnedRef = "127.0.0.1:5000/webapp@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func hardenedAssignment(opts ...specOption) state.Assignment {
	a := assignment("0123456789abcdef", 2, pinnedRef, testSpec(opts...))
	a.Revision.Number = 7
	a.Revision.Fingerprint = "fp7"
	return a
}

func mustContainerOptions(t *testing.T, a state.Assignment, imageUser string) (*container.Config, *container.HostConfig) {
	t.Helper()
	cfg, hostCfg, netCfg, err := ContainerOptions(a, "host-a", "deployctl", imageUser)
	if err != nil {
		t.Fatalf("ContainerOptions: %v", err)
	}
	if netCfg.EndpointsConfig["deployctl"] == nil || !slices.Equal(netCfg.EndpointsConfig["deployctl"].Aliases, []string{"web"}) {
		t.Errorf("EndpointsConfig = %+v, want the network with alias web", netCfg.EndpointsConfig)
	}
	return cfg, hostCfg
}

func TestContainerOptionsHardenedDefaults(t *testing.T) {
	cfg, hc := mustContainerOptions(t, hardenedAssignment(), "10001:10001")
	tests := []struct {
		field string
		ok    bool
		got   any
	}{
		{"Image", cfg.Image == pinnedRef, cfg.Image},
		{"User from image", cfg.User == "10001:10001", cfg.User},
		{"Env sorted", slices.Equal(cfg.Env, []string{"PORT=8080"}), cfg.Env},
		{"StopTimeout", cfg.StopTimeout != nil && *cfg.StopTimeout == 2, cfg.StopTimeout},
		{"image HEALTHCHECK off (the agent probes over HTTP)", cfg.Healthcheck != nil && slices.Equal(cfg.Healthcheck.Test, []string{"NONE"}), cfg.Healthcheck},
		{"Cmd unset", cfg.Cmd == nil, cfg.Cmd},
		{"Entrypoint unset", cfg.Entrypoint == nil, cfg.Entrypoint},
		{"CapDrop", slices.Equal([]string(hc.CapDrop), []string{"ALL"}), hc.CapDrop},
		{"CapAdd", len(hc.CapAdd) == 0, hc.CapAdd},
		{"SecurityOpt", slices.Equal(hc.SecurityOpt, []string{"no-new-privileges"}), hc.SecurityOpt},
		{"ReadonlyRootfs", hc.ReadonlyRootfs, hc.ReadonlyRootfs},
		{"Tmpfs", len(hc.Tmpfs) == 1 && hc.Tmpfs["/tmp"] == "rw,noexec,nosuid,nodev,size=64m,mode=1777", hc.Tmpfs},
		{"PidsLimit", hc.PidsLimit != nil && *hc.PidsLimit == 64, hc.PidsLimit},
		{"Memory", hc.Memory == 64<<20, hc.Memory},
		{"MemorySwap", hc.MemorySwap == 64<<20, hc.MemorySwap},
		{"NanoCPUs", hc.NanoCPUs == 250_000_000, hc.NanoCPUs},
		{"RestartPolicy", hc.RestartPolicy == container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 5}, hc.RestartPolicy},
		{"Privileged", !hc.Privileged, hc.Privileged},
		{"NetworkMode", hc.NetworkMode == "deployctl", hc.NetworkMode},
		{"PidMode", hc.PidMode == "", hc.PidMode},
		{"IpcMode", hc.IpcMode == "", hc.IpcMode},
		{"UTSMode", hc.UTSMode == "", hc.UTSMode},
		{"UsernsMode", hc.UsernsMode == "", hc.UsernsMode},
		{"CgroupnsMode", hc.CgroupnsMode == container.CgroupnsModePrivate, hc.CgroupnsMode},
		{"Init", hc.Init == nil, hc.Init},
		{"no port bindings", len(hc.PortBindings) == 0 && len(cfg.ExposedPorts) == 0, hc.PortBindings},
		{"no binds", len(hc.Binds) == 0 && len(hc.Mounts) == 0, hc.Binds},
		{"CpuShares from 0.25 CPU", hc.CPUShares == 256, hc.CPUShares},
		{"no devices", len(hc.Devices) == 0 && len(hc.DeviceCgroupRules) == 0 && len(hc.DeviceRequests) == 0, hc.Devices},
		{"OOM killer not disabled", hc.OomKillDisable == nil || !*hc.OomKillDisable, hc.OomKillDisable},
		{"MemorySwappiness untouched", hc.MemorySwappiness == nil, hc.MemorySwappiness},
		{"no cgroup parent", hc.CgroupParent == "", hc.CgroupParent},
		{"no ulimits", len(hc.Ulimits) == 0, hc.Ulimits},
		{"no AppArmor option without engine info", !slices.ContainsFunc(hc.SecurityOpt, func(o string) bool { return strings.HasPrefix(o, "apparmor") }), hc.SecurityOpt},
	}
	for _, tt := range tests {
		if !tt.ok {
			t.Errorf("%s = %v", tt.field, tt.got)
		}
	}

	wantLabels := map[string]string{
		LabelManaged:     "true",
		LabelService:     "web",
		LabelRevision:    "7",
		LabelHost:        "host-a",
		LabelReplica:     "0123456789abcdef",
		LabelSlot:        "2",
		LabelFingerprint: "fp7",
		LabelProbe:       "http",
	}
	if len(cfg.Labels) != len(wantLabels) {
		t.Errorf("Labels = %v, want %v", cfg.Labels, wantLabels)
	}
	for k, v := range wantLabels {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
		}
	}
	if got := ContainerName(hardenedAssignment()); got != "deployctl-web-2-01234567" {
		t.Errorf("ContainerName = %q", got)
	}
}

func TestContainerOptionsFromSpec(t *testing.T) {
	a := hardenedAssignment(func(s *specs.Spec) {
		s.Env = map[string]string{"B": "2", "A": "1", "C": "x=y"}
		s.Command = []string{"-v"}
		s.Entrypoint = []string{"/bin/app", "serve"}
		s.Ports = []specs.Port{
			{HostIP: "127.0.0.1", HostPort: 18080, ContainerPort: 8080, Protocol: "tcp"},
			{HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
		}
		s.Security = specs.Security{User: "20002:20002", ReadOnly: false, NoNewPrivileges: false, CapDrop: []string{"NET_RAW"}, CapAdd: []string{"NET_BIND_SERVICE"}}
		s.Resources = specs.Resources{}
		s.StopGracePeriod = 1500 * time.Millisecond
	})
	cfg, hc := mustContainerOptions(t, a, "0")
	tests := []struct {
		field string
		ok    bool
		got   any
	}{
		{"User from spec wins over a root image", cfg.User == "20002:20002", cfg.User},
		{"Env sorted", slices.Equal(cfg.Env, []string{"A=1", "B=2", "C=x=y"}), cfg.Env},
		{"Cmd", slices.Equal([]string(cfg.Cmd), []string{"-v"}), cfg.Cmd},
		{"Entrypoint", slices.Equal([]string(cfg.Entrypoint), []string{"/bin/app", "serve"}), cfg.Entrypoint},
		{"StopTimeout rounds up", cfg.StopTimeout != nil && *cfg.StopTimeout == 2, cfg.StopTimeout},
		{"CapDrop from spec", slices.Equal([]string(hc.CapDrop), []string{"NET_RAW"}), hc.CapDrop},
		{"CapAdd from spec", slices.Equal([]string(hc.CapAdd), []string{"NET_BIND_SERVICE"}), hc.CapAdd},
		{"no SecurityOpt when no_new_privileges is off", len(hc.SecurityOpt) == 0, hc.SecurityOpt},
		{"writable root when read_only is off", !hc.ReadonlyRootfs, hc.ReadonlyRootfs},
		{"no limits when unset", hc.PidsLimit == nil && hc.Memory == 0 && hc.MemorySwap == 0 && hc.NanoCPUs == 0 && hc.CPUShares == 0, hc.Resources},
		{"tcp binding with host IP", slices.Equal(hc.PortBindings[nat.Port("8080/tcp")], []nat.PortBinding{{HostIP: "127.0.0.1", HostPort: "18080"}}), hc.PortBindings},
		{"udp binding", slices.Equal(hc.PortBindings[nat.Port("53/udp")], []nat.PortBinding{{HostPort: "5353"}}), hc.PortBindings},
		{"exposed ports", len(cfg.ExposedPorts) == 2, cfg.ExposedPorts},
	}
	for _, tt := range tests {
		if !tt.ok {
			t.Errorf("%s = %v", tt.field, tt.got)
		}
	}
}

func TestContainerOptionsDefaultCapDrop(t *testing.T) {
	_, hc := mustContainerOptions(t, hardenedAssignment(func(s *specs.Spec) { s.Security.CapDrop = nil }), "10001")
	if !slices.Equal([]string(hc.CapDrop), []string{"ALL"}) {
		t.Errorf("CapDrop = %v, want [ALL] when the spec has none", hc.CapDrop)
	}
}

// testAccounts is an image's /etc/passwd and /etc/group where admin is uid
// 0 under another name, app is 10001, wheelie's primary group is root and
// broken's uid field does not parse (the engine reads it as 0).
var testAccounts = ImageAccounts{
	Passwd: []byte("root:x:0:0:root:/root:/bin/sh\nadmin:x:0:10001::/:/bin/sh\napp:x:10001:10001::/home/app:/bin/sh\nwheelie:x:10002:0::/:/bin/sh\nbroken:x:1e3:10001::/:/bin/sh\n"),
	Group:  []byte("root:x:0:\napp:x:10001:\nstaff:x:0:app\n"),
}

// TestContainerOptionsRootRefusal decides root by the ids the engine would
// run the container with (issue 16, finding 4): numbers in any spelling,
// names looked up in the image's own account files.
func TestContainerOptionsRootRefusal(t *testing.T) {
	tests := []struct {
		name           string
		specUser       string
		allowRoot      bool
		allowRootGroup bool
		imageUser      string
		accounts       ImageAccounts
		wantUser       string // on success
		wantErr        error
	}{
		{"empty image user", "", false, false, "", ImageAccounts{}, "", ErrRootUser},
		{"uid 0", "", false, false, "0", ImageAccounts{}, "", ErrRootUser},
		{"uid 00", "", false, false, "00", ImageAccounts{}, "", ErrRootUser},
		{"uid 000 with a group", "", false, false, "000:10001", ImageAccounts{}, "", ErrRootUser},
		{"uid +0", "", false, false, "+0", ImageAccounts{}, "", ErrRootUser},
		{"uid -0", "", false, false, "-0", ImageAccounts{}, "", ErrRootUser},
		{"root by name", "", false, false, "root", testAccounts, "", ErrRootUser},
		{"root:group", "", false, false, "root:root", testAccounts, "", ErrRootUser},
		{"admin is uid 0 in passwd", "", false, false, "admin", testAccounts, "", ErrRootUser},
		{"admin with a group", "", false, false, "admin:app", testAccounts, "", ErrRootUser},
		{"security.user admin", "admin", false, false, "10001:10001", testAccounts, "", ErrRootUser},
		{"unparsable uid in passwd is 0", "", false, false, "broken", testAccounts, "", ErrRootUser},
		{"spec says root", "root", false, false, "10001", testAccounts, "", ErrRootUser},
		{"name not in passwd", "", false, false, "ghost", testAccounts, "", ErrUnresolvedUser},
		{"name without passwd", "", false, false, "app", ImageAccounts{}, "", ErrUnresolvedUser},
		{"group not in group file", "", false, false, "10001:ghosts", testAccounts, "", ErrUnresolvedUser},
		{"uid out of range", "", false, false, "2147483648", ImageAccounts{}, "", ErrUnresolvedUser},
		{"group 0 by number", "", false, false, "10001:0", ImageAccounts{}, "", ErrRootGroup},
		{"group 0 from passwd", "", false, false, "wheelie", testAccounts, "", ErrRootGroup},
		{"group 0 by another name", "", false, false, "app:staff", testAccounts, "", ErrRootGroup},
		{"group 0 allowed", "", false, true, "wheelie", testAccounts, "10002:0", nil},
		{"non-root image", "", false, false, "10001:10001", ImageAccounts{}, "10001:10001", nil},
		{"numeric user gets its own group", "", false, false, "10001", ImageAccounts{}, "10001:10001", nil},
		{"numeric user in passwd gets its group", "", false, false, "10001", testAccounts, "10001:10001", nil},
		{"named non-root image user", "", false, false, "app", testAccounts, "10001:10001", nil},
		{"named user and group", "", false, false, "app:app", testAccounts, "10001:10001", nil},
		{"extra fields ignored as the engine does", "", false, false, "10001:10001:0", ImageAccounts{}, "10001:10001", nil},
		{"spec user overrides root image", "1000", false, false, "0", ImageAccounts{}, "1000:1000", nil},
		{"allow_root", "", true, false, "", ImageAccounts{}, "0:0", nil},
		{"allow_root with admin", "", true, false, "admin", testAccounts, "0:10001", nil},
		{"allow_root with spec root", "0", true, false, "10001", ImageAccounts{}, "0:0", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := hardenedAssignment(func(s *specs.Spec) {
				s.Security.User = tt.specUser
				s.Security.AllowRoot = tt.allowRoot
				s.Security.AllowRootGroup = tt.allowRootGroup
			})
			cfg, _, _, err := ContainerOptions(a, "host-a", "deployctl", tt.imageUser, WithImageAccounts(tt.accounts))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ContainerOptions: %v", err)
				}
				if cfg.User != tt.wantUser {
					t.Errorf("User = %q, want %q", cfg.User, tt.wantUser)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			words := []string{"security.user"}
			switch tt.wantErr {
			case ErrRootUser:
				words = append(words, "allow_root")
			case ErrRootGroup:
				words = append(words, "allow_root_group")
			}
			for _, word := range words {
				if !strings.Contains(err.Error(), word) {
					t.Errorf("error %q does not name %s", err, word)
				}
			}
		})
	}
}

func TestContainerOptionsRefusals(t *testing.T) {
	tests := []struct {
		name    string
		ref     string
		network string
		want    error
	}{
		{"tag", "127.0.0.1:5000/webapp:v1", "deployctl", ErrNotPinned},
		{"no tag no digest", "webapp", "deployctl", ErrNotPinned},
		{"tag and digest", "127.0.0.1:5000/webapp:v1@sha256:" + strings.Repeat("a", 64), "deployctl", ErrNotPinned},
		{"bad digest", "127.0.0.1:5000/webapp@sha256:abc", "deployctl", ErrNotPinned},
		{"empty", "", "deployctl", ErrNotPinned},
		{"host network", pinnedRef, "host", ErrInvalidNetwork},
		{"default bridge", pinnedRef, "bridge", ErrInvalidNetwork},
		{"none", pinnedRef, "none", ErrInvalidNetwork},
		{"container network", pinnedRef, "container:abc", ErrInvalidNetwork},
		{"no network", pinnedRef, "", ErrInvalidNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := hardenedAssignment()
			a.Revision.Ref = tt.ref
			if _, _, _, err := ContainerOptions(a, "host-a", tt.network, "10001"); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestContainerOptionsIsDeterministic(t *testing.T) {
	a := hardenedAssignment(func(s *specs.Spec) {
		s.Env = map[string]string{"Z": "1", "Y": "2", "X": "3", "W": "4"}
	})
	first, _ := mustContainerOptions(t, a, "10001")
	for range 10 {
		again, _ := mustContainerOptions(t, a, "10001")
		if !slices.Equal(again.Env, first.Env) {
			t.Fatalf("Env order changed: %v then %v", first.Env, again.Env)
		}
	}
}

func TestCPUShares(t *testing.T) {
	tests := []struct {
		name     string
		nanoCPUs int64
		want     int64
	}{
		{"no CPU limit", 0, 0},
		{"negative", -1, 0},
		{"quarter CPU", 250_000_000, 256},
		{"half CPU", 500_000_000, 512},
		{"one CPU is not the engine default", 1_000_000_000, 1023},
		{"just above one CPU", 1_001_000_000, 1025},
		{"two CPUs", 2_000_000_000, 2048},
		{"a thousandth of a CPU is the kernel minimum", 1_000_000, 2},
		{"1000 CPUs is the kernel maximum", 1000_000_000_000, 262144},
		{"huge does not overflow", 1 << 62, 262144},
	}
	for _, tt := range tests {
		if got := CPUShares(tt.nanoCPUs); got != tt.want {
			t.Errorf("%s: CPUShares(%d) = %d, want %d", tt.name, tt.nanoCPUs, got, tt.want)
		}
	}
}

func TestContainerOptionsHealthcheck(t *testing.T) {
	tests := []struct {
		name      string
		check     specs.Healthcheck
		want      *container.HealthConfig
		wantLabel string
	}{
		{
			name: "exec becomes an engine HEALTHCHECK",
			check: specs.Healthcheck{Exec: []string{"/app", "-check"}, Interval: 5 * time.Second, Timeout: 2 * time.Second,
				Retries: 3, StartPeriod: time.Second},
			want: &container.HealthConfig{Test: []string{"CMD", "/app", "-check"}, Interval: 5 * time.Second, Timeout: 2 * time.Second,
				Retries: 3, StartPeriod: time.Second},
			wantLabel: "exec",
		},
		{
			name:      "exec durations below the engine minimum round up to 1ms",
			check:     specs.Healthcheck{Exec: []string{"/bin/true"}, Interval: time.Microsecond, Timeout: time.Nanosecond, Retries: 1},
			want:      &container.HealthConfig{Test: []string{"CMD", "/bin/true"}, Interval: time.Millisecond, Timeout: time.Millisecond, Retries: 1},
			wantLabel: "exec",
		},
		{name: "http is probed by the agent and replaces the image's HEALTHCHECK", check: specs.Healthcheck{HTTP: &specs.HTTPCheck{Path: "/", Port: 80}},
			want: &container.HealthConfig{Test: []string{"NONE"}}, wantLabel: "http"},
		{name: "tcp is probed by the agent and replaces the image's HEALTHCHECK", check: specs.Healthcheck{TCP: &specs.TCPCheck{Port: 80}},
			want: &container.HealthConfig{Test: []string{"NONE"}}, wantLabel: "tcp"},
		{name: "no check keeps the image's HEALTHCHECK", wantLabel: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := mustContainerOptions(t, hardenedAssignment(func(s *specs.Spec) { s.Healthcheck = tt.check }), "10001")
			got := cfg.Healthcheck
			switch {
			case tt.want == nil && got != nil:
				t.Errorf("Healthcheck = %+v, want none", got)
			case tt.want != nil && (got == nil || !slices.Equal(got.Test, tt.want.Test) || got.Interval != tt.want.Interval ||
				got.Timeout != tt.want.Timeout || got.StartPeriod != tt.want.StartPeriod || got.Retries != tt.want.Retries):
				t.Errorf("Healthcheck = %+v, want %+v", got, tt.want)
			}
			if cfg.Labels[LabelProbe] != tt.wantLabel {
				t.Errorf("label %s = %q, want %q", LabelProbe, cfg.Labels[LabelProbe], tt.wantLabel)
			}
		})
	}
}

func TestContainerOptionsSecurityOpt(t *testing.T) {
	profile := []byte(`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`)
	tests := []struct {
		name   string
		spec   specOption
		engine EngineInfo
		over   Overrides
		want   []string
	}{
		{"no engine info: only no-new-privileges", nil, EngineInfo{}, Overrides{}, []string{"no-new-privileges"}},
		{"host without AppArmor", nil, EngineInfo{Reported: true, Seccomp: true}, Overrides{}, []string{"no-new-privileges"}},
		{"host with AppArmor gets docker-default", nil, EngineInfo{Reported: true, AppArmor: true}, Overrides{}, []string{"no-new-privileges", "apparmor=docker-default"}},
		{"AppArmor without no_new_privileges", func(s *specs.Spec) { s.Security.NoNewPrivileges = false }, EngineInfo{AppArmor: true}, Overrides{}, []string{"apparmor=docker-default"}},
		{"privileged gets no AppArmor default", nil, EngineInfo{AppArmor: true}, Overrides{Privileged: true}, []string{"no-new-privileges"}},
		{"AppArmor profile override", nil, EngineInfo{AppArmor: true}, Overrides{AppArmorProfile: "deployctl-web"}, []string{"no-new-privileges", "apparmor=deployctl-web"}},
		{"AppArmor unconfined override", nil, EngineInfo{AppArmor: true}, Overrides{AppArmorProfile: "unconfined"}, []string{"no-new-privileges", "apparmor=unconfined"}},
		{"seccomp unconfined override", nil, EngineInfo{}, Overrides{SeccompUnconfined: true}, []string{"no-new-privileges", "seccomp=unconfined"}},
		{"seccomp profile inline and compact", nil, EngineInfo{}, Overrides{SeccompProfile: profile},
			[]string{"no-new-privileges", `seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`}},
		{"nothing to say", func(s *specs.Spec) { s.Security.NoNewPrivileges = false }, EngineInfo{}, Overrides{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []specOption
			if tt.spec != nil {
				opts = append(opts, tt.spec)
			}
			_, hc, _, err := ContainerOptions(hardenedAssignment(opts...), "host-a", "deployctl", "10001", WithEngine(tt.engine), WithOverrides(tt.over))
			if err != nil {
				t.Fatalf("ContainerOptions: %v", err)
			}
			if !slices.Equal(hc.SecurityOpt, tt.want) {
				t.Errorf("SecurityOpt = %q, want %q", hc.SecurityOpt, tt.want)
			}
		})
	}
}

func TestContainerOptionsOverrides(t *testing.T) {
	tests := []struct {
		name  string
		over  Overrides
		check func(hc *container.HostConfig, net *network.NetworkingConfig) bool
	}{
		{"privileged", Overrides{Privileged: true}, func(hc *container.HostConfig, _ *network.NetworkingConfig) bool { return hc.Privileged }},
		{"host network", Overrides{NetworkMode: "host"}, func(hc *container.HostConfig, net *network.NetworkingConfig) bool {
			return hc.NetworkMode == "host" && len(net.EndpointsConfig) == 0
		}},
		{"no network", Overrides{NetworkMode: "none"}, func(hc *container.HostConfig, net *network.NetworkingConfig) bool {
			return hc.NetworkMode == "none" && len(net.EndpointsConfig) == 0
		}},
		{"host pid", Overrides{PidMode: "host"}, func(hc *container.HostConfig, _ *network.NetworkingConfig) bool { return hc.PidMode == "host" }},
		{"host ipc", Overrides{IpcMode: "host"}, func(hc *container.HostConfig, _ *network.NetworkingConfig) bool { return hc.IpcMode == "host" }},
		{"no ipc", Overrides{IpcMode: "none"}, func(hc *container.HostConfig, _ *network.NetworkingConfig) bool { return hc.IpcMode == "none" }},
		{"host userns", Overrides{UsernsMode: "host"}, func(hc *container.HostConfig, _ *network.NetworkingConfig) bool { return hc.UsernsMode == "host" }},
		{"binds and named volumes", Overrides{Binds: []string{"/srv/web:/data:ro", "cache:/cache", "/home/web/in:/in:ro,rslave"}},
			func(hc *container.HostConfig, _ *network.NetworkingConfig) bool {
				return slices.Equal(hc.Binds, []string{"/srv/web:/data:ro", "cache:/cache", "/home/web/in:/in:ro,rslave"})
			}},
		{"UTS stays private whatever else changes", Overrides{PidMode: "host", IpcMode: "host", NetworkMode: "host"},
			func(hc *container.HostConfig, _ *network.NetworkingConfig) bool { return hc.UTSMode == "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, hc, net, err := ContainerOptions(hardenedAssignment(), "host-a", "deployctl", "10001", WithOverrides(tt.over))
			if err != nil {
				t.Fatalf("ContainerOptions: %v", err)
			}
			if !tt.check(hc, net) {
				t.Errorf("host config %+v, networking %+v", hc, net)
			}
		})
	}
}

// The service network's gateway is the container's only DNS server; a
// container outside the bridge (host or no network) keeps the engine's.
func TestContainerOptionsDNS(t *testing.T) {
	gateway := netip.MustParseAddr("10.240.0.65")
	_, hc, net, err := ContainerOptions(hardenedAssignment(), "host-a", "deployctl-web", "10001", WithDNS(gateway))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hc.DNS, []string{"10.240.0.65"}) || hc.NetworkMode != "deployctl-web" || len(net.EndpointsConfig) != 1 || net.EndpointsConfig["deployctl-web"] == nil {
		t.Errorf("DNS %v on %s (endpoints %v), want 10.240.0.65 on deployctl-web only", hc.DNS, hc.NetworkMode, net.EndpointsConfig)
	}
	if _, hc, _, _ := ContainerOptions(hardenedAssignment(), "host-a", "deployctl-web", "10001"); hc.DNS != nil {
		t.Errorf("DNS %v without WithDNS, want the engine's", hc.DNS)
	}
	for _, mode := range []string{"host", "none"} {
		_, hc, _, err := ContainerOptions(hardenedAssignment(), "host-a", "deployctl-web", "10001", WithDNS(gateway), WithOverrides(Overrides{NetworkMode: mode}))
		if err != nil || hc.DNS != nil {
			t.Errorf("network_mode %s: DNS %v, %v; want none set", mode, hc.DNS, err)
		}
	}
}

func TestContainerOptionsRefusesOverrides(t *testing.T) {
	withPorts := func(s *specs.Spec) {
		s.Ports = []specs.Port{{HostIP: "127.0.0.1", HostPort: 18080, ContainerPort: 8080}}
	}
	tests := []struct {
		name string
		spec specOption
		over Overrides
		want error
	}{
		{"docker.sock", nil, Overrides{Binds: []string{"/var/run/docker.sock:/var/run/docker.sock"}}, ErrUnsafeMount},
		{"docker.sock elsewhere", nil, Overrides{Binds: []string{"/home/me/docker.sock:/sock:ro"}}, ErrUnsafeMount},
		{"the socket's directory", nil, Overrides{Binds: []string{"/var/run:/host-run:ro"}}, ErrUnsafeMount},
		{"/run", nil, Overrides{Binds: []string{"/run:/host-run"}}, ErrUnsafeMount},
		{"/var", nil, Overrides{Binds: []string{"/var/:/host-var:ro"}}, ErrUnsafeMount},
		{"host root", nil, Overrides{Binds: []string{"/:/host:ro"}}, ErrUnsafeMount},
		{"/proc", nil, Overrides{Binds: []string{"/proc:/host-proc:ro"}}, ErrUnsafeMount},
		{"under /sys", nil, Overrides{Binds: []string{"/sys/fs/cgroup:/cg:ro"}}, ErrUnsafeMount},
		{"/dev", nil, Overrides{Binds: []string{"/dev/sda:/disk"}}, ErrUnsafeMount},
		{"/boot", nil, Overrides{Binds: []string{"/boot:/boot:ro"}}, ErrUnsafeMount},
		{"/etc", nil, Overrides{Binds: []string{"/etc:/host-etc:ro"}}, ErrUnsafeMount},
		{"a file in /etc", nil, Overrides{Binds: []string{"/etc/passwd:/etc/passwd:ro"}}, ErrUnsafeMount},
		{"/etc by way of ..", nil, Overrides{Binds: []string{"/srv/../etc:/x"}}, ErrUnsafeMount},
		{"/usr", nil, Overrides{Binds: []string{"/usr/bin:/host-bin:ro"}}, ErrUnsafeMount},
		{"/lib", nil, Overrides{Binds: []string{"/lib/modules:/modules:ro"}}, ErrUnsafeMount},
		{"shared propagation", nil, Overrides{Binds: []string{"/srv/data:/data:shared"}}, ErrUnsafeMount},
		{"rshared propagation", nil, Overrides{Binds: []string{"/srv/data:/data:ro,rshared"}}, ErrUnsafeMount},
		{"malformed volume", nil, Overrides{Binds: []string{"/srv/data"}}, ErrInvalidOverride},
		{"relative target", nil, Overrides{Binds: []string{"/srv/data:data"}}, ErrInvalidOverride},
		{"target /", nil, Overrides{Binds: []string{"/srv/data:/"}}, ErrInvalidOverride},
		{"bridge network mode", nil, Overrides{NetworkMode: "bridge"}, ErrInvalidOverride},
		{"another container's network", nil, Overrides{NetworkMode: "container:abc"}, ErrInvalidOverride},
		{"host network with ports", withPorts, Overrides{NetworkMode: "host"}, ErrInvalidNetwork},
		{"no network with ports", withPorts, Overrides{NetworkMode: "none"}, ErrInvalidNetwork},
		{"another container's pid", nil, Overrides{PidMode: "container:abc"}, ErrInvalidOverride},
		{"shareable ipc", nil, Overrides{IpcMode: "shareable"}, ErrInvalidOverride},
		{"userns private", nil, Overrides{UsernsMode: "private"}, ErrInvalidOverride},
		{"seccomp unconfined and a profile", nil, Overrides{SeccompUnconfined: true, SeccompProfile: []byte(`{}`)}, ErrInvalidOverride},
		{"seccomp profile that is no JSON object", nil, Overrides{SeccompProfile: []byte(`["x"]`)}, ErrInvalidOverride},
		{"AppArmor name with a comma", nil, Overrides{AppArmorProfile: "a,b"}, ErrInvalidOverride},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []specOption
			if tt.spec != nil {
				opts = append(opts, tt.spec)
			}
			_, _, _, err := ContainerOptions(hardenedAssignment(opts...), "host-a", "deployctl", "10001", WithOverrides(tt.over))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if errors.Is(err, ErrUnsafeMount) && !strings.Contains(err.Error(), "CIS 5.") {
				t.Errorf("error %q names no CIS control", err)
			}
		})
	}
}

// engineView is what the engine would report for create options on a host
// with engine: the inspect fields that come from the options, plus the
// AppArmor profile and mounts the engine derives from them.
func engineView(cfg *container.Config, hc *container.HostConfig, engine EngineInfo) container.InspectResponse {
	profile := ""
	if engine.AppArmor {
		profile = AppArmorDefaultProfile
		if hc.Privileged {
			profile = "unconfined"
		}
		for _, opt := range hc.SecurityOpt {
			if name, ok := strings.CutPrefix(opt, "apparmor="); ok {
				profile = name
			}
		}
	}
	var mounts []container.MountPoint
	for _, bind := range hc.Binds {
		source, target, options, _ := audit.SplitBind(bind)
		m := container.MountPoint{Type: "bind", Source: source, Destination: target}
		if !strings.HasPrefix(source, "/") {
			m = container.MountPoint{Type: "volume", Name: source, Source: "/var/lib/docker/volumes/" + source + "/_data", Destination: target}
		}
		for _, opt := range options {
			if strings.Contains(opt, "slave") || strings.Contains(opt, "shared") || strings.Contains(opt, "private") {
				m.Propagation = mount.Propagation(opt)
			}
		}
		mounts = append(mounts, m)
	}
	networkName := string(hc.NetworkMode)
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{Path: "/app", AppArmorProfile: profile, ProcessLabel: "", HostConfig: hc},
		Config:            cfg,
		Mounts:            mounts,
		NetworkSettings:   &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{networkName: {}}},
	}
}

// TestContainerOptionsAreCISClean checks, without an engine, that the
// default options pass every CIS section 5 control that can be judged, and
// that each override makes exactly its own controls warn.
func TestContainerOptionsAreCISClean(t *testing.T) {
	engines := map[string]EngineInfo{
		"with AppArmor":    {Reported: true, AppArmor: true, Seccomp: true, SeccompDefault: true, SwarmState: "inactive"},
		"without AppArmor": {Reported: true, Seccomp: true, SeccompDefault: true, SwarmState: "inactive"},
	}
	exec := func(s *specs.Spec) {
		s.Healthcheck = specs.Healthcheck{Exec: []string{"/app", "-check"}, Interval: time.Second, Timeout: time.Second, Retries: 3}
		s.Ports = []specs.Port{{HostIP: "127.0.0.1", HostPort: 18080, ContainerPort: 8080, Protocol: "tcp"}}
	}
	tests := []struct {
		name     string
		over     Overrides
		wantWarn []string
	}{
		{"defaults", Overrides{}, nil},
		{"safe volumes", Overrides{Binds: []string{"/srv/web:/data:ro", "cache:/cache"}}, nil},
		{"stricter seccomp profile", Overrides{SeccompProfile: []byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`)}, nil},
		{"privileged", Overrides{Privileged: true}, []string{"5.4", "5.5", "5.18", "5.22"}},
		{"seccomp unconfined", Overrides{SeccompUnconfined: true}, []string{"5.22"}},
		{"host pid", Overrides{PidMode: "host"}, []string{"5.16"}},
		{"host ipc", Overrides{IpcMode: "host"}, []string{"5.17"}},
		{"host userns", Overrides{UsernsMode: "host"}, []string{"5.31"}},
	}
	for engineName, engine := range engines {
		for _, tt := range tests {
			t.Run(engineName+"/"+tt.name, func(t *testing.T) {
				a := hardenedAssignment(exec)
				cfg, hc, _, err := ContainerOptions(a, "host-a", "deployctl", "10001", WithEngine(engine), WithOverrides(tt.over))
				if err != nil {
					t.Fatalf("ContainerOptions: %v", err)
				}
				want := tt.wantWarn
				if engine.AppArmor && tt.over.Privileged {
					want = append([]string{"5.2"}, want...)
				}
				var warned []string
				for _, r := range audit.Checks(engineView(cfg, hc, engine), engine) {
					if r.Status == audit.StatusWarn {
						warned = append(warned, r.ID)
					}
				}
				if !slices.Equal(warned, want) {
					t.Errorf("warned %v, want %v; results:\n%s", warned, want, resultLines(audit.Checks(engineView(cfg, hc, engine), engine)))
				}
			})
		}
	}
	t.Run("host network", func(t *testing.T) {
		engine := engines["without AppArmor"]
		cfg, hc, _, err := ContainerOptions(hardenedAssignment(), "host-a", "deployctl", "10001", WithEngine(engine), WithOverrides(Overrides{NetworkMode: "host"}))
		if err != nil {
			t.Fatalf("ContainerOptions: %v", err)
		}
		for _, r := range audit.Checks(engineView(cfg, hc, engine), engine) {
			if (r.ID == "5.10") != (r.Status == audit.StatusWarn) {
				t.Errorf("%s %s: %s (%s)", r.ID, r.Title, r.Status, r.Value)
			}
		}
	})
}

func resultLines(results []audit.Result) string {
	var b strings.Builder
	for _, r := range results {
		b.WriteString(r.ID + " " + r.Status + " " + r.Field + " = " + r.Value + "\n")
	}
	return b.String()
}

func TestDockerRuntimeEngineInfo(t *testing.T) {
	ctx := context.Background()
	rt, err := NewDockerRuntime()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	if err := rt.Ping(ctx); errors.Is(err, ErrEngineUnavailable) {
		enginetest.Unavailable(t, err)
	}
	info, err := rt.EngineInfo(ctx)
	if err != nil {
		t.Fatalf("EngineInfo: %v", err)
	}
	raw, err := rt.client.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	has := func(name string) bool {
		return slices.ContainsFunc(raw.SecurityOptions, func(o string) bool { return strings.HasPrefix(o, "name="+name) })
	}
	if !info.Reported || info.SwarmState == "" {
		t.Errorf("EngineInfo = %+v, want Reported and a swarm state", info)
	}
	if info.AppArmor != has("apparmor") || info.Seccomp != has("seccomp") || info.SELinux != has("selinux") || info.Userns != has("userns") {
		t.Errorf("EngineInfo = %+v, engine's SecurityOptions %q", info, raw.SecurityOptions)
	}

	unreachable, err := NewDockerRuntime(withHost("tcp://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unreachable.Close() })
	if _, err := unreachable.EngineInfo(ctx); !errors.Is(err, ErrEngineUnavailable) {
		t.Errorf("EngineInfo of an unreachable engine: %v, want ErrEngineUnavailable", err)
	}
}
