package deployer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Service networks: one bridge per service per host, its subnet a /24 of
// the agent's subnet pool (docs/networking.md).
const (
	// DefaultSubnetPool is where service networks take their subnets when
	// --subnet-pool says nothing: 256 networks of /24.
	DefaultSubnetPool = "10.240.0.0/16"
	// ServiceSubnetBits is the prefix length of every service network: 256
	// addresses, 253 of them for containers (the network's own address,
	// the gateway and the broadcast address are not). A /26 (61) was too
	// small for a start-first rollout of 50 replicas on one host: the old
	// replicas, a batch in its monitor window and the next batch hold an
	// address each (issue 12).
	ServiceSubnetBits = 24
	// MinSubnetPoolBits and MaxSubnetPoolBits bound a pool: at most a /8
	// (65,536 networks), at least a /24 (one network).
	MinSubnetPoolBits = 8
	MaxSubnetPoolBits = 24
	// bridgeNamePrefix starts the name of every service network's Linux
	// bridge interface, so host firewall rules can name them (dc-+).
	bridgeNamePrefix = "dc-"
	// bridgeHashChars is how much of the hash names a bridge: "dc-" and
	// 12 hex digits are 15 characters, the kernel's limit (IFNAMSIZ-1).
	bridgeHashChars = 12
)

// ErrSubnetPoolExhausted means every /24 of the subnet pool overlaps a
// network that exists on the engine (or an address of the host).
var ErrSubnetPoolExhausted = errors.New("subnet pool exhausted")

// ParseSubnetPool reads a subnet pool (--subnet-pool): an IPv4 prefix from
// /8 to /24 written with its network address (10.240.0.0/16, not
// 10.240.1.0/16). The error says what is wrong; callers add the flag name.
func ParseSubnetPool(s string) (netip.Prefix, error) {
	pool, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix; want an IPv4 prefix between /%d and /%d such as %s", s, MinSubnetPoolBits, MaxSubnetPoolBits, DefaultSubnetPool)
	}
	return pool, CheckSubnetPool(pool)
}

// CheckSubnetPool says whether pool can serve as a subnet pool: IPv4, /8
// to /24, its own network address.
func CheckSubnetPool(pool netip.Prefix) error {
	switch {
	case !pool.IsValid():
		return fmt.Errorf("no subnet pool given; want an IPv4 prefix between /%d and /%d such as %s", MinSubnetPoolBits, MaxSubnetPoolBits, DefaultSubnetPool)
	case !pool.Addr().Is4():
		return fmt.Errorf("%s is not IPv4; service networks are IPv4 only: want an IPv4 prefix between /%d and /%d such as %s", pool, MinSubnetPoolBits, MaxSubnetPoolBits, DefaultSubnetPool)
	case pool.Bits() < MinSubnetPoolBits || pool.Bits() > MaxSubnetPoolBits:
		return fmt.Errorf("%s: want a prefix between /%d and /%d (a /%d holds %d networks of /%d)", pool, MinSubnetPoolBits, MaxSubnetPoolBits, 16, 1<<(ServiceSubnetBits-16), ServiceSubnetBits)
	case pool.Masked() != pool:
		return fmt.Errorf("%s has host bits set; did you mean %s?", pool, pool.Masked())
	}
	return nil
}

// FreeSubnet returns the first /24 of pool, in address order, that
// overlaps none of taken, and false when there is none. taken may hold
// anything: IPv6 prefixes (ignored), prefixes outside the pool or larger
// than it.
func FreeSubnet(pool netip.Prefix, taken []netip.Prefix) (netip.Prefix, bool) {
	if CheckSubnetPool(pool) != nil {
		return netip.Prefix{}, false
	}
	const size = uint64(1) << (32 - ServiceSubnetBits)
	start := uint64(addrUint32(pool.Addr()))
	end := start + uint64(1)<<(32-pool.Bits()) // exclusive
	// Every IPv4 prefix taken as [lo, hi], by first address.
	type span struct{ lo, hi uint64 }
	spans := make([]span, 0, len(taken))
	for _, p := range taken {
		if !p.IsValid() || !p.Addr().Is4() {
			continue // IPv6 (also IPv4-mapped): another address family
		}
		p = p.Masked()
		lo := uint64(addrUint32(p.Addr()))
		spans = append(spans, span{lo, lo + uint64(1)<<(32-p.Bits()) - 1})
	}
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	candidate := start
	for _, s := range spans {
		if candidate+size > end {
			break
		}
		if s.hi < candidate {
			continue // wholly before the candidate
		}
		if s.lo >= candidate+size {
			break // sorted: nothing later overlaps the candidate
		}
		// Overlaps: the next candidate starts at the first /24 boundary
		// after this span.
		candidate = (s.hi + size) / size * size
	}
	if candidate+size > end {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(uint32Addr(uint32(candidate)), ServiceSubnetBits), true
}

// GatewayOf is the gateway of a service subnet: its first address, the
// bridge's own address on the host.
func GatewayOf(subnet netip.Prefix) netip.Addr {
	return subnet.Masked().Addr().Next()
}

// ServiceNetworkName is the Docker network of service on a host whose
// agent runs with --network prefix: <prefix>-<service>.
func ServiceNetworkName(prefix, service string) string {
	return prefix + "-" + service
}

// BridgeName is the Linux bridge interface of the Docker network
// networkName: "dc-" and the first 12 hex digits of the name's SHA-256,
// 15 characters, stable for a name (firewall rules can be written before
// the network exists) and apart from Docker's own br-<id> names.
func BridgeName(networkName string) string {
	sum := sha256.Sum256([]byte(networkName))
	return bridgeNamePrefix + hex.EncodeToString(sum[:])[:bridgeHashChars]
}

func addrUint32(a netip.Addr) uint32 {
	b := a.Unmap().As4()
	return binary.BigEndian.Uint32(b[:])
}

func uint32Addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
