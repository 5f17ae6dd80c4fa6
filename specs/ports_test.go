package specs

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	tests := []struct {
		in   string
		want Port
	}{
		{"8080:80", Port{"127.0.0.1", 8080, 80, "tcp"}},
		{"8080:80/udp", Port{"127.0.0.1", 8080, 80, "udp"}},
		{"8080:80/UDP", Port{"127.0.0.1", 8080, 80, "udp"}},
		{"0.0.0.0:443:8443/tcp", Port{"0.0.0.0", 443, 8443, "tcp"}},
		{"10.1.2.3:1:65535", Port{"10.1.2.3", 1, 65535, "tcp"}},
		{"[::1]:5353:53/udp", Port{"::1", 5353, 53, "udp"}},
		{"[::]:80:80", Port{"::", 80, 80, "tcp"}},
		{"[2001:DB8::1]:80:80", Port{"2001:db8::1", 80, 80, "tcp"}},
		{" 80:80 ", Port{"127.0.0.1", 80, 80, "tcp"}},
	}
	for _, tt := range tests {
		got, err := ParsePort(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePort(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParsePortRefuses(t *testing.T) {
	tests := []struct{ in, message string }{
		{"", "not a port mapping"},
		{"80", "host and the container port"},
		{"a:80", `host port "a"`},
		{"80:b", `container port "b"`},
		{"0:80", "1 to 65535"},
		{"80:0", "1 to 65535"},
		{"65536:80", "1 to 65535"},
		{"-1:80", "1 to 65535"},
		{"80-81:80-81", "ranges"},
		{":80:80", "empty host IP"},
		{"localhost:80:80", "not an IP address"},
		{"1.2.3:80:80", "not an IP address"},
		{"::1:80:80", "brackets"},
		{"[::1]80:80", "not a port mapping"},
		{"[::1:80:80", "not a port mapping"},
		{"[::1]:80", "not a port mapping"},
		{"[fe80::1%eth0]:80:80", "zone"},
		{"80:80/sctp", "not tcp or udp"},
		{"80:80/", "not tcp or udp"},
		{"80:80/tcp/udp", "not tcp or udp"},
	}
	for _, tt := range tests {
		got, err := ParsePort(tt.in)
		if err == nil {
			t.Errorf("ParsePort(%q) = %+v, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.message) {
			t.Errorf("ParsePort(%q) error %q, want it to contain %q", tt.in, err, tt.message)
		}
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ParsePort(%q) error does not match ErrInvalidSpec", tt.in)
		}
	}
}

func TestPortStringRoundTrips(t *testing.T) {
	for _, in := range []string{"127.0.0.1:8080:80/tcp", "[::1]:5353:53/udp", "0.0.0.0:1:2/tcp"} {
		p, err := ParsePort(in)
		if err != nil {
			t.Fatalf("ParsePort(%q): %v", in, err)
		}
		if got := p.String(); got != in {
			t.Errorf("ParsePort(%q).String() = %q", in, got)
		}
	}
}
