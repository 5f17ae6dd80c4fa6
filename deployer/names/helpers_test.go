package names

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Test addresses, all on loopback: two service networks' gateways, the
// host's resolver.
const (
	gwWeb    = "127.0.0.2"
	gwOther  = "127.0.0.3"
	upstream = "127.0.0.4"
)

var (
	apiVIP = netip.MustParseAddr("198.18.0.7")
	dbVIP  = netip.MustParseAddr("198.18.0.9")
)

// fakeUpstream is a tiny DNS server on a loopback address standing in for
// the host's resolver: handle says what to answer (nil: stay silent).
// Over UDP an answer bigger than the client's limit is sent truncated, as
// real servers do; over TCP whole.
type fakeUpstream struct {
	addr                   netip.AddrPort
	udpQueries, tcpQueries atomic.Int32
}

type handler func(q dnsmessage.Message) *dnsmessage.Message

func startUpstream(t testing.TB, ip string, handle handler) *fakeUpstream {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), port)))
	if err != nil {
		_ = pc.Close()
		t.Fatal(err)
	}
	u := &fakeUpstream{addr: netip.AddrPortFrom(netip.MustParseAddr(ip), port)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = pc.Close()
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, src, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			u.udpQueries.Add(1)
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			resp := handle(q)
			if resp == nil {
				continue
			}
			limit := 512
			for _, rr := range q.Additionals {
				if rr.Header.Type == dnsmessage.TypeOPT {
					limit = max(limit, int(rr.Header.Class))
				}
			}
			out := pack(t, resp)
			if len(out) > limit {
				resp.Truncated = true
				resp.Answers, resp.Authorities = nil, nil
				out = pack(t, resp)
			}
			_, _ = pc.WriteToUDPAddrPort(out, src)
		}
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer func() { _ = c.Close() }()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				var n [2]byte
				if _, err := io.ReadFull(c, n[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint16(n[:]))
				if _, err := io.ReadFull(c, msg); err != nil {
					return
				}
				u.tcpQueries.Add(1)
				var q dnsmessage.Message
				if q.Unpack(msg) != nil {
					return
				}
				resp := handle(q)
				if resp == nil {
					return
				}
				out := pack(t, resp)
				_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
			})
		}
	})
	return u
}

func pack(t testing.TB, m *dnsmessage.Message) []byte {
	out, err := m.Pack()
	if err != nil {
		t.Error(err)
	}
	return out
}

// respond starts the answer to q, its question echoed.
func respond(q dnsmessage.Message, rcode dnsmessage.RCode) *dnsmessage.Message {
	return &dnsmessage.Message{
		Header:    dnsmessage.Header{ID: q.ID, Response: true, RecursionDesired: q.RecursionDesired, RecursionAvailable: true, RCode: rcode},
		Questions: q.Questions,
	}
}

// nxdomain knows no name.
func nxdomain(q dnsmessage.Message) *dnsmessage.Message {
	return respond(q, dnsmessage.RCodeNameError)
}

// silent never answers.
func silent(dnsmessage.Message) *dnsmessage.Message { return nil }

// known answers the A records in records (n copies of each), NXDOMAIN for
// any other name.
func known(records map[string]netip.Addr, n int) handler {
	return func(q dnsmessage.Message) *dnsmessage.Message {
		a, ok := records[canonical(q.Questions[0].Name.String())]
		if !ok {
			return nxdomain(q)
		}
		resp := respond(q, dnsmessage.RCodeSuccess)
		if q.Questions[0].Type == dnsmessage.TypeA {
			for range n {
				resp.Answers = append(resp.Answers, dnsmessage.Resource{
					Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 300},
					Body:   &dnsmessage.AResource{A: a.As4()},
				})
			}
		}
		return resp
	}
}

// serve starts a listener of s on ip (any free port) for clients, served
// until the test ends.
func serve(t testing.TB, s *Server, ip, clients string) *Listener {
	t.Helper()
	l, err := s.Listen(netip.AddrPortFrom(netip.MustParseAddr(ip), 0), netip.MustParsePrefix(clients))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return l
}

// newQuery packs a query for name and typ; edns > 0 adds an OPT record
// with that UDP payload size.
func newQuery(t testing.TB, id uint16, name string, typ dnsmessage.Type, edns int) []byte {
	t.Helper()
	out, err := buildQuery(id, name, typ, edns)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func buildQuery(id uint16, name string, typ dnsmessage.Type, edns int) ([]byte, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	errs := []error{b.StartQuestions(), b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})}
	if edns > 0 {
		var rh dnsmessage.ResourceHeader
		errs = append(errs, rh.SetEDNS0(edns, 0, false), b.StartAdditionals(), b.OPTResource(rh, dnsmessage.OPTResource{}))
	}
	out, err := b.Finish()
	return out, errors.Join(append(errs, err)...)
}

// exchangeRaw sends msg to server over network ("udp" or "tcp") from
// local (any when invalid) and returns the raw answer.
func exchangeRaw(server netip.AddrPort, network string, local netip.Addr, msg []byte, wait time.Duration) ([]byte, error) {
	d := net.Dialer{Timeout: wait}
	if local.IsValid() {
		if network == "udp" {
			d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
		} else {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
		}
	}
	c, err := d.Dial(network, server.String())
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(wait))
	if network == "udp" {
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)); err != nil {
		return nil, err
	}
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	resp := make([]byte, binary.BigEndian.Uint16(n[:]))
	_, err = io.ReadFull(c, resp)
	return resp, err
}

// ask sends a query for name and typ and returns the parsed answer and
// its size on the wire.
func ask(t testing.TB, server netip.AddrPort, network, name string, typ dnsmessage.Type, edns int) (dnsmessage.Message, int) {
	t.Helper()
	m, size, err := askErr(server, network, name, typ, edns)
	if err != nil {
		t.Fatal(err)
	}
	return m, size
}

// askErr is ask for goroutines other than the test's.
func askErr(server netip.AddrPort, network, name string, typ dnsmessage.Type, edns int) (dnsmessage.Message, int, error) {
	id := uint16(time.Now().UnixNano())
	msg, err := buildQuery(id, name, typ, edns)
	if err != nil {
		return dnsmessage.Message{}, 0, err
	}
	raw, err := exchangeRaw(server, network, netip.Addr{}, msg, 5*time.Second)
	if err != nil {
		return dnsmessage.Message{}, 0, fmt.Errorf("%s %s %v: %w", network, name, typ, err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(raw); err != nil {
		return m, 0, fmt.Errorf("%s %s %v: unpack the answer: %w", network, name, typ, err)
	}
	if m.ID != id || !m.Response {
		return m, 0, fmt.Errorf("%s %s %v: answer ID %d response %v, want ID %d and a response", network, name, typ, m.ID, m.Response, id)
	}
	return m, len(raw), nil
}

// aRecords lists the A records of an answer.
func aRecords(m dnsmessage.Message) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answers {
		if a, ok := rr.Body.(*dnsmessage.AResource); ok {
			out = append(out, netip.AddrFrom4(a.A))
		}
	}
	return out
}
