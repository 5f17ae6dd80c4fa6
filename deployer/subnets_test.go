package deployer

import (
	"net/netip"
	"strings"
	"testing"
)

func prefixes(t *testing.T, list ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestFreeSubnet(t *testing.T) {
	tests := []struct {
		name  string
		pool  string
		taken []string
		want  string // "" when the pool is full
	}{
		{"empty pool gives its first /24", "10.240.0.0/16", nil, "10.240.0.0/24"},
		{"skips a taken /24", "10.240.0.0/16", []string{"10.240.0.0/24"}, "10.240.1.0/24"},
		{"fills a gap first", "10.240.0.0/16", []string{"10.240.0.0/24", "10.240.2.0/24"}, "10.240.1.0/24"},
		{"order of taken does not matter", "10.240.0.0/16", []string{"10.240.2.0/24", "10.240.1.0/24", "10.240.0.0/24"}, "10.240.3.0/24"},
		{"a smaller network blocks its whole /24", "10.240.0.0/16", []string{"10.240.1.70/31"}, "10.240.0.0/24"},
		{"a smaller network in the first /24", "10.240.0.0/16", []string{"10.240.0.8/29"}, "10.240.1.0/24"},
		{"a larger network skips all it covers", "10.240.0.0/16", []string{"10.240.0.0/20"}, "10.240.16.0/24"},
		{"a host address (a /32)", "10.240.0.0/16", []string{"10.240.0.1/32"}, "10.240.1.0/24"},
		{"a taken prefix written with host bits", "10.240.0.0/16", []string{"10.240.0.5/24"}, "10.240.1.0/24"},
		{"a supernet of the pool fills it", "10.240.0.0/16", []string{"10.0.0.0/8"}, ""},
		{"outside the pool is ignored", "10.240.0.0/16", []string{"172.17.0.0/16", "192.168.0.0/20", "10.241.0.0/24"}, "10.240.0.0/24"},
		{"IPv6 is ignored", "10.240.0.0/16", []string{"fd00::/64", "::ffff:10.240.0.0/120"}, "10.240.0.0/24"},
		{"a /22 pool has four", "10.9.8.0/22", []string{"10.9.8.0/24", "10.9.9.0/24", "10.9.10.0/24"}, "10.9.11.0/24"},
		{"a full /22 pool", "10.9.8.0/22", []string{"10.9.8.0/23", "10.9.10.0/24", "10.9.11.0/25", "10.9.11.128/26"}, ""},
		{"a /24 pool has one", "10.9.9.0/24", nil, "10.9.9.0/24"},
		{"the last of a /8", "10.0.0.0/8", []string{"10.0.0.0/9", "10.128.0.0/10", "10.192.0.0/11", "10.224.0.0/12", "10.240.0.0/13", "10.248.0.0/14", "10.252.0.0/15", "10.254.0.0/16", "10.255.0.0/17", "10.255.128.0/18", "10.255.192.0/19", "10.255.224.0/20", "10.255.240.0/21", "10.255.248.0/22", "10.255.252.0/23", "10.255.254.0/24"}, "10.255.255.0/24"},
		{"top of the address space", "255.255.252.0/22", []string{"255.255.252.0/23", "255.255.254.0/24"}, "255.255.255.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FreeSubnet(netip.MustParsePrefix(tt.pool), prefixes(t, tt.taken...))
			if tt.want == "" {
				if ok {
					t.Errorf("FreeSubnet = %s, want none (pool full)", got)
				}
				return
			}
			if !ok || got != netip.MustParsePrefix(tt.want) {
				t.Errorf("FreeSubnet = %s, %t; want %s", got, ok, tt.want)
			}
		})
	}
}

// Allocating one after another fills a /16 with 256 distinct /24s, each
// inside the pool and overlapping nothing before it; the 257th fails.
func TestFreeSubnetFillsThePool(t *testing.T) {
	pool := netip.MustParsePrefix(DefaultSubnetPool)
	// Docker's default pools and a host LAN inside the pool are there
	// from the start.
	taken := prefixes(t, "172.17.0.0/16", "192.168.0.0/20", "10.240.3.0/24")
	for i := 0; ; i++ {
		got, ok := FreeSubnet(pool, taken)
		if !ok {
			if i != 256-1 {
				t.Fatalf("pool full after %d networks, want %d", i, 256-1)
			}
			return
		}
		if got.Bits() != ServiceSubnetBits || !pool.Contains(got.Addr()) || got.Masked() != got {
			t.Fatalf("allocation %d = %s: not a /24 of %s", i, got, pool)
		}
		for _, p := range taken {
			if p.Overlaps(got) {
				t.Fatalf("allocation %d = %s overlaps %s", i, got, p)
			}
		}
		taken = append(taken, got)
	}
}

func TestParseSubnetPool(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"10.240.0.0/16", ""},
		{"10.0.0.0/8", ""},
		{"192.168.77.0/24", ""},
		{"", "not an IP prefix"},
		{"10.240.0.0", "not an IP prefix"},
		{"banana", "not an IP prefix"},
		{"fd00::/48", "not IPv4"},
		{"10.0.0.0/7", "between /8 and /24"},
		{"10.240.0.0/25", "between /8 and /24"},
		{"10.240.1.0/16", "did you mean 10.240.0.0/16"},
	}
	for _, tt := range tests {
		got, err := ParseSubnetPool(tt.in)
		if tt.wantErr == "" {
			if err != nil || got.String() != tt.in {
				t.Errorf("ParseSubnetPool(%q) = %s, %v; want %s", tt.in, got, err, tt.in)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseSubnetPool(%q) = %v, want an error saying %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestBridgeName(t *testing.T) {
	a, b := BridgeName("deployctl-web"), BridgeName("deployctl-api")
	for _, name := range []string{a, b, BridgeName(strings.Repeat("x", 500))} {
		if len(name) > 15 || !strings.HasPrefix(name, "dc-") {
			t.Errorf("BridgeName = %q, want dc- and at most 15 characters", name)
		}
	}
	if a == b || a != BridgeName("deployctl-web") {
		t.Errorf("BridgeName not stable or not distinct: %q, %q", a, b)
	}
	if gw := GatewayOf(netip.MustParsePrefix("10.240.0.64/26")); gw != netip.MustParseAddr("10.240.0.65") {
		t.Errorf("GatewayOf = %s, want 10.240.0.65", gw)
	}
	if n := ServiceNetworkName("deployctl", "web"); n != "deployctl-web" {
		t.Errorf("ServiceNetworkName = %q", n)
	}
}
