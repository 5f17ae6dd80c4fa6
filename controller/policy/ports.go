package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultIngressListenPorts are the ports ingress entries may listen on in
// a cluster whose policy does not say: the web's two, and every
// unprivileged port. The ports below 1024 are where hosts run their own
// services (ssh, DNS, mail...); a spec that listened there on every host
// would take them. The operator narrows this to the ports the hosts leave
// free for services (ingress_listen_ports).
func DefaultIngressListenPorts() []string { return []string{"80", "443", "1024-65535"} }

// parsePortRange reads "80" or "8000-8999".
func parsePortRange(s string) (lo, hi int, err error) {
	text := strings.TrimSpace(s)
	first, last, isRange := strings.Cut(text, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(first))
	hi = lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(strings.TrimSpace(last))
	}
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("%q is not a port or a range; write a port like \"443\" or a range like \"8000-8999\"", s)
	case lo < 1 || hi > 65535:
		return 0, 0, fmt.Errorf("%q is outside 1-65535", s)
	case lo > hi:
		return 0, 0, fmt.Errorf("%q starts above its end; write the lower port first, like \"%d-%d\"", s, hi, lo)
	}
	return lo, hi, nil
}

// ingressListenAllowed says whether port is in the policy's ingress ranges
// (nil: the default ones).
func (p *Policy) ingressListenAllowed(port int) bool {
	ranges := p.IngressListenPorts
	if ranges == nil {
		ranges = DefaultIngressListenPorts()
	}
	for _, r := range ranges {
		if lo, hi, err := parsePortRange(r); err == nil && lo <= port && port <= hi {
			return true
		}
	}
	return false
}

// ingressListenText is the allowed ranges for a message.
func (p *Policy) ingressListenText() string {
	ranges := p.IngressListenPorts
	if ranges == nil {
		ranges = DefaultIngressListenPorts()
	}
	if len(ranges) == 0 {
		return "none"
	}
	return strings.Join(ranges, ", ")
}
