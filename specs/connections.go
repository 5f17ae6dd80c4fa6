package specs

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Expose protocols: http is balanced per request by the proxy (with the
// ingress rules), tcp per connection.
const (
	ExposeHTTP = "http"
	ExposeTCP  = "tcp"

	DefaultExposeProtocol = ExposeHTTP
)

// Expose is one port a service offers to the services that connect to it
// (ConnectsTo): they reach it at the service's address, on this port,
// through their host's proxy. The canonical form (what Parse stores) is
// sorted by port; a port is exposed once.
type Expose struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// Connection is one service a service may call: Service at Port, or at
// every port Service exposes when Port is 0. The canonical form (what
// Parse stores) is sorted by service, then port.
type Connection struct {
	Service string `json:"service"`
	Port    int    `json:"port,omitempty"`
}

// String is "db:5432", or "db" for every port db exposes.
func (c Connection) String() string {
	if c.Port == 0 {
		return c.Service
	}
	return c.Service + ":" + strconv.Itoa(c.Port)
}

// ExposedPort returns the entry of e for port, if e exposes it.
func ExposedPort(e []Expose, port int) (Expose, bool) {
	for _, x := range e {
		if x.Port == port {
			return x, true
		}
	}
	return Expose{}, false
}

// expose reads the list of exposed ports: each a port number (http) or a
// mapping {port, protocol}. An item keeps its index even when it has
// problems, so that fields match the YAML.
func (p *parser) expose(path string, n *yaml.Node) []Expose {
	items, ok := p.Sequence(path, n)
	if !ok {
		return nil
	}
	out := make([]Expose, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.Lines[field] = item.Line
		e := Expose{Protocol: DefaultExposeProtocol}
		switch r := ResolveNode(item); {
		case r.Kind == yaml.ScalarNode && r.ShortTag() == "!!int":
			e.Port, _ = p.integer(field, item)
		case r.Kind == yaml.MappingNode:
			f := p.fields(field, item)
			if n, ok := f["port"]; ok {
				e.Port, _ = p.integer(field+".port", n)
			} else {
				p.Add(field+".port", item.Line, "required; name the container port other services call, like 5432")
			}
			if n, ok := f["protocol"]; ok {
				if v, ok := p.Text(field+".protocol", n); ok {
					e.Protocol = strings.ToLower(v)
				}
			}
		default:
			p.Add(field, item.Line, "expected a port number like 8080, or a mapping like {port: 5432, protocol: tcp}; got %s%s",
				DescribeNode(item), exposeHint(r))
			continue
		}
		out[i] = e
	}
	return out
}

// exposeHint says how to write what a user likely meant by a string item:
// "8080" (quoted) or "5432/tcp".
func exposeHint(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return ""
	}
	text := strings.TrimSpace(n.Value)
	if port, err := strconv.Atoi(text); err == nil {
		return fmt.Sprintf(" (write %d without quotes)", port)
	}
	if number, proto, ok := strings.Cut(text, "/"); ok {
		if port, err := strconv.Atoi(number); err == nil {
			return fmt.Sprintf(" (write {port: %d, protocol: %s})", port, strings.ToLower(proto))
		}
	}
	return ""
}

// connectsTo reads the list of connections: each a service name (every
// port it exposes) or a mapping {service, port}.
func (p *parser) connectsTo(path string, n *yaml.Node) []Connection {
	items, ok := p.Sequence(path, n)
	if !ok {
		return nil
	}
	out := make([]Connection, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.Lines[field] = item.Line
		var c Connection
		switch r := ResolveNode(item); {
		case r.Kind == yaml.ScalarNode && !IsNullNode(r):
			text, ok := p.Text(field, item)
			if !ok {
				continue
			}
			if name, port, found := strings.Cut(text, ":"); found {
				if _, err := strconv.Atoi(port); err == nil {
					p.Add(field, item.Line, "%q: write {service: %s, port: %s} to connect to one port", text, name, port)
					continue
				}
			}
			c.Service = text
		case r.Kind == yaml.MappingNode:
			f := p.fields(field, item)
			if n, ok := f["service"]; ok {
				c.Service, _ = p.Text(field+".service", n)
			} else {
				p.Add(field+".service", item.Line, "required; name the service to connect to, like db")
			}
			if n, ok := f["port"]; ok {
				if port, ok := p.integer(field+".port", n); ok {
					if port == 0 {
						p.Add(field+".port", n.Line, "0 is not a port; write a port the service exposes, or leave port out for every port it exposes")
					}
					c.Port = port
				}
			}
		default:
			p.Add(field, item.Line, "expected a service name like db, or a mapping like {service: db, port: 5432}; got %s", DescribeNode(item))
			continue
		}
		out[i] = c
	}
	return out
}

// sortConnections puts expose and connects_to in canonical order. Parse
// does it once the spec is valid, so that problems keep the indexes of
// the YAML.
func (s *Spec) sortConnections() {
	slices.SortStableFunc(s.Expose, func(a, b Expose) int { return cmp.Compare(a.Port, b.Port) })
	slices.SortStableFunc(s.ConnectsTo, func(a, b Connection) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), cmp.Compare(a.Port, b.Port))
	})
}

// expose checks the exposed ports: 1 to 65535, http or tcp in lower
// case, each port once.
func (v *validator) expose(entries []Expose) {
	seen := make(map[int]int, len(entries))
	for i, e := range entries {
		field := fmt.Sprintf("expose[%d]", i)
		if e.Port < 1 || e.Port > 65535 {
			v.addf(field+".port", "%d is not a port number; write the container port other services call (1 to 65535), like 8080", e.Port)
		} else if earlier, dup := seen[e.Port]; dup {
			v.addf(field, "port %d is already exposed by expose[%d]; expose each port once", e.Port, earlier)
		} else {
			seen[e.Port] = i
		}
		switch e.Protocol {
		case ExposeHTTP, ExposeTCP:
		case "udp":
			v.addf(field+".protocol", "udp is not supported: other services reach exposed ports through the proxy, which carries tcp; write tcp or http")
		default:
			msg := fmt.Sprintf("%q is not a protocol for expose; write http (the default: balanced per request) or tcp (per connection)", e.Protocol)
			if canonical := strings.ToLower(e.Protocol); canonical != e.Protocol && (canonical == ExposeHTTP || canonical == ExposeTCP) {
				msg = fmt.Sprintf("write %q as %s", e.Protocol, canonical)
			}
			v.addf(field+".protocol", "%s", msg)
		}
	}
}

// connections checks the declared connections: a valid service name other
// than the service's own, a port of 0 (every exposed port) or 1 to 65535,
// and no connection twice (a bare name already covers every port).
func (v *validator) connections(self string, conns []Connection) {
	exact := make(map[Connection]int, len(conns))
	bare := map[string]int{}     // service -> index of its bare-name connection
	withPort := map[string]int{} // service -> index of its first connection to one port
	for i, c := range conns {
		field := fmt.Sprintf("connects_to[%d]", i)
		ok := true
		switch {
		case c.Service == "":
			v.addf(field+".service", "required; name the service to connect to, like db")
			ok = false
		case !isServiceName(c.Service):
			v.addf(field+".service", "%q is not a valid service name; %s", c.Service, ServiceNameRule)
			ok = false
		case c.Service == self:
			v.addf(field+".service", "%s cannot connect to itself: replicas of a service reach each other on its own network already; remove this connection", c.Service)
			ok = false
		}
		if c.Port < 0 || c.Port > 65535 {
			v.addf(field+".port", "%d is not a port number; write a port %s exposes (1 to 65535), or leave port out for every port it exposes", c.Port, c.Service)
			ok = false
		}
		if !ok {
			continue
		}
		if j, dup := exact[c]; dup {
			v.addf(field, "%s is already declared by connects_to[%d]; declare each connection once", c, j)
			continue
		}
		exact[c] = i
		if c.Port == 0 {
			bare[c.Service] = i
			if j, covered := withPort[c.Service]; covered {
				v.addf(field, "%s covers connects_to[%d] (%s) already: a bare name is every port %s exposes; keep one of them", c.Service, j, conns[j], c.Service)
			}
			continue
		}
		if j, covered := bare[c.Service]; covered {
			v.addf(field, "%s is already covered by connects_to[%d] (%s: every port it exposes); keep one of them", c, j, c.Service)
			continue
		}
		if _, seen := withPort[c.Service]; !seen {
			withPort[c.Service] = i
		}
	}
}
