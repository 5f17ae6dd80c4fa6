package deployer

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/deployctl/deployctl/deployer/proxy"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// IngressTLSSource gives the host's proxy the certificates and keys of
// the https ingress routes (issue 13, point 5); the controller's client
// implements it (GET /v1/agent/secrets?ingress=1, for this host only).
type IngressTLSSource interface {
	AgentIngressTLS(ctx context.Context, host string) (wire.AgentIngressTLS, error)
}

// httpsProtocol is the listener kind of an http port whose routes
// terminate TLS: switching a port between http and https reopens it.
const httpsProtocol = "https"

// tlsFetchTimeout bounds one fetch of the certificates.
const tlsFetchTimeout = 10 * time.Second

// ingressTLS is what the runner holds of the routes' certificates: parsed
// pairs by the secret versions they were made from, in memory only (the
// PEM buffers are cleared once parsed), and the problem of the last
// fetch, reported with the heartbeat on every https port.
type ingressTLS struct {
	certs   proxy.Certificates
	loaded  map[wire.IngressTLSRef]*tls.Certificate
	problem string // guarded by the runner's mu
}

func (g *ingressRunner) tlsSource() IngressTLSSource {
	if g.cfg.TLSSource != nil {
		return g.cfg.TLSSource
	}
	src, _ := g.cfg.Source.(IngressTLSSource)
	return src
}

// syncCertificates loads the certificates the routes name that are not
// loaded yet (one fetch for all), forgets those no route names, and
// installs, for every https port, one certificate per route host: when
// routes of one host name different versions (two services sharing it,
// rotated one apply at a time) the newest pair. A fetch or a pair that
// fails keeps what was served (an old certificate beats none) and is
// reported on the port; the next apply tries again.
func (g *ingressRunner) syncCertificates(ctx context.Context, routes []wire.IngressRoute) {
	var needed []wire.IngressTLSRef
	for _, r := range routes {
		if !r.TLS.IsZero() && !slices.Contains(needed, r.TLS) {
			needed = append(needed, r.TLS)
		}
	}
	if g.tls.loaded == nil {
		g.tls.loaded = map[wire.IngressTLSRef]*tls.Certificate{}
	}
	problem := ""
	if slices.ContainsFunc(needed, func(ref wire.IngressTLSRef) bool { return g.tls.loaded[ref] == nil }) {
		problem = g.fetchCertificates(ctx, needed)
	}
	for ref := range g.tls.loaded {
		if !slices.Contains(needed, ref) && problem == "" {
			delete(g.tls.loaded, ref)
		}
	}
	g.mu.Lock()
	g.tls.problem = problem
	g.mu.Unlock()
	type hostKey struct {
		listen int
		host   string
	}
	best := map[hostKey]wire.IngressTLSRef{}
	for _, r := range routes {
		k := hostKey{r.Listen, r.Host}
		if r.TLS.IsZero() || g.tls.loaded[r.TLS] == nil {
			continue
		}
		if cur, ok := best[k]; !ok || newer(r.TLS, cur) {
			best[k] = r.TLS
		}
	}
	byPort := map[int][]proxy.HostCertificate{}
	for k, ref := range best {
		byPort[k.listen] = append(byPort[k.listen], proxy.HostCertificate{Host: k.host, Certificate: g.tls.loaded[ref]})
	}
	// A host whose pair did not load keeps the certificate it was served
	// with.
	for _, r := range routes {
		if _, ok := best[hostKey{r.Listen, r.Host}]; ok || r.TLS.IsZero() {
			continue
		}
		for _, h := range g.tls.certs.Get(r.Listen) {
			if h.Host == r.Host && !slices.ContainsFunc(byPort[r.Listen], func(x proxy.HostCertificate) bool { return x.Host == h.Host }) {
				byPort[r.Listen] = append(byPort[r.Listen], h)
			}
		}
	}
	g.tls.certs.Set(byPort)
}

func newer(a, b wire.IngressTLSRef) bool {
	return a.Cert.Version > b.Cert.Version || (a.Cert.Version == b.Cert.Version && a.Key.Version > b.Key.Version)
}

// fetchCertificates fetches and parses every needed pair; "" when all
// loaded, else what failed (never a value).
func (g *ingressRunner) fetchCertificates(ctx context.Context, needed []wire.IngressTLSRef) string {
	src := g.tlsSource()
	if src == nil {
		return "this agent cannot fetch ingress certificates (no source)"
	}
	ctx, cancel := context.WithTimeout(ctx, tlsFetchTimeout)
	defer cancel()
	got, err := src.AgentIngressTLS(ctx, g.host)
	if err != nil {
		g.log.Warn("cannot fetch the ingress certificates; serving the ones loaded, retrying", "error", err)
		return fmt.Sprintf("ingress certificates: %v", err)
	}
	var problems []string
	for i := range got.Certificates {
		c := &got.Certificates[i]
		pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		clear(c.CertPEM)
		clear(c.KeyPEM)
		if !slices.Contains(needed, c.IngressTLSRef) {
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("certificate %s v%d with key %s v%d: %v", c.Cert.Name, c.Cert.Version, c.Key.Name, c.Key.Version, err))
			continue
		}
		g.tls.loaded[c.IngressTLSRef] = &pair
		g.log.Info("ingress certificate loaded", "cert", c.Cert.Name, "cert_version", c.Cert.Version, "key", c.Key.Name, "key_version", c.Key.Version)
	}
	for _, ref := range needed {
		if g.tls.loaded[ref] == nil && !slices.ContainsFunc(got.Certificates, func(c wire.IngressCertificate) bool { return c.IngressTLSRef == ref }) {
			problems = append(problems, fmt.Sprintf("certificate %s v%d: not in the controller's answer yet", ref.Cert.Name, ref.Cert.Version))
		}
	}
	if len(problems) > 0 {
		g.log.Error("ingress certificates not loaded; serving the ones loaded before", "problems", problems)
		return fmt.Sprint(problems)
	}
	return ""
}

// tlsProblemsLocked lists the certificate problem on every https port.
func (g *ingressRunner) tlsProblemsLocked() []state.ProxyProblem {
	if g.tls.problem == "" || g.cluster == nil {
		return nil
	}
	var out []state.ProxyProblem
	seen := map[int]bool{}
	for _, r := range g.cluster.Routes {
		if !r.TLS.IsZero() && !seen[r.Listen] {
			seen[r.Listen] = true
			out = append(out, state.ProxyProblem{Listen: r.Listen, Addr: net.JoinHostPort(g.cfg.ListenIP, strconv.Itoa(r.Listen)), Error: g.tls.problem})
		}
	}
	return out
}
