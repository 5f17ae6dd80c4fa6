// Package names is the DNS server the agent runs on the gateway of every
// service network (docs/networking.md, DESIGN.md): it answers the names of
// the service's declared connections with their service addresses and
// relays every other name to the host's resolvers.
package names

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/dns/dnsmessage"
)

// Options configure a Server; a zero field takes its default.
// ReadResolvConf fills Upstreams and Search from the host's resolv.conf.
type Options struct {
	// Upstreams are the resolvers undeclared names are relayed to, tried
	// in order. None: every relayed name is answered SERVFAIL.
	Upstreams []netip.AddrPort
	// Search are domains a resolver may have appended to a declared name:
	// `api.<domain>` is answered as `api`. Containers inherit the host's
	// search list, which is what ReadResolvConf reads (DESIGN.md, search
	// domains).
	Search []string
	// Timeout bounds the relay of one query over every upstream; then the
	// client gets SERVFAIL. Default 3 s, below the 4 s Docker's embedded
	// DNS waits for its upstream (us).
	Timeout time.Duration
	// MaxTCPConns caps the TCP connections one listener serves at once;
	// one more is closed at once. Default 16.
	MaxTCPConns int
	// MaxUDPInflight caps the UDP queries one listener answers at once;
	// one more is dropped (the client retries). Default 128.
	MaxUDPInflight int
	// TCPIdleTimeout bounds the wait for each query on a TCP connection
	// and the write of its answer. Default 5 s.
	TCPIdleTimeout time.Duration
}

const (
	defaultTimeout        = 3 * time.Second
	defaultMaxTCPConns    = 16
	defaultMaxUDPInflight = 128
	defaultTCPIdleTimeout = 5 * time.Second
)

// Server answers DNS queries on the listeners made by Listen, each with
// the names SetNames gave its address. The zero Server is not usable: use
// NewServer.
type Server struct {
	opts Options
	log  hclog.Logger

	mu sync.Mutex // serialises SetNames
	// names maps a listening address to its names (canonical name →
	// IPv4). Replaced whole by SetNames, never modified.
	names atomic.Pointer[map[netip.Addr]map[string]netip.Addr]
}

// NewServer returns a Server relaying to opts.Upstreams. A nil log
// discards.
func NewServer(opts Options, log hclog.Logger) *Server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	opts.Upstreams = append([]netip.AddrPort(nil), opts.Upstreams...)
	var search []string
	for _, d := range opts.Search {
		if d = canonical(strings.TrimPrefix(d, ".")); d != "" {
			search = append(search, d)
		}
	}
	opts.Search = search
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.MaxTCPConns <= 0 {
		opts.MaxTCPConns = defaultMaxTCPConns
	}
	if opts.MaxUDPInflight <= 0 {
		opts.MaxUDPInflight = defaultMaxUDPInflight
	}
	if opts.TCPIdleTimeout <= 0 {
		opts.TCPIdleTimeout = defaultTCPIdleTimeout
	}
	s := &Server{opts: opts, log: log}
	s.names.Store(&map[netip.Addr]map[string]netip.Addr{})
	return s
}

// SetNames replaces at once the names answered on the listening address
// addr (a service network's gateway): name → IPv4 address, the name
// matched without case and without a trailing dot. Effective for the next
// query; nil or empty removes them all (every name is relayed). Names
// may be set before or after a listener on addr exists. Nothing is
// changed when an entry is invalid.
func (s *Server) SetNames(addr netip.Addr, names map[string]netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("names: set names: invalid listening address")
	}
	addr = addr.Unmap()
	table := make(map[string]netip.Addr, len(names))
	for name, a := range names {
		key := canonical(name)
		if err := checkName(key); err != nil {
			return fmt.Errorf("names: set names on %s: %w", addr, err)
		}
		a = a.Unmap()
		if !a.Is4() || a.IsUnspecified() {
			return fmt.Errorf("names: set names on %s: %q: %v is not an IPv4 address", addr, name, a)
		}
		if prev, dup := table[key]; dup && prev != a {
			return fmt.Errorf("names: set names on %s: %q given twice (%v and %v)", addr, key, prev, a)
		}
		table[key] = a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.names.Load()
	next := make(map[netip.Addr]map[string]netip.Addr, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if len(table) == 0 {
		delete(next, addr)
	} else {
		next[addr] = table
	}
	s.names.Store(&next)
	return nil
}

// checkName accepts a DNS name of letters, digits, hyphens and
// underscores: labels of 1 to 63, 253 in all.
func checkName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q is not a DNS name (1 to 253 characters)", name)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a DNS name (labels of 1 to 63 characters)", name)
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a DNS name (letters, digits, '-' and '_')", name)
			}
		}
	}
	return nil
}

// lookup finds the query's name among the names of the listening address
// local: as asked, or as one of them with a search domain appended.
func (s *Server) lookup(local netip.Addr, name dnsmessage.Name) (netip.Addr, bool) {
	table := (*s.names.Load())[local]
	if len(table) == 0 {
		return netip.Addr{}, false
	}
	key := canonical(name.String())
	if a, ok := table[key]; ok {
		return a, true
	}
	for _, d := range s.opts.Search {
		if short, ok := strings.CutSuffix(key, "."+d); ok {
			if a, ok := table[short]; ok {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// answer returns what to send back for msg, which arrived on the
// listening address local over TCP or UDP from a client that allowed
// says may ask there; nil: send nothing.
func (s *Server) answer(ctx context.Context, local netip.Addr, allowed bool, msg []byte, tcp bool) []byte {
	q, rcode, ok := parse(msg)
	if !ok {
		return nil
	}
	if rcode != dnsmessage.RCodeSuccess {
		return q.reply(rcode, false, false, nil)
	}
	if !allowed {
		return q.reply(dnsmessage.RCodeRefused, false, false, nil)
	}
	if a, ok := s.lookup(local, q.q.Name); ok {
		// A declared name: its A record, and for any other type an empty
		// answer (NODATA), never NXDOMAIN, which would deny the A record
		// too. Authoritative and recursion available: Go's resolver
		// takes an empty answer with neither for a lame referral.
		if q.q.Type == dnsmessage.TypeA {
			b := a.As4()
			return q.reply(dnsmessage.RCodeSuccess, true, false, b[:])
		}
		return q.reply(dnsmessage.RCodeSuccess, true, false, nil)
	}
	return s.relay(ctx, &q, tcp)
}
