package specs

import (
	"fmt"
	"slices"
	"strings"
)

// MaxHostName is the longest DNS name (RFC 1035), without a trailing dot.
const MaxHostName = 253

func (v *validator) ingress(entries []Ingress, ports []Port) {
	for i, in := range entries {
		field := fmt.Sprintf("ingress[%d]", i)
		if in.Listen < 1 || in.Listen > 65535 {
			v.addf(field+".listen", "%d is not a port number; write the port every host's proxy listens on (1 to 65535), like 80", in.Listen)
		}
		if in.Port < 1 || in.Port > 65535 {
			v.addf(field+".port", "%d is not a port number; write the container port the service listens on (1 to 65535), like 8080", in.Port)
		}
		switch in.Protocol {
		case IngressHTTP:
			if msg := checkIngressHost(in.Host); msg != "" {
				v.addf(field+".host", "%s", msg)
			}
			if msg := checkIngressPath(in.Path); msg != "" {
				v.addf(field+".path", "%s", msg)
			}
		case IngressTCP:
			if in.Host != "" {
				v.addf(field+".host", "a tcp entry cannot route by host; remove host, or write protocol: http")
			}
			if in.Path != "" {
				v.addf(field+".path", "a tcp entry cannot route by path; remove path, or write protocol: http")
			}
		case "udp":
			v.addf(field+".protocol", "udp is not supported by ingress; publish it with ports: (host mode) instead")
		default:
			msg := fmt.Sprintf("%q is not an ingress protocol; write http (the default) or tcp", in.Protocol)
			if canonical := strings.ToLower(in.Protocol); canonical != in.Protocol && (canonical == IngressHTTP || canonical == IngressTCP) {
				msg = fmt.Sprintf("write %q as %s", in.Protocol, canonical)
			}
			v.addf(field+".protocol", "%s", msg)
		}
	}
	for _, c := range ingressCollisions(entries, ports) {
		v.addf(fmt.Sprintf("ingress[%d]", c.index), "%s", c.message("this spec"))
	}
}

// checkIngressHost says what is wrong with an http entry's host, or "".
// "" (every name), an exact DNS name and "*.name" are accepted, lower-case,
// without a port or a trailing dot.
func checkIngressHost(host string) string {
	const fix = "write a DNS name like api.example.com, or *.example.com for every name one label under example.com"
	if host == "" {
		return ""
	}
	if lower := strings.ToLower(host); lower != host {
		return fmt.Sprintf("write %q as %s (host names are compared lower-case)", host, lower)
	}
	name, _ := strings.CutPrefix(host, "*.")
	switch {
	case strings.HasSuffix(host, "."):
		return fmt.Sprintf("%q ends with a dot; write %s", host, strings.TrimSuffix(host, "."))
	case strings.Contains(host, ":") || strings.Contains(host, "/"):
		return fmt.Sprintf("%q is not a host name; write the name alone (the port is listen, the path is path)", host)
	case strings.Contains(name, "*"):
		return fmt.Sprintf("%q: a wildcard is allowed only as the whole first label (*.example.com); %s", host, fix)
	case len(host) > MaxHostName:
		return fmt.Sprintf("%q is longer than %d characters, the limit of a DNS name", host, MaxHostName)
	}
	for label := range strings.SplitSeq(name, ".") {
		if !isHostLabel(label) {
			if label == "" {
				return fmt.Sprintf("%q has an empty label; %s", host, fix)
			}
			return fmt.Sprintf("%q has the label %q; a label is 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen; %s", host, label, fix)
		}
	}
	return ""
}

func isHostLabel(label string) bool {
	if len(label) < 1 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// checkIngressPath says what is wrong with an http entry's path prefix, or
// "". The canonical form starts with "/", has no empty, "." or ".."
// segment, no trailing "/" (except "/" itself), no query or fragment, and
// only characters a request target may carry unescaped, so that the prefix
// the proxy compares is the one written.
func checkIngressPath(path string) string {
	switch {
	case path == "":
		return "empty; write a path prefix starting with /, like /api (or / for every path)"
	case !strings.HasPrefix(path, "/"):
		return fmt.Sprintf("%q must start with /, like /%s", path, path)
	case strings.ContainsAny(path, "?#"):
		return fmt.Sprintf("%q has a query or fragment; a path prefix is only the path, like %s", path, path[:strings.IndexAny(path, "?#")])
	case path != "/" && strings.HasSuffix(path, "/"):
		return fmt.Sprintf("write %q as %s (a prefix matches the path and everything under it)", path, strings.TrimRight(path, "/"))
	}
	for segment := range strings.SplitSeq(path[1:], "/") {
		switch segment {
		case "":
			if path != "/" {
				return fmt.Sprintf("%q has an empty segment (//); write it with single slashes", path)
			}
		case ".", "..":
			return fmt.Sprintf("%q has a %q segment; write the path it stands for", path, segment)
		}
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"<>\^`+"`{|}", c) >= 0 {
			return fmt.Sprintf("%q has the character %q, which a request path carries escaped; write the path with only letters, digits and -._~!$&'()*+,;=:@%%/", path, c)
		}
		if c == '%' && (i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2])) {
			return fmt.Sprintf("%q has a %% that is not followed by two hex digits", path)
		}
	}
	return ""
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// ingressUse is one claim on a listen port: an ingress entry or a
// published tcp host port, of a service.
type ingressUse struct {
	service string
	field   string // "ingress[1]" or "ports[0]"
	index   int
	port    int    // the listen or host port
	kind    string // "tcp", "http" or "ports"
	host    string
	path    string
	tls     *IngressTLS
}

func (u ingressUse) String() string {
	switch u.kind {
	case IngressHTTP:
		host := u.host
		if host == "" {
			host = "any host"
		}
		scheme := "http"
		if u.tls != nil {
			scheme = "https"
		}
		return fmt.Sprintf("%s listen %d (host %s, path %s)", scheme, u.port, host, u.path)
	case IngressTCP:
		return fmt.Sprintf("tcp listen %d", u.port)
	}
	return fmt.Sprintf("published host port %d", u.port)
}

func ingressUses(service string, entries []Ingress, ports []Port) []ingressUse {
	var uses []ingressUse
	for i, in := range entries {
		uses = append(uses, ingressUse{service: service, field: fmt.Sprintf("ingress[%d]", i), index: i,
			port: in.Listen, kind: in.Protocol, host: in.Host, path: in.Path, tls: in.TLS})
	}
	for i, p := range ports {
		if p.Protocol == "tcp" {
			uses = append(uses, ingressUse{service: service, field: fmt.Sprintf("ports[%d]", i), index: i, port: p.HostPort, kind: "ports"})
		}
	}
	return uses
}

// collide says why two claims cannot both hold, or "". Ingress listens on
// every host's ingress address (0.0.0.0 by default), so a published port
// collides whatever its host IP; two published ports are the ports rule's
// business, not this one's.
func collide(a, b ingressUse) string {
	if a.port != b.port || (a.kind == "ports" && b.kind == "ports") {
		return ""
	}
	switch {
	case a.kind == "ports" || b.kind == "ports":
		return "uses the same port as"
	case a.kind == IngressTCP || b.kind == IngressTCP:
		if a.kind == b.kind {
			return "uses the same tcp listen port as"
		}
		return "uses a listen port that is also routed by another protocol in"
	case a.host == b.host && a.path == b.path:
		return "routes the same host and path as"
	}
	return collideTLS(a, b)
}

// collision is one claim of a spec that collides with an earlier one.
type collision struct {
	index      int
	use, other ingressUse
	why        string
}

// message names both claims and the fix; owner says whose the other claim
// is ("this spec" or "service api").
func (c collision) message(owner string) string {
	fix := "choose another listen port"
	if c.use.kind == IngressHTTP && c.other.kind == IngressHTTP {
		fix = "choose another host or path"
		if isTLSCollision(c.why) {
			fix = tlsCollisionFix
		}
	}
	if c.use.kind == "ports" {
		fix = "choose another host port, or serve it through ingress instead"
	}
	if owner != "this spec" {
		fix += ", or change " + owner + " first"
	}
	return fmt.Sprintf("%s %s %s of %s (%s); %s", c.use, c.why, c.other.field, owner, c.other, fix)
}

// ingressCollisions lists the claims of one spec that collide with an
// earlier claim of the same spec (ingress entries before ports, each in
// order). Only entries whose values are valid are compared.
func ingressCollisions(entries []Ingress, ports []Port) []collision {
	uses := slices.DeleteFunc(ingressUses("", entries, ports), func(u ingressUse) bool { return !validUse(u) })
	byPort := map[int][]ingressUse{}
	var out []collision
	for _, u := range uses {
		for _, earlier := range byPort[u.port] {
			if why := collide(u, earlier); why != "" {
				out = append(out, collision{index: u.index, use: u, other: earlier, why: why})
				break
			}
		}
		byPort[u.port] = append(byPort[u.port], u)
	}
	// A published port's collision is reported on the ingress entry, the
	// field ingress adds: ports keep the meaning they had.
	for i, c := range out {
		if c.use.kind == "ports" {
			out[i] = collision{index: c.other.index, use: c.other, other: c.use, why: collide(c.other, c.use)}
		}
	}
	return out
}

func validUse(u ingressUse) bool {
	if u.port < 1 || u.port > 65535 {
		return false
	}
	switch u.kind {
	case IngressHTTP:
		return checkIngressHost(u.host) == "" && checkIngressPath(u.path) == ""
	case IngressTCP, "ports":
		return true
	}
	return false
}

// IngressConflicts lists what in spec collides with the ingress entries or
// published tcp host ports of the other services (a spec of the same
// service in others is skipped: it is the revision spec replaces). Each
// problem is on spec's field and names the other service, its field and
// the fix. Rules: a tcp listen port is one service's alone; an http listen
// port is shared by http entries with distinct host and path; a listen
// port is never also a published host port. Both specs are expected to be
// valid; nil when nothing collides.
func IngressConflicts(spec *Spec, others []*Spec) []Problem {
	mine := slices.DeleteFunc(ingressUses(spec.Service, spec.Ingress, spec.Ports), func(u ingressUse) bool { return !validUse(u) })
	if len(mine) == 0 {
		return nil
	}
	byPort := map[int][]ingressUse{}
	sorted := slices.Clone(others)
	slices.SortStableFunc(sorted, func(a, b *Spec) int { return strings.Compare(a.Service, b.Service) })
	for _, o := range sorted {
		if o == nil || o.Service == spec.Service {
			continue
		}
		for _, u := range ingressUses(o.Service, o.Ingress, o.Ports) {
			byPort[u.port] = append(byPort[u.port], u)
		}
	}
	var problems []Problem
	for _, u := range mine {
		for _, o := range byPort[u.port] {
			if why := collide(u, o); why != "" {
				c := collision{use: u, other: o, why: why}
				problems = append(problems, Problem{Field: u.field, Message: c.message("service " + o.service)})
				break
			}
		}
	}
	return problems
}
