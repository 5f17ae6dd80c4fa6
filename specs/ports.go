package specs

import (
	"net/netip"
	"strconv"
	"strings"
)

// ParsePort reads one published port, "[ip:]host:container[/proto]", as in
// "8080:80", "127.0.0.1:8080:80/tcp" or "[::1]:5353:53/udp". Without an ip
// the port binds DefaultHostIP (loopback); "0.0.0.0:8080:80" publishes on
// every interface. The protocol is tcp (default) or udp. Errors match
// ErrInvalidSpec.
func ParsePort(s string) (Port, error) {
	const example = `write [ip:]host:container[/tcp|udp], like "8080:80" or "0.0.0.0:8080:80/tcp"`
	text := strings.TrimSpace(s)
	port := Port{HostIP: DefaultHostIP, Protocol: DefaultProtocol}

	if base, proto, found := strings.Cut(text, "/"); found {
		port.Protocol = strings.ToLower(proto)
		if port.Protocol != "tcp" && port.Protocol != "udp" {
			return Port{}, invalidValuef("%q: protocol %q is not tcp or udp", s, proto)
		}
		text = base
	}

	var hostIP, hostPort, containerPort string
	if rest, ok := strings.CutPrefix(text, "["); ok {
		// A bracketed IPv6 address: "[::1]:8080:80".
		ip, ports, found := strings.Cut(rest, "]")
		host, container, ok := strings.Cut(strings.TrimPrefix(ports, ":"), ":")
		if !found || !strings.HasPrefix(ports, ":") || !ok {
			return Port{}, invalidValuef("%q is not a port mapping; %s", s, example)
		}
		hostIP, hostPort, containerPort = ip, host, container
	} else {
		parts := strings.Split(text, ":")
		switch len(parts) {
		case 2:
			hostPort, containerPort = parts[0], parts[1]
		case 3:
			hostIP, hostPort, containerPort = parts[0], parts[1], parts[2]
			if hostIP == "" {
				return Port{}, invalidValuef("%q has an empty host IP; leave it out (binds %s) or write one", s, DefaultHostIP)
			}
		default:
			if len(parts) > 3 {
				return Port{}, invalidValuef("%q is not a port mapping; put an IPv6 address in brackets, like \"[::1]:8080:80\"", s)
			}
			return Port{}, invalidValuef("%q is not a port mapping; give both the host and the container port; %s", s, example)
		}
	}

	if hostIP != "" {
		addr, err := parseHostIP(hostIP)
		if err != nil {
			return Port{}, invalidValuef("%q: %v", s, err)
		}
		port.HostIP = addr.String()
	}
	var err error
	if port.HostPort, err = parsePortNumber("host", hostPort); err != nil {
		return Port{}, invalidValuef("%q: %v", s, err)
	}
	if port.ContainerPort, err = parsePortNumber("container", containerPort); err != nil {
		return Port{}, invalidValuef("%q: %v", s, err)
	}
	return port, nil
}

// parseHostIP accepts an IPv4 or IPv6 address without a zone: a zone names a
// host's interface, which a spec shared by every host cannot know.
func parseHostIP(text string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Addr{}, invalidValuef("host IP %q is not an IP address", text)
	}
	if addr.Zone() != "" {
		return netip.Addr{}, invalidValuef("host IP %q has a zone; write the address alone", text)
	}
	return addr, nil
}

func parsePortNumber(which, text string) (int, error) {
	if strings.Contains(strings.TrimPrefix(text, "-"), "-") {
		return 0, invalidValuef("%s port %q: port ranges are not supported; list each port", which, text)
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 1 || n > 65535 {
		return 0, invalidValuef("%s port %q is not a port number (1 to 65535)", which, text)
	}
	return n, nil
}

// String writes the port back in the spec's syntax, always with the host IP
// and the protocol: "127.0.0.1:8080:80/tcp", "[::1]:5353:53/udp".
func (p Port) String() string {
	ip := p.HostIP
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return ip + ":" + strconv.Itoa(p.HostPort) + ":" + strconv.Itoa(p.ContainerPort) + "/" + p.Protocol
}
