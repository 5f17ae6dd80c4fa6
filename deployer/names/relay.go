package names

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// errTruncated says an upstream's UDP answer did not fit: ask over TCP.
var errTruncated = errors.New("truncated")

// relay asks the upstreams in turn for q and returns the first answer
// that is not SERVFAIL or REFUSED, fitted to the client's limit; SERVFAIL
// when none gives one within s.opts.Timeout. Each upstream gets an equal
// share of the time left.
func (s *Server) relay(ctx context.Context, q *query, tcp bool) []byte {
	servfail := func() []byte { return q.reply(dnsmessage.RCodeServerFailure, false, false, nil) }
	out, err := q.upstreamQuery()
	if err != nil {
		s.log.Warn("relay", "question", q.q.Name.String(), "error", err)
		return servfail()
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	for i, up := range s.opts.Upstreams {
		share := time.Until(deadline) / time.Duration(len(s.opts.Upstreams)-i)
		actx, acancel := context.WithTimeout(ctx, share)
		resp, h, err := exchange(actx, up, out, q)
		acancel()
		if err != nil {
			s.log.Debug("relay failed", "upstream", up, "question", q.q.Name.String(), "type", q.q.Type, "error", err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if h.RCode == dnsmessage.RCodeServerFailure || h.RCode == dnsmessage.RCodeRefused {
			s.log.Debug("relay: upstream failed", "upstream", up, "question", q.q.Name.String(), "rcode", h.RCode)
			continue
		}
		return q.truncate(resp, h, tcp)
	}
	return servfail()
}

// exchange sends out to the upstream up with a fresh random ID, over UDP,
// then over TCP when the answer was truncated, until ctx ends.
func exchange(ctx context.Context, up netip.AddrPort, out []byte, q *query) ([]byte, dnsmessage.Header, error) {
	msg := append([]byte(nil), out...)
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(msg, id)
	resp, h, err := exchangeUDP(ctx, up, msg, id, q)
	if errors.Is(err, errTruncated) {
		id = uint16(rand.Uint32())
		binary.BigEndian.PutUint16(msg, id)
		resp, h, err = exchangeTCP(ctx, up, msg, id, q)
	}
	return resp, h, err
}

// exchangeUDP sends msg over a connected UDP socket (a new one, so a new
// source port: only packets from up are read) and reads until an answer
// matching id and the question arrives; anything else is ignored.
func exchangeUDP(ctx context.Context, up netip.AddrPort, msg []byte, id uint16, q *query) ([]byte, dnsmessage.Header, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", up.String())
	if err != nil {
		return nil, dnsmessage.Header{}, fmt.Errorf("udp: %w", err)
	}
	defer func() { _ = c.Close() }()
	stop := watch(ctx, c)
	defer stop()
	if _, err := c.Write(msg); err != nil {
		return nil, dnsmessage.Header{}, fmt.Errorf("udp: %w", err)
	}
	buf := make([]byte, maxUDPAnswer+1)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, dnsmessage.Header{}, fmt.Errorf("udp: %w", contextErr(ctx, err))
		}
		h, ok := q.checkAnswer(buf[:n], id)
		if !ok {
			continue
		}
		if h.Truncated || n > maxUDPAnswer {
			return nil, h, errTruncated
		}
		return append([]byte(nil), buf[:n]...), h, nil
	}
}

// exchangeTCP sends msg over a new TCP connection and reads one answer.
func exchangeTCP(ctx context.Context, up netip.AddrPort, msg []byte, id uint16, q *query) ([]byte, dnsmessage.Header, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", up.String())
	if err != nil {
		return nil, dnsmessage.Header{}, fmt.Errorf("tcp: %w", err)
	}
	defer func() { _ = c.Close() }()
	stop := watch(ctx, c)
	defer stop()
	framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
	if _, err := c.Write(append(framed, msg...)); err != nil {
		return nil, dnsmessage.Header{}, fmt.Errorf("tcp: %w", contextErr(ctx, err))
	}
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, dnsmessage.Header{}, fmt.Errorf("tcp: %w", contextErr(ctx, err))
	}
	resp := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		return nil, dnsmessage.Header{}, fmt.Errorf("tcp: %w", contextErr(ctx, err))
	}
	h, ok := q.checkAnswer(resp, id)
	if !ok {
		return nil, h, fmt.Errorf("tcp: the answer does not match the query")
	}
	return resp, h, nil
}

// watch makes c's reads and writes fail at ctx's deadline, or at once
// when ctx is cancelled before.
func watch(ctx context.Context, c net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// contextErr prefers ctx's error to the I/O error it caused.
func contextErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}
