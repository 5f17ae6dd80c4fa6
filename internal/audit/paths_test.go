package audit_test

import (
	"slices"
	"testing"

	"github.com/deployctl/deployctl/internal/audit"
)

func TestHostPathRules(t *testing.T) {
	tests := []struct {
		path              string
		sensitive, socket bool
	}{
		{"/", true, true},
		{"/etc", true, false},
		{"/etc/", true, false},
		{"/etc/passwd", true, false},
		{"/etcetera", false, false},
		{"/srv/../etc/shadow", true, false},
		{"/boot", true, false},
		{"/dev/sda", true, false},
		{"/lib/modules", true, false},
		{"/proc", true, false},
		{"/sys/fs/cgroup", true, false},
		{"/usr/bin", true, false},
		{"/var/run/docker.sock", false, true},
		{"/run/docker.sock", false, true},
		{"/home/me/.docker/run/docker.sock", false, true},
		{"/var/run", false, true},
		{"/var/run/", false, true},
		{"/run", false, true},
		{"/var", false, true},
		{"/var/run/app", false, false},
		{"/var/lib/app", false, false},
		{"/srv/data", false, false},
		{"/home/web", false, false},
		{"data", false, false},
		{"etc", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		if got := audit.IsSensitiveHostPath(tt.path); got != tt.sensitive {
			t.Errorf("IsSensitiveHostPath(%q) = %v, want %v", tt.path, got, tt.sensitive)
		}
		if got := audit.ExposesEngineSocket(tt.path); got != tt.socket {
			t.Errorf("ExposesEngineSocket(%q) = %v, want %v", tt.path, got, tt.socket)
		}
	}
	if dirs := audit.SensitiveHostDirs(); !slices.Equal(dirs, []string{"/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"}) {
		t.Errorf("SensitiveHostDirs = %v", dirs)
	}
}

func TestSplitBind(t *testing.T) {
	tests := []struct {
		bind           string
		source, target string
		options        []string
		ok             bool
	}{
		{"/srv:/data", "/srv", "/data", nil, true},
		{"/srv:/data:ro,rslave", "/srv", "/data", []string{"ro", "rslave"}, true},
		{"cache:/cache", "cache", "/cache", nil, true},
		{"/srv", "", "", nil, false},
		{":/data", "", "", nil, false},
		{"/srv:", "", "", nil, false},
		{"a:b:c:d", "", "", nil, false},
	}
	for _, tt := range tests {
		source, target, options, ok := audit.SplitBind(tt.bind)
		if source != tt.source || target != tt.target || !slices.Equal(options, tt.options) || ok != tt.ok {
			t.Errorf("SplitBind(%q) = %q, %q, %q, %v; want %q, %q, %q, %v", tt.bind, source, target, options, ok, tt.source, tt.target, tt.options, tt.ok)
		}
	}
}

func TestHasNoNewPrivileges(t *testing.T) {
	tests := []struct {
		opts []string
		want bool
	}{
		{nil, false},
		{[]string{"no-new-privileges"}, true},
		{[]string{"no-new-privileges:true"}, true},
		{[]string{"no-new-privileges=true"}, true},
		{[]string{"no-new-privileges:false"}, false},
		{[]string{"no-new-privileges", "no-new-privileges=false"}, false},
		{[]string{"apparmor=docker-default"}, false},
	}
	for _, tt := range tests {
		if got := audit.HasNoNewPrivileges(tt.opts); got != tt.want {
			t.Errorf("HasNoNewPrivileges(%q) = %v, want %v", tt.opts, got, tt.want)
		}
	}
}
