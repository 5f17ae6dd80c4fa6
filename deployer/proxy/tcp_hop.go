package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// TCP hops: a tcp route's connection to a replica on another host goes
// through that host's hop listener, the one HTTP hops use (mutual TLS with
// the cluster's certificates), so that traffic between hosts is
// authenticated and encrypted and a host exposes one port to the others.
// The sending proxy opens a connection to the hop listener and asks for
// an HTTP/1.1 upgrade to UpgradeTCPHop with the hop headers naming the
// service and port; the receiving proxy connects to one of its own healthy
// replicas first, answers 101 Switching Protocols only then, and both
// sides splice. Until the 101 nothing of the client's bytes was sent, so a
// hop host that has no replica to take the connection (503 with
// HeaderHopUnavailable) is retried on another target like a refused dial.

// UpgradeTCPHop is the HTTP upgrade token of a TCP hop. Only a hop
// listener accepts it; an ingress port refuses a request that names it
// (it would otherwise reach another host's hop listener as an HTTP hop and
// open a raw connection to a replica, past the routes' paths).
const UpgradeTCPHop = "deployctl-tcp"

// errHopUnavailable: the hop host answered that it has no replica to take
// the connection (HeaderHopUnavailable), as for an HTTP hop.
var errHopUnavailable = errors.New("proxy: the hop host has no replica to take the connection")

// retryableDial says whether a failed connection to a target may be
// replaced by one to another target: the target never got anything (a
// refused, reset or closed connection, or a hop host without a replica).
// A timeout is not retried: the client has waited DialTimeout already.
func retryableDial(err error) bool {
	return retryableError(err) || errors.Is(err, errHopUnavailable)
}

// hopClientTLS is the TLS configuration of TCP hops (Options.HopTLSConfig).
func hopClientTLS(o Options, transport http.RoundTripper) *tls.Config {
	if o.HopTLSConfig != nil {
		return o.HopTLSConfig
	}
	if ht, ok := transport.(*http.Transport); ok && ht.TLSClientConfig != nil {
		return ht.TLSClientConfig
	}
	// HopTLS without certificates: the system roots, as the Transport
	// would use; the cluster's hop listeners will refuse it.
	return &tls.Config{MinVersion: tls.VersionTLS13}
}

// dialHop opens a TCP hop to the proxy at addr for route's service and
// port, on side s of a canary split: the connection (TLS when hops are) once the hop host answered 101
// and is connected to one of its replicas, and the bytes that replica sent
// which were read with the answer. The whole handshake is bounded by
// DialTimeout. A hop host without a replica to take it is
// errHopUnavailable.
func (t *Table) dialHop(ctx context.Context, route Route, addr string, s side) (net.Conn, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	dialer := &net.Dialer{Timeout: DialTimeout}
	var conn net.Conn
	var err error
	if t.hopTLS != nil {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: t.hopTLS}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("proxy: tcp hop to %s: %w", addr, err)
	}
	// ctx bounds the request and the answer too: when it ends, the
	// deadline in the past fails the pending read or write.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	early, err := hopHandshake(conn, route, addr, s)
	if !stop() && err == nil {
		// ctx ended just as the answer came: the deadline is set (or about
		// to be), so the connection cannot be used.
		_ = conn.Close()
		err = context.Cause(ctx)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("proxy: tcp hop to %s: %w", addr, err)
	}
	return conn, early, nil
}

// hopHandshake sends the upgrade request on conn and reads the answer,
// returning what conn sent after a 101; it closes conn on any other
// answer or error.
func hopHandshake(conn net.Conn, route Route, addr string, s side) ([]byte, error) {
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Scheme: "http", Host: addr, Path: "/"},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Connection":     {"Upgrade"},
			"Upgrade":        {UpgradeTCPHop},
			HeaderHopService: {route.Service},
			HeaderHopPort:    {strconv.Itoa(route.Port)},
		},
		Host: addr,
	}
	setHopSide(req.Header, s)
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("send the upgrade: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols && upgradesTo(resp.Header, UpgradeTCPHop):
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(HeaderHopUnavailable) != "":
		_ = conn.Close()
		return nil, errHopUnavailable
	default:
		_ = conn.Close()
		return nil, fmt.Errorf("the hop answered %s", resp.Status)
	}
	var early []byte
	if n := br.Buffered(); n > 0 {
		early, _ = br.Peek(n)
	}
	return early, nil
}

// upgradesTo says whether a header's Upgrade names protocol.
func upgradesTo(h http.Header, protocol string) bool {
	for _, v := range h.Values("Upgrade") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), protocol) {
				return true
			}
		}
	}
	return false
}

// isTCPHop says whether a request on the hop listener asks for a TCP hop.
func isTCPHop(r *http.Request) bool {
	if !upgradesTo(r.Header, UpgradeTCPHop) {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "upgrade") {
				return true
			}
		}
	}
	return false
}

// tcpRoute is the tcp route to a service's port, nil when this host has
// none: a TCP hop is served only for a pool that a tcp route names, so
// that no hop opens a raw connection to a port that only http routes
// (with their host and path rules) reach.
func (rt *routing) tcpRoute(service string, port int) *boundRoute {
	for _, pr := range rt.ports {
		if pr.tcp != nil && pr.tcp.Service == service && pr.tcp.Port == port {
			return pr.tcp
		}
	}
	return nil
}

// serveTCPHop is the receiving side of a TCP hop (on the hop listener
// only): it connects to one of this host's healthy replicas (a refused one
// replaced once by another), answers 101, takes the connection over from
// the HTTP server and splices it to the replica. The connection counts in
// flight on the replica's target until it closes, so this host's Drain
// waits for it. No replica to take it: 503 with HeaderHopUnavailable, and
// the sender tries another target.
func (t *Table) serveTCPHop(w http.ResponseWriter, r *http.Request, service string, port int) {
	if r.Method != http.MethodGet {
		plain(w, http.StatusBadRequest, "deployctl proxy: a tcp hop is a GET")
		return
	}
	unavailable := func(why string) {
		w.Header().Set(HeaderHopUnavailable, "1")
		plain(w, http.StatusServiceUnavailable, fmt.Sprintf("deployctl proxy: service %s port %d: %s", service, port, why))
	}
	route := t.routes.Load().tcpRoute(service, port)
	if route == nil {
		// A tcp service connection's pool (pools.go) is one too.
		key := poolKey{service, port}
		if p := (*t.byKey.Load())[key]; p != nil && (*t.pinnedNow.Load())[key] == TCP {
			route = &boundRoute{Route: Route{Protocol: TCP, Service: service, Port: port}, pool: p}
		}
	}
	if route == nil {
		unavailable("no tcp route on this host")
		return
	}
	tg, backend, _, err := t.connectTCP(r.Context(), route, thisHost, hopSide(r.Header))
	if tg == nil {
		unavailable("no healthy replica on this host")
		return
	}
	defer tg.release()
	if err != nil {
		if retryableDial(err) {
			unavailable(fmt.Sprintf("replica %s did not take the connection: %s", tg.key.ID, shortError(err)))
			return
		}
		plain(w, http.StatusBadGateway, fmt.Sprintf("deployctl proxy: replica %s of service %s did not answer: %s", tg.key.ID, service, shortError(err)))
		return
	}
	defer func() { _ = backend.Close() }()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		plain(w, http.StatusInternalServerError, "deployctl proxy: cannot take over the connection for a tcp hop (HTTP/1.1 only)")
		return
	}
	defer func() { _ = conn.Close() }()
	// The server's read and write deadlines (ReadTimeout, WriteTimeout)
	// were meant for a request: the spliced connection lives as long as
	// both ends want. Only the answer is bounded.
	_ = conn.SetDeadline(time.Time{})
	_ = conn.SetWriteDeadline(time.Now().Add(DialTimeout))
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + UpgradeTCPHop + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	_ = conn.SetWriteDeadline(time.Time{})
	stop := context.AfterFunc(r.Context(), func() { _ = conn.Close(); _ = backend.Close() })
	defer stop()
	// Bytes the sender sent after its request that the server already
	// read: they go first.
	if n := brw.Reader.Buffered(); n > 0 {
		buffered, _ := brw.Reader.Peek(n)
		if _, err := backend.Write(buffered); err != nil {
			return
		}
	}
	splice(conn, backend)
}
