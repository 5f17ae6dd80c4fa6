package state

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// Addresses skip every .0 and .255: the range's network and broadcast
// addresses and those software may read as such.
func TestAddressesSkipZeroAndBroadcastOctets(t *testing.T) {
	s := NewStore()
	if err := s.ApplyAssignAddresses(1, AssignAddressesCmd{}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 520 {
		mustApplyRevision(t, s, uint64(i+2), ApplyRevisionCmd{Now: t0, Revision: rev(fmt.Sprintf("s%03d", i), "sha256:a")})
	}
	for _, svc := range s.View().Services() {
		a, err := netip.ParseAddr(svc.VIP)
		if err != nil || !netip.MustParsePrefix(ServiceAddressRange).Contains(a) {
			t.Fatalf("%s: address %q outside %s", svc.Name, svc.VIP, ServiceAddressRange)
		}
		if last := a.As4()[3]; last == 0 || last == 255 {
			t.Errorf("%s: address %s ends in .%d", svc.Name, svc.VIP, last)
		}
		if seen[svc.VIP] {
			t.Errorf("address %s given twice", svc.VIP)
		}
		seen[svc.VIP] = true
	}
	for name, want := range map[string]string{"s000": "198.18.0.1", "s253": "198.18.0.254", "s254": "198.18.1.1", "s519": "198.18.2.12"} {
		if svc, _ := s.View().Service(name); svc.VIP != want {
			t.Errorf("%s: address %s, want %s", name, svc.VIP, want)
		}
	}
	if off, ok := offsetOf("198.19.255.254"); !ok || addressAt(off).String() != "198.19.255.254" || usable(off+1) {
		t.Errorf("offsetOf/addressAt/usable disagree at the end of the range")
	}
	if _, ok := offsetOf("10.0.0.1"); ok {
		t.Error("an address outside the range has an offset")
	}
}

// A snapshot written before addresses existed restores with them off;
// one written after keeps them on and every service's address.
func TestAddressesSnapshotCompatibility(t *testing.T) {
	old := `{"format":1,"index":3,"services":[{"service":"web","current":1,"last_good":0,"state":"deploying","next_revision":2,"create_index":1,"modify_index":1}],` +
		`"revisions":[],"replicas":[],"hosts":[],"host_index":{},"requests":[],"servers":[]}`
	s := NewStore()
	if err := s.Restore(strings.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	if svc, _ := s.View().Service("web"); svc.VIP != "" || s.View().AddressesOn() {
		t.Fatalf("an old snapshot restored with addresses: %+v on=%v", svc, s.View().AddressesOn())
	}
	// A revision applied now still assigns nothing: the log decides.
	mustApplyRevision(t, s, 4, ApplyRevisionCmd{Now: t0, Revision: rev("api", "sha256:a")})
	if svc, _ := s.View().Service("api"); svc.VIP != "" {
		t.Fatalf("an address before AssignAddressesCmd: %+v", svc)
	}
	if err := s.ApplyAssignAddresses(5, AssignAddressesCmd{}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.View().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewStore()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !r.View().AddressesOn() {
		t.Fatal("restore lost that addresses are on")
	}
	for name, want := range map[string]string{"api": "198.18.0.1", "web": "198.18.0.2"} {
		if svc, _ := r.View().Service(name); svc.VIP != want {
			t.Errorf("%s after restore: %q, want %s", name, svc.VIP, want)
		}
	}
	mustApplyRevision(t, r, 6, ApplyRevisionCmd{Now: t0, Revision: rev("db", "sha256:a")})
	if svc, _ := r.View().Service("db"); svc.VIP != "198.18.0.3" {
		t.Errorf("db after restore: %q, want 198.18.0.3", svc.VIP)
	}
}
