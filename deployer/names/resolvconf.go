package names

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// maxNameservers is how many nameservers the C library reads (MAXNS).
const maxNameservers = 3

// ReadResolvConf reads the host's resolvers from a resolv.conf (normally
// /etc/resolv.conf) into Options: Upstreams are its first three
// nameservers at port 53, as the C library takes them (none listed:
// 127.0.0.1, its default); Search the domains of its last search or
// domain line. A loopback resolver such as systemd-resolved's 127.0.0.53
// is fine: the relay runs on the host.
func ReadResolvConf(path string) (Options, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Options{}, fmt.Errorf("names: read resolv.conf: %w", err)
	}
	return parseResolvConf(data), nil
}

func parseResolvConf(data []byte) Options {
	var opts Options
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			a, err := netip.ParseAddr(f[1])
			if err != nil || len(opts.Upstreams) == maxNameservers {
				continue
			}
			opts.Upstreams = append(opts.Upstreams, netip.AddrPortFrom(a.Unmap(), 53))
		case "search", "domain":
			// The last one wins, as in the C library.
			opts.Search = nil
			for _, d := range f[1:] {
				if d = strings.Trim(d, "."); d != "" {
					opts.Search = append(opts.Search, strings.ToLower(d))
				}
			}
		}
	}
	if len(opts.Upstreams) == 0 {
		opts.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	return opts
}
