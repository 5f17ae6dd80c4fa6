package raftstore

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is the raft.StreamLayer: plain TCP, or TLS on both the
// listening and the dialing side when a *tls.Config is given. It tracks
// every connection so that Close leaves nothing open (the NetworkTransport
// itself neither closes accepted connections nor its pool on Close).
type streamLayer struct {
	listener  net.Listener
	advertise net.Addr
	tlsConfig *tls.Config

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer listens on bindAddr. The advertised address is advertise
// when set (kept as given, so a host name stays a host name for TLS server
// name checks), else the listener's address, which must then be a concrete
// IP: peers cannot dial 0.0.0.0.
func newStreamLayer(bindAddr, advertise string, tlsConfig *tls.Config) (*streamLayer, error) {
	var advertiseAddr net.Addr
	if advertise != "" {
		host, port, err := net.SplitHostPort(advertise)
		if err != nil {
			return nil, fmt.Errorf("raftstore: advertise address %q: %w", advertise, err)
		}
		if host == "" || port == "" || port == "0" {
			return nil, fmt.Errorf("raftstore: advertise address %q needs a host and a non-zero port", advertise)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return nil, fmt.Errorf("raftstore: advertise address %q is not dialable", advertise)
		}
		advertiseAddr = advertisedAddr(advertise)
	}
	listener, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("raftstore: listen on %s: %w", bindAddr, err)
	}
	if advertiseAddr == nil {
		tcpAddr, ok := listener.Addr().(*net.TCPAddr)
		if !ok || tcpAddr.IP == nil || tcpAddr.IP.IsUnspecified() {
			_ = listener.Close()
			return nil, fmt.Errorf("raftstore: bind address %s is not dialable: set AdvertiseAddr", listener.Addr())
		}
		advertiseAddr = tcpAddr
	}
	if tlsConfig != nil {
		listener = tls.NewListener(listener, tlsConfig)
	}
	return &streamLayer{
		listener:  listener,
		advertise: advertiseAddr,
		tlsConfig: tlsConfig,
		conns:     make(map[*trackedConn]struct{}),
	}, nil
}

// Accept implements net.Listener. With TLS the handshake runs on the first
// read, in the transport's per-connection goroutine, so a slow client cannot
// stall the accept loop.
func (s *streamLayer) Accept() (net.Conn, error) {
	conn, err := s.listener.Accept()
	if err != nil {
		return nil, err
	}
	return s.track(conn)
}

// Dial implements raft.StreamLayer. With TLS the handshake completes within
// timeout, and the server name defaults to the host part of address.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: timeout}
	var conn net.Conn
	var err error
	if s.tlsConfig != nil {
		conn, err = tls.DialWithDialer(dialer, "tcp", string(address), s.tlsConfig)
	} else {
		conn, err = dialer.Dial("tcp", string(address))
	}
	if err != nil {
		return nil, err
	}
	return s.track(conn)
}

func (s *streamLayer) track(conn net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	tracked := &trackedConn{Conn: conn, layer: s}
	s.conns[tracked] = struct{}{}
	return tracked, nil
}

func (s *streamLayer) forget(conn *trackedConn) {
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
}

// Close implements net.Listener: it closes the listener and every tracked
// connection. Idempotent.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()

	err := s.listener.Close()
	for conn := range conns {
		_ = conn.Conn.Close()
	}
	return err
}

// Addr implements net.Listener; raft takes the advertised address from it.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// trackedConn removes itself from its stream layer when closed.
type trackedConn struct {
	net.Conn
	layer     *streamLayer
	closeOnce sync.Once
}

func (c *trackedConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.layer.forget(c)
		err = c.Conn.Close()
	})
	return err
}

// advertisedAddr is an address exactly as configured (possibly a host name).
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
