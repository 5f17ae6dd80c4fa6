package deployer

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
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
		{"no Healthcheck (the agent probes)", cfg.Healthcheck == nil, cfg.Healthcheck},
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
		{"no limits when unset", hc.PidsLimit == nil && hc.Memory == 0 && hc.MemorySwap == 0 && hc.NanoCPUs == 0, hc.Resources},
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

func TestContainerOptionsRootRefusal(t *testing.T) {
	tests := []struct {
		name      string
		specUser  string
		allowRoot bool
		imageUser string
		wantErr   bool
	}{
		{"empty image user", "", false, "", true},
		{"uid 0", "", false, "0", true},
		{"root", "", false, "root", true},
		{"0:gid", "", false, "0:1000", true},
		{"root:group", "", false, "root:root", true},
		{"spec says root", "root", false, "10001", true},
		{"non-root image", "", false, "10001:10001", false},
		{"named non-root image user", "", false, "app", false},
		{"spec user overrides root image", "1000", false, "0", false},
		{"allow_root", "", true, "", false},
		{"allow_root with spec root", "0", true, "10001", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := hardenedAssignment(func(s *specs.Spec) {
				s.Security.User = tt.specUser
				s.Security.AllowRoot = tt.allowRoot
			})
			cfg, _, _, err := ContainerOptions(a, "host-a", "deployctl", tt.imageUser)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("ContainerOptions: %v", err)
				}
				if want := firstNonEmpty(tt.specUser, tt.imageUser); cfg.User != want {
					t.Errorf("User = %q, want %q", cfg.User, want)
				}
				return
			}
			if !errors.Is(err, ErrRootUser) {
				t.Fatalf("err = %v, want ErrRootUser", err)
			}
			for _, word := range []string{"security.user", "allow_root"} {
				if !strings.Contains(err.Error(), word) {
					t.Errorf("error %q does not name %s", err, word)
				}
			}
		})
	}
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
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
