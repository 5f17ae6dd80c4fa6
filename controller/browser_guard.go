package controller

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/deployctl/deployctl/controller/ui"
	"github.com/deployctl/deployctl/internal/wire"
)

// browserGuard refuses what a web page can make a visitor's browser send
// to the API. Under --dev the API is plain HTTP on loopback with no
// authentication: any page the operator opens could POST an apply to
// 127.0.0.1:7070 (a "simple" cross-site request needs no preflight), or,
// through DNS rebinding (a name of the attacker's that resolves to
// 127.0.0.1), read and submit the dashboard as if it were its own origin.
// The CLI, the agents and the servers send neither Origin nor
// Sec-Fetch-*; browsers send them (Sec-Fetch-* since 2019-2023, Origin on
// every POST), so requests with them are judged here and the others pass.
// Under TLS a browser holds no client certificate, and `deployctl ui`
// checks the Host itself (controller/ui/proxy.go), but the same rules
// apply: they cost nothing.
func (a *API) browserGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkBrowserRequest(r); err != nil {
			a.writeErr(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkBrowserRequest is browserGuard's rule; nil for a request without
// a browser's headers.
func checkBrowserRequest(r *http.Request) error {
	site, origin := r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin")
	if site == "" && origin == "" && r.Header.Get("Sec-Fetch-Mode") == "" {
		return nil
	}
	// DNS rebinding: the page's origin is the attacker's name, so the
	// browser calls it same-origin; only the Host header tells.
	if !loopbackOrIPHost(r.Host) {
		return fmt.Errorf("%w: a browser request for host %q: the API and the dashboard answer browsers only at an IP address or localhost (DNS rebinding guard); open http://127.0.0.1:PORT/ui/ or use `deployctl ui`", wire.ErrForbidden, r.Host)
	}
	// The dashboard's forms carry their own same-origin token
	// (controller/ui checkSameOrigin); its pages are reads.
	if strings.HasPrefix(r.URL.Path, ui.Prefix) {
		return nil
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("%w: a %s request from a web page (Sec-Fetch-Site: %s): the API takes writes from the CLI, not from other sites", wire.ErrForbidden, r.Method, site)
	}
	if origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("%w: a %s request from the page of %q: the API takes writes from the CLI, not from other sites", wire.ErrForbidden, r.Method, origin)
		}
	}
	return nil
}

// loopbackOrIPHost reports whether a Host header names an IP address or
// localhost, the names no attacker's DNS answers for.
func loopbackOrIPHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(host) != nil {
		return true
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}
