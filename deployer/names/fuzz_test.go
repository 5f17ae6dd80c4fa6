package names

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzAnswer feeds arbitrary messages to the query handler, over both
// transports, declared names and relayed ones (a fake upstream on
// loopback answers): it never panics, never answers a response, always
// answers a query with a well-formed response carrying the query's ID,
// within the transport's size limit.
func FuzzAnswer(f *testing.F) {
	up := startUpstream(f, upstream, func(q dnsmessage.Message) *dnsmessage.Message {
		if canonical(q.Questions[0].Name.String()) == "big.example" {
			return known(map[string]netip.Addr{"big.example": netip.MustParseAddr("192.0.2.1")}, 300)(q)
		}
		return nxdomain(q)
	})
	s := NewServer(Options{Upstreams: []netip.AddrPort{up.addr}, Search: []string{"lan"}, Timeout: time.Second}, nil)
	gw := netip.MustParseAddr(gwWeb)
	if err := s.SetNames(gw, map[string]netip.Addr{"api": apiVIP}); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct {
		name string
		typ  dnsmessage.Type
		edns int
	}{
		{"api.", dnsmessage.TypeA, 0},
		{"API.lan.", dnsmessage.TypeA, 1232},
		{"api.", dnsmessage.TypeAAAA, 4096},
		{"example.com.", dnsmessage.TypeA, 0},
		{"big.example.", dnsmessage.TypeA, 0},
		{"big.example.", dnsmessage.TypeA, 4096},
		{".", dnsmessage.TypeNS, 512},
	} {
		q, err := buildQuery(1, seed.name, seed.typ, seed.edns)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(q, false, true)
		f.Add(q, true, true)
		f.Add(q[:len(q)-1], false, true)
	}
	f.Add([]byte{}, false, true)
	f.Add(make([]byte, 12), false, false)
	f.Add([]byte("\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\xc0\x0c\x00\x01\x00\x01"), false, true) // pointer loop
	f.Fuzz(func(t *testing.T, msg []byte, tcp, allowed bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out := s.answer(ctx, gw, allowed, msg, tcp)
		isQuery := len(msg) >= headerLen && msg[2]&0x80 == 0
		if !isQuery {
			if out != nil {
				t.Fatalf("answered a non-query: %x", out)
			}
			return
		}
		if out == nil {
			t.Fatalf("no answer to a query")
		}
		limit := maxUDPAnswer
		if tcp {
			limit = maxTCPAnswer
		}
		if len(out) > limit {
			t.Fatalf("answer of %d bytes over tcp=%v", len(out), tcp)
		}
		var m dnsmessage.Message
		if err := m.Unpack(out); err != nil {
			t.Fatalf("malformed answer %x: %v", out, err)
		}
		if !m.Response || m.ID != binary.BigEndian.Uint16(msg) {
			t.Fatalf("answer header %+v to query ID %d", m.Header, binary.BigEndian.Uint16(msg))
		}
		if !allowed && m.RCode == dnsmessage.RCodeSuccess && len(m.Answers) > 0 {
			t.Fatalf("answered a refused client: %+v", m)
		}
	})
}
