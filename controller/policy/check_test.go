package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/specs"
)

// baseSpecYAML is a hardened spec that the default policy allows; cases
// append fields to it.
const baseSpecYAML = "service: web\nimage: registry.example.com/team/web:1.4.2\n"

// Seccomp profiles, in Docker's format.
const (
	confiningProfile  = `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", "exit_group", "execve"], "action": "SCMP_ACT_ALLOW"}]}`
	permissiveProfile = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}`
	malformedProfile  = `{"defaultAction": "SCMP_ACT_ERRNO", "syscall": []}`
	// reviewProfile is issue 16 finding 5: allow everything, refuse a
	// syscall that does not exist.
	reviewProfile = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]}`
	// allowByDefaultProfile is the same with a real syscall refused.
	allowByDefaultProfile = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}`
	keyctlProfile         = `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", "exit_group", "execve", "keyctl"], "action": "SCMP_ACT_ALLOW"}]}`
	cloneProfile          = `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", "exit_group", "execve", "clone"], "action": "SCMP_ACT_ALLOW"}]}`
	mountProfile          = `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", "exit_group", "execve", "mount"], "action": "SCMP_ACT_ALLOW"}]}`
)

func mustSpec(t *testing.T, yaml string) *specs.Spec {
	t.Helper()
	s, err := specs.Parse([]byte(baseSpecYAML + yaml))
	if err != nil {
		t.Fatalf("specs.Parse:\n%s\n%v", yaml, err)
	}
	return s
}

// permissive allows every exception a policy can allow, so that only the
// fixed rules are left.
func permissive() *Policy {
	return &Policy{
		AllowPrivileged: true, AllowCapabilities: []string{specs.CapAll},
		AllowHostNetwork: true, AllowHostPID: true, AllowHostIPC: true, AllowHostUserns: true,
		AllowRoot: true, AllowRootGroup: true, AllowNewPrivileges: true, AllowSeccompUnconfined: true, AllowAppArmorUnconfined: true, AllowPrivilegedPorts: true,
		VolumePrefixes: []string{"/srv", "/var", "/etc/ssl", "/home"},
	}
}

func withProfile(profile string) func(*specs.Spec) {
	return func(s *specs.Spec) { s.Security.SeccompProfile = []byte(profile) }
}

func describeViolations(vs []Violation) string {
	if len(vs) == 0 {
		return "(none)"
	}
	lines := make([]string, len(vs))
	for i, v := range vs {
		lines[i] = v.String()
	}
	return strings.Join(lines, "\n")
}

// TestCheckEachRule checks every rule both ways: the default policy
// refuses the spec with exactly one violation naming the field and the
// rule, and the policy changed as the Fix says allows it.
func TestCheckEachRule(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		mutate func(*specs.Spec) // after parsing, for what the CLI fills in
		field  string
		rule   string
		reason string
		allow  func(*Policy)
	}{
		{"privileged", "security: {privileged: true}", nil, "security.privileged", RuleAllowPrivileged, "every capability and device",
			func(p *Policy) { p.AllowPrivileged = true }},
		{"added capability", "security: {cap_add: [NET_BIND_SERVICE, SYS_ADMIN]}", nil, "security.cap_add[1]", RuleAllowCapabilities, "SYS_ADMIN is not in the policy's allowed capabilities (NET_BIND_SERVICE)",
			func(p *Policy) { p.AllowCapabilities = append(p.AllowCapabilities, "SYS_ADMIN") }},
		{"added capability allowed by ALL", "security: {cap_add: [NET_ADMIN]}", nil, "security.cap_add[0]", RuleAllowCapabilities, "NET_ADMIN",
			func(p *Policy) { p.AllowCapabilities = []string{"ALL"} }},
		{"allow list written in lower case", "security: {cap_add: [CHOWN]}", nil, "security.cap_add[0]", RuleAllowCapabilities, "CHOWN",
			func(p *Policy) { p.AllowCapabilities = []string{"cap_chown"} }},
		{"engine defaults kept", "security: {cap_drop: []}", nil, "security.cap_drop", RuleAllowCapabilities, "keeps the engine's default capabilities CHOWN, DAC_OVERRIDE",
			func(p *Policy) { p.AllowCapabilities = dockerDefaultCapabilities() }},
		{"some engine defaults kept", "security: {cap_drop: [NET_RAW, CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, SETGID, SETUID, SETFCAP, SETPCAP, SYS_CHROOT, KILL]}", nil,
			"security.cap_drop", RuleAllowCapabilities, "default capabilities AUDIT_WRITE, which",
			func(p *Policy) { p.AllowCapabilities = append(p.AllowCapabilities, "AUDIT_WRITE") }},
		{"host network", "network_mode: host", nil, "network_mode", RuleAllowHostNetwork, "every interface and port",
			func(p *Policy) { p.AllowHostNetwork = true }},
		{"host pid", "pid: host", nil, "pid", RuleAllowHostPID, "every process of the host",
			func(p *Policy) { p.AllowHostPID = true }},
		{"host ipc", "ipc: host", nil, "ipc", RuleAllowHostIPC, "shared memory",
			func(p *Policy) { p.AllowHostIPC = true }},
		{"host userns", "userns_mode: host", nil, "userns_mode", RuleAllowHostUserns, "root on the host",
			func(p *Policy) { p.AllowHostUserns = true }},
		{"root", "security: {user: root, allow_root: true}", nil, "security.allow_root", RuleAllowRoot, "run as root",
			func(p *Policy) { p.AllowRoot = true }},
		{"allow_root with a non-root user", "security: {user: '10001', allow_root: true}", nil, "security.allow_root", RuleAllowRoot, "run as root",
			func(p *Policy) { p.AllowRoot = true }},
		{"new privileges", "security: {no_new_privileges: false}", nil, "security.no_new_privileges", RuleAllowNewPrivileges, "setuid-root",
			func(p *Policy) { p.AllowNewPrivileges = true }},
		{"root group", "security: {user: '10001:0', allow_root_group: true}", nil, "security.allow_root_group", RuleAllowRootGroup, "root group (gid 0)",
			func(p *Policy) { p.AllowRootGroup = true }},
		{"root group from the image", "security: {allow_root_group: true}", nil, "security.allow_root_group", RuleAllowRootGroup, "root group (gid 0)",
			func(p *Policy) { p.AllowRootGroup = true }},
		{"writable root file system under refuse", "security: {read_only: false}", func(s *specs.Spec) {}, "security.read_only", RuleWritableRootfs, "root file system is writable",
			func(p *Policy) { p.WritableRootfs = LevelWarn }},
		{"seccomp unconfined", "security: {seccomp: unconfined}", nil, "security.seccomp", RuleAllowSeccompUnconfined, "without a seccomp profile",
			func(p *Policy) { p.AllowSeccompUnconfined = true }},
		{"apparmor unconfined", "security: {apparmor: unconfined}", nil, "security.apparmor", RuleAllowAppArmorUnconfined, "without an AppArmor profile",
			func(p *Policy) { p.AllowAppArmorUnconfined = true }},
		{"privileged host port", "ports: [\"80:8080\"]", nil, "ports[0]", RuleAllowPrivilegedPorts, "host port 80 is a privileged port",
			func(p *Policy) { p.AllowPrivilegedPorts = true }},
		{"highest privileged host port", "ports: [\"8080:8080\", \"1023:53/udp\"]", nil, "ports[1]", RuleAllowPrivilegedPorts, "host port 1023",
			func(p *Policy) { p.AllowPrivilegedPorts = true }},
		{"volume outside every prefix", "volumes: [/srv/web:/data]", nil, "volumes[0]", RuleVolumePrefixes, "host path /srv/web is not under the policy's volume prefixes (none)",
			func(p *Policy) { p.VolumePrefixes = []string{"/srv"} }},
		{"volume at the prefix itself", "volumes: [/srv:/data:ro]", nil, "volumes[0]", RuleVolumePrefixes, "/srv",
			func(p *Policy) { p.VolumePrefixes = []string{"/srv"} }},
		{"volume under a system directory", "volumes: [/etc/ssl/certs:/certs:ro]", nil, "volumes[0]", RuleVolumePrefixes, "/etc/ssl/certs",
			func(p *Policy) { p.VolumePrefixes = []string{"/etc/ssl"} }},
		{"registry not listed", "", func(s *specs.Spec) { s.Image = "other.example.com/web:1" }, "image", RuleRegistries, "registry other.example.com is not one the policy allows (registry.example.com)",
			func(p *Policy) { p.Registries = append(p.Registries, "other.example.com") }},
		{"registry port differs", "", func(s *specs.Spec) { s.Image = "registry.example.com:5000/web:1" }, "image", RuleRegistries, "registry.example.com:5000",
			func(p *Policy) { p.Registries = []string{"registry.example.com:5000"} }},
		{"docker hub as docker.io", "", func(s *specs.Spec) { s.Image = "nginx:1.25" }, "image", RuleRegistries, "index.docker.io",
			func(p *Policy) { p.Registries = []string{"docker.io"} }},
		{"docker hub as index.docker.io", "", func(s *specs.Spec) { s.Image = "docker.io/library/nginx:1.25" }, "image", RuleRegistries, "index.docker.io",
			func(p *Policy) { p.Registries = []string{"index.docker.io"} }},
		{"registry host case", "", func(s *specs.Spec) { s.Image = "other.example.com/web:1" }, "image", RuleRegistries, "other.example.com",
			func(p *Policy) { p.Registries = []string{"Other.Example.COM"} }},
		{"seccomp profile without content", "security: {seccomp: ./web.json}", nil, "security.seccomp", RuleSeccompProfile, `names the profile file "./web.json" but carries no profile`,
			nil},
		{"malformed seccomp profile", "security: {seccomp: ./web.json}", withProfile(malformedProfile), "security.seccomp", RuleSeccompProfile, "profile ./web.json: invalid seccomp profile",
			nil},
		{"permissive seccomp profile", "security: {seccomp: ./web.json}", withProfile(permissiveProfile), "security.seccomp", RuleSeccompProfile, "write security.seccomp: unconfined",
			nil},
		{"seccomp profile refusing a made-up syscall", "security: {seccomp: ./web.json}", withProfile(reviewProfile), "security.seccomp", RuleSeccompProfile, `"not_a_syscall"`,
			nil},
		{"seccomp profile allowing by default", "security: {seccomp: ./web.json}", withProfile(allowByDefaultProfile), "security.seccomp", RuleAllowSeccompSyscalls,
			"profile ./web.json is weaker than Docker's default seccomp profile for this container (capabilities: none): defaultAction SCMP_ACT_ALLOW lets every syscall the profile does not list run",
			func(p *Policy) { p.AllowSeccompSyscalls = []string{"ALL"} }},
		{"seccomp profile allowing keyctl", "security: {seccomp: ./web.json}", withProfile(keyctlProfile), "security.seccomp", RuleAllowSeccompSyscalls,
			"it allows 1 syscall(s) Docker's default refuses: keyctl (allowed unconditionally; the default refuses it)",
			func(p *Policy) { p.AllowSeccompSyscalls = []string{"keyctl"} }},
		{"seccomp profile allowing clone with namespace flags", "security: {seccomp: ./web.json}", withProfile(cloneProfile), "security.seccomp", RuleAllowSeccompSyscalls,
			"clone (allowed unconditionally; the default allows it only when arg0 & 0x7e020000 == 0x0",
			func(p *Policy) { p.AllowSeccompSyscalls = []string{"clone", "keyctl"} }},
		{"seccomp profile allowing mount without CAP_SYS_ADMIN", "security: {seccomp: ./web.json, cap_add: [NET_BIND_SERVICE]}", withProfile(mountProfile), "security.seccomp", RuleAllowSeccompSyscalls,
			"(capabilities: CAP_NET_BIND_SERVICE): it allows 1 syscall(s) Docker's default refuses: mount (allowed unconditionally; the default refuses it)",
			func(p *Policy) { p.AllowSeccompSyscalls = []string{"ALL"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSpec(t, tt.yaml)
			if tt.mutate != nil {
				tt.mutate(s)
			}
			refusing := Default()
			if tt.rule == RuleRegistries {
				refusing.Registries = []string{"registry.example.com"}
			}
			if tt.rule == RuleWritableRootfs {
				refusing.WritableRootfs = LevelRefuse
			}
			got := Check(refusing, s, "")
			if len(got) != 1 {
				t.Fatalf("Check(default) gave %d violations, want 1:\n%s", len(got), describeViolations(got))
			}
			v := got[0]
			if v.Field != tt.field || v.Rule != tt.rule || !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("violation %s\nwant field %q, rule %q, reason containing %q", v, tt.field, tt.rule, tt.reason)
			}
			if v.Fix == "" {
				t.Errorf("violation %s has no fix", v)
			}
			if tt.allow == nil {
				// A fixed rule: even the most permissive policy refuses.
				if got := Check(permissive(), s, ""); len(got) != 1 || got[0].Rule != tt.rule {
					t.Errorf("Check(permissive) = %s, want the %s violation alone", describeViolations(got), tt.rule)
				}
				return
			}
			if !strings.Contains(v.Fix, tt.rule) || !strings.Contains(v.Fix, "deployctl policy set") {
				t.Errorf("fix %q does not say how to change %s in the policy", v.Fix, tt.rule)
			}
			allowing := refusing.Clone()
			tt.allow(allowing)
			if err := allowing.Validate(); err != nil {
				t.Fatalf("the allowing policy is invalid: %v", err)
			}
			if got := Check(allowing, s, ""); len(got) != 0 {
				t.Errorf("Check(allowing) = %s, want no violation", describeViolations(got))
			}
		})
	}
}

// What the default policy allows without an exception.
func TestCheckDefaultAllowsHardenedSpecs(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		mutate func(*specs.Spec)
	}{
		{"minimal", "", nil},
		{"NET_BIND_SERVICE", "security: {cap_add: [cap_net_bind_service]}", nil},
		{"every engine default dropped one by one", "security: {cap_drop: [CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, SYS_CHROOT, KILL, AUDIT_WRITE]}", nil},
		{"unprivileged host port", "ports: [\"1024:80\", \"0.0.0.0:8443:443\"]", nil},
		{"private ipc", "ipc: private", nil},
		{"no network", "network_mode: none", nil},
		{"bridge network", "network_mode: bridge", nil},
		{"strict seccomp", "security: {seccomp: strict}", nil},
		{"default seccomp", "security: {seccomp: default}", nil},
		{"confining seccomp file", "security: {seccomp: /etc/deployctl/web.json}", withProfile(confiningProfile)},
		{"named apparmor profile", "security: {apparmor: docker-default}", nil},
		{"non-root user", "security: {user: '10001:10001'}", nil},
		{"any registry", "", func(s *specs.Spec) { s.Image = "anything.example.org:444/a/b/c:1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSpec(t, tt.yaml)
			if tt.mutate != nil {
				tt.mutate(s)
			}
			if got := Check(Default(), s, ""); len(got) != 0 {
				t.Errorf("Check(default) = %s, want no violation", describeViolations(got))
			}
		})
	}
}

// Host paths that no policy can allow.
func TestCheckAlwaysRefusesProtectedHostPaths(t *testing.T) {
	refused := []string{
		"/", "/etc", "/usr", "/lib", "/proc", "/proc/1/root", "/sys", "/sys/fs/cgroup", "/dev", "/dev/sda",
		"/boot", "/boot/grub", "/var/run/docker.sock", "/run/docker.sock", "/srv/docker.sock", "/home/u/Docker.Sock",
		"/run", "/var/run",
	}
	for _, hostPath := range refused {
		s := mustSpec(t, "")
		s.Volumes = []specs.Volume{{HostPath: hostPath, ContainerPath: "/mnt"}}
		p := permissive()
		p.VolumePrefixes = append(p.VolumePrefixes, "/") // even a Go policy Validate would refuse
		got := Check(p, s, "")
		if len(got) != 1 || got[0].Rule != RuleProtectedHostPath || got[0].Field != "volumes[0]" {
			t.Errorf("host path %s: Check = %s, want one %s violation", hostPath, describeViolations(got), RuleProtectedHostPath)
		}
	}
	// What is under the system directories refused as such is the
	// policy's decision; a prefix "/" allows nothing, so is ignored.
	for _, hostPath := range []string{"/etc/ssl/certs", "/usr/share/zoneinfo", "/lib/modules", "/procfs", "/devices", "/runner"} {
		s := mustSpec(t, "")
		s.Volumes = []specs.Volume{{HostPath: hostPath, ContainerPath: "/mnt"}}
		p := permissive()
		p.VolumePrefixes = []string{"/"}
		if got := Check(p, s, ""); len(got) != 1 || got[0].Rule != RuleVolumePrefixes {
			t.Errorf("host path %s with prefix /: Check = %s, want one %s violation", hostPath, describeViolations(got), RuleVolumePrefixes)
		}
		p.VolumePrefixes = []string{hostPath}
		if got := Check(p, s, ""); len(got) != 0 {
			t.Errorf("host path %s with itself as a prefix: Check = %s, want none", hostPath, describeViolations(got))
		}
	}
}

// Prefixes match whole path elements, and an unclean path from a Go spec
// is compared cleaned.
func TestCheckVolumePrefixBoundaries(t *testing.T) {
	p := Default()
	p.VolumePrefixes = []string{"/srv/data"}
	tests := []struct {
		hostPath string
		allowed  bool
	}{
		{"/srv/data", true},
		{"/srv/data/web", true},
		{"/srv/database", false},
		{"/srv", false},
		{"/srv/data/../../etc", false},
		{"/srv/data/./web/", true},
	}
	for _, tt := range tests {
		s := mustSpec(t, "")
		s.Volumes = []specs.Volume{{HostPath: tt.hostPath, ContainerPath: "/mnt"}}
		got := Check(p, s, "")
		if allowed := len(got) == 0; allowed != tt.allowed {
			t.Errorf("host path %s under prefix /srv/data: allowed %v, want %v (%s)", tt.hostPath, allowed, tt.allowed, describeViolations(got))
		}
	}
}

func TestCheckRegistryArgument(t *testing.T) {
	p := Default()
	p.Registries = []string{"127.0.0.1:5000"}
	s := mustSpec(t, "")
	// The caller's registry wins over the image text: it is what the
	// image was resolved against.
	if got := Check(p, s, "127.0.0.1:5000"); len(got) != 0 {
		t.Errorf("Check with registry 127.0.0.1:5000 = %s, want none", describeViolations(got))
	}
	got := Check(p, s, "")
	if len(got) != 1 || got[0].Rule != RuleRegistries || !strings.Contains(got[0].Reason, "registry.example.com") {
		t.Errorf("Check with the registry of the image = %s, want one registries violation", describeViolations(got))
	}
	s.Image = "Not An Image"
	if got := Check(p, s, ""); len(got) != 1 || !strings.Contains(got[0].Reason, "cannot tell the registry") {
		t.Errorf("Check with a malformed image = %s, want one violation saying so", describeViolations(got))
	}
}

// A profile is judged for the capabilities the container gets: mount is
// Docker's default for a container with CAP_SYS_ADMIN, and so is an
// unconditional clone; without it, both are weaker.
func TestCheckSeccompProfileForTheContainersCapabilities(t *testing.T) {
	sysAdmin := Default()
	sysAdmin.AllowCapabilities = append(sysAdmin.AllowCapabilities, "SYS_ADMIN")
	for _, profile := range []string{mountProfile, cloneProfile} {
		s := mustSpec(t, "security: {seccomp: ./web.json, cap_add: [SYS_ADMIN]}")
		s.Security.SeccompProfile = []byte(profile)
		if got := Check(sysAdmin, s, ""); len(got) != 0 {
			t.Errorf("with CAP_SYS_ADMIN: %s", describeViolations(got))
		}
		s = mustSpec(t, "security: {seccomp: ./web.json}")
		s.Security.SeccompProfile = []byte(profile)
		if got := Check(sysAdmin, s, ""); len(got) != 1 || got[0].Rule != RuleAllowSeccompSyscalls {
			t.Errorf("without CAP_SYS_ADMIN: %s", describeViolations(got))
		}
	}
	// cap_drop: [] reads as "drop nothing" in the spec while the deployer
	// sends ALL: the profile is judged for both sets. keyctl allowed only
	// with CAP_CHOWN (an engine default) is weaker under the first.
	keyctlIfChown := `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["keyctl"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_CHOWN"]}}]}`
	keepAll := Default()
	keepAll.AllowCapabilities = []string{"ALL"}
	s := mustSpec(t, "security: {seccomp: ./web.json, cap_drop: []}")
	s.Security.SeccompProfile = []byte(keyctlIfChown)
	if got := Check(keepAll, s, ""); len(got) != 1 || !strings.Contains(got[0].Reason, "keyctl (allowed unconditionally; the default refuses it)") {
		t.Errorf("cap_drop: []: %s", describeViolations(got))
	}
	s = mustSpec(t, "security: {seccomp: ./web.json}")
	s.Security.SeccompProfile = []byte(keyctlIfChown)
	if got := Check(keepAll, s, ""); len(got) != 0 {
		t.Errorf("cap_drop ALL, no CAP_CHOWN: %s", describeViolations(got))
	}
	// A policy naming other syscalls does not let these through, and
	// the fix names exactly what is missing.
	other := Default()
	other.AllowSeccompSyscalls = []string{"keyctl"}
	s = mustSpec(t, "security: {seccomp: ./web.json}")
	s.Security.SeccompProfile = []byte(cloneProfile)
	got := Check(other, s, "")
	if len(got) != 1 || !strings.Contains(got[0].Fix, "add clone to allow_seccomp_syscalls") {
		t.Errorf("policy allowing keyctl: %s", describeViolations(got))
	}
}

// A permissive seccomp profile is refused even where unconfined
// containers are allowed: turning seccomp off must read "unconfined".
func TestCheckPermissiveProfileWhenUnconfinedIsAllowed(t *testing.T) {
	s := mustSpec(t, "security: {seccomp: ./web.json}")
	s.Security.SeccompProfile = []byte(permissiveProfile)
	got := Check(permissive(), s, "")
	if len(got) != 1 || got[0].Rule != RuleSeccompProfile || !strings.Contains(got[0].Fix, "unconfined") {
		t.Errorf("Check = %s, want one %s violation pointing at unconfined", describeViolations(got), RuleSeccompProfile)
	}
}

func TestCheckReportsEveryViolation(t *testing.T) {
	s := mustSpec(t, `ports: ["80:80", "443:443"]
volumes: [/etc:/host-etc, /srv/web:/web]
security:
  user: root
  allow_root: true
  privileged: true
  cap_add: [SYS_ADMIN]
  seccomp: unconfined
  apparmor: unconfined
pid: host
ipc: host
userns_mode: host
`)
	p := Default()
	p.Registries = []string{"docker.io"}
	got := Check(p, s, "")
	want := []struct{ field, rule string }{
		{"image", RuleRegistries},
		{"ports[0]", RuleAllowPrivilegedPorts},
		{"ports[1]", RuleAllowPrivilegedPorts},
		{"volumes[0]", RuleProtectedHostPath},
		{"volumes[1]", RuleVolumePrefixes},
		{"security.privileged", RuleAllowPrivileged},
		{"security.allow_root", RuleAllowRoot},
		{"security.cap_add[0]", RuleAllowCapabilities},
		{"security.seccomp", RuleAllowSeccompUnconfined},
		{"security.apparmor", RuleAllowAppArmorUnconfined},
		{"pid", RuleAllowHostPID},
		{"ipc", RuleAllowHostIPC},
		{"userns_mode", RuleAllowHostUserns},
	}
	if len(got) != len(want) {
		t.Fatalf("Check gave %d violations, want %d:\n%s", len(got), len(want), describeViolations(got))
	}
	for i, w := range want {
		if got[i].Field != w.field || got[i].Rule != w.rule {
			t.Errorf("violation %d = %s, want field %q rule %q", i, got[i], w.field, w.rule)
		}
	}

	err := Deny(got)
	var denied *DeniedError
	if !errors.Is(err, ErrDenied) || !errors.As(err, &denied) || len(denied.Violations) != len(want) {
		t.Fatalf("Deny = %v, want a *DeniedError with every violation matching ErrDenied", err)
	}
	text := err.Error()
	if !strings.HasPrefix(text, "denied by policy (13 violations):\n") {
		t.Errorf("Error() starts %q, want the count first", text[:min(len(text), 60)])
	}
	for _, v := range got {
		if !strings.Contains(text, v.String()) {
			t.Errorf("Error() does not name %s:\n%s", v, text)
		}
	}
	// With everything allowed, only the fixed rule is left.
	allowing := permissive()
	allowing.Registries = []string{"registry.example.com"}
	if got := Check(allowing, s, ""); len(got) != 1 || got[0].Field != "volumes[0]" {
		t.Errorf("Check(permissive) = %s, want the /etc volume alone", describeViolations(got))
	}
}

// cap_add: [ALL] needs ALL in the allow list, and keeping the engine's
// defaults alongside is a second violation.
func TestCheckCapAddAll(t *testing.T) {
	s := mustSpec(t, "security: {cap_drop: [], cap_add: [ALL]}")
	got := Check(Default(), s, "")
	if len(got) != 2 || got[0].Field != "security.cap_drop" || got[1].Field != "security.cap_add[0]" || !strings.Contains(got[1].Reason, "capability ALL") {
		t.Errorf("Check(default) = %s, want cap_drop and cap_add[0] refused", describeViolations(got))
	}
	p := Default()
	p.AllowCapabilities = []string{"all"}
	if got := Check(p, s, ""); len(got) != 0 {
		t.Errorf("Check(allow all) = %s, want none", describeViolations(got))
	}
}

func TestCheckNilPolicyIsTheDefault(t *testing.T) {
	s := mustSpec(t, "security: {privileged: true, cap_add: [NET_BIND_SERVICE]}")
	got := Check(nil, s, "")
	if len(got) != 1 || got[0].Rule != RuleAllowPrivileged {
		t.Errorf("Check(nil) = %s, want the default's single privileged violation", describeViolations(got))
	}
}

// The zero Policy denies even what Default allows.
func TestCheckZeroPolicyDeniesNetBindService(t *testing.T) {
	s := mustSpec(t, "security: {cap_add: [NET_BIND_SERVICE]}")
	got := Check(&Policy{}, s, "")
	if len(got) != 1 || got[0].Field != "security.cap_add[0]" || !strings.Contains(got[0].Reason, "(none)") {
		t.Errorf("Check(zero policy) = %s, want NET_BIND_SERVICE refused", describeViolations(got))
	}
}

func TestDeniedErrorText(t *testing.T) {
	v := Violation{Field: "security.privileged", Rule: RuleAllowPrivileged, Reason: "r", Fix: "f"}
	want := "denied by policy: security.privileged: r (rule: allow_privileged); fix: f"
	if got := (&DeniedError{Violations: []Violation{v}}).Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if err := Deny(nil); err != nil {
		t.Errorf("Deny(nil) = %v, want nil", err)
	}
}

func TestRegistryOf(t *testing.T) {
	tests := map[string]string{
		"nginx:1.25":                                           "index.docker.io",
		"docker.io/library/nginx:1.25":                         "index.docker.io",
		"registry.example.com/team/web:1":                      "registry.example.com",
		"127.0.0.1:5000/web@sha256:" + strings.Repeat("a", 64): "127.0.0.1:5000",
		"localhost:5000/web:1":                                 "localhost:5000",
	}
	for image, want := range tests {
		if got, err := RegistryOf(image); err != nil || got != want {
			t.Errorf("RegistryOf(%q) = %q, %v; want %q", image, got, err, want)
		}
	}
	if _, err := RegistryOf("UPPER/Case:1"); err == nil {
		t.Errorf("RegistryOf of a malformed reference succeeded")
	}
}

func TestDockerDefaultCapabilitiesAreKnown(t *testing.T) {
	for _, c := range dockerDefaultCapabilities() {
		if !slices.Contains(specs.Capabilities(), c) {
			t.Errorf("%s is not a capability specs knows", c)
		}
	}
}

// TestLevelRules checks the hardening defaults a Level rules (issue 16,
// finding 6): the default policy warns, refuse refuses with the field, the
// rule and how to change the policy, allow says nothing.
func TestLevelRules(t *testing.T) {
	tests := []struct {
		name, yaml, field, rule, reason string
		set                             func(*Policy, Level)
	}{
		{"writable root file system", "security: {read_only: false}", "security.read_only", RuleWritableRootfs, "writable",
			func(p *Policy, l Level) { p.WritableRootfs = l }},
		{"ports on 0.0.0.0", "ports: [\"127.0.0.1:8081:81\", \"0.0.0.0:8080:80\"]", "ports[1]", RulePortsOnAllInterfaces, "every interface of the host (0.0.0.0)",
			func(p *Policy, l Level) { p.PortsOnAllInterfaces = l }},
		{"ports on ::", "ports: [\"[::]:8080:80\"]", "ports[0]", RulePortsOnAllInterfaces, "every interface of the host (::)",
			func(p *Policy, l Level) { p.PortsOnAllInterfaces = l }},
		{"custom AppArmor profile", "security: {apparmor: web-complain}", "security.apparmor", RuleCustomAppArmor, "complain mode",
			func(p *Policy, l Level) { p.CustomAppArmor = l }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSpec(t, tt.yaml)
			for _, l := range []Level{"", LevelWarn} {
				p := Default()
				tt.set(p, l)
				if got := Check(p, s, ""); len(got) != 0 {
					t.Errorf("level %q: Check = %s, want no violation", l, describeViolations(got))
				}
				got := Warnings(p, s)
				if len(got) != 1 || got[0].Field != tt.field || got[0].Rule != tt.rule || !strings.Contains(got[0].Reason, tt.reason) {
					t.Fatalf("level %q: Warnings = %s, want one about %s (%s) saying %q", l, describeViolations(got), tt.field, tt.rule, tt.reason)
				}
				if !strings.Contains(got[0].Fix, tt.rule+": allow") || !strings.Contains(got[0].Fix, "deployctl policy set") {
					t.Errorf("warning fix %q does not say how to silence or refuse it", got[0].Fix)
				}
			}
			p := Default()
			tt.set(p, LevelRefuse)
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			got := Check(p, s, "")
			if len(got) != 1 || got[0].Field != tt.field || got[0].Rule != tt.rule || !strings.Contains(got[0].Fix, tt.rule+": warn or allow") {
				t.Errorf("refuse: Check = %s, want one violation of %s naming the policy change", describeViolations(got), tt.rule)
			}
			if w := Warnings(p, s); len(w) != 0 {
				t.Errorf("refuse: Warnings = %s, want none (it is a violation)", describeViolations(w))
			}
			tt.set(p, LevelAllow)
			if got, w := Check(p, s, ""), Warnings(p, s); len(got)+len(w) != 0 {
				t.Errorf("allow: Check = %s, Warnings = %s, want nothing", describeViolations(got), describeViolations(w))
			}
		})
	}
}

// TestWarningsQuietForHardenedSpecs: the defaults (read-only, loopback
// ports, docker-default) earn no warning.
func TestWarningsQuietForHardenedSpecs(t *testing.T) {
	for _, yaml := range []string{"", "ports: [\"8080:80\", \"10.0.0.5:8081:81\"]", "security: {apparmor: docker-default}", "security: {apparmor: unconfined}"} {
		if w := Warnings(nil, mustSpec(t, yaml)); len(w) != 0 {
			t.Errorf("%q: Warnings = %s, want none", yaml, describeViolations(w))
		}
	}
}
