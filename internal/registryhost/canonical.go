package registryhost

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ErrBadName is a registry or repository name that cannot be
// canonicalised.
var ErrBadName = errors.New("invalid registry or repository name")

// DockerHub is the canonical name of Docker Hub, as go-containerregistry
// spells it (name.DefaultRegistry).
const DockerHub = "index.docker.io"

// dockerHubNames are the registry names that reach Docker Hub: what users
// write (docker.io), what go-containerregistry writes (index.docker.io)
// and the API host itself (registry-1.docker.io).
var dockerHubNames = []string{"docker.io", DockerHub, "registry-1.docker.io"}

// Canonical returns the form of a registry address ("host" or
// "host:port") under which the spellings of one registry compare equal:
//
//   - the host is lower-cased and a trailing dot ("example.com.") dropped;
//   - IP addresses are written the one way net.IP prints them (IPv6 in
//     brackets; an IPv4-mapped IPv6 address as IPv4);
//   - every loopback spelling (localhost, 127.0.0.0/8, ::1, and the
//     unspecified 0.0.0.0 and ::, which connect to this machine too) is
//     "localhost": a registry on this machine is the same registry
//     whichever name the image uses;
//   - IPv4 addresses in a legacy numeric form that the C resolver accepts
//     (127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1) are refused;
//   - the port is written without leading zeros, and port 443, the
//     registry protocol's default (HTTPS), is dropped;
//   - docker.io, index.docker.io and registry-1.docker.io (without a port)
//     are "index.docker.io".
//
// Names are never resolved: two host names of one registry (a DNS alias,
// an IP address and its name) stay different. Errors wrap ErrBadName.
func Canonical(registry string) (string, error) {
	host, port, err := split(registry)
	if err != nil {
		return "", err
	}
	return join(host, port), nil
}

// split parses and canonicalises a registry address into its host and
// port ("" when the port is the default).
func split(registry string) (host, port string, err error) {
	if registry == "" {
		return "", "", fmt.Errorf("%w: empty registry; write a host, or host:port", ErrBadName)
	}
	if strings.ContainsAny(registry, "/@ \t\r\n") || strings.Contains(registry, "://") {
		return "", "", fmt.Errorf("%w: %q is not a registry host[:port]; write it without a scheme, user or path", ErrBadName, registry)
	}
	host, port = registry, ""
	if strings.HasPrefix(registry, "[") {
		end := strings.Index(registry, "]")
		if end < 0 {
			return "", "", fmt.Errorf("%w: %q has an unclosed [", ErrBadName, registry)
		}
		host, port = registry[1:end], registry[end+1:]
		if port != "" {
			var ok bool
			if port, ok = strings.CutPrefix(port, ":"); !ok {
				return "", "", fmt.Errorf("%w: %q: only :port may follow ]", ErrBadName, registry)
			}
		}
		if net.ParseIP(host) == nil || !strings.Contains(host, ":") {
			return "", "", fmt.Errorf("%w: %q: brackets hold an IPv6 address, like [2001:db8::1]:5000", ErrBadName, registry)
		}
	} else if i := strings.LastIndex(registry, ":"); i >= 0 {
		if strings.Count(registry, ":") > 1 {
			return "", "", fmt.Errorf("%w: %q: write an IPv6 address in brackets, like [%s]:5000", ErrBadName, registry, registry)
		}
		host, port = registry[:i], registry[i+1:]
		if port == "" {
			return "", "", fmt.Errorf("%w: %q ends with ':' but has no port", ErrBadName, registry)
		}
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || strings.ContainsAny(host, "[]%") {
		return "", "", fmt.Errorf("%w: %q has no usable host", ErrBadName, registry)
	}
	ip := net.ParseIP(host)
	switch {
	case ip != nil && (ip.IsLoopback() || ip.IsUnspecified()):
		// Connecting to 0.0.0.0 or :: reaches this machine too.
		host = "localhost"
	case ip != nil:
		host = ip.String()
	case legacyNumeric(host):
		// 127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1: the C resolver (and
		// so the Docker Engine) reads them as IPv4 addresses, Go's
		// net.ParseIP does not. Refused rather than guessed.
		return "", "", fmt.Errorf("%w: %q: host %q is a numeric address in a legacy form; write it as a dotted quad, like 127.0.0.1, or use the host name", ErrBadName, registry, host)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
			return "", "", fmt.Errorf("%w: %q: port %q is not a number from 1 to 65535", ErrBadName, registry, port)
		}
		port = strconv.Itoa(n)
		if n == 443 {
			port = ""
		}
	}
	if port == "" && isDockerHub(host) {
		host = DockerHub
	}
	return host, port, nil
}

// legacyNumeric reports whether every dot-separated label of host is a
// decimal, octal or hex number: what inet_aton accepts as an IPv4
// address besides the dotted quad.
func legacyNumeric(host string) bool {
	for _, label := range strings.Split(host, ".") {
		digits, hex := label, false
		if rest, ok := strings.CutPrefix(label, "0x"); ok {
			digits, hex = rest, true
		}
		if digits == "" && !hex {
			return false
		}
		valid := "0123456789"
		if hex {
			valid += "abcdef"
		}
		if strings.Trim(digits, valid) != "" {
			return false
		}
	}
	return true
}

func join(host, port string) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "" {
		return host
	}
	return host + ":" + port
}

func isDockerHub(host string) bool {
	for _, h := range dockerHubNames {
		if host == h {
			return true
		}
	}
	return false
}

// Spellings returns the canonical registry first, then the other names
// that reach the same registry and that a pattern might be written
// against: with the default port written out (":443"), Docker Hub's
// other names, and for a loopback registry the plain-HTTP default port
// (":80"), since a loopback registry without a port is also tried over
// plain HTTP on port 80. Matching a pattern against every spelling can
// only make a pattern cover more, never less.
func Spellings(canonical string) []string {
	host, port, err := split(canonical)
	if err != nil {
		return []string{canonical}
	}
	names := []string{join(host, port)}
	hosts := []string{host}
	if host == DockerHub {
		hosts = dockerHubNames
	}
	for _, h := range hosts {
		switch {
		case port == "" && h == host:
			names = append(names, join(h, "443"))
		case port == "":
			names = append(names, join(h, ""), join(h, "443"))
		}
	}
	if host == "localhost" {
		switch port {
		case "":
			names = append(names, join(host, "80"))
		case "80":
			names = append(names, join(host, ""), join(host, "443"))
		}
	}
	return names
}

// CanonicalRepository returns "registry/path" in canonical form: the
// registry as Canonical has it, Docker Hub's implicit "library/" written
// out ("nginx" and "docker.io/nginx" are "index.docker.io/library/nginx").
// The first path component is the registry when it contains '.' or ':',
// is "localhost" or has an upper-case letter, as Docker reads image
// names; otherwise the registry is Docker Hub. A path must be lower case,
// with no empty, "." or ".." component. Errors wrap ErrBadName.
func CanonicalRepository(repository string) (string, error) {
	registry, repoPath := DockerHub, repository
	if first, rest, ok := strings.Cut(repository, "/"); ok &&
		(strings.ContainsAny(first, ".:[") || strings.EqualFold(first, "localhost") || strings.ToLower(first) != first) {
		registry, repoPath = first, rest
	}
	canonical, err := Canonical(registry)
	if err != nil {
		return "", fmt.Errorf("repository %q: %w", repository, err)
	}
	if err := checkPath(repoPath); err != nil {
		return "", fmt.Errorf("repository %q: %w", repository, err)
	}
	if canonical == DockerHub && !strings.Contains(repoPath, "/") {
		repoPath = "library/" + repoPath
	}
	return canonical + "/" + repoPath, nil
}

// checkPath refuses repository paths that Docker refuses and that a
// registry's router might clean into another repository.
func checkPath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: no repository path after the registry", ErrBadName)
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%w: path %q has an empty component (\"//\" or a trailing \"/\")", ErrBadName, p)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w: path %q has a %q component; write the repository it means", ErrBadName, p, seg)
		case strings.ToLower(seg) != seg:
			return fmt.Errorf("%w: path %q has upper-case letters; repository paths are lower case", ErrBadName, p)
		case strings.ContainsAny(seg, ":@"):
			return fmt.Errorf("%w: path %q has a tag or digest; name the repository only", ErrBadName, p)
		}
	}
	return nil
}
