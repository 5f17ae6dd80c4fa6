package audit_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
)

// wantOptions are create options as deployer.ContainerOptions builds them.
func wantOptions() (*container.Config, *container.HostConfig) {
	pids := int64(64)
	stop := 2
	cfg := &container.Config{
		Image:        pinnedImage,
		User:         "10001:10001",
		Env:          []string{"PORT=8080"},
		Labels:       map[string]string{"io.deployctl.revision": "7", audit.LabelProbe: "exec"},
		ExposedPorts: nat.PortSet{"8080/tcp": {}},
		Healthcheck:  &container.HealthConfig{Test: []string{"CMD", "/app", "-check"}, Interval: time.Second, Retries: 3},
		StopTimeout:  &stop,
	}
	host := &container.HostConfig{
		NetworkMode:    "deployctl",
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,noexec"},
		CgroupnsMode:   container.CgroupnsModePrivate,
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 5},
		PortBindings:   nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "18080"}}},
		Resources:      container.Resources{Memory: 64 << 20, MemorySwap: 64 << 20, NanoCPUs: 250_000_000, CPUShares: 256, PidsLimit: &pids},
	}
	return cfg, host
}

// reported is what the engine shows for the options: copies, with what the
// engine adds from the image and its own defaults.
func reported() container.InspectResponse {
	cfg, host := wantOptions()
	cfg.Env = append(cfg.Env, "PATH=/usr/bin", "WEBAPP_VERSION=v1")
	cfg.Labels["org.opencontainers.image.title"] = "webapp"
	cfg.ExposedPorts["9090/tcp"] = struct{}{}
	cfg.Entrypoint = []string{"/app"}
	host.IpcMode = "private"
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{HostConfig: host},
		Config:            cfg,
		NetworkSettings:   &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"deployctl": {}}},
	}
}

func driftFields(drifts []audit.Drift) []string {
	var fields []string
	for _, d := range drifts {
		fields = append(fields, d.Field)
	}
	return fields
}

func TestDetectDrift(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *container.InspectResponse)
		want   []string
	}{
		{"what the engine adds from the image and its defaults", nil, nil},
		{"engine without swap accounting", func(c *container.InspectResponse) { c.HostConfig.MemorySwap = -1 }, nil},
		{"shareable IPC default", func(c *container.InspectResponse) { c.HostConfig.IpcMode = "shareable" }, nil},
		{"capabilities as the engine may spell them", func(c *container.InspectResponse) { c.HostConfig.CapDrop = []string{"all"} }, nil},

		{"another image", func(c *container.InspectResponse) { c.Config.Image = "webapp:latest" }, []string{"Config.Image"}},
		{"root user", func(c *container.InspectResponse) { c.Config.User = "" }, []string{"Config.User"}},
		{"env value changed and entry missing", func(c *container.InspectResponse) { c.Config.Env = []string{"PORT=9090"} }, []string{"Config.Env[PORT]"}},
		{"label missing", func(c *container.InspectResponse) { delete(c.Config.Labels, "io.deployctl.revision") }, []string{"Config.Labels[io.deployctl.revision]"}},
		{"exposed port missing", func(c *container.InspectResponse) { delete(c.Config.ExposedPorts, "8080/tcp") }, []string{"Config.ExposedPorts[8080/tcp]"}},
		{"health check removed", func(c *container.InspectResponse) { c.Config.Healthcheck = nil }, []string{"Config.Healthcheck"}},
		{"stop timeout", func(c *container.InspectResponse) { c.Config.StopTimeout = nil }, []string{"Config.StopTimeout"}},
		{"privileged", func(c *container.InspectResponse) { c.HostConfig.Privileged = true }, []string{"HostConfig.Privileged"}},
		{"writable root", func(c *container.InspectResponse) { c.HostConfig.ReadonlyRootfs = false }, []string{"HostConfig.ReadonlyRootfs"}},
		{"capabilities", func(c *container.InspectResponse) {
			c.HostConfig.CapDrop = nil
			c.HostConfig.CapAdd = []string{"SYS_ADMIN"}
		}, []string{"HostConfig.CapDrop", "HostConfig.CapAdd"}},
		{"seccomp off", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, "seccomp=unconfined")
		}, []string{"HostConfig.SecurityOpt"}},
		{"tmpfs", func(c *container.InspectResponse) { c.HostConfig.Tmpfs = nil }, []string{"HostConfig.Tmpfs"}},
		{"a bind mount", func(c *container.InspectResponse) { c.HostConfig.Binds = []string{"/srv:/srv"} }, []string{"HostConfig.Binds"}},
		{"a device", func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse"}}
		}, []string{"HostConfig.Devices"}},
		{"docker update of every limit", func(c *container.InspectResponse) {
			c.HostConfig.Memory = 128 << 20
			c.HostConfig.MemorySwap = 256 << 20
			c.HostConfig.NanoCPUs = 1_000_000_000
			c.HostConfig.CPUShares = 2048
			c.HostConfig.PidsLimit = nil
			c.HostConfig.RestartPolicy = container.RestartPolicy{Name: "always"}
		}, []string{"HostConfig.Memory", "HostConfig.MemorySwap", "HostConfig.NanoCpus", "HostConfig.CpuShares", "HostConfig.PidsLimit", "HostConfig.RestartPolicy"}},
		{"namespaces", func(c *container.InspectResponse) {
			c.HostConfig.NetworkMode = "host"
			c.HostConfig.PidMode = "host"
			c.HostConfig.UTSMode = "host"
			c.HostConfig.UsernsMode = "host"
			c.HostConfig.IpcMode = "host"
			c.HostConfig.CgroupnsMode = "host"
		}, []string{"HostConfig.NetworkMode", "HostConfig.PidMode", "HostConfig.UTSMode", "HostConfig.UsernsMode", "HostConfig.IpcMode", "HostConfig.CgroupnsMode"}},
		{"port bound to every interface", func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "0.0.0.0", HostPort: "18080"}}}
		}, []string{"HostConfig.PortBindings"}},
		{"connected to another network (NetworkDrift's)", func(c *container.InspectResponse) {
			c.NetworkSettings.Networks["bridge"] = &network.EndpointSettings{}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := reported()
			if tt.change != nil {
				tt.change(&c)
			}
			want, wantHost := wantOptions()
			drifts := audit.DetectDrift(c, want, wantHost)
			if got := driftFields(drifts); !slices.Equal(got, tt.want) {
				t.Errorf("drift in %v, want %v: %+v", got, tt.want, drifts)
			}
			for _, d := range drifts {
				if d.Want == d.Got {
					t.Errorf("drift %+v has equal sides", d)
				}
			}
		})
	}
}

func TestDetectDriftValues(t *testing.T) {
	c := reported()
	c.Config.Env = []string{"WEBAPP_VERSION=v1"}
	c.HostConfig.Memory = 128 << 20
	big := strings.Repeat(`{"names":["read"],"action":"SCMP_ACT_ALLOW"},`, 10)
	c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, `seccomp={"syscalls":[`+big+`]}`)
	want, wantHost := wantOptions()
	got := audit.DetectDrift(c, want, wantHost)
	expected := map[string]audit.Drift{
		"Config.Env[PORT]":  {Field: "Config.Env[PORT]", Want: "8080", Got: "(unset)"},
		"HostConfig.Memory": {Field: "HostConfig.Memory", Want: "67108864", Got: "134217728"},
	}
	for _, d := range got {
		if e, ok := expected[d.Field]; ok && d != e {
			t.Errorf("drift %+v, want %+v", d, e)
		}
		if d.Field == "HostConfig.SecurityOpt" && (strings.Contains(d.Got, "SCMP_ACT_ALLOW") || !strings.Contains(d.Got, "sha256:")) {
			t.Errorf("an inline profile reads as %q, want its size and hash", d.Got)
		}
	}
	if fields := driftFields(got); !slices.Equal(fields, []string{"Config.Env[PORT]", "HostConfig.SecurityOpt", "HostConfig.Memory"}) {
		t.Errorf("drift in %v", fields)
	}
}

func TestDetectDriftIgnoresOrder(t *testing.T) {
	c := reported()
	c.HostConfig.SecurityOpt = []string{"apparmor=docker-default", "no-new-privileges"}
	c.HostConfig.CapAdd = []string{"CAP_NET_BIND_SERVICE", "CAP_CHOWN"}
	want, wantHost := wantOptions()
	wantHost.SecurityOpt = []string{"no-new-privileges", "apparmor=docker-default"}
	wantHost.CapAdd = []string{"CHOWN", "NET_BIND_SERVICE"}
	if d := audit.DetectDrift(c, want, wantHost); d != nil {
		t.Errorf("DetectDrift = %+v, want none: order and the CAP_ prefix are not configuration", d)
	}
}

func TestDetectDriftSkipsWhatWasNotGiven(t *testing.T) {
	c := reported()
	c.Config.Image = "other"
	c.HostConfig.Privileged = true
	if d := audit.DetectDrift(c, nil, nil); d != nil {
		t.Errorf("DetectDrift with no options = %+v, want nil", d)
	}
	_, wantHost := wantOptions()
	if got := driftFields(audit.DetectDrift(c, nil, wantHost)); !slices.Equal(got, []string{"HostConfig.Privileged"}) {
		t.Errorf("host options only: drift in %v", got)
	}
	// An inspect without config or host config (e.g. an error response)
	// drifts in everything deployctl set, without a panic.
	want, _ := wantOptions()
	if got := audit.DetectDrift(container.InspectResponse{}, want, wantHost); len(got) < 10 {
		t.Errorf("empty inspect: drift in %v", driftFields(got))
	}
}

func TestNetworkDrift(t *testing.T) {
	networks := map[string]audit.Network{
		"deployctl-web": {Name: "deployctl-web", Managed: true, Service: "web", Host: "h1"},
		"deployctl-api": {Name: "deployctl-api", Managed: true, Service: "api", Host: "h1"},
		"deployctl":     {Name: "deployctl", Managed: true},
		"other-web":     {Name: "other-web", Managed: true, Service: "web", Host: "h2"},
		"bridge":        {Name: "bridge"},
		"lookalike":     {Name: "lookalike", Service: "web"}, // labelled, but not by deployctl
	}
	attachedTo := func(names ...string) container.InspectResponse {
		c := container.InspectResponse{NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{}}}
		for _, n := range names {
			c.NetworkSettings.Networks[n] = &network.EndpointSettings{}
		}
		return c
	}
	tests := []struct {
		name     string
		c        container.InspectResponse
		want     string
		fields   []string
		gotWords []string // what each Got must say, in order
	}{
		{"its own network only", attachedTo("deployctl-web"), "deployctl-web", nil, nil},
		{"host network mode asked for", attachedTo("host"), "host", nil, nil},
		{"another service's network too", attachedTo("deployctl-web", "deployctl-api"), "deployctl-web",
			[]string{"NetworkSettings.Networks[deployctl-api]"}, []string{"network of service api"}},
		{"a network deployctl did not create", attachedTo("deployctl-web", "bridge"), "deployctl-web",
			[]string{"NetworkSettings.Networks[bridge]"}, []string{"did not create"}},
		{"a foreign network wearing deployctl's service label", attachedTo("deployctl-web", "lookalike"), "deployctl-web",
			[]string{"NetworkSettings.Networks[lookalike]"}, []string{"did not create"}},
		{"a network that is gone from the list", attachedTo("deployctl-web", "vanished"), "deployctl-web",
			[]string{"NetworkSettings.Networks[vanished]"}, []string{"did not create"}},
		{"the shared network of an older version instead of its own", attachedTo("deployctl"), "deployctl-web",
			[]string{"NetworkSettings.Networks[deployctl-web]", "NetworkSettings.Networks[deployctl]"}, []string{"not attached", "shared by every service"}},
		{"its service's network of another host", attachedTo("deployctl-web", "other-web"), "deployctl-web",
			[]string{"NetworkSettings.Networks[other-web]"}, []string{"host h2"}},
		{"three at once, in name order", attachedTo("deployctl-web", "deployctl-api", "bridge", "deployctl"), "deployctl-web",
			[]string{"NetworkSettings.Networks[bridge]", "NetworkSettings.Networks[deployctl]", "NetworkSettings.Networks[deployctl-api]"},
			[]string{"did not create", "shared", "service api"}},
		{"no network settings at all", container.InspectResponse{}, "deployctl-web",
			[]string{"NetworkSettings.Networks[deployctl-web]"}, []string{"not attached"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drifts := audit.NetworkDrift(tt.c, "web", tt.want, networks)
			if got := driftFields(drifts); !slices.Equal(got, tt.fields) {
				t.Fatalf("drift in %v, want %v: %+v", got, tt.fields, drifts)
			}
			for i, d := range drifts {
				if !strings.Contains(d.Got, tt.gotWords[i]) || d.Want == d.Got {
					t.Errorf("drift %+v: Got should say %q", d, tt.gotWords[i])
				}
			}
		})
	}
}
