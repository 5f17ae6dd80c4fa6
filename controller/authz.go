package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
)

// callerHeader carries the identity of the original caller of a request a
// server forwards to the leader ("operator", "agent/h1", "server/n2"). The
// leader believes it only when the TLS peer that sent it holds a server
// certificate; from anyone else the request is refused (403), so a client
// cannot claim another role by setting it.
const callerHeader = "X-Deployctl-Caller"

// ErrForbidden: the caller's certificate does not allow the request (wrong
// role, another host, no role at all). Answered as 403 "forbidden" or
// "no_role"; the client maps both back onto it.
var ErrForbidden = wire.ErrForbidden

// Caller is who a request speaks for: the role and name of the verified
// client certificate, or of the caller a server forwarded for. Dev is set
// on a server without TLS (--dev): there is no certificate, every caller
// is the local operator and may act as the agent of any host.
type Caller struct {
	pki.Identity
	Dev bool
}

func (c Caller) String() string {
	if c.Dev {
		return "dev (no TLS)"
	}
	return c.Identity.String()
}

type callerKey struct{}

// CallerOf returns the caller the API authenticated for the request's
// context.
func CallerOf(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// authenticate establishes the caller of every request before routing:
//   - without TLS (a --dev server, whose API is the loopback operator's),
//     the caller is Dev;
//   - with TLS, the role is read from the verified client certificate
//     (pki.IdentityOf); a certificate without a role (issued before roles)
//     is refused with the fix;
//   - X-Deployctl-Caller is taken as the caller only from a server
//     certificate, and refused from any other. X-Deployctl-Forwarded-By is
//     dropped from non-servers (it only stops forwarding loops).
func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, err := a.callerOf(r)
		if err != nil {
			a.writeErr(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)))
	})
}

func (a *API) callerOf(r *http.Request) (Caller, error) {
	if r.TLS == nil {
		if a.cfg.Scheme == "https" {
			return Caller{}, fmt.Errorf("%w: this API speaks mutual TLS only", wire.ErrUnauthenticated)
		}
		r.Header.Del(callerHeader)
		r.Header.Del(forwardedHeader)
		return Caller{Dev: true}, nil
	}
	if len(r.TLS.PeerCertificates) == 0 {
		return Caller{}, fmt.Errorf("%w: no client certificate: present one issued by the cluster CA (deployctl tls init)", wire.ErrUnauthenticated)
	}
	id, err := pki.IdentityOf(r.TLS.PeerCertificates[0])
	if err != nil {
		return Caller{}, fmt.Errorf("%w: %w", wire.ErrNoRole, err)
	}
	claimed := r.Header.Get(callerHeader)
	if id.Role != pki.RoleServer {
		if claimed != "" || len(r.Header.Values(callerHeader)) > 0 {
			return Caller{}, fmt.Errorf("%w: %s is accepted from server certificates only; this request came with the certificate of %s", wire.ErrForbidden, callerHeader, id)
		}
		r.Header.Del(forwardedHeader)
		return Caller{Identity: id}, nil
	}
	if claimed == "" {
		return Caller{Identity: id}, nil
	}
	if len(r.Header.Values(callerHeader)) != 1 {
		return Caller{}, fmt.Errorf("%w: %s given more than once", wire.ErrForbidden, callerHeader)
	}
	fwd, err := pki.ParseIdentity(claimed)
	if err != nil {
		return Caller{}, fmt.Errorf("%w: %s %q: %w", wire.ErrForbidden, callerHeader, claimed, err)
	}
	return Caller{Identity: fwd}, nil
}

// allow wraps a route so that only callers with one of roles reach it. The
// check runs on the server that first receives the request (before it
// forwards) and again on the leader, with the forwarded identity.
func (a *API) allow(h http.HandlerFunc, roles ...pki.Role) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller, ok := CallerOf(r.Context())
		if !ok {
			writeError(w, http.StatusUnauthorized, wire.CodeUnauthenticated, "no caller")
			return
		}
		if caller.Dev || slices.Contains(roles, caller.Role) {
			h(w, r)
			return
		}
		names := make([]string, len(roles))
		for i, role := range roles {
			names[i] = string(role)
		}
		writeError(w, http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf("%s %s needs the %s role; this request came with the certificate of %s",
			r.Method, r.URL.Path, strings.Join(names, " or "), caller))
	}
}

// speaksFor reports whether the caller may act as the agent of host: an
// agent certificate for that host, or the server certificate of the node of
// that name (a server's local agent reports as host = node id). Dev callers
// may speak for any host; operators for none. On false it has written the
// 403.
func speaksFor(w http.ResponseWriter, r *http.Request, host string) bool {
	caller, ok := CallerOf(r.Context())
	switch {
	case !ok:
		writeError(w, http.StatusUnauthorized, wire.CodeUnauthenticated, "no caller")
		return false
	case caller.Dev:
		return true
	case (caller.Role == pki.RoleAgent || caller.Role == pki.RoleServer) && caller.Name == host:
		return true
	case caller.Role == pki.RoleOperator:
		writeError(w, http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf(
			"%s %s speaks for host %q and needs that host's agent certificate; an operator certificate cannot report for a host", r.Method, r.URL.Path, host))
		return false
	}
	writeError(w, http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf(
		"%s %s for host %q needs the agent certificate of %q; this request came with the certificate of %s, which speaks for host %q only",
		r.Method, r.URL.Path, host, host, caller, caller.Name))
	return false
}
