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
// and splices each to a healthy target of the route's service, until ctx
// ends; then ln and every connection are closed, and ServeTCP returns when
// their goroutines are done. A connection counts in flight on its target
// (for Drain) until either side closes it. A connection arriving
// while the port has no tcp route or the service no healthy target is
// closed at once. A target that refuses the connection is replaced once
// by another: nothing was sent yet, so this is safe for any protocol.
func (t *Table) ServeTCP(ctx context.Context, listen int, ln net.Listener) error {
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
		wg.Go(func() { t.serveTCPConn(ctx, listen, conn) })
	}
}

// DialTimeout bounds the connection to a target.
const DialTimeout = 5 * time.Second

func (t *Table) serveTCPConn(ctx context.Context, listen int, client net.Conn) {
	defer func() { _ = client.Close() }()
	pr := t.routes.Load().ports[listen]
	if pr == nil || pr.tcp == nil {
		return
	}
	p := pr.tcp.pool
	// Only this host's replicas: TCP has no hop to another host's proxy yet
	// (DESIGN.md, what is left).
	tg := p.pickLocal(nil)
	if tg == nil {
		return
	}
	dialer := net.Dialer{Timeout: DialTimeout}
	backend, err := dialer.DialContext(ctx, "tcp", tg.key.Addr)
	if err != nil && dialFailed(err) {
		t.eject(tg.key.Addr)
	}
	if err != nil && retryableError(err) {
		if next := p.pickLocal(tg); next != nil {
			tg.release()
			tg = next
			backend, err = dialer.DialContext(ctx, "tcp", tg.key.Addr)
		}
	}
	defer tg.release()
	if err != nil {
		return
	}
	defer func() { _ = backend.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = client.Close(); _ = backend.Close() })
	defer stop()
	splice(client, backend)
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
