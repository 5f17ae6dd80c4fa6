package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// ServeTCP accepts connections on ln for the tcp route of a listen port
// and splices each to a healthy target of the route's service (on this
// host, or through another host's proxy: a TCP hop), until ctx
// ends; then ln and every connection are closed, and ServeTCP returns when
// their goroutines are done. A connection counts in flight on its target
// (for Drain) until either side closes it. A connection arriving
// while the port has no tcp route or the service no healthy target is
// closed at once. A target that refuses the connection (or a hop host
// without a replica to take it) is replaced once by another: nothing was
// sent yet, so this is safe for any protocol.
func (t *Table) ServeTCP(ctx context.Context, listen int, ln net.Listener) error {
	return t.acceptTCP(ctx, ln, func(conn net.Conn) {
		pr := t.routes.Load().ports[listen]
		if pr == nil || pr.tcp == nil {
			_ = conn.Close()
			return
		}
		t.serveTCPConn(ctx, pr.tcp, conn)
	})
}

// ServePoolTCP is ServeTCP for a pool without a route (a service
// connection's listener, pools.go): every connection on ln goes to the
// pool of service's port, which must be listed in Desired.Pools.
func (t *Table) ServePoolTCP(ctx context.Context, service string, port int, ln net.Listener) error {
	key := poolKey{service, port}
	return t.acceptTCP(ctx, ln, func(conn net.Conn) {
		p := (*t.byKey.Load())[key]
		if p == nil {
			_ = conn.Close()
			return
		}
		t.serveTCPConn(ctx, &boundRoute{Route: Route{Protocol: TCP, Service: service, Port: port}, pool: p}, conn)
	})
}

// acceptTCP accepts on ln until ctx ends, serving each connection in a
// goroutine; then closes ln and waits for them.
func (t *Table) acceptTCP(ctx context.Context, ln net.Listener, serve func(net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Go(func() { serve(conn) })
	}
}

// DialTimeout bounds the connection to a target.
const DialTimeout = 5 * time.Second

func (t *Table) serveTCPConn(ctx context.Context, route *boundRoute, client net.Conn) {
	defer func() { _ = client.Close() }()
	// Every healthy replica of the cluster: this host's on their own
	// address, other hosts' through their proxy (a TCP hop, tcp_hop.go).
	tg, backend, early, err := t.connectTCP(ctx, route, allHosts, anySide)
	if tg == nil {
		return
	}
	defer tg.release()
	if err != nil {
		return
	}
	defer func() { _ = backend.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = client.Close(); _ = backend.Close() })
	defer stop()
	// What the hop host's replica sent right after the hop's answer (a
	// server that speaks first) may sit in the handshake's read buffer.
	if len(early) > 0 {
		if _, err := client.Write(early); err != nil {
			return
		}
	}
	splice(client, backend)
}

// connectTCP picks a target of route's pool and opens a connection to
// it: any healthy target of the cluster on a side drawn by the pool's
// split (scope allHosts), or one of this host's own on side s (thisHost:
// a TCP hop's receiving side, pickHop). A target that refuses (or, for a
// hop, whose host has no replica to take it) is replaced once by another,
// not at the same address and on the same side when it can: nothing of
// the client's was sent yet, so this is safe for any protocol. It returns
// the target, counted in flight (the caller releases it; nil when no
// healthy target was found), and the connection with any bytes the target
// already sent (see dialTCP), or the last error.
func (t *Table) connectTCP(ctx context.Context, route *boundRoute, scope int, s side) (*target, net.Conn, []byte, error) {
	var tg *target
	if scope == thisHost {
		tg, s = route.pool.pickHop(s)
	} else {
		tg, s = route.pool.pick()
	}
	if tg == nil {
		return nil, nil, nil, nil
	}
	conn, early, err := t.dialTCP(ctx, route, tg, s)
	if err != nil && retryableDial(err) {
		if next, nextSide := route.pool.pickAgain(scope, s, tg); next != nil {
			tg.release()
			tg, s = next, nextSide
			t.stats.retry(route.Service)
			conn, early, err = t.dialTCP(ctx, route, tg, s)
		}
	}
	return tg, conn, early, err
}

// dialTCP connects to a target: a replica on this host directly (one
// connection in its figures, an error when the dial fails), another
// host's proxy with a TCP hop handshake (dialHop) asking for side s. A
// dial that fails ejects the target's address (eject.go).
func (t *Table) dialTCP(ctx context.Context, route *boundRoute, tg *target, s side) (net.Conn, []byte, error) {
	var conn net.Conn
	var early []byte
	var err error
	if tg.key.Hop {
		conn, early, err = t.dialHop(ctx, route.Route, tg.key.Addr, s)
	} else {
		dialer := net.Dialer{Timeout: DialTimeout}
		conn, err = dialer.DialContext(ctx, "tcp", tg.key.Addr)
		tg.figures.observeDial(ctx, err)
	}
	if err != nil && dialFailed(err) {
		t.eject(tg.key.Addr)
	}
	return conn, early, err
}

// splice copies both ways until both directions are done, passing a
// half-close on (a client that closes its write side still reads the
// answer). On linux io.Copy between TCP connections uses splice(2).
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
		} else {
			// An error on one side ends both: close the reader of the
			// other direction too.
			_ = dst.Close()
			_ = src.Close()
		}
		done <- struct{}{}
	}
	go pipe(a, b)
	go pipe(b, a)
	<-done
	<-done
}
