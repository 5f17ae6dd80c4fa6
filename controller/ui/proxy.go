package ui

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/internal/registryhost"
)

// ProxyConfig wires the dashboard proxy `deployctl ui` runs.
type ProxyConfig struct {
	// Servers are the cluster's API addresses (host:port); the proxy
	// sends to the first and moves to the next when one cannot be reached.
	Servers []string
	// Scheme is "https" with Transport presenting the CLI's certificate,
	// or "http" (a --dev server).
	Scheme    string
	Transport http.RoundTripper
	Logger    hclog.Logger
}

// Proxy forwards a browser on this machine to the dashboard of the
// cluster, with the CLI's client certificate (as `kubectl proxy` does).
// It holds an operator's credentials, so it forwards the dashboard's
// pages only (/ui/; the pages make their API calls on the server, as the
// certificate's caller), only for a Host naming the loopback interface
// (no DNS rebinding), and it keeps the browser's Host so that the
// server's same-origin check compares the browser's Origin with it.
type Proxy struct {
	cfg ProxyConfig
	rp  *httputil.ReverseProxy
	mu  sync.Mutex
	cur int
}

// ErrNotLoopback: `deployctl ui --listen` names an address other than the
// loopback interface.
var ErrNotLoopback = errors.New("not a loopback address")

// CheckLoopback refuses a listen address off the loopback interface: the
// proxy acts with the CLI's certificate for anyone who reaches it.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w; want host:port such as 127.0.0.1:8001", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: %w; the proxy forwards with your certificate, so it listens on 127.0.0.1 or ::1 only", addr, ErrNotLoopback)
	}
	return nil
}

// NewProxy returns the proxy's handler.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("ui proxy: no server address; give --addr")
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	p := &Proxy{cfg: cfg}
	p.rp = &httputil.ReverseProxy{
		Transport:     cfg.Transport,
		FlushInterval: -1, // the live streams
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: cfg.Scheme, Host: p.server()})
			r.Out.Host = r.In.Host
			r.Out.Header.Del("X-Deployctl-Caller")
			r.Out.Header.Del("X-Deployctl-Forwarded-By")
			r.Out.Header.Del("Authorization")
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			next := p.failed()
			cfg.Logger.Warn("ui proxy: server unreachable", "error", err, "next", next)
			http.Error(w, fmt.Sprintf("deployctl ui: %v; the next request goes to %s (reload)", err, next), http.StatusBadGateway)
		},
	}
	return p, nil
}

func (p *Proxy) server() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.Servers[p.cur]
}

// failed moves on to the next server and returns it.
func (p *Proxy) failed() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = (p.cur + 1) % len(p.cfg.Servers)
	return p.cfg.Servers[p.cur]
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !registryhost.IsLoopback(r.Host) {
		http.Error(w, fmt.Sprintf("deployctl ui: Host %q is not this machine's loopback; open the URL deployctl ui printed", r.Host), http.StatusMisdirectedRequest)
		return
	}
	switch {
	case r.URL.Path == "/" || r.URL.Path == "/ui":
		http.Redirect(w, r, Prefix, http.StatusFound)
	case strings.HasPrefix(r.URL.Path, Prefix):
		p.rp.ServeHTTP(w, r)
	default:
		http.Error(w, fmt.Sprintf("deployctl ui serves the dashboard only (%s); %s is not forwarded: use the CLI for the API", Prefix, r.URL.Path), http.StatusNotFound)
	}
}
