package audit_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
)

const pinnedImage = "127.0.0.1:5000/webapp@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fullEngine has every host feature a check can depend on.
func fullEngine() audit.EngineInfo {
	return audit.EngineInfo{Reported: true, AppArmor: true, SELinux: true, Seccomp: true, SeccompDefault: true, SwarmState: "inactive"}
}

// hardenedInspect is what the engine reports for a container that meets
// every control that inspect can show.
func hardenedInspect() container.InspectResponse {
	pids := int64(64)
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			Path:            "/app",
			AppArmorProfile: "docker-default",
			ProcessLabel:    "system_u:system_r:container_t:s0:c1,c2",
			HostConfig: &container.HostConfig{
				NetworkMode:    "deployctl",
				CapDrop:        []string{"ALL"},
				SecurityOpt:    []string{"no-new-privileges", "apparmor=docker-default"},
				ReadonlyRootfs: true,
				Tmpfs:          map[string]string{"/tmp": "rw,noexec"},
				RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 5},
				PortBindings:   nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "18080"}}},
				Resources:      container.Resources{Memory: 64 << 20, MemorySwap: 64 << 20, NanoCPUs: 250_000_000, CPUShares: 256, PidsLimit: &pids},
			},
		},
		Mounts: []container.MountPoint{{Type: mount.TypeBind, Source: "/srv/web", Destination: "/data", Propagation: mount.PropagationRPrivate}},
		Config: &container.Config{
			Image:       pinnedImage,
			User:        "10001:10001",
			Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/app", "-check"}, Interval: time.Second},
			Labels:      map[string]string{audit.LabelProbe: "exec"},
		},
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"deployctl": {}}},
	}
}

// infoByNature are the controls that inspect and engine info cannot judge.
func infoByNature() []string { return []string{"5.7", "5.19", "5.23", "5.24", "5.28"} }

func resultByID(t *testing.T, results []audit.Result, id string) audit.Result {
	t.Helper()
	for _, r := range results {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no result for %s", id)
	return audit.Result{}
}

func TestChecksCoverSectionFive(t *testing.T) {
	controls := audit.Controls()
	if len(controls) != 32 {
		t.Fatalf("%d controls, want the 32 of section 5", len(controls))
	}
	results := audit.Checks(hardenedInspect(), fullEngine())
	if len(results) != len(controls) {
		t.Fatalf("%d results for %d controls", len(results), len(controls))
	}
	for i, c := range controls {
		if want := "5." + itoa(i+1); c.ID != want {
			t.Errorf("control %d has ID %s, want %s", i, c.ID, want)
		}
		r := results[i]
		if r.ID != c.ID || r.Title != c.Title || r.Field != c.Field || c.Title == "" || c.Field == "" || r.Value == "" {
			t.Errorf("result %+v does not match control %+v", r, c)
		}
	}
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

func TestChecksOfAHardenedContainer(t *testing.T) {
	for _, r := range audit.Checks(hardenedInspect(), fullEngine()) {
		want := audit.StatusPass
		if slices.Contains(infoByNature(), r.ID) || r.ID == "5.9" { // 5.9: a published port needs a person
			want = audit.StatusInfo
		}
		if r.Status != want {
			t.Errorf("%s %s: %s (%s = %s), want %s", r.ID, r.Title, r.Status, r.Field, r.Value, want)
		}
	}
}

func TestChecksOfAnEmptyInspect(t *testing.T) {
	// Nothing set: no panic, and every control that needs a setting warns.
	results := audit.Checks(container.InspectResponse{}, audit.EngineInfo{})
	var warned []string
	for _, r := range results {
		if r.Status == audit.StatusWarn {
			warned = append(warned, r.ID)
		}
	}
	want := []string{"5.4", "5.11", "5.12", "5.13", "5.15", "5.26", "5.27", "5.29", "5.30"}
	if !slices.Equal(warned, want) {
		t.Errorf("warned %v, want %v", warned, want)
	}
}

func TestChecks(t *testing.T) {
	noEngine := audit.EngineInfo{}
	noAppArmor := audit.EngineInfo{Reported: true, Seccomp: true, SeccompDefault: true, SwarmState: "inactive"}
	tests := []struct {
		name   string
		id     string
		change func(c *container.InspectResponse)
		engine *audit.EngineInfo // nil: fullEngine
		want   string
	}{
		{"swarm active", "5.1", nil, &audit.EngineInfo{Reported: true, SwarmState: "active"}, audit.StatusWarn},
		{"swarm unknown", "5.1", nil, &noEngine, audit.StatusInfo},

		{"no AppArmor profile on an AppArmor host", "5.2", func(c *container.InspectResponse) { c.AppArmorProfile = "" }, nil, audit.StatusWarn},
		{"AppArmor unconfined", "5.2", func(c *container.InspectResponse) { c.AppArmorProfile = "unconfined" }, nil, audit.StatusWarn},
		{"custom AppArmor profile", "5.2", func(c *container.InspectResponse) { c.AppArmorProfile = "deployctl-web" }, nil, audit.StatusPass},
		{"host without AppArmor", "5.2", func(c *container.InspectResponse) { c.AppArmorProfile = "" }, &noAppArmor, audit.StatusInfo},
		{"AppArmor unknown", "5.2", func(c *container.InspectResponse) { c.AppArmorProfile = "" }, &noEngine, audit.StatusInfo},

		{"no SELinux label", "5.3", func(c *container.InspectResponse) { c.ProcessLabel = "" }, nil, audit.StatusWarn},
		{"SELinux labels disabled", "5.3", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, "label=disable")
		}, nil, audit.StatusWarn},
		{"engine without SELinux", "5.3", func(c *container.InspectResponse) { c.ProcessLabel = "" }, &noAppArmor, audit.StatusInfo},

		{"capabilities not dropped", "5.4", func(c *container.InspectResponse) { c.HostConfig.CapDrop = nil }, nil, audit.StatusWarn},
		{"only some dropped", "5.4", func(c *container.InspectResponse) { c.HostConfig.CapDrop = []string{"NET_RAW"} }, nil, audit.StatusWarn},
		{"capability added", "5.4", func(c *container.InspectResponse) { c.HostConfig.CapAdd = []string{"NET_ADMIN"} }, nil, audit.StatusWarn},
		{"all in lower case", "5.4", func(c *container.InspectResponse) { c.HostConfig.CapDrop = []string{"all"} }, nil, audit.StatusPass},
		{"privileged has every capability", "5.4", func(c *container.InspectResponse) { c.HostConfig.Privileged = true }, nil, audit.StatusWarn},

		{"privileged", "5.5", func(c *container.InspectResponse) { c.HostConfig.Privileged = true }, nil, audit.StatusWarn},

		{"/etc mounted", "5.6", func(c *container.InspectResponse) {
			c.Mounts = append(c.Mounts, container.MountPoint{Type: mount.TypeBind, Source: "/etc", Destination: "/host-etc"})
		}, nil, audit.StatusWarn},
		{"/proc in Binds only", "5.6", func(c *container.InspectResponse) { c.HostConfig.Binds = []string{"/proc:/host-proc:ro"} }, nil, audit.StatusWarn},
		{"/usr/lib in HostConfig.Mounts", "5.6", func(c *container.InspectResponse) {
			c.HostConfig.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/usr/lib", Target: "/l"}}
		}, nil, audit.StatusWarn},
		{"host root", "5.6", func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/", Destination: "/host"}}
		}, nil, audit.StatusWarn},
		{"named volume", "5.6", func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeVolume, Name: "etc", Source: "/var/lib/docker/volumes/etc/_data", Destination: "/etc/app"}}
		}, nil, audit.StatusPass},

		{"sshd as main process", "5.7", func(c *container.InspectResponse) { c.Path = "/usr/sbin/sshd" }, nil, audit.StatusWarn},

		{"host port 80", "5.8", func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "80"}}}
		}, nil, audit.StatusWarn},
		{"host port range into the privileged ones", "5.8", func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "1000-1100"}}}
		}, nil, audit.StatusWarn},
		{"unreadable host port", "5.8", func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "eighty"}}}
		}, nil, audit.StatusWarn},
		{"ephemeral host port", "5.8", func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = nat.PortMap{"80/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}}
		}, nil, audit.StatusPass},

		{"nothing published", "5.9", func(c *container.InspectResponse) { c.HostConfig.PortBindings = nil }, nil, audit.StatusPass},

		{"host network", "5.10", func(c *container.InspectResponse) { c.HostConfig.NetworkMode = "host" }, nil, audit.StatusWarn},

		{"no memory limit", "5.11", func(c *container.InspectResponse) { c.HostConfig.Memory = 0 }, nil, audit.StatusWarn},

		{"no CPU shares", "5.12", func(c *container.InspectResponse) { c.HostConfig.CPUShares = 0 }, nil, audit.StatusWarn},
		{"the engine's default CPU shares", "5.12", func(c *container.InspectResponse) { c.HostConfig.CPUShares = 1024 }, nil, audit.StatusWarn},
		{"one CPU's shares, nudged", "5.12", func(c *container.InspectResponse) { c.HostConfig.CPUShares = 1023 }, nil, audit.StatusPass},

		{"writable root", "5.13", func(c *container.InspectResponse) { c.HostConfig.ReadonlyRootfs = false }, nil, audit.StatusWarn},

		{"no host IP", "5.14", func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostPort: "18080"}}}
		}, nil, audit.StatusWarn},
		{"0.0.0.0", "5.14", func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "0.0.0.0", HostPort: "18080"}}}
		}, nil, audit.StatusWarn},
		{"::", "5.14", func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "::", HostPort: "18080"}}}
		}, nil, audit.StatusWarn},
		{"nothing published binds nothing", "5.14", func(c *container.InspectResponse) { c.HostConfig.PortBindings = nil }, nil, audit.StatusPass},

		{"restart always", "5.15", func(c *container.InspectResponse) {
			c.HostConfig.RestartPolicy = container.RestartPolicy{Name: "always"}
		}, nil, audit.StatusWarn},
		{"on-failure unbounded", "5.15", func(c *container.InspectResponse) { c.HostConfig.RestartPolicy.MaximumRetryCount = 0 }, nil, audit.StatusWarn},
		{"on-failure 10", "5.15", func(c *container.InspectResponse) { c.HostConfig.RestartPolicy.MaximumRetryCount = 10 }, nil, audit.StatusWarn},
		{"on-failure 3", "5.15", func(c *container.InspectResponse) { c.HostConfig.RestartPolicy.MaximumRetryCount = 3 }, nil, audit.StatusPass},
		{"no restart", "5.15", func(c *container.InspectResponse) { c.HostConfig.RestartPolicy = container.RestartPolicy{Name: "no"} }, nil, audit.StatusWarn},

		{"host PID", "5.16", func(c *container.InspectResponse) { c.HostConfig.PidMode = "host" }, nil, audit.StatusWarn},
		{"host IPC", "5.17", func(c *container.InspectResponse) { c.HostConfig.IpcMode = "host" }, nil, audit.StatusWarn},

		{"a device", "5.18", func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"}}
		}, nil, audit.StatusWarn},
		{"a device cgroup rule", "5.18", func(c *container.InspectResponse) { c.HostConfig.DeviceCgroupRules = []string{"c 10:229 rwm"} }, nil, audit.StatusWarn},
		{"a GPU request", "5.18", func(c *container.InspectResponse) {
			c.HostConfig.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", Count: -1}}
		}, nil, audit.StatusWarn},
		{"privileged has every device", "5.18", func(c *container.InspectResponse) { c.HostConfig.Privileged = true }, nil, audit.StatusWarn},

		{"ulimits set", "5.19", func(c *container.InspectResponse) {
			c.HostConfig.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}
		}, nil, audit.StatusInfo},

		{"rshared mount", "5.20", func(c *container.InspectResponse) { c.Mounts[0].Propagation = mount.PropagationRShared }, nil, audit.StatusWarn},
		{"shared in Binds", "5.20", func(c *container.InspectResponse) { c.HostConfig.Binds = []string{"/srv/x:/x:ro,shared"} }, nil, audit.StatusWarn},
		{"rslave mount", "5.20", func(c *container.InspectResponse) { c.Mounts[0].Propagation = mount.PropagationRSlave }, nil, audit.StatusPass},

		{"host UTS", "5.21", func(c *container.InspectResponse) { c.HostConfig.UTSMode = "host" }, nil, audit.StatusWarn},

		{"seccomp=unconfined", "5.22", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, "seccomp=unconfined")
		}, nil, audit.StatusWarn},
		{"seccomp:unconfined", "5.22", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, "seccomp:unconfined")
		}, nil, audit.StatusWarn},
		{"privileged has no seccomp", "5.22", func(c *container.InspectResponse) { c.HostConfig.Privileged = true }, nil, audit.StatusWarn},
		{"engine without seccomp", "5.22", nil, &audit.EngineInfo{Reported: true, AppArmor: true, SwarmState: "inactive"}, audit.StatusWarn},
		{"custom profile", "5.22", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, `seccomp={"defaultAction":"SCMP_ACT_ERRNO"}`)
		}, nil, audit.StatusPass},
		// Issue 16 finding 5: a profile that allows by default is as good
		// as no profile.
		{"custom profile allowing by default", "5.22", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, `seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["not_a_syscall"],"action":"SCMP_ACT_ERRNO"}]}`)
		}, nil, audit.StatusWarn},
		{"custom profile allowing keyctl", "5.22", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, `seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","keyctl"],"action":"SCMP_ACT_ALLOW"}]}`)
		}, nil, audit.StatusWarn},
		{"custom profile that is not JSON", "5.22", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, `seccomp=/etc/profile.json`)
		}, nil, audit.StatusWarn},
		{"unconfined then a profile: the last wins", "5.22", func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, "seccomp=unconfined", `seccomp={"defaultAction":"SCMP_ACT_ERRNO"}`)
		}, nil, audit.StatusPass},

		{"exec sessions", "5.23", func(c *container.InspectResponse) { c.ExecIDs = []string{"abc"} }, nil, audit.StatusInfo},
		{"exec sessions", "5.24", func(c *container.InspectResponse) { c.ExecIDs = []string{"abc"} }, nil, audit.StatusInfo},

		{"cgroup parent", "5.25", func(c *container.InspectResponse) { c.HostConfig.CgroupParent = "/custom" }, nil, audit.StatusWarn},

		{"no no-new-privileges", "5.26", func(c *container.InspectResponse) { c.HostConfig.SecurityOpt = []string{"apparmor=docker-default"} }, nil, audit.StatusWarn},
		{"no-new-privileges:false", "5.26", func(c *container.InspectResponse) { c.HostConfig.SecurityOpt = []string{"no-new-privileges:false"} }, nil, audit.StatusWarn},
		{"no-new-privileges=true", "5.26", func(c *container.InspectResponse) { c.HostConfig.SecurityOpt = []string{"no-new-privileges=true"} }, nil, audit.StatusPass},

		{"agent probes over HTTP", "5.27", func(c *container.InspectResponse) {
			c.Config.Healthcheck = nil
			c.Config.Labels[audit.LabelProbe] = "http"
		}, nil, audit.StatusInfo},
		{"no check at all", "5.27", func(c *container.InspectResponse) {
			c.Config.Healthcheck = nil
			c.Config.Labels[audit.LabelProbe] = "none"
		}, nil, audit.StatusWarn},
		{"HEALTHCHECK NONE", "5.27", func(c *container.InspectResponse) {
			c.Config.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
			delete(c.Config.Labels, audit.LabelProbe)
		}, nil, audit.StatusWarn},
		{"image's own HEALTHCHECK", "5.27", func(c *container.InspectResponse) {
			c.Config.Healthcheck = &container.HealthConfig{Test: []string{"CMD-SHELL", "curl -f localhost"}}
			delete(c.Config.Labels, audit.LabelProbe)
		}, nil, audit.StatusPass},

		{"image by tag", "5.28", func(c *container.InspectResponse) { c.Config.Image = "webapp:latest" }, nil, audit.StatusInfo},

		{"no PIDs limit", "5.29", func(c *container.InspectResponse) { c.HostConfig.PidsLimit = nil }, nil, audit.StatusWarn},
		{"PIDs unlimited", "5.29", func(c *container.InspectResponse) { c.HostConfig.PidsLimit = ptr(int64(-1)) }, nil, audit.StatusWarn},
		{"PIDs zero", "5.29", func(c *container.InspectResponse) { c.HostConfig.PidsLimit = ptr(int64(0)) }, nil, audit.StatusWarn},

		{"default bridge", "5.30", func(c *container.InspectResponse) { c.HostConfig.NetworkMode = "bridge" }, nil, audit.StatusWarn},
		{"default network mode", "5.30", func(c *container.InspectResponse) { c.HostConfig.NetworkMode = "default" }, nil, audit.StatusWarn},
		{"connected to bridge afterwards", "5.30", func(c *container.InspectResponse) {
			c.NetworkSettings.Networks["bridge"] = &network.EndpointSettings{}
		}, nil, audit.StatusWarn},

		{"host user namespace", "5.31", func(c *container.InspectResponse) { c.HostConfig.UsernsMode = "host" }, nil, audit.StatusWarn},

		{"docker.sock", "5.32", func(c *container.InspectResponse) {
			c.Mounts = append(c.Mounts, container.MountPoint{Type: mount.TypeBind, Source: "/var/run/docker.sock", Destination: "/var/run/docker.sock"})
		}, nil, audit.StatusWarn},
		{"/run", "5.32", func(c *container.InspectResponse) { c.HostConfig.Binds = []string{"/run:/host-run:ro"} }, nil, audit.StatusWarn},
	}
	for _, tt := range tests {
		t.Run(tt.id+" "+tt.name, func(t *testing.T) {
			c := hardenedInspect()
			if tt.change != nil {
				tt.change(&c)
			}
			engine := fullEngine()
			if tt.engine != nil {
				engine = *tt.engine
			}
			r := resultByID(t, audit.Checks(c, engine), tt.id)
			if r.Status != tt.want {
				t.Errorf("%s %s: %s (%s = %s), want %s", r.ID, r.Title, r.Status, r.Field, r.Value, tt.want)
			}
			if r.Status == audit.StatusWarn && strings.TrimSpace(r.Value) == "" {
				t.Errorf("%s warns without saying what it read", r.ID)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// 5.22 judges a custom profile for the capabilities the engine gave the
// container, as the policy does at apply time: mount is Docker's default
// with CAP_SYS_ADMIN, weaker without it; the value names the syscall.
func TestSeccompProfileJudgedForTheContainersCapabilities(t *testing.T) {
	mount := `seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","mount"],"action":"SCMP_ACT_ALLOW"}]}`
	result := func(capAdd ...string) audit.Result {
		c := hardenedInspect()
		c.HostConfig.CapAdd = capAdd
		c.HostConfig.SecurityOpt = append(c.HostConfig.SecurityOpt, mount)
		for _, r := range audit.Checks(c, fullEngine()) {
			if r.ID == "5.22" {
				return r
			}
		}
		t.Fatal("no 5.22 result")
		return audit.Result{}
	}
	if r := result("SYS_ADMIN"); r.Status != audit.StatusPass || !strings.Contains(r.Value, "at least as strict") {
		t.Errorf("with CAP_SYS_ADMIN: %+v", r)
	}
	if r := result(); r.Status != audit.StatusWarn || !strings.Contains(r.Value, "mount (allowed unconditionally; the default refuses it)") || !strings.Contains(r.Value, "capabilities none") {
		t.Errorf("without capabilities: %+v", r)
	}
}
