package signature

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/deployctl/deployctl/internal/registryhost"
)

// A trust rule's Match and an image are compared in canonical form
// (registryhost.Canonical, the form the policy's registries check uses),
// segment by segment:
//
//   - the first segment is the registry: lower-cased, without a trailing
//     dot or the default port 443, every loopback spelling as "localhost",
//     docker.io / index.docker.io / registry-1.docker.io as
//     index.docker.io. A glob in it ("*.example.com", "localhost:*") is
//     matched against every spelling of the image's registry
//     (registryhost.Spellings), so "localhost:*" covers "localhost" too.
//   - then the repository path. Docker Hub's implicit "library/" is
//     written out on both sides: "docker.io/nginx" and "docker.io/*" are
//     "index.docker.io/library/nginx" and ".../library/*".
//   - "*", "?" and "[...]" match within one segment (path.Match); "**" as
//     a whole segment matches zero or more segments, so
//     "registry.example.com/team/**" covers team/web, team/web/api and
//     team itself, and "registry.example.com/**" the whole registry.

// pattern is a compiled trust rule Match: its canonical segments.
type pattern struct {
	segs []string
}

// globMeta are path.Match's special characters.
const globMeta = `*?[\`

// compileMatch validates a trust rule's Match and returns it in canonical
// form. The error says what is wrong and how to write it.
func compileMatch(match string) (pattern, error) {
	if match == "" {
		return pattern{}, errors.New("empty match pattern; write the images the keys sign, like registry.example.com/team/**")
	}
	first, rest, ok := strings.Cut(match, "/")
	if first == "**" {
		if !ok {
			return pattern{segs: []string{"**"}}, nil
		}
	} else if !ok || rest == "" {
		return pattern{}, fmt.Errorf("match %q names no repository; write registry/repository, and to cover every image of a registry write %s/**", match, strings.TrimSuffix(match, "/"))
	}
	registry, err := compileRegistry(match, first)
	if err != nil {
		return pattern{}, err
	}
	segs := []string{registry}
	for _, seg := range strings.Split(rest, "/") {
		if err := checkSegment(match, seg); err != nil {
			return pattern{}, err
		}
		segs = append(segs, seg)
	}
	if registry == quoteMeta(registryhost.DockerHub) && len(segs) == 2 && segs[1] != "**" {
		// Docker reads docker.io/nginx as docker.io/library/nginx.
		segs = []string{registry, "library", segs[1]}
	}
	return pattern{segs: segs}, nil
}

// compileRegistry canonicalises the registry segment of match. A literal
// registry goes through registryhost.Canonical; in a glob the literal
// host is canonical and the glob parts are kept (a glob host lower-cased).
func compileRegistry(match, first string) (string, error) {
	if first == "**" {
		return first, nil
	}
	if strings.Contains(first, "**") {
		return "", fmt.Errorf("match %q: \"**\" must be a whole segment; a registry is one segment, so write * in it, like *.example.com", match)
	}
	if !strings.ContainsAny(first, ".:[") && !strings.EqualFold(first, "localhost") && !strings.ContainsAny(first, globMeta) {
		return "", fmt.Errorf("match %q starts with %q, which is not a registry; patterns name the registry first, like docker.io/%s or registry.example.com/%s", match, first, match, match)
	}
	host, port, hasPort := first, "", false
	if strings.HasPrefix(first, "[") {
		end := strings.Index(first, "]")
		if end < 0 {
			return "", fmt.Errorf("match %q: the registry has an unclosed [; write an IPv6 address as [2001:db8::1]:5000", match)
		}
		host = first[:end+1]
		if rest := first[end+1:]; rest != "" {
			if port, hasPort = strings.CutPrefix(rest, ":"); !hasPort {
				return "", fmt.Errorf("match %q: only :port may follow the ] of an IPv6 address", match)
			}
		}
	} else if i := strings.LastIndex(first, ":"); i >= 0 {
		host, port, hasPort = first[:i], first[i+1:], true
	}
	if !strings.ContainsAny(port, globMeta) && (strings.HasPrefix(host, "[") || !strings.ContainsAny(host, globMeta)) {
		// No glob at all: the whole registry is canonicalised at once.
		canonical, err := registryhost.Canonical(first)
		if err != nil {
			return "", fmt.Errorf("match %q: %w", match, err)
		}
		return quoteMeta(canonical), nil
	}
	if strings.HasPrefix(host, "[") || !strings.ContainsAny(host, globMeta) {
		canonical, err := registryhost.Canonical(host)
		if err != nil {
			return "", fmt.Errorf("match %q: %w", match, err)
		}
		host = quoteMeta(canonical)
	} else {
		host = strings.TrimSuffix(strings.ToLower(host), ".")
		if err := checkGlob(match, host); err != nil {
			return "", err
		}
	}
	switch {
	case !hasPort:
		return host, nil
	case strings.ContainsAny(port, globMeta):
		return host + ":" + port, checkGlob(match, port)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
		return "", fmt.Errorf("match %q: port %q is not a number from 1 to 65535 or a glob", match, port)
	}
	if n == 443 {
		return host, nil
	}
	return host + ":" + strconv.Itoa(n), nil
}

// checkSegment checks one path segment of a pattern.
func checkSegment(match, seg string) error {
	switch {
	case seg == "**":
		return nil
	case seg == "":
		return fmt.Errorf("match %q has an empty segment (\"//\" or a trailing \"/\"); write it without", match)
	case seg == "." || seg == "..":
		return fmt.Errorf("match %q has a %q segment; write the repository path it means", match, seg)
	case strings.Contains(seg, "**"):
		return fmt.Errorf("match %q: \"**\" must be a whole segment (team/**, **/web); inside a segment use *", match)
	case strings.ToLower(seg) != seg:
		return fmt.Errorf("match %q has upper-case letters in its path; repository paths are lower case, write %s", match, strings.ToLower(match))
	case strings.ContainsAny(seg, ":@"):
		return fmt.Errorf("match %q has a tag or digest; a rule matches repositories, write it without", match)
	}
	return checkGlob(match, seg)
}

func checkGlob(match, glob string) error {
	if _, err := path.Match(glob, ""); err != nil {
		return fmt.Errorf("match %q is not a valid pattern: %v", match, err)
	}
	return nil
}

func quoteMeta(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(globMeta, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// String is the canonical pattern, for messages.
func (p pattern) String() string {
	return strings.Join(p.segs, "/")
}

// matches reports whether the canonical repository (as
// registryhost.CanonicalRepository returns it) is covered, under any
// spelling of its registry.
func (p pattern) matches(canonical string) bool {
	registry, repoPath, _ := strings.Cut(canonical, "/")
	names := strings.Split(repoPath, "/")
	for _, spelling := range registryhost.Spellings(registry) {
		if matchSegments(p.segs, append([]string{spelling}, names...)) {
			return true
		}
	}
	return false
}

// matchSegments matches pattern segments against name segments; "**"
// matches zero or more segments. Dynamic programming over suffixes, so
// many "**" cost len(pat)*len(name) steps, not an exponential search.
func matchSegments(pat, name []string) bool {
	// ok[j] is whether pat[i:] matches name[j:], for the current i.
	ok := make([]bool, len(name)+1)
	ok[len(name)] = true
	for i := len(pat) - 1; i >= 0; i-- {
		next := make([]bool, len(name)+1)
		if pat[i] == "**" {
			// pat[i:] matches name[j:] if pat[i+1:] matches name[k:] for some k ≥ j.
			found := false
			for j := len(name); j >= 0; j-- {
				found = found || ok[j]
				next[j] = found
			}
		} else {
			for j := 0; j < len(name); j++ {
				if ok[j+1] {
					matched, _ := path.Match(pat[i], name[j])
					next[j] = matched
				}
			}
		}
		ok = next
	}
	return ok[0]
}
