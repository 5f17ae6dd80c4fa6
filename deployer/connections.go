package deployer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deployctl/deployctl/deployer/firewall"
	"github.com/deployctl/deployctl/deployer/names"
	"github.com/deployctl/deployctl/deployer/proxy"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/hashicorp/go-hclog"
)

// Service connections (issue 9, docs/networking.md): for each service
// network on this host and each connection its service declared, the
// proxy listens on the network's gateway at a port of its own and serves
// the target's pool there; the network's DNS (the gateway) answers the
// target's name with its service address; the packet filter sends
// VIP:port from that bridge, and only from it, to that listener, and lets
// the bridge reach nothing else on the host.
//
// The order makes every step safe on its own: a listener opens before the
// filter sends anything to it and closes only after the filter stopped
// sending; a name is answered only once its path exists.

// FirewallID is the packet filter's id for a host (deployer/firewall: up
// to 8 of [A-Za-z0-9_]): a hash of the host id, so that several agents on
// one machine (tests) keep their chains apart and a restarted agent
// adopts its own.
func FirewallID(hostID string) string {
	sum := sha256.Sum256([]byte(hostID))
	return hex.EncodeToString(sum[:4])
}

// NetworkLister lists this host's service networks (the runtime).
type NetworkLister interface {
	ServiceNetworks(ctx context.Context, host string) ([]ServiceNetwork, error)
}

// PacketFilter enforces the packet rules of the host's service networks
// (deployer/firewall).
type PacketFilter interface {
	Apply(ctx context.Context, r firewall.Rules) error
}

// filterRefresh is how often the unchanged packet rules are applied again
// (a no-op when they are in place: one iptables-save per table).
const filterRefresh = 10 * time.Second

// connKey names one connection listener: a caller network's gateway and
// the target service's port.
type connKey struct {
	network  string
	gateway  netip.Addr
	to       string
	port     int
	protocol string
}

type connListener struct {
	port  int // the listener's own port on the gateway
	close func()
}

type dnsListener struct {
	listener *names.Listener
	done     chan struct{}
}

// connState is the runner's service-connection side; owned by run.
type connState struct {
	listeners map[connKey]*connListener
	dns       map[netip.Addr]*dnsListener
	// applied is the last rule set the filter took (nil: none yet), and
	// when: the same set is applied again after filterRefresh, which
	// restores rules someone flushed (a firewalld reload, iptables -F).
	applied   *firewall.Rules
	appliedAt time.Time
	// problem is the filter's last error, reported with the heartbeat.
	problem string
}

// connectionPools are the pools every connection of the cluster reaches,
// kept by the table even before a target is known.
func connectionPools(cluster *wire.IngressTable) []proxy.PoolKey {
	if cluster == nil {
		return nil
	}
	var out []proxy.PoolKey
	for _, c := range cluster.Connections {
		k := proxy.PoolKey{Service: c.To, Port: c.Port, Protocol: c.Protocol}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// applyConnections makes the listeners, names and filter rules follow the
// host's service networks and the cluster's connections. Errors are
// logged and retried at the next apply (every listenRetry at least).
func (g *ingressRunner) applyConnections(ctx context.Context) {
	if g.cfg.Networks == nil {
		return
	}
	listCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nets, err := g.cfg.Networks.ServiceNetworks(listCtx, g.host)
	cancel()
	if err != nil {
		g.log.Warn("cannot list the service networks; retrying", "error", err)
		return
	}
	g.mu.Lock()
	cluster := g.cluster
	g.mu.Unlock()
	byFrom := map[string][]wire.ServiceConnection{}
	if cluster != nil {
		for _, c := range cluster.Connections {
			byFrom[c.From] = append(byFrom[c.From], c)
		}
	}
	slices.SortFunc(nets, func(a, b ServiceNetwork) int { return strings.Compare(a.Name, b.Name) })

	want := map[connKey]bool{}
	gateways := map[netip.Addr]bool{}
	var rules firewall.Rules
	type naming struct {
		gateway netip.Addr
		names   map[string]netip.Addr
	}
	var namings []naming
	for _, n := range nets {
		if !n.Gateway.IsValid() || n.Bridge == "" {
			continue
		}
		gateways[n.Gateway] = true
		fw := firewall.Network{Bridge: n.Bridge, Gateway: n.Gateway}
		answers := map[string]netip.Addr{}
		for _, c := range byFrom[n.Service] {
			vip, err := netip.ParseAddr(c.VIP)
			if err != nil {
				continue
			}
			k := connKey{network: n.Name, gateway: n.Gateway, to: c.To, port: c.Port, protocol: c.Protocol}
			l := g.conn.listeners[k]
			if l == nil {
				l, err = g.openConnection(ctx, k)
				if err != nil {
					g.log.Error("cannot open a service connection's listener; retrying", "from", n.Service, "to", c.To, "port", c.Port, "error", err)
					continue
				}
				g.conn.listeners[k] = l
			}
			want[k] = true
			fw.Paths = append(fw.Paths, firewall.Path{VIP: vip, Port: c.Port, ListenPort: l.port})
			answers[c.To] = vip
		}
		rules.Networks = append(rules.Networks, fw)
		if err := g.ensureDNS(ctx, n); err != nil {
			g.log.Error("cannot answer names on a service network's gateway; retrying", "network", n.Name, "gateway", n.Gateway, "error", err)
			answers = nil
		}
		namings = append(namings, naming{n.Gateway, answers})
	}

	stale := g.conn.applied == nil || !reflect.DeepEqual(*g.conn.applied, rules) || time.Since(g.conn.appliedAt) > filterRefresh
	if g.cfg.Filter != nil && stale {
		applyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := g.cfg.Filter.Apply(applyCtx, rules)
		cancel()
		g.mu.Lock()
		if err != nil {
			g.conn.problem = err.Error()
		} else {
			g.conn.problem = ""
		}
		g.mu.Unlock()
		if err != nil {
			g.log.Error("cannot apply the service networks' packet rules; retrying", "error", err)
			// Without the rules nothing reaches the new listeners, so
			// closing the old ones could cut paths the old rules still
			// send to: keep everything until the rules are in.
			return
		}
		applied := rules
		g.conn.applied, g.conn.appliedAt = &applied, time.Now()
	}
	for _, nm := range namings {
		if err := g.cfg.Names.SetNames(nm.gateway, nm.names); err != nil {
			g.log.Warn("cannot set a network's names", "gateway", nm.gateway, "error", err)
		}
	}
	for k, l := range g.conn.listeners {
		if !want[k] {
			l.close()
			delete(g.conn.listeners, k)
		}
	}
	for gw, d := range g.conn.dns {
		if !gateways[gw] {
			_ = g.cfg.Names.SetNames(gw, nil)
			_ = d.listener.Close()
			<-d.done
			delete(g.conn.dns, gw)
		}
	}
}

// openConnection listens on the caller network's gateway at a free port
// and serves the target's pool there.
func (g *ingressRunner) openConnection(ctx context.Context, k connKey) (*connListener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(k.gateway.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", k.gateway, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if k.protocol == proxy.TCP {
		tcpCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = g.table.ServePoolTCP(tcpCtx, k.to, k.port, ln)
		}()
		return &connListener{port: port, close: func() { cancel(); <-done }}, nil
	}
	srv := &http.Server{
		Handler:           g.table.PoolHandler(k.to, k.port),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          g.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	g.log.Debug("service connection listener", "network", k.network, "to", k.to, "port", k.port, "listen", net.JoinHostPort(k.gateway.String(), strconv.Itoa(port)))
	return &connListener{port: port, close: func() { _ = srv.Close(); <-done }}, nil
}

// ensureDNS serves names on a network's gateway, port 53, for queries
// from its subnet.
func (g *ingressRunner) ensureDNS(ctx context.Context, n ServiceNetwork) error {
	if g.conn.dns[n.Gateway] != nil {
		return nil
	}
	l, err := g.cfg.Names.Listen(netip.AddrPortFrom(n.Gateway, 53), n.Subnet)
	if err != nil {
		return err
	}
	d := &dnsListener{listener: l, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		if err := l.Serve(ctx); err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
			g.log.Warn("a network's DNS stopped", "gateway", n.Gateway, "error", err)
		}
	}()
	g.conn.dns[n.Gateway] = d
	return nil
}

// closeConnections closes every connection listener and DNS listener; the
// packet rules stay (the containers keep running and a restarted agent
// adopts them).
func (g *ingressRunner) closeConnections() {
	for k, l := range g.conn.listeners {
		l.close()
		delete(g.conn.listeners, k)
	}
	for gw, d := range g.conn.dns {
		_ = d.listener.Close()
		<-d.done
		delete(g.conn.dns, gw)
	}
}

// filterAsk asks run to apply the packet rules now and say whether they
// cover a bridge.
type filterAsk struct {
	bridge string
	done   chan error
}

// ErrNotFiltered means the packet filter could not cover a service
// network: no container may start on it yet.
var ErrNotFiltered = errors.New("the service network's packet rules are not in place")

// filtered returns once the packet filter covers bridge (at once without
// a filter, or without a proxy), so that no container runs on a bridge
// that can reach every port of the host. Called by the reconcile loop's
// tasks, before a container starts on its service network.
func (g *ingressRunner) filtered(ctx context.Context, bridge string) error {
	if g == nil || g.cfg.Filter == nil || g.cfg.Networks == nil {
		return nil
	}
	ask := filterAsk{bridge: bridge, done: make(chan error, 1)}
	select {
	case g.filterAsks <- ask:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ask.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// filterCovers says whether the rules last applied cover bridge; owned by
// run.
func (g *ingressRunner) filterCovers(bridge string) error {
	if g.conn.applied != nil {
		for _, n := range g.conn.applied.Networks {
			if n.Bridge == bridge {
				return nil
			}
		}
	}
	g.mu.Lock()
	problem := g.conn.problem
	g.mu.Unlock()
	if problem != "" {
		return fmt.Errorf("%w: %s", ErrNotFiltered, problem)
	}
	return fmt.Errorf("%w: bridge %s is not among the host's service networks yet", ErrNotFiltered, bridge)
}

// connectionProblems is the filter's failure, as a proxy problem for the
// heartbeat; under g.mu.
func (g *ingressRunner) connectionProblemsLocked() []state.ProxyProblem {
	if g.conn.problem == "" {
		return nil
	}
	return []state.ProxyProblem{{Addr: "packet filter", Error: g.conn.problem}}
}
