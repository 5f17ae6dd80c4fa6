package state

import (
	"fmt"
	"net/netip"
)

// Service addresses (issue 9, docs/networking.md): every service gets one
// address from ServiceAddressRange, which callers on its declared
// connections reach it at. The FSM assigns them, so every server assigns
// the same address from the same log: the lowest free offset of the range
// whose last octet is neither 0 nor 255 (addresses some software reads as
// a network or a broadcast address; this also skips the range's own
// network and broadcast addresses). An address stays with its service
// until the service is purged, then is free again.
//
// Assigning is off until AssignAddressesCmd turns it on (a command type
// of FSM version 2, written only once every server knows it): entries
// applied before that, by this build or an older one, leave services
// without an address, so a log replays to the same state whichever
// build applied its first entries and wherever a snapshot was taken.

// ServiceAddressRange is RFC 2544's benchmarking range, 198.18.0.0/15:
// never a real destination, so a service address cannot shadow one.
const ServiceAddressRange = "198.18.0.0/15"

// serviceAddressCount is the number of addresses in ServiceAddressRange.
const serviceAddressCount = 1 << 17

// ErrNoAddress: every service address is taken.
var ErrNoAddress = fmt.Errorf("%w: no free service address in %s", ErrConflict, ServiceAddressRange)

// AssignAddressesCmd turns service addresses on and gives one to every
// service that has none, in name order. Applying it again assigns only to
// services without an address (none, once it is on).
type AssignAddressesCmd struct{}

// rangeBase is the first address of ServiceAddressRange.
func rangeBase() netip.Addr { return netip.MustParsePrefix(ServiceAddressRange).Addr() }

// addressAt is the address at offset from the start of the range.
func addressAt(offset int) netip.Addr {
	b := rangeBase().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(offset)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// offsetOf is the offset of addr in the range, or false when it is not in
// it.
func offsetOf(addr string) (int, bool) {
	a, err := netip.ParseAddr(addr)
	if err != nil || !netip.MustParsePrefix(ServiceAddressRange).Contains(a) {
		return 0, false
	}
	b, base := a.As4(), rangeBase().As4()
	return (int(b[1])-int(base[1]))<<16 | int(b[2])<<8 | int(b[3]), true
}

// usable reports whether the address at offset may be a service's: its
// last octet is neither 0 nor 255.
func usable(offset int) bool {
	last := offset & 0xff
	return last != 0 && last != 0xff
}

// addressAllocator hands out the lowest free usable offsets.
type addressAllocator struct {
	used map[int]bool
	next int
}

func (tx *txn) addressAllocator() *addressAllocator {
	a := &addressAllocator{used: map[int]bool{}}
	tx.services.Root().Walk(func(_ []byte, v interface{}) bool {
		if off, ok := offsetOf(v.(*Service).VIP); ok {
			a.used[off] = true
		}
		return false
	})
	return a
}

// take returns the lowest free usable address, or false when none is left.
func (a *addressAllocator) take() (string, bool) {
	for ; a.next < serviceAddressCount; a.next++ {
		if usable(a.next) && !a.used[a.next] {
			a.used[a.next] = true
			return addressAt(a.next).String(), true
		}
	}
	return "", false
}

// ApplyAssignAddresses applies an AssignAddressesCmd at a raft index.
// Services beyond the range's capacity keep no address (130,048 of them
// fit).
func (s *Store) ApplyAssignAddresses(index uint64, _ AssignAddressesCmd) error {
	tx := s.begin(index)
	tx.addresses = true
	alloc := tx.addressAllocator()
	var missing []*Service
	tx.services.Root().Walk(func(_ []byte, v interface{}) bool {
		if v.(*Service).VIP == "" {
			missing = append(missing, v.(*Service))
		}
		return false
	})
	for _, svc := range missing {
		vip, ok := alloc.take()
		if !ok {
			break
		}
		cp := *svc
		if svc.Rollout != nil {
			ro := *svc.Rollout
			cp.Rollout = &ro
		}
		cp.VIP = vip
		tx.putService(&cp)
	}
	tx.commit(s)
	return nil
}

// AddressesOn reports whether the FSM assigns service addresses (an
// AssignAddressesCmd was applied).
func (t *Tables) AddressesOn() bool { return t.addresses }
