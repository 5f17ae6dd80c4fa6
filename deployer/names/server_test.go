package names

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// twoNetworks serves web's network (gateway 127.0.0.2, connected to api)
// and another network (127.0.0.3, no connection), relaying to up.
func twoNetworks(t *testing.T, opts Options, up *fakeUpstream) (*Server, *Listener, *Listener) {
	t.Helper()
	if up != nil {
		opts.Upstreams = []netip.AddrPort{up.addr}
	}
	s := NewServer(opts, nil)
	web := serve(t, s, gwWeb, "127.0.0.0/8")
	other := serve(t, s, gwOther, "127.0.0.0/8")
	if err := s.SetNames(web.Addr().Addr(), map[string]netip.Addr{"api": apiVIP}); err != nil {
		t.Fatal(err)
	}
	return s, web, other
}

func TestDeclaredNameA(t *testing.T) {
	up := startUpstream(t, upstream, nxdomain)
	_, web, _ := twoNetworks(t, Options{}, up)
	for _, network := range []string{"udp", "tcp"} {
		for _, name := range []string{"api.", "API.", "aPi."} {
			m, _ := ask(t, web.Addr(), network, name, dnsmessage.TypeA, 0)
			if m.RCode != dnsmessage.RCodeSuccess || !m.Authoritative || !m.RecursionAvailable || !m.RecursionDesired {
				t.Fatalf("%s %s: header %+v, want NOERROR, AA, RA, RD echoed", network, name, m.Header)
			}
			if len(m.Answers) != 1 {
				t.Fatalf("%s %s: %d answers, want 1", network, name, len(m.Answers))
			}
			rr := m.Answers[0]
			if got := aRecords(m); !slices.Equal(got, []netip.Addr{apiVIP}) {
				t.Errorf("%s %s: A %v, want %v", network, name, got, apiVIP)
			}
			if rr.Header.TTL != 2 {
				t.Errorf("%s %s: TTL %d, want 2", network, name, rr.Header.TTL)
			}
			if rr.Header.Name.String() != name {
				t.Errorf("%s %s: answer for %q, want the name as asked", network, name, rr.Header.Name.String())
			}
		}
	}
	if n := up.udpQueries.Load() + up.tcpQueries.Load(); n != 0 {
		t.Errorf("a declared name reached the upstream %d times", n)
	}
}

func TestDeclaredNameWithEDNS(t *testing.T) {
	_, web, _ := twoNetworks(t, Options{}, startUpstream(t, upstream, nxdomain))
	m, _ := ask(t, web.Addr(), "udp", "api.", dnsmessage.TypeA, 1232)
	if got := aRecords(m); !slices.Equal(got, []netip.Addr{apiVIP}) {
		t.Fatalf("A %v, want %v", got, apiVIP)
	}
	if len(m.Additionals) != 1 || m.Additionals[0].Header.Type != dnsmessage.TypeOPT {
		t.Fatalf("additionals %v, want the OPT record of an EDNS answer", m.Additionals)
	}
}

func TestAAAAEmpty(t *testing.T) {
	up := startUpstream(t, upstream, nxdomain)
	_, web, _ := twoNetworks(t, Options{}, up)
	for _, typ := range []dnsmessage.Type{dnsmessage.TypeAAAA, dnsmessage.TypeTXT, dnsmessage.TypeMX, dnsmessage.TypeHTTPS} {
		m, _ := ask(t, web.Addr(), "udp", "api.", typ, 0)
		if m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 || !m.Authoritative {
			t.Errorf("%v: rcode %v, %d answers, AA %v; want an empty authoritative NOERROR", typ, m.RCode, len(m.Answers), m.Authoritative)
		}
	}
	if n := up.udpQueries.Load(); n != 0 {
		t.Errorf("a declared name reached the upstream %d times", n)
	}
}

// A name declared on one network is unknown on another: relayed like any
// name, and the outside DNS does not know it.
func TestSameNameOtherNetworkRelayed(t *testing.T) {
	up := startUpstream(t, upstream, nxdomain)
	s, web, other := twoNetworks(t, Options{}, up)
	if err := s.SetNames(other.Addr().Addr(), map[string]netip.Addr{"db": dbVIP}); err != nil {
		t.Fatal(err)
	}
	m, _ := ask(t, other.Addr(), "udp", "api.", dnsmessage.TypeA, 0)
	if m.RCode != dnsmessage.RCodeNameError || len(m.Answers) != 0 {
		t.Fatalf("api on the other network: rcode %v answers %v, want the upstream's NXDOMAIN", m.RCode, aRecords(m))
	}
	// db is a service (declared elsewhere) web did not declare: relayed.
	m, _ = ask(t, web.Addr(), "udp", "db.", dnsmessage.TypeA, 0)
	if m.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("db on web's network: rcode %v, want NXDOMAIN", m.RCode)
	}
	if n := up.udpQueries.Load(); n != 2 {
		t.Errorf("upstream got %d queries, want 2", n)
	}
	if got := aRecords(must(ask(t, other.Addr(), "tcp", "db.", dnsmessage.TypeA, 0))); !slices.Equal(got, []netip.Addr{dbVIP}) {
		t.Errorf("db on its own network: %v", got)
	}
}

func must(m dnsmessage.Message, _ int) dnsmessage.Message { return m }

func TestSetNamesReplaces(t *testing.T) {
	s, web, _ := twoNetworks(t, Options{}, startUpstream(t, upstream, nxdomain))
	gw := web.Addr().Addr()
	if err := s.SetNames(gw, map[string]netip.Addr{"db.": dbVIP}); err != nil {
		t.Fatal(err)
	}
	if m, _ := ask(t, web.Addr(), "udp", "api.", dnsmessage.TypeA, 0); m.RCode != dnsmessage.RCodeNameError {
		t.Errorf("api after it was replaced: rcode %v answers %v, want relayed NXDOMAIN", m.RCode, aRecords(m))
	}
	if got := aRecords(must(ask(t, web.Addr(), "udp", "db.", dnsmessage.TypeA, 0))); !slices.Equal(got, []netip.Addr{dbVIP}) {
		t.Errorf("db after SetNames: %v, want %v", got, dbVIP)
	}
	if err := s.SetNames(gw, nil); err != nil {
		t.Fatal(err)
	}
	if m, _ := ask(t, web.Addr(), "udp", "db.", dnsmessage.TypeA, 0); m.RCode != dnsmessage.RCodeNameError {
		t.Errorf("db after SetNames(nil): rcode %v, want NXDOMAIN", m.RCode)
	}
}

func TestSetNamesRejects(t *testing.T) {
	s := NewServer(Options{}, nil)
	gw := netip.MustParseAddr(gwWeb)
	if err := s.SetNames(gw, map[string]netip.Addr{"api": apiVIP}); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]map[string]netip.Addr{
		"IPv6 address":  {"api": netip.MustParseAddr("2001:db8::1")},
		"no address":    {"api": {}},
		"0.0.0.0":       {"api": netip.IPv4Unspecified()},
		"empty name":    {"": apiVIP},
		"empty label":   {"a..b": apiVIP},
		"space in name": {"a b": apiVIP},
		"long label":    {string(make([]byte, 64)): apiVIP},
		"twice":         {"api": apiVIP, "API.": dbVIP},
	} {
		if err := s.SetNames(gw, bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := s.SetNames(netip.Addr{}, nil); err == nil {
		t.Error("invalid listening address accepted")
	}
	// Nothing changed.
	if a, ok := s.lookup(gw, dnsmessage.MustNewName("api.")); !ok || a != apiVIP {
		t.Errorf("api after refused SetNames: %v %v", a, ok)
	}
}

// Search domains: `api.<search>` is api (a resolver that appended the
// container's search domain); under any other domain it is relayed.
func TestSearchDomain(t *testing.T) {
	up := startUpstream(t, upstream, nxdomain)
	_, web, _ := twoNetworks(t, Options{Search: []string{"Corp.Example.", "lan"}}, up)
	for _, name := range []string{"api.corp.example.", "API.LAN."} {
		if got := aRecords(must(ask(t, web.Addr(), "udp", name, dnsmessage.TypeA, 0))); !slices.Equal(got, []netip.Addr{apiVIP}) {
			t.Errorf("%s: %v, want %v", name, got, apiVIP)
		}
	}
	for _, name := range []string{"api.other.example.", "x.api.lan.", "corp.example."} {
		if m, _ := ask(t, web.Addr(), "udp", name, dnsmessage.TypeA, 0); m.RCode != dnsmessage.RCodeNameError {
			t.Errorf("%s: rcode %v answers %v, want relayed NXDOMAIN", name, m.RCode, aRecords(m))
		}
	}
}

func TestRelayUDP(t *testing.T) {
	ext := netip.MustParseAddr("192.0.2.10")
	up := startUpstream(t, upstream, known(map[string]netip.Addr{"example.com": ext}, 1))
	_, web, _ := twoNetworks(t, Options{}, up)
	m, _ := ask(t, web.Addr(), "udp", "Example.COM.", dnsmessage.TypeA, 0)
	if got := aRecords(m); m.RCode != dnsmessage.RCodeSuccess || !slices.Equal(got, []netip.Addr{ext}) {
		t.Fatalf("rcode %v A %v, want %v", m.RCode, got, ext)
	}
	if m.Answers[0].Header.TTL != 300 {
		t.Errorf("TTL %d, want the upstream's 300 passed through", m.Answers[0].Header.TTL)
	}
	if u, tc := up.udpQueries.Load(), up.tcpQueries.Load(); u != 1 || tc != 0 {
		t.Errorf("upstream got %d UDP and %d TCP queries, want 1 and 0", u, tc)
	}
}

// An answer bigger than UDP takes: the upstream truncates it, the relay
// asks again over TCP; the client gets it whole over TCP or over UDP with
// a large enough EDNS size, and TC over UDP without.
func TestRelayTruncationTCPFallback(t *testing.T) {
	ext := netip.MustParseAddr("192.0.2.10")
	up := startUpstream(t, upstream, known(map[string]netip.Addr{"big.example": ext}, 100)) // ~1.6 kB
	_, web, _ := twoNetworks(t, Options{}, up)

	m, size := ask(t, web.Addr(), "tcp", "big.example.", dnsmessage.TypeA, 0)
	if m.Truncated || len(m.Answers) != 100 {
		t.Fatalf("over TCP: TC %v, %d answers (%d bytes), want all 100", m.Truncated, len(m.Answers), size)
	}
	if u, tc := up.udpQueries.Load(), up.tcpQueries.Load(); u != 1 || tc != 1 {
		t.Errorf("upstream got %d UDP and %d TCP queries, want 1 then 1 after truncation", u, tc)
	}

	m, size = ask(t, web.Addr(), "udp", "big.example.", dnsmessage.TypeA, 0)
	if !m.Truncated || size > 512 || len(m.Questions) != 1 {
		t.Fatalf("over UDP without EDNS: TC %v, %d bytes, %d questions; want TC, at most 512 bytes, the question", m.Truncated, size, len(m.Questions))
	}

	m, size = ask(t, web.Addr(), "udp", "big.example.", dnsmessage.TypeA, 4096)
	if m.Truncated || len(m.Answers) != 100 || size > 4096 {
		t.Fatalf("over UDP with EDNS 4096: TC %v, %d answers, %d bytes; want all 100", m.Truncated, len(m.Answers), size)
	}

	m, size = ask(t, web.Addr(), "udp", "big.example.", dnsmessage.TypeA, 1232)
	if !m.Truncated || size > 1232 {
		t.Fatalf("over UDP with EDNS 1232: TC %v, %d bytes; want TC within 1232", m.Truncated, size)
	}
	if len(m.Additionals) != 1 || m.Additionals[0].Header.Type != dnsmessage.TypeOPT {
		t.Errorf("truncated EDNS answer without its OPT record: %v", m.Additionals)
	}
}

func TestRelaySilentUpstreamServfail(t *testing.T) {
	up := startUpstream(t, upstream, silent)
	const timeout = 300 * time.Millisecond
	_, web, _ := twoNetworks(t, Options{Timeout: timeout}, up)
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		m, _ := ask(t, web.Addr(), network, "example.com.", dnsmessage.TypeA, 0)
		took := time.Since(start)
		if m.RCode != dnsmessage.RCodeServerFailure {
			t.Errorf("%s: rcode %v, want SERVFAIL", network, m.RCode)
		}
		if took < timeout || took > timeout+time.Second {
			t.Errorf("%s: SERVFAIL after %v, want about %v", network, took, timeout)
		}
	}
}

// A failing upstream is passed over for the next; none at all is SERVFAIL.
func TestRelayNextUpstream(t *testing.T) {
	ext := netip.MustParseAddr("192.0.2.10")
	failing := startUpstream(t, "127.0.0.5", func(q dnsmessage.Message) *dnsmessage.Message {
		return respond(q, dnsmessage.RCodeServerFailure)
	})
	good := startUpstream(t, upstream, known(map[string]netip.Addr{"example.com": ext}, 1))
	s := NewServer(Options{Upstreams: []netip.AddrPort{failing.addr, good.addr}, Timeout: time.Second}, nil)
	l := serve(t, s, gwWeb, "127.0.0.0/8")
	if got := aRecords(must(ask(t, l.Addr(), "udp", "example.com.", dnsmessage.TypeA, 0))); !slices.Equal(got, []netip.Addr{ext}) {
		t.Errorf("A %v, want %v from the second upstream", got, ext)
	}
	if failing.udpQueries.Load() != 1 || good.udpQueries.Load() != 1 {
		t.Errorf("queries: failing %d, good %d; want 1 each", failing.udpQueries.Load(), good.udpQueries.Load())
	}

	none := serve(t, NewServer(Options{}, nil), gwOther, "127.0.0.0/8")
	if m, _ := ask(t, none.Addr(), "udp", "example.com.", dnsmessage.TypeA, 0); m.RCode != dnsmessage.RCodeServerFailure {
		t.Errorf("no upstream: rcode %v, want SERVFAIL", m.RCode)
	}
}

// Only queries are answered: responses are dropped, other opcodes,
// classes and meta types refused, malformed messages FORMERR.
func TestRefusesNonQueries(t *testing.T) {
	const noAnswer dnsmessage.RCode = 0xffff
	up := startUpstream(t, upstream, nxdomain)
	_, web, _ := twoNetworks(t, Options{}, up)
	valid := newQuery(t, 7, "api.", dnsmessage.TypeA, 0)
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), valid...)) }
	build := func(h dnsmessage.Header, qs []dnsmessage.Question) []byte {
		m := dnsmessage.Message{Header: h, Questions: qs}
		return pack(t, &m)
	}
	q := func(name string, typ dnsmessage.Type, class dnsmessage.Class) dnsmessage.Question {
		return dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: class}
	}
	badVersion := func() []byte {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7})
		var rh dnsmessage.ResourceHeader
		_ = rh.SetEDNS0(1232, 0, false)
		rh.TTL |= 1 << 16 // EDNS version 1
		_ = b.StartQuestions()
		_ = b.Question(q("api.", dnsmessage.TypeA, dnsmessage.ClassINET))
		_ = b.StartAdditionals()
		_ = b.OPTResource(rh, dnsmessage.OPTResource{})
		out, _ := b.Finish()
		return out
	}()
	for _, tc := range []struct {
		name  string
		msg   []byte
		rcode dnsmessage.RCode // noAnswer: none at all
	}{
		{"a response", edit(func(b []byte) []byte { b[2] |= 0x80; return b }), noAnswer},
		{"shorter than a header", valid[:11], noAnswer},
		{"opcode NOTIFY", build(dnsmessage.Header{ID: 7, OpCode: 4}, []dnsmessage.Question{q("api.", dnsmessage.TypeSOA, dnsmessage.ClassINET)}), dnsmessage.RCodeNotImplemented},
		{"opcode UPDATE", build(dnsmessage.Header{ID: 7, OpCode: 5}, nil), dnsmessage.RCodeNotImplemented},
		{"no question", build(dnsmessage.Header{ID: 7}, nil), dnsmessage.RCodeFormatError},
		{"two questions", build(dnsmessage.Header{ID: 7}, []dnsmessage.Question{q("api.", dnsmessage.TypeA, dnsmessage.ClassINET), q("db.", dnsmessage.TypeA, dnsmessage.ClassINET)}), dnsmessage.RCodeFormatError},
		{"an answer in the query", edit(func(b []byte) []byte { b[7] = 1; return b }), dnsmessage.RCodeFormatError},
		{"question cut short", edit(func(b []byte) []byte { return b[:len(b)-2] }), dnsmessage.RCodeFormatError},
		{"class CHAOS", build(dnsmessage.Header{ID: 7}, []dnsmessage.Question{q("version.bind.", dnsmessage.TypeTXT, dnsmessage.ClassCHAOS)}), dnsmessage.RCodeNotImplemented},
		{"class ANY", build(dnsmessage.Header{ID: 7}, []dnsmessage.Question{q("api.", dnsmessage.TypeA, dnsmessage.ClassANY)}), dnsmessage.RCodeNotImplemented},
		{"type ANY", build(dnsmessage.Header{ID: 7}, []dnsmessage.Question{q("example.com.", dnsmessage.TypeALL, dnsmessage.ClassINET)}), dnsmessage.RCodeNotImplemented},
		{"type AXFR", build(dnsmessage.Header{ID: 7}, []dnsmessage.Question{q("example.com.", dnsmessage.TypeAXFR, dnsmessage.ClassINET)}), dnsmessage.RCodeNotImplemented},
		{"EDNS version 1", badVersion, dnsmessage.RCodeSuccess /* BADVERS: 0 in the header, 1 in OPT */},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := exchangeRaw(web.Addr(), "udp", netip.Addr{}, tc.msg, 300*time.Millisecond)
			if tc.rcode == noAnswer {
				if err == nil {
					t.Fatalf("answered: %x", raw)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var m dnsmessage.Message
			if err := m.Unpack(raw); err != nil {
				t.Fatal(err)
			}
			if !m.Response || m.ID != 7 || m.RCode != tc.rcode || len(m.Answers) != 0 {
				t.Fatalf("header %+v, %d answers; want a response with ID 7, %v, no answer", m.Header, len(m.Answers), tc.rcode)
			}
			if tc.name == "EDNS version 1" {
				if len(m.Additionals) != 1 || m.Additionals[0].Header.ExtendedRCode(m.RCode) != rcodeBadVers {
					t.Fatalf("additionals %v, want OPT with BADVERS", m.Additionals)
				}
			}
		})
	}
	if n := up.udpQueries.Load(); n != 0 {
		t.Errorf("refused queries reached the upstream %d times", n)
	}
}

// A query from outside the listener's client prefix (another network
// reaching this gateway through the host) is refused, a declared name
// included; from inside it is answered.
func TestRefusesOtherSources(t *testing.T) {
	up := startUpstream(t, upstream, nxdomain)
	s := NewServer(Options{Upstreams: []netip.AddrPort{up.addr}}, nil)
	l := serve(t, s, gwWeb, "127.0.2.0/24")
	if err := s.SetNames(l.Addr().Addr(), map[string]netip.Addr{"api": apiVIP}); err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range []struct {
			from  string
			rcode dnsmessage.RCode
		}{{"127.0.0.1", dnsmessage.RCodeRefused}, {"127.0.3.9", dnsmessage.RCodeRefused}, {"127.0.2.9", dnsmessage.RCodeSuccess}} {
			raw, err := exchangeRaw(l.Addr(), network, netip.MustParseAddr(tc.from), newQuery(t, 9, "api.", dnsmessage.TypeA, 0), 2*time.Second)
			if err != nil {
				t.Fatalf("%s from %s: %v", network, tc.from, err)
			}
			var m dnsmessage.Message
			if err := m.Unpack(raw); err != nil {
				t.Fatal(err)
			}
			if m.RCode != tc.rcode || (tc.rcode == dnsmessage.RCodeRefused) != (len(m.Answers) == 0) {
				t.Errorf("%s from %s: rcode %v answers %v, want %v", network, tc.from, m.RCode, aRecords(m), tc.rcode)
			}
		}
	}
	if n := up.udpQueries.Load(); n != 0 {
		t.Errorf("refused queries reached the upstream %d times", n)
	}
}

func TestTCPLimits(t *testing.T) {
	s := NewServer(Options{MaxTCPConns: 2, TCPIdleTimeout: 500 * time.Millisecond}, nil)
	l := serve(t, s, gwWeb, "127.0.0.0/8")
	if err := s.SetNames(l.Addr().Addr(), map[string]netip.Addr{"api": apiVIP}); err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		held = append(held, c)
	}
	// Let the server accept both before the third arrives.
	time.Sleep(50 * time.Millisecond)
	if _, err := exchangeRaw(l.Addr(), "tcp", netip.Addr{}, newQuery(t, 1, "api.", dnsmessage.TypeA, 0), time.Second); err == nil {
		t.Error("a third connection was served with MaxTCPConns 2")
	}
	// The idle two are closed after TCPIdleTimeout.
	for i, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("idle connection %d: read %v, want it closed by the server", i, err)
		}
	}
	// Then a connection is served again (once the server has counted the
	// closed ones out).
	var err error
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err = exchangeRaw(l.Addr(), "tcp", netip.Addr{}, newQuery(t, 1, "api.", dnsmessage.TypeA, 0), time.Second); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("after the idle ones closed: %v", err)
	}
	// A length over the limit closes the connection.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_, _ = c.Write([]byte{0xff, 0xff})
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("oversized query: read %v, want the connection closed", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Several TCP queries on one connection are answered in turn.
func TestTCPSeveralQueries(t *testing.T) {
	_, web, _ := twoNetworks(t, Options{}, startUpstream(t, upstream, nxdomain))
	c, err := net.Dial("tcp", web.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	for i := range 3 {
		q := newQuery(t, uint16(i), "api.", dnsmessage.TypeA, 0)
		if _, err := c.Write(append([]byte{0, byte(len(q))}, q...)); err != nil {
			t.Fatal(err)
		}
		var n [2]byte
		if _, err := c.Read(n[:]); err != nil {
			t.Fatal(err)
		}
		resp := make([]byte, int(n[0])<<8|int(n[1]))
		if _, err := c.Read(resp); err != nil {
			t.Fatal(err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil || m.ID != uint16(i) || len(m.Answers) != 1 {
			t.Fatalf("query %d: %v %+v", i, err, m.Header)
		}
	}
}

// Queries from many goroutines, declared and relayed, while the names
// change: every answer is one of the right ones (run with -race).
func TestConcurrentQueries(t *testing.T) {
	ext := netip.MustParseAddr("192.0.2.10")
	up := startUpstream(t, upstream, known(map[string]netip.Addr{"example.com": ext}, 1))
	s, web, other := twoNetworks(t, Options{}, up)
	ctx, cancel := context.WithCancel(context.Background())
	var flips sync.WaitGroup
	flips.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			names := map[string]netip.Addr{"api": apiVIP}
			if i%2 == 1 {
				names["db"] = dbVIP
			}
			if err := s.SetNames(web.Addr().Addr(), names); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			network := []string{"udp", "tcp"}[g%2]
			for i := range 25 {
				var m dnsmessage.Message
				var err error
				switch i % 3 {
				case 0:
					m, _, err = askErr(web.Addr(), network, "api.", dnsmessage.TypeA, 0)
					if got := aRecords(m); err == nil && !slices.Equal(got, []netip.Addr{apiVIP}) {
						t.Errorf("api: %v", got)
					}
				case 1:
					m, _, err = askErr(other.Addr(), network, "example.com.", dnsmessage.TypeA, 1232)
					if got := aRecords(m); err == nil && !slices.Equal(got, []netip.Addr{ext}) {
						t.Errorf("example.com: %v", got)
					}
				case 2:
					m, _, err = askErr(web.Addr(), network, "db.", dnsmessage.TypeA, 0)
					if got := aRecords(m); err == nil && !(m.RCode == dnsmessage.RCodeNameError && len(got) == 0 || slices.Equal(got, []netip.Addr{dbVIP})) {
						t.Errorf("db: rcode %v %v", m.RCode, got)
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	cancel()
	flips.Wait()
}

// The Go resolver (the one a Go program in a container uses) resolves a
// declared name through the server, A and AAAA asked together, and fails
// cleanly for an unknown one.
func TestGoResolver(t *testing.T) {
	_, web, _ := twoNetworks(t, Options{}, startUpstream(t, upstream, nxdomain))
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, web.Addr().String())
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "api.")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(addrs, []string{apiVIP.String()}) {
		t.Errorf("LookupHost(api.) = %v, want [%v]", addrs, apiVIP)
	}
	ips, err := r.LookupNetIP(ctx, "ip4", "API.")
	if err != nil || !slices.Equal(ips, []netip.Addr{apiVIP}) {
		t.Errorf("LookupNetIP(ip4, API.) = %v, %v", ips, err)
	}
	_, err = r.LookupHost(ctx, "db.")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("LookupHost(db.) = %v, want not found", err)
	}
}

func TestListenRefuses(t *testing.T) {
	s := NewServer(Options{}, nil)
	for _, tc := range []struct{ addr, clients string }{
		{"0.0.0.0:0", "127.0.0.0/8"},
		{"[::]:0", "::/0"},
	} {
		if l, err := s.Listen(netip.MustParseAddrPort(tc.addr), netip.MustParsePrefix(tc.clients)); err == nil {
			_ = l.Close()
			t.Errorf("Listen(%s) accepted", tc.addr)
		}
	}
	if _, err := s.Listen(netip.MustParseAddrPort("127.0.0.2:0"), netip.Prefix{}); err == nil {
		t.Error("Listen without a client prefix accepted")
	}
	// A port taken on UDP: the error says so.
	l := serve(t, s, gwWeb, "127.0.0.0/8")
	if _, err := s.Listen(l.Addr(), netip.MustParsePrefix("127.0.0.0/8")); err == nil {
		t.Errorf("Listen on a bound port accepted")
	}
}

// Serve returns when its context ends, and the port is free again.
func TestServeEnds(t *testing.T) {
	s := NewServer(Options{}, nil)
	l, err := s.Listen(netip.MustParseAddrPort(gwWeb+":0"), netip.MustParsePrefix("127.0.0.0/8"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	// A TCP connection held open does not keep Serve from returning.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := l.Serve(context.Background()); err == nil {
		t.Error("a second Serve was accepted")
	}
	l2, err := s.Listen(l.Addr(), netip.MustParsePrefix("127.0.0.0/8"))
	if err != nil {
		t.Fatalf("the port is not free after Serve returned: %v", err)
	}
	_ = l2.Close()
}

func TestReadResolvConf(t *testing.T) {
	opts := parseResolvConf([]byte(`# generated
nameserver 127.0.0.53 ; stub
nameserver ::1
nameserver bogus
nameserver fe80::1%eth0
nameserver 10.0.0.2
domain first.example
search Corp.Example. lan .
options edns0 trust-ad ndots:2
`))
	want := []string{"127.0.0.53:53", "[::1]:53", "[fe80::1%eth0]:53"}
	var got []string
	for _, u := range opts.Upstreams {
		got = append(got, u.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("upstreams %v, want %v", got, want)
	}
	if !slices.Equal(opts.Search, []string{"corp.example", "lan"}) {
		t.Errorf("search %v", opts.Search)
	}
	if got := parseResolvConf([]byte("search .\n")); fmt.Sprint(got.Upstreams) != "[127.0.0.1:53]" || len(got.Search) != 0 {
		t.Errorf("empty resolv.conf: %v %v, want 127.0.0.1:53 and no search", got.Upstreams, got.Search)
	}
	if _, err := ReadResolvConf(t.TempDir() + "/missing"); err == nil {
		t.Error("a missing file read")
	}
}
