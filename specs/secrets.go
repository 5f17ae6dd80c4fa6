package specs

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Secret defaults (issue 13).
const (
	// SecretDir is where a secret is mounted when its entry names no target.
	SecretDir = "/run/secrets"
	// DefaultSecretMode is a secret file's mode when its entry names none:
	// readable by its owner only.
	DefaultSecretMode = 0o400
)

// Secret is one secret a service's containers receive as a file, in
// memory (never in the environment). The value itself is stored with
// `deployctl secret create`; the spec names it. Target is the absolute
// path in the container (default /run/secrets/NAME); UID and GID own the
// file (nil: the container's user and group); Mode is its permission bits
// (default 0400). Version 0 takes the latest version at apply; a
// revision pins the version it was applied with either way.
type Secret struct {
	Name    string `json:"name"`
	Target  string `json:"target"`
	UID     *int   `json:"uid,omitempty"`
	GID     *int   `json:"gid,omitempty"`
	Mode    uint32 `json:"mode"`
	Version int    `json:"version,omitempty"`
}

// secrets reads the list of secrets: each a secret name, or a mapping
// {name, target, uid, gid, mode, version}. mode is octal, as chmod takes
// it (0440, "440" and 0o440 alike).
func (p *parser) secrets(field string, n *yaml.Node) []Secret {
	items, ok := p.Sequence(field, n)
	if !ok {
		return nil
	}
	out := make([]Secret, len(items))
	for i, item := range items {
		f := fmt.Sprintf("%s[%d]", field, i)
		p.Lines[f] = item.Line
		var s Secret
		switch r := ResolveNode(item); {
		case r.Kind == yaml.ScalarNode && !IsNullNode(r):
			s.Name, _ = p.Text(f, item)
		case r.Kind == yaml.MappingNode:
			fields := p.fields(f, item)
			if n, ok := fields["name"]; ok {
				s.Name, _ = p.Text(f+".name", n)
			} else {
				p.Add(f+".name", item.Line, "required; name the secret, as `deployctl secret create NAME` stored it, like db-password")
			}
			if n, ok := fields["target"]; ok {
				s.Target, _ = p.Text(f+".target", n)
			}
			for key, dst := range map[string]**int{"uid": &s.UID, "gid": &s.GID} {
				if n, ok := fields[key]; ok {
					if v, ok := p.integer(f+"."+key, n); ok {
						*dst = &v
					}
				}
			}
			if n, ok := fields["mode"]; ok {
				s.Mode = p.fileMode(f+".mode", n)
			}
			if n, ok := fields["version"]; ok {
				if v, ok := p.integer(f+".version", n); ok {
					if v < 1 {
						p.Add(f+".version", n.Line, "%d is not a version; versions count from 1 (`deployctl secret inspect %s` lists them), or leave version out for the latest", v, s.Name)
					}
					s.Version = v
				}
			}
		default:
			p.Add(f, item.Line, "expected a secret name like db-password, or a mapping like {name: db-password, target: /run/secrets/db, mode: 0440}; got %s", DescribeNode(item))
			continue
		}
		out[i] = s
	}
	return out
}

// fileMode reads permission bits written in octal.
func (p *parser) fileMode(field string, n *yaml.Node) uint32 {
	text, ok := p.Text(field, n)
	if !ok {
		return 0
	}
	digits := strings.TrimPrefix(strings.TrimSpace(text), "0o")
	m, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || m == 0 || m > 0o777 {
		p.Add(field, n.Line, "%q is not a file mode; write permission bits in octal from 0001 to 0777, like 0400 (owner reads) or 0440 (owner and group read)", text)
		return 0
	}
	return uint32(m)
}

// applySecretDefaults fills each entry's target and mode.
func (s *Spec) applySecretDefaults() {
	for i := range s.Secrets {
		sec := &s.Secrets[i]
		if sec.Target == "" && sec.Name != "" {
			sec.Target = path.Join(SecretDir, sec.Name)
		}
		if sec.Mode == 0 {
			sec.Mode = DefaultSecretMode
		}
	}
}

// secrets checks the entries: a valid name, once each; an absolute clean
// target outside the paths the engine owns, once each; ids from 0 to
// 2^31-1; a mode from 0001 to 0777; a version of 1 or more (0: latest).
func (v *validator) secrets(entries []Secret) {
	names := map[string]int{}
	targets := map[string]int{}
	for i, s := range entries {
		field := fmt.Sprintf("secrets[%d]", i)
		switch {
		case s.Name == "":
			v.addf(field+".name", "required; name the secret, like db-password")
		case !isServiceName(s.Name):
			v.addf(field+".name", "%q is not a valid secret name; use 1 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (like db-password)", s.Name)
		default:
			if earlier, dup := names[s.Name]; dup {
				v.addf(field+".name", "secret %s is already listed as secrets[%d]; list each secret once", s.Name, earlier)
			}
			names[s.Name] = i
		}
		switch {
		case !path.IsAbs(s.Target) || path.Clean(s.Target) != s.Target || s.Target == "/":
			v.addf(field+".target", "%q is not a clean absolute file path; write one like %s/%s, or leave target out", s.Target, SecretDir, s.Name)
		case reservedSecretTarget(s.Target):
			v.addf(field+".target", "%s is a path the engine manages; mount secrets under %s or another directory of your own", s.Target, SecretDir)
		default:
			if earlier, dup := targets[s.Target]; dup {
				v.addf(field+".target", "%s is already the target of secrets[%d]; give each secret its own file", s.Target, earlier)
			}
			targets[s.Target] = i
		}
		for key, id := range map[string]*int{"uid": s.UID, "gid": s.GID} {
			if id != nil && (*id < 0 || *id > 1<<31-1) {
				v.addf(field+"."+key, "%d is not a %s; write a number from 0 to 2147483647, or leave it out for the container's user", *id, key)
			}
		}
		if s.Mode == 0 || s.Mode > 0o777 {
			v.addf(field+".mode", "%04o is not a file mode; write permission bits from 0001 to 0777, like 0400", s.Mode)
		}
		if s.Version < 0 {
			v.addf(field+".version", "%d is not a version; versions count from 1, or leave version out for the latest", s.Version)
		}
	}
}

// reservedSecretTarget: paths the engine itself mounts or generates.
func reservedSecretTarget(p string) bool {
	for _, r := range []string{"/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// LooksLikeSecret reports whether an env: name looks like it carries a
// secret (*PASSWORD*, *PASSWD*, *TOKEN*, *SECRET*, *_KEY, case
// insensitive): such a value lands in plain text in raft, docker inspect
// and history, where secrets: keeps it encrypted and in memory.
func LooksLikeSecret(envName string) bool {
	n := strings.ToUpper(envName)
	for _, s := range []string{"PASSWORD", "PASSWD", "TOKEN", "SECRET"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return strings.HasSuffix(n, "_KEY")
}

// SecretLikeEnv lists a spec's env names that look like secrets, sorted.
func (s *Spec) SecretLikeEnv() []string {
	var out []string
	for name := range s.Env {
		if LooksLikeSecret(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
