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
	"syscall"
	"time"
)

// Listener is one listening address of a Server (a service network's
// gateway) with its UDP and TCP sockets. Queries are answered with the
// names SetNames gave its IP address: the address a query arrived on says
// which network asks, nothing in the query can claim another.
type Listener struct {
	s       *Server
	addr    netip.AddrPort
	clients netip.Prefix
	udp     *net.UDPConn
	tcp     *net.TCPListener

	served    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Listen binds addr on UDP and TCP, so the caller knows the bind worked
// before serving. addr must be a specific address (the gateway), never
// the unspecified one: the address a query arrives on says which names
// answer it. Port 0 picks one free on both. Queries from a source outside
// clients (the network's subnet) are answered REFUSED: a container of
// another network that reached this address through the host still
// learns nothing.
func (s *Server) Listen(addr netip.AddrPort, clients netip.Prefix) (*Listener, error) {
	ip := addr.Addr().Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
		return nil, fmt.Errorf("names: listen on %v: a specific address is needed (the network's gateway)", addr)
	}
	if !clients.IsValid() {
		return nil, fmt.Errorf("names: listen on %v: invalid client prefix %v", addr, clients)
	}
	addr = netip.AddrPortFrom(ip, addr.Port())
	udpNet, tcpNet := "udp4", "tcp4"
	if ip.Is6() {
		udpNet, tcpNet = "udp6", "tcp6"
	}
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenUDP(udpNet, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, fmt.Errorf("names: listen on udp %v: %w", addr, err)
		}
		bound := netip.AddrPortFrom(ip, udp.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		tcp, err := net.ListenTCP(tcpNet, net.TCPAddrFromAddrPort(bound))
		if err == nil {
			return &Listener{s: s, addr: bound, clients: clients.Masked(), udp: udp, tcp: tcp}, nil
		}
		_ = udp.Close()
		// A port picked for UDP may be taken on TCP: pick another.
		if addr.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt == 10 {
			return nil, fmt.Errorf("names: listen on tcp %v: %w", bound, err)
		}
	}
}

// Addr is the address the listener is bound to, on UDP and TCP.
func (l *Listener) Addr() netip.AddrPort { return l.addr }

// Close closes both sockets; Serve then returns once the queries in
// flight are done. Safe to call more than once.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = errors.Join(l.udp.Close(), l.tcp.Close())
		if l.closeErr != nil {
			l.closeErr = fmt.Errorf("names: close %v: %w", l.addr, l.closeErr)
		}
	})
	return l.closeErr
}

// Serve answers queries until ctx ends or Close is called; then it closes
// the sockets, cancels the relays in flight, closes the TCP connections
// and returns when every goroutine it started is done. It can be called
// once.
func (l *Listener) Serve(ctx context.Context) error {
	if !l.served.CompareAndSwap(false, true) {
		return fmt.Errorf("names: %v is already served", l.addr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		l.serveUDP(ctx, &wg)
	})
	wg.Go(func() {
		defer cancel()
		l.serveTCP(ctx, &wg)
	})
	wg.Wait()
	return nil
}

func (l *Listener) answer(ctx context.Context, src netip.AddrPort, msg []byte, tcp bool) []byte {
	return l.s.answer(ctx, l.addr.Addr(), l.clients.Contains(src.Addr().Unmap()), msg, tcp)
}

// serveUDP reads queries until the socket is closed, each answered in a
// goroutine of its own, at most MaxUDPInflight at once (one more is
// dropped: the client retries).
func (l *Listener) serveUDP(ctx context.Context, wg *sync.WaitGroup) {
	inflight := make(chan struct{}, l.s.opts.MaxUDPInflight)
	buf := make([]byte, maxQuery+1)
	var backoff time.Duration
	for {
		n, src, err := l.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			l.s.log.Warn("read udp", "addr", l.addr, "error", err)
			if backoff = nextBackoff(backoff); !sleep(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		if n < headerLen || n > maxQuery {
			continue
		}
		select {
		case inflight <- struct{}{}:
		default:
			l.s.log.Debug("udp queries at the limit: dropped one", "addr", l.addr, "from", src)
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		wg.Go(func() {
			defer func() { <-inflight }()
			if resp := l.answer(ctx, src, msg, false); resp != nil {
				if _, err := l.udp.WriteToUDPAddrPort(resp, src); err != nil && ctx.Err() == nil {
					l.s.log.Debug("write udp", "addr", l.addr, "to", src, "error", err)
				}
			}
		})
	}
}

// serveTCP accepts connections until the listener is closed, at most
// MaxTCPConns at once (one more is closed at once).
func (l *Listener) serveTCP(ctx context.Context, wg *sync.WaitGroup) {
	conns := make(chan struct{}, l.s.opts.MaxTCPConns)
	var backoff time.Duration
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			l.s.log.Warn("accept tcp", "addr", l.addr, "error", err)
			if backoff = nextBackoff(backoff); !sleep(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		select {
		case conns <- struct{}{}:
		default:
			l.s.log.Debug("tcp connections at the limit: closed one", "addr", l.addr, "from", c.RemoteAddr())
			_ = c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-conns }()
			l.serveConn(ctx, c)
		})
	}
}

// maxTCPQueries bounds the queries of one TCP connection.
const maxTCPQueries = 64

// serveConn answers the queries of one connection in turn (RFC 7766
// framing), each to arrive whole within TCPIdleTimeout, until the client
// closes, a query is malformed or too big, or ctx ends.
func (l *Listener) serveConn(ctx context.Context, c *net.TCPConn) {
	defer func() { _ = c.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	idle := l.s.opts.TCPIdleTimeout
	msg := make([]byte, maxQuery)
	for range maxTCPQueries {
		if err := c.SetReadDeadline(time.Now().Add(idle)); err != nil {
			return
		}
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		size := int(binary.BigEndian.Uint16(n[:]))
		if size < headerLen || size > maxQuery {
			return
		}
		if _, err := io.ReadFull(c, msg[:size]); err != nil {
			return
		}
		resp := l.answer(ctx, src, msg[:size], true)
		if resp == nil {
			return
		}
		if err := c.SetWriteDeadline(time.Now().Add(idle)); err != nil {
			return
		}
		framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		if _, err := c.Write(append(framed, resp...)); err != nil {
			return
		}
	}
}

func nextBackoff(d time.Duration) time.Duration {
	return min(max(2*d, 5*time.Millisecond), time.Second)
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
