package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NewTransport is the transport to targets: no environment proxy, no
// compression (bodies pass as they are), HTTP/1.1 with many idle
// keep-alive connections per target, a bounded dial and no response
// timeout (long polls and streams are the application's business).
//
// Idle connections are closed after IdleTimeout, before the backend's own
// keep-alive timeout would close them (Node.js closes after 5 s by
// default): when a backend closes an idle connection just as the proxy
// reuses it, the transport retries only replayable requests, so a POST
// would fail with a 502.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     IdleTimeout,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// matchHTTP finds the route of a request on a listen port: the most
// specific host group that has a route whose path prefix matches (exact
// name, then *.parent, then any host), and in it the longest prefix.
func (rt *routing) matchHTTP(listen int, hostHeader, requestPath string) *boundRoute {
	pr := rt.ports[listen]
	if pr == nil || pr.tcp != nil {
		return nil
	}
	host := canonicalHost(hostHeader)
	p := cleanPath(requestPath)
	if r := firstMatch(pr.exact[host], p); r != nil {
		return r
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		if r := firstMatch(pr.wildcard[parent], p); r != nil {
			return r
		}
	}
	return firstMatch(pr.any, p)
}

func firstMatch(routes []*boundRoute, p string) *boundRoute {
	for _, r := range routes {
		if pathHasPrefix(p, r.Path) {
			return r
		}
	}
	return nil
}

// pathHasPrefix matches whole segments: "/api" takes "/api" and "/api/x",
// not "/apix".
func pathHasPrefix(p, prefix string) bool {
	if prefix == "/" || prefix == "" {
		return true
	}
	return p == prefix || (strings.HasPrefix(p, prefix) && p[len(prefix)] == '/')
}

// canonicalHost is the Host header without port or trailing dot, lower-case.
func canonicalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// cleanPath is the path a route is chosen by: decoded and cleaned as
// net/http's ServeMux cleans it ("/x/../api" is "/api"), so a request
// cannot reach a prefix's service by a spelling the prefix does not match,
// nor leave it by one that the backend would resolve into it.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

// IdleTimeout is how long an idle connection to a target is kept.
const IdleTimeout = 4 * time.Second

type attemptKey struct{}

// attempt is one proxied request: the target it holds (counted in
// flight), and whether it may be retried.
type attempt struct {
	route     *boundRoute
	target    *target
	retryable bool
	retried   bool
	// side is the side of a canary split the request was sent to (a hop
	// passes it on); a retry keeps it when it can.
	side side
	// hopped: the request came from another host's proxy; it goes to one
	// of this host's replicas only, and keeps the X-Forwarded-* headers
	// the first proxy set.
	hopped bool
	// start is when the proxy took the request, for its latency.
	start time.Time
}

// Headers of a request between two hosts' proxies. The sending proxy sets
// them; the receiving one reads them on its hop listener only (never on an
// ingress port) and removes them before the request reaches a replica.
const (
	HeaderHopService = "X-Deployctl-Service"
	HeaderHopPort    = "X-Deployctl-Port"
	// HeaderHopUnavailable marks the receiving proxy's 503 when it has no
	// healthy replica of the service (its view was ahead of the sender's):
	// the sender may try another target, as for a refused connection.
	HeaderHopUnavailable = "X-Deployctl-Hop-Unavailable"
	// HeaderHopCanary is the side of a canary split the sending proxy
	// chose: "1" the canary's replicas, "0" the others; absent without a
	// split. The receiving proxy picks one of its own replicas of that
	// side, so that the split holds through hops.
	HeaderHopCanary = "X-Deployctl-Canary"
)

// hopSide is the side a hop request asks for (HeaderHopCanary).
func hopSide(h http.Header) side {
	switch h.Get(HeaderHopCanary) {
	case "1":
		return canarySide
	case "0":
		return stableSide
	}
	return anySide
}

// setHopSide names s in a hop's headers.
func setHopSide(h http.Header, s side) {
	switch s {
	case canarySide:
		h.Set(HeaderHopCanary, "1")
	case stableSide:
		h.Set(HeaderHopCanary, "0")
	default:
		h.Del(HeaderHopCanary)
	}
}

// HTTPHandler serves http routes of one listen port: the agent runs an
// http.Server with it on each http port of Changes.Open.
func (t *Table) HTTPHandler(listen int) http.Handler {
	h := &httpHandler{table: t, listen: listen}
	h.proxy = t.reverseProxy(h.backendError, h.countResponse)
	return h
}

func (t *Table) reverseProxy(onError func(http.ResponseWriter, *http.Request, error), onResponse func(*http.Response) error) *httputil.ReverseProxy {
	// FlushInterval is 1 ms, not -1: -1 makes ReverseProxy write the
	// headers on their own (a timer that fires at once) and then flush
	// each body write, two writes for a small response where 1 ms makes
	// one (~10% less CPU per request, make bench-proxy). Event streams and
	// bodies of unknown length are still flushed at every write.
	return &httputil.ReverseProxy{
		Rewrite:        t.rewrite,
		Transport:      &retryTransport{table: t, base: t.transport},
		FlushInterval:  time.Millisecond,
		ErrorHandler:   onError,
		ModifyResponse: onResponse,
		BufferPool:     &t.buffers,
	}
}

type httpHandler struct {
	table  *Table
	listen int
	proxy  *httputil.ReverseProxy
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if upgradesTo(r.Header, UpgradeTCPHop) {
		// Only hosts' proxies open TCP hops (tcp_hop.go); forwarded to a
		// hop target, this would open a raw connection past the routes.
		h.table.stats.count("", http.StatusBadRequest)
		plain(w, http.StatusBadRequest, "deployctl proxy: the "+UpgradeTCPHop+" upgrade is only for hops between hosts' proxies")
		return
	}
	route := h.table.routes.Load().matchHTTP(h.listen, r.Host, r.URL.Path)
	if route == nil {
		h.table.stats.count("", http.StatusNotFound)
		plain(w, http.StatusNotFound, fmt.Sprintf("deployctl proxy: no route for host %q and path %q on port %d", canonicalHost(r.Host), cleanPath(r.URL.Path), h.listen))
		return
	}
	tg, s := route.pool.pick()
	if tg == nil {
		h.table.stats.count(route.Service, http.StatusServiceUnavailable)
		plain(w, http.StatusServiceUnavailable, fmt.Sprintf("deployctl proxy: service %s has no healthy replica", route.Service))
		return
	}
	a := &attempt{route: route, target: tg, retryable: replayable(r), side: s, start: time.Now()}
	defer func() { a.target.release() }()
	h.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), attemptKey{}, a)))
}

// rewrite sends the request to the attempt's target, keeping the Host the
// client asked for and setting X-Forwarded-For/-Host/-Proto. The
// ReverseProxy has already removed any X-Forwarded-* and Forwarded header
// the client sent, so a client cannot choose what the backend reads.
//
// A request that came through another host's proxy keeps the X-Forwarded-*
// headers that proxy set (the hop listener only accepts other hosts'
// proxies), and loses the hop headers.
func (t *Table) rewrite(pr *httputil.ProxyRequest) {
	a := pr.In.Context().Value(attemptKey{}).(*attempt)
	pr.Out.Host = pr.In.Host
	if a.hopped {
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := pr.In.Header.Values(h); len(v) > 0 {
				pr.Out.Header[h] = v
			}
		}
	} else {
		pr.SetXForwarded()
	}
	t.aim(pr.Out, a)
}

// aim points a request at its attempt's target: a replica's address on
// this host, without any hop header (a client's included), or another
// host's proxy with the service, port and side in the hop headers.
func (t *Table) aim(out *http.Request, a *attempt) {
	out.URL.Host = a.target.key.Addr
	out.URL.Scheme = "http"
	if !a.target.key.Hop {
		out.Header.Del(HeaderHopService)
		out.Header.Del(HeaderHopPort)
		out.Header.Del(HeaderHopCanary)
		return
	}
	out.URL.Scheme = t.hopScheme
	out.Header.Set(HeaderHopService, a.route.Service)
	out.Header.Set(HeaderHopPort, strconv.Itoa(a.route.Port))
	setHopSide(out.Header, a.side)
}

func (h *httpHandler) countResponse(resp *http.Response) error {
	if a, ok := resp.Request.Context().Value(attemptKey{}).(*attempt); ok {
		h.table.stats.count(a.route.Service, resp.StatusCode)
		h.table.stats.took(a.route.Service, time.Since(a.start))
	}
	return nil
}

// backendError answers 502 when no target answered (or 499-like
// cancellations, which the client does not see).
func (h *httpHandler) backendError(w http.ResponseWriter, r *http.Request, err error) {
	a := r.Context().Value(attemptKey{}).(*attempt)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away
	}
	h.table.stats.count(a.route.Service, http.StatusBadGateway)
	h.table.stats.took(a.route.Service, time.Since(a.start))
	plain(w, http.StatusBadGateway, fmt.Sprintf("deployctl proxy: replica %s of service %s did not answer: %s", a.target.key.ID, a.route.Service, shortError(err)))
}

func shortError(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before a response"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "transport error"
}

func plain(w http.ResponseWriter, status int, line string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, line+"\n")
}

// replayable says whether a request may be sent twice: an idempotent
// method (RFC 9110 9.2.2: GET, HEAD, OPTIONS, PUT, DELETE; TRACE is not
// proxied specially and is left out) with no body, since the body of the
// first try is consumed.
func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// retryableError is a failure before any response that says the target
// never took the request: refused, reset, or closed before answering.
// Timeouts are not: the target may be working on it.
func retryableError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// retryTransport sends a request to its attempt's target and, when that
// fails before any response with a retryable error and the request is
// replayable, once more to another healthy target of the same pool (on
// the same side of a canary split when it can).
type retryTransport struct {
	table *Table
	base  http.RoundTripper
}

// send is one round trip to the attempt's target: counted in the
// target's figures, and a failed dial ejects its address.
func (rt *retryTransport) send(req *http.Request, a *attempt) (*http.Response, error) {
	start := time.Now()
	resp, err := rt.base.RoundTrip(req)
	a.target.figures.observeHTTP(req.Context(), start, resp, err)
	if err != nil && dialFailed(err) {
		rt.table.eject(a.target.key.Addr)
	}
	return resp, err
}

func (rt *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		return rt.base.RoundTrip(req)
	}
	resp, err := rt.send(req, a)
	if !a.retryable || a.retried || req.Context().Err() != nil {
		return resp, err
	}
	switch {
	case err != nil && retryableError(err):
	case err == nil && resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(HeaderHopUnavailable) != "":
	default:
		return resp, err
	}
	scope := allHosts
	if a.hopped {
		scope = thisHost
	}
	next, s := a.route.pool.pickAgain(scope, a.side, a.target)
	if next == nil {
		return resp, err
	}
	if resp != nil {
		_ = resp.Body.Close()
	}
	a.target.release()
	a.target, a.side, a.retried = next, s, true
	rt.table.stats.retry(a.route.Service)
	retry := req.Clone(req.Context())
	rt.table.aim(retry, a)
	retry.Body = nil
	return rt.send(retry, a)
}

// HopHandler serves the hop listener (--proxy-addr): requests other hosts'
// proxies send to this host's replicas of a service, named by the hop
// headers, and TCP hops (an upgrade to UpgradeTCPHop, tcp_hop.go). They
// go to this host's healthy targets only, so a request hops at most once.
// The listener must admit only other hosts' proxies (mutual TLS with the
// cluster's certificates): it trusts their X-Forwarded-*. A TCP hop's
// connection is taken over from the http.Server, whose Close does not
// close it: it ends with the request's context, so the server's
// BaseContext should end when the proxy stops.
func (t *Table) HopHandler() http.Handler {
	h := &hopHandler{table: t}
	h.proxy = t.reverseProxy(h.backendError, nil)
	return h
}

type hopHandler struct {
	table *Table
	proxy *httputil.ReverseProxy
}

func (h *hopHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	service := r.Header.Get(HeaderHopService)
	port, err := strconv.Atoi(r.Header.Get(HeaderHopPort))
	if service == "" || err != nil || port <= 0 || port > 65535 {
		plain(w, http.StatusBadRequest, "deployctl proxy: a hop needs the "+HeaderHopService+" and "+HeaderHopPort+" headers")
		return
	}
	if isTCPHop(r) {
		h.table.serveTCPHop(w, r, service, port)
		return
	}
	h.table.mu.Lock()
	p := h.table.pools[poolKey{service, port}]
	h.table.mu.Unlock()
	var tg *target
	s := hopSide(r.Header)
	if p != nil {
		tg, s = p.pickHop(s)
	}
	if tg == nil {
		w.Header().Set(HeaderHopUnavailable, "1")
		plain(w, http.StatusServiceUnavailable, fmt.Sprintf("deployctl proxy: service %s has no healthy replica%s on this host", service, s.describe()))
		return
	}
	route := &boundRoute{Route: Route{Service: service, Port: port, Protocol: HTTP}, pool: p}
	a := &attempt{route: route, target: tg, retryable: replayable(r), hopped: true, side: s}
	defer func() { a.target.release() }()
	h.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), attemptKey{}, a)))
}

func (h *hopHandler) backendError(w http.ResponseWriter, r *http.Request, err error) {
	a := r.Context().Value(attemptKey{}).(*attempt)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return
	}
	plain(w, http.StatusBadGateway, fmt.Sprintf("deployctl proxy: replica %s of service %s did not answer: %s", a.target.key.ID, a.route.Service, shortError(err)))
}

// bufferPool reuses the 32 KiB copy buffers of the ReverseProxy, which it
// would otherwise allocate for every request.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32*1024)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
