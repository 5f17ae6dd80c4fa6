package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"time"
)

// Pool listeners serve one pool without a route: a service's connection
// to another service (issue 9) reaches the agent on a listener of its own
// (one per caller network, target service and port), so the listener
// already says which pool; no Host or path is looked at. Requests follow
// the ingress rules: healthy targets only, local or through another
// host's proxy, retried once when safe, drained before a stop.

// PoolHandler serves http requests to the pool of a service's port. The
// pool must be listed in Desired.Pools (or have a route) to exist; until
// it has a healthy target the answer is 503.
func (t *Table) PoolHandler(service string, port int) http.Handler {
	h := &poolHandler{table: t, key: poolKey{service, port}}
	h.proxy = t.reverseProxy(h.backendError, h.countResponse)
	return h
}

type poolHandler struct {
	table *Table
	key   poolKey
	proxy *httputil.ReverseProxy
}

func (h *poolHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := (*h.table.byKey.Load())[h.key]
	var tg *target
	var s side
	if p != nil {
		tg, s = p.pick()
	}
	if tg == nil {
		h.table.stats.count(h.key.service, http.StatusServiceUnavailable)
		plain(w, http.StatusServiceUnavailable, fmt.Sprintf("deployctl proxy: service %s has no healthy replica serving port %d", h.key.service, h.key.port))
		return
	}
	route := &boundRoute{Route: Route{Protocol: HTTP, Service: h.key.service, Port: h.key.port}, pool: p}
	a := &attempt{route: route, target: tg, retryable: replayable(r), side: s, start: time.Now()}
	defer func() { a.target.release() }()
	h.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), attemptKey{}, a)))
}

func (h *poolHandler) countResponse(resp *http.Response) error {
	h.table.stats.count(h.key.service, resp.StatusCode)
	if a, ok := resp.Request.Context().Value(attemptKey{}).(*attempt); ok {
		h.table.stats.took(h.key.service, time.Since(a.start))
	}
	return nil
}

func (h *poolHandler) backendError(w http.ResponseWriter, r *http.Request, err error) {
	(&httpHandler{table: h.table}).backendError(w, r, err)
}
