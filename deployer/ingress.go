package deployer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deployctl/deployctl/deployer/names"
	"github.com/deployctl/deployctl/deployer/proxy"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/hashicorp/go-hclog"
)

// IngressSource is the cluster's traffic view: the controller's blocking
// query of every service's ingress routes and healthy replicas. The
// controller's HTTP client implements it.
type IngressSource interface {
	// Ingress blocks until the table's Index > afterIndex, or wait
	// elapses (then returns the current table).
	Ingress(ctx context.Context, afterIndex uint64, wait time.Duration) (wire.IngressTable, error)
}

// IngressConfig turns on the host's proxy (issue 8): the services'
// ingress ports on ListenIP, balanced over every healthy replica in the
// cluster, local ones on their bridge address, remote ones through their
// host's proxy at its advertised ProxyAddr.
type IngressConfig struct {
	Source IngressSource
	// ListenIP is where ingress ports listen: 0.0.0.0 by default,
	// 127.0.0.1 under --dev.
	ListenIP string
	// ProxyAddr is where this host's hop listener accepts other hosts'
	// proxies ("" for none: a single host). It is advertised as it is, so
	// it must be an address other hosts reach.
	ProxyAddr string
	// ServerTLS secures the hop listener (mutual TLS with the cluster's
	// certificates, peers checked by the caller's VerifyPeerCertificate);
	// ClientTLS is what this proxy presents to other hosts' hop listeners.
	// Both nil: plain HTTP (--dev, loopback only).
	ServerTLS *tls.Config
	ClientTLS *tls.Config
	// TLSSource gives the certificates of https ingress routes (nil: the
	// Source, if it can; ingress_tls.go).
	TLSSource IngressTLSSource

	// Service connections (issue 9, connections.go): Networks lists the
	// host's service networks, Names answers declared names on their
	// gateways, Filter enforces their packet rules. Networks nil: no
	// service connections (Names must be set with it; Filter nil leaves
	// the networks unfiltered, with a warning).
	Networks NetworkLister
	Names    *names.Server
	Filter   PacketFilter
}

// Ingress runner timing.
const (
	// ingressWait is how long one blocking query of the cluster's traffic
	// view waits for a change.
	ingressWait = 30 * time.Second
	// listenRetry is how often a listen port that could not be opened (in
	// use) is tried again.
	listenRetry = 2 * time.Second
	// orphanDrain bounds the drain of a container removed without a
	// stop_grace_period of its own (an orphan, a replaced fingerprint).
	orphanDrain = 5 * time.Second
)

// localTarget is one replica of this host that serves ingress ports, as
// the reconcile loop sees it.
type localTarget struct {
	service   string
	replica   string
	container string
	ip        string
	ports     []int
	healthy   bool
}

// localTargetID names a local target by replica and container: a replica
// whose container is recreated (removed behind the agent's back) is a new
// target even at the same address, since a drained key never comes back.
func localTargetID(replica, containerID string) string {
	return replica + "/" + shortID(containerID)
}

// replicaOfTarget is the replica a target ID names: a local target's ID
// without its container (localTargetID), a hop target's as it is.
func replicaOfTarget(id string) string {
	replica, _, _ := strings.Cut(id, "/")
	return replica
}

// ingressRunner owns the host's proxy table and its listeners. The
// reconcile loop tells it about local replicas (setLocal) and asks it to
// drain one before stopping it (drain); a poller feeds it the cluster's
// view.
type ingressRunner struct {
	cfg   IngressConfig
	host  string
	log   hclog.Logger
	table *proxy.Table
	// logs serves the replicas' logs on the hop listener (logs.go); nil
	// when the runtime cannot read them.
	logs http.Handler

	mu      sync.Mutex
	local   []localTarget
	cluster *wire.IngressTable
	// sides are the canary flags of this host's replicas of services
	// under a split, as the cluster's table last listed them (it lists a
	// replica only while the controller has it healthy); guarded by mu.
	sides map[string]bool
	wake  chan struct{}
	// filterAsks carries filtered's requests to run.
	filterAsks chan filterAsk
	// failed are the listeners that would not open, by listen port (0:
	// the hop listener); reported with every heartbeat.
	failed map[int]state.ProxyProblem

	// Owned by run.
	listeners map[int]*ingressListener
	conn      connState // guarded by mu: conn.problem only
	// tls: the https routes' certificates (ingress_tls.go); owned by run
	// but for tls.problem, guarded by mu.
	tls ingressTLS
}

type ingressListener struct {
	protocol string
	close    func()
}

func newIngressRunner(cfg IngressConfig, host string, log hclog.Logger) *ingressRunner {
	transport := proxy.NewTransport()
	if cfg.ClientTLS != nil {
		transport.TLSClientConfig = cfg.ClientTLS
	}
	if cfg.ListenIP == "" {
		cfg.ListenIP = "0.0.0.0"
	}
	return &ingressRunner{
		cfg:        cfg,
		host:       host,
		log:        log.Named("ingress"),
		table:      proxy.NewTableWith(proxy.Options{Transport: transport, HopTLS: cfg.ClientTLS != nil, HopTLSConfig: cfg.ClientTLS}),
		wake:       make(chan struct{}, 1),
		filterAsks: make(chan filterAsk),
		listeners:  map[int]*ingressListener{},
		failed:     map[int]state.ProxyProblem{},
		sides:      map[string]bool{},
		conn:       connState{listeners: map[connKey]*connListener{}, dns: map[netip.Addr]*dnsListener{}},
	}
}

// setLocal records this host's replicas; the runner applies them at once.
// Called by the reconcile loop, never blocks.
func (g *ingressRunner) setLocal(targets []localTarget) {
	g.mu.Lock()
	same := slices.EqualFunc(g.local, targets, func(a, b localTarget) bool {
		return a.service == b.service && a.replica == b.replica && a.container == b.container && a.ip == b.ip && a.healthy == b.healthy && slices.Equal(a.ports, b.ports)
	})
	if !same {
		g.local = targets
	}
	g.mu.Unlock()
	if !same {
		g.poke()
	}
}

func (g *ingressRunner) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// drain takes every target of a local replica out of the pools and waits
// until its in-flight requests and connections (from this host's ingress
// ports and from other hosts' proxies through the hop listener) are done,
// or ctx ends. The agent stops the container after it returns.
func (g *ingressRunner) drain(ctx context.Context, service, replica string) {
	var keys []proxy.TargetKey
	for _, t := range g.table.Current().Targets {
		if strings.HasPrefix(t.ID, replica+"/") && t.Service == service && !t.Hop {
			keys = append(keys, t.TargetKey)
		}
	}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			err := g.table.Drain(ctx, k)
			switch {
			case err == nil:
				g.log.Debug("drained", "target", k.String())
			case errors.Is(err, proxy.ErrUnknownTarget):
			default:
				g.log.Warn("stopping a replica with requests still in flight", "target", k.String(), "error", err)
			}
		})
	}
	wg.Wait()
}

// run serves until ctx ends: the hop listener, the cluster poller, and
// the ingress listeners that the routes ask for.
func (g *ingressRunner) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if g.cfg.ProxyAddr != "" {
		ln, err := g.listenHop()
		if err != nil {
			g.setProblem(0, g.cfg.ProxyAddr, err)
			g.log.Error("cannot open the proxy's hop listener: other hosts cannot send traffic to this host's replicas", "addr", g.cfg.ProxyAddr, "error", err)
		} else {
			// BaseContext: TCP hops' connections, taken over from the
			// server, end with ctx (srv.Close does not close them).
			srv := &http.Server{Handler: hopHandler(g.table.HopHandler(), g.logs), ReadHeaderTimeout: 10 * time.Second, ErrorLog: g.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
				BaseContext: func(net.Listener) context.Context { return ctx }}
			wg.Go(func() { _ = srv.Serve(ln) })
			defer func() { _ = srv.Close() }()
			g.log.Info("proxy hop listener", "addr", ln.Addr().String(), "tls", g.cfg.ServerTLS != nil)
		}
	}
	wg.Go(func() { g.pollCluster(ctx) })
	defer g.closeAll()
	defer g.closeConnections()
	defer g.table.Close()
	if g.cfg.Networks != nil && g.cfg.Filter == nil {
		g.log.Warn("no packet filter: containers of service networks can reach every port of this host")
	}
	retry := time.NewTicker(listenRetry)
	defer retry.Stop()
	for {
		g.apply(ctx)
		g.applyConnections(ctx)
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		case <-retry.C:
		case ask := <-g.filterAsks:
			g.applyConnections(ctx)
			ask.done <- g.filterCovers(ask.bridge)
		}
	}
}

func (g *ingressRunner) listenHop() (net.Listener, error) {
	ln, err := net.Listen("tcp", g.cfg.ProxyAddr)
	if err != nil {
		return nil, err
	}
	if g.cfg.ServerTLS != nil {
		ln = tls.NewListener(ln, g.cfg.ServerTLS)
	}
	return ln, nil
}

// pollCluster long-polls the controller for the cluster's traffic view.
func (g *ingressRunner) pollCluster(ctx context.Context) {
	var index uint64
	retry := newBackoff()
	for ctx.Err() == nil {
		table, err := g.cfg.Source.Ingress(ctx, index, ingressWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			delay := retry.nextAfter(err)
			g.log.Debug("cannot read the cluster's ingress view; retrying", "error", err, "retry_in", delay)
			if !sleepCtx(ctx, delay) {
				return
			}
			continue
		}
		retry.reset()
		if table.Index == index && index != 0 {
			continue
		}
		index = table.Index
		g.mu.Lock()
		g.cluster = &table
		g.mu.Unlock()
		g.poke()
	}
}

// desired merges the cluster's routes and remote replicas with this host's
// own replicas, whose health the agent knows first-hand, and the canary
// splits with the side of every replica.
//
// A local replica's side comes from the cluster's table too (the agent
// does not know which batch a replica is of), which lists it only once
// the controller has it healthy. Until then a replica of a service under
// a split gets no request here: on the wrong side it would take the other
// side's share (a new canary replica taking a stable share, most likely).
// Its side is remembered while the split lasts, so a replica the table
// stops listing for a while (its host late with a heartbeat) keeps
// serving here.
func (g *ingressRunner) desired() proxy.Desired {
	g.mu.Lock()
	defer g.mu.Unlock()
	var want proxy.Desired
	listed := map[string]bool{} // this host's replicas in the table: canary or not
	if g.cluster != nil {
		for _, r := range g.cluster.Routes {
			want.Routes = append(want.Routes, proxy.Route{Listen: r.Listen, Protocol: r.Protocol, Host: r.Host, Path: r.Path, Service: r.Service, Port: r.Port})
		}
		for _, b := range g.cluster.Backends {
			if b.Host == g.host {
				listed[b.Replica] = b.Canary
			}
			if b.Host == g.host || b.ProxyAddr == "" {
				continue
			}
			for _, port := range b.Ports {
				want.Targets = append(want.Targets, proxy.DesiredTarget{
					TargetKey: proxy.TargetKey{Service: b.Service, Port: port, ID: b.Replica, Addr: b.ProxyAddr, Hop: true},
					Healthy:   true,
					Canary:    b.Canary,
				})
			}
		}
		want.Pools = connectionPools(g.cluster)
		for _, c := range g.cluster.Canaries {
			if want.Canaries == nil {
				want.Canaries = map[string]float64{}
			}
			want.Canaries[c.Service] = c.Weight
		}
	}
	sides := map[string]bool{}
	for _, l := range g.local {
		healthy := l.healthy
		canary, known := listed[l.replica]
		if !known {
			canary, known = g.sides[l.replica]
		}
		if _, split := want.Canaries[l.service]; split {
			if known {
				sides[l.replica] = canary
			} else {
				healthy = false
			}
		}
		for _, port := range l.ports {
			want.Targets = append(want.Targets, proxy.DesiredTarget{
				TargetKey: proxy.TargetKey{Service: l.service, Port: port, ID: localTargetID(l.replica, l.container), Addr: net.JoinHostPort(l.ip, strconv.Itoa(port))},
				Healthy:   healthy,
				Canary:    canary,
			})
		}
	}
	g.sides = sides
	return want
}

// apply installs the desired table and opens and closes listeners so that
// exactly the routed ports listen. A port that cannot be opened (in use)
// is logged and tried again at the next apply.
func (g *ingressRunner) apply(ctx context.Context) {
	ch := g.table.Apply(g.desired())
	for _, r := range ch.Refused {
		g.log.Warn("ingress route refused: it collides with another service's", "service", r.Service, "listen", r.Listen, "host", r.Host, "path", r.Path)
	}
	g.mu.Lock()
	var routes []wire.IngressRoute
	if g.cluster != nil {
		routes = g.cluster.Routes
	}
	g.mu.Unlock()
	g.syncCertificates(ctx, routes)
	https := map[int]bool{}
	for _, r := range routes {
		https[r.Listen] = https[r.Listen] || !r.TLS.IsZero()
	}
	wanted := map[int]string{}
	for _, r := range g.table.Current().Routes {
		wanted[r.Listen] = r.Protocol
		if r.Protocol == proxy.HTTP && https[r.Listen] {
			wanted[r.Listen] = httpsProtocol
		}
	}
	for port, l := range g.listeners {
		if wanted[port] != l.protocol {
			l.close()
			delete(g.listeners, port)
			g.log.Info("ingress port closed", "listen", port)
		}
	}
	g.mu.Lock()
	for port := range g.failed {
		if _, ok := wanted[port]; !ok && port != 0 {
			delete(g.failed, port) // no route wants it any more
		}
	}
	g.mu.Unlock()
	for port, protocol := range wanted {
		if g.listeners[port] != nil {
			continue
		}
		l, err := g.open(ctx, port, protocol)
		if err != nil {
			g.setProblem(port, net.JoinHostPort(g.cfg.ListenIP, strconv.Itoa(port)), err)
			g.log.Error("cannot open ingress port; retrying", "listen", port, "protocol", protocol, "error", err)
			continue
		}
		g.setProblem(port, "", nil)
		g.listeners[port] = l
		g.log.Info("ingress port open", "listen", net.JoinHostPort(g.cfg.ListenIP, strconv.Itoa(port)), "protocol", protocol)
	}
}

func (g *ingressRunner) open(ctx context.Context, port int, protocol string) (*ingressListener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(g.cfg.ListenIP, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if protocol == proxy.TCP {
		tcpCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = g.table.ServeTCP(tcpCtx, port, ln)
		}()
		return &ingressListener{protocol: protocol, close: func() { cancel(); <-done }}, nil
	}
	if protocol == httpsProtocol {
		ln = tls.NewListener(ln, g.tls.certs.ServerConfig(port))
	}
	srv := &http.Server{
		Handler:           g.table.HTTPHandler(port),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          g.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return &ingressListener{protocol: protocol, close: func() { _ = srv.Close(); <-done }}, nil
}

// setProblem records (err != nil) or clears a listener that would not open.
func (g *ingressRunner) setProblem(listen int, addr string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		delete(g.failed, listen)
		return
	}
	g.failed[listen] = state.ProxyProblem{Listen: listen, Addr: addr, Error: listenError(err)}
}

// listenError is the part of a listen error that names the cause ("bind:
// address already in use"), without the address the problem carries.
func listenError(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}

// problems lists the listeners that would not open, by listen port (the
// hop listener first); nil for a host without a proxy or with none.
func (g *ingressRunner) problems() []state.ProxyProblem {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []state.ProxyProblem
	for _, p := range g.failed {
		out = append(out, p)
	}
	out = append(out, g.connectionProblemsLocked()...)
	out = append(out, g.tlsProblemsLocked()...)
	slices.SortFunc(out, func(a, b state.ProxyProblem) int { return a.Listen - b.Listen })
	return out
}

func (g *ingressRunner) closeAll() {
	for port, l := range g.listeners {
		l.close()
		delete(g.listeners, port)
	}
}
