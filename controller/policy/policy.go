// Package policy is the cluster's container-security policy: which
// exceptions to deployctl's hardened defaults a service spec may ask for
// (privileged mode, extra capabilities, host namespaces, root, unconfined
// seccomp or AppArmor, privileged host ports, bind mounts), which
// registries images may come from, which images must be signed by which
// keys, and the vulnerability scan gate.
//
// Everything here is pure: Parse reads YAML bytes, Check holds a spec
// against a policy. Reading key files, verifying signatures
// (controller/signature) and evaluating scan reports (controller/scangate)
// are the callers' business; this package only carries their settings.
// See DESIGN.md for the rule table.
package policy

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/controller/scangate"
	"github.com/deployctl/deployctl/controller/signature"
	"github.com/deployctl/deployctl/internal/registryhost"
	"github.com/deployctl/deployctl/internal/seccomprules"
	"github.com/deployctl/deployctl/specs"
	"github.com/google/go-containerregistry/pkg/name"
)

// Errors at the package border.
var (
	// ErrDenied is matched by the *DeniedError of a spec that the policy
	// refuses.
	ErrDenied = errors.New("denied by policy")
	// ErrInvalidPolicy is matched by the *ValidationError of Parse and
	// Validate.
	ErrInvalidPolicy = errors.New("invalid policy")
)

// Policy is the cluster's one security policy. Every Allow* field is an
// exception that defaults to false. The zero Policy denies everything,
// even NET_BIND_SERVICE; Default is the policy of a cluster where none was
// set.
//
// The yaml tags document the YAML keys; Parse walks the YAML by hand. The
// JSON is how the controller stores and serves the policy.
type Policy struct {
	AllowPrivileged bool `yaml:"allow_privileged" json:"allow_privileged,omitempty"`
	// AllowCapabilities lists what security.cap_add may add and what a
	// cap_drop without ALL may keep; "ALL" allows every capability.
	AllowCapabilities      []string `yaml:"allow_capabilities" json:"allow_capabilities"`
	AllowHostNetwork       bool     `yaml:"allow_host_network" json:"allow_host_network,omitempty"`
	AllowHostPID           bool     `yaml:"allow_host_pid" json:"allow_host_pid,omitempty"`
	AllowHostIPC           bool     `yaml:"allow_host_ipc" json:"allow_host_ipc,omitempty"`
	AllowHostUserns        bool     `yaml:"allow_host_userns" json:"allow_host_userns,omitempty"`
	AllowRoot              bool     `yaml:"allow_root" json:"allow_root,omitempty"`
	AllowSeccompUnconfined bool     `yaml:"allow_seccomp_unconfined" json:"allow_seccomp_unconfined,omitempty"`
	// AllowSeccompSyscalls lists the syscalls a security.seccomp profile
	// file may let run beyond what Docker's default profile lets the
	// container run (internal/seccomprules.Judge); "ALL" accepts any
	// profile, even one whose default action allows. Empty: a profile
	// must be at least as strict as Docker's default.
	AllowSeccompSyscalls    []string `yaml:"allow_seccomp_syscalls" json:"allow_seccomp_syscalls,omitempty"`
	AllowAppArmorUnconfined bool     `yaml:"allow_apparmor_unconfined" json:"allow_apparmor_unconfined,omitempty"`

	// Hardening defaults a spec may weaken (issue 16, finding 6). The
	// two Allow ones are refused unless allowed; the Level ones warn
	// unless the policy says refuse or allow.
	//
	// AllowRootGroup lets security.allow_root_group through: a primary
	// group 0 (root), chosen in security.user or by the image's passwd.
	AllowRootGroup bool `yaml:"allow_root_group" json:"allow_root_group,omitempty"`
	// AllowNewPrivileges lets security.no_new_privileges: false through,
	// with which a setuid-root binary in the image gains root.
	AllowNewPrivileges bool `yaml:"allow_new_privileges" json:"allow_new_privileges,omitempty"`
	// WritableRootfs judges security.read_only: false.
	WritableRootfs Level `yaml:"writable_rootfs" json:"writable_rootfs,omitempty"`
	// PortsOnAllInterfaces judges a port published on 0.0.0.0 or ::.
	PortsOnAllInterfaces Level `yaml:"ports_on_all_interfaces" json:"ports_on_all_interfaces,omitempty"`
	// CustomAppArmor judges a security.apparmor profile other than the
	// engine's docker-default: deployctl cannot see whether it enforces
	// (a profile in complain mode only logs). unconfined is
	// AllowAppArmorUnconfined's.
	CustomAppArmor Level `yaml:"custom_apparmor" json:"custom_apparmor,omitempty"`
	// EnvSecrets judges env: names that look like secrets (PASSWORD,
	// TOKEN, SECRET, *_KEY: specs.LooksLikeSecret), whose values belong
	// in secrets: (issue 13).
	EnvSecrets Level `yaml:"env_secrets" json:"env_secrets,omitempty"`

	// AllowPrivilegedPorts allows publishing host ports below 1024.
	AllowPrivilegedPorts bool `yaml:"allow_privileged_ports" json:"allow_privileged_ports,omitempty"`
	// IngressListenPorts are the ports an ingress entry may listen on:
	// every host's proxy opens them on --ingress-addr, so a spec author
	// could otherwise take a port a host service uses or will use (ssh,
	// DNS, a database started after us) on every host at once. Entries
	// are "80" or "8000-8999". nil (a policy stored before the key) is
	// DefaultIngressListenPorts; an empty list allows no ingress.
	IngressListenPorts []string `yaml:"ingress_listen_ports" json:"ingress_listen_ports"`
	// VolumePrefixes are the host directories bind mounts may come from:
	// a volume's host path must be one of them or lie under one. Some
	// paths are refused whatever this says (see DESIGN.md).
	VolumePrefixes []string `yaml:"volume_prefixes" json:"volume_prefixes,omitempty"`
	// Registries are the registries (host or host:port) images may come
	// from; empty means any.
	Registries []string `yaml:"registries" json:"registries,omitempty"`
	// Trust lists which images must be signed by which keys; the first
	// entry that matches an image decides (see TrustRules).
	Trust []TrustEntry `yaml:"trust" json:"trust,omitempty"`
	// RequireSignatures refuses every image that no trust entry matches:
	// no rule then means no admission, instead of no signature needed.
	RequireSignatures bool `yaml:"require_signatures" json:"require_signatures,omitempty"`
	// Scan is the vulnerability scan gate, evaluated with
	// scangate.Evaluate.
	Scan scangate.Policy `yaml:"scan" json:"scan"`
	// Connections lists, per service, the services that may declare a
	// connection to it (connects_to); a service without an entry accepts
	// any caller.
	Connections []ConnectionRule `yaml:"connections" json:"connections,omitempty"`
	// RequireUserns restricts replicas to hosts whose engine runs with
	// userns-remap. Check does not use it: it is a placement condition.
	RequireUserns bool `yaml:"require_userns" json:"require_userns,omitempty"`
	// Version is bumped by the controller on each set; it is not part of
	// the YAML.
	Version int `yaml:"-" json:"version"`
}

// Level is how the policy treats a weakened hardening default that is
// neither always safe nor always wrong: LevelRefuse, LevelWarn (also the
// empty Level, the default) or LevelAllow.
type Level string

// The Levels.
const (
	LevelRefuse Level = "refuse"
	LevelWarn   Level = "warn"
	LevelAllow  Level = "allow"
)

// Levels lists the Levels in order, for messages.
func Levels() []Level { return []Level{LevelRefuse, LevelWarn, LevelAllow} }

// effective is the Level in force: empty means LevelWarn.
func (l Level) effective() Level {
	if l == "" {
		return LevelWarn
	}
	return l
}

// TrustEntry requires images whose "registry/repository" matches Match (a
// glob compared in canonical form, where "*" stays within a path segment
// and "**" crosses "/"; see signature.TrustRule) to be signed by one of
// Keys.
type TrustEntry struct {
	Match string `yaml:"match" json:"match"`
	// Keys are the public key files as the policy names them; they are
	// kept for messages.
	Keys []string `yaml:"keys" json:"keys"`
	// KeysPEM are the contents of Keys, in the same order. The CLI reads
	// the files (this package does no I/O); the controller keeps the PEM.
	KeysPEM [][]byte `yaml:"-" json:"keys_pem,omitempty"`
}

// DefaultCapabilities is what security.cap_add may add under the default
// policy: binding ports below 1024 inside the container is harmless.
func DefaultCapabilities() []string { return []string{"NET_BIND_SERVICE"} }

// Default is the policy of a cluster where none was set: every exception
// denied, NET_BIND_SERVICE the only capability allowed, any registry, no
// signatures required, the scan gate off.
func Default() *Policy {
	return &Policy{
		AllowCapabilities:  DefaultCapabilities(),
		IngressListenPorts: DefaultIngressListenPorts(),
		Scan:               scangate.Policy{Mode: scangate.ModeOff},
	}
}

// Clone returns a deep copy; nil and empty lists stay apart, since an
// empty allow_capabilities means "none" and so does nil, but the JSON
// differs.
func (p *Policy) Clone() *Policy {
	if p == nil {
		return nil
	}
	c := *p
	c.AllowCapabilities = slices.Clone(p.AllowCapabilities)
	c.AllowSeccompSyscalls = slices.Clone(p.AllowSeccompSyscalls)
	c.VolumePrefixes = slices.Clone(p.VolumePrefixes)
	c.Registries = slices.Clone(p.Registries)
	c.IngressListenPorts = slices.Clone(p.IngressListenPorts)
	c.Scan.Ignore = slices.Clone(p.Scan.Ignore)
	if p.Connections != nil {
		c.Connections = make([]ConnectionRule, len(p.Connections))
		for i, r := range p.Connections {
			c.Connections[i] = ConnectionRule{Service: r.Service, From: slices.Clone(r.From)}
		}
	}
	if p.Trust != nil {
		c.Trust = make([]TrustEntry, len(p.Trust))
		for i, e := range p.Trust {
			c.Trust[i] = TrustEntry{Match: e.Match, Keys: slices.Clone(e.Keys)}
			if e.KeysPEM != nil {
				c.Trust[i].KeysPEM = make([][]byte, len(e.KeysPEM))
				for j, pem := range e.KeysPEM {
					c.Trust[i].KeysPEM[j] = slices.Clone(pem)
				}
			}
		}
	}
	return &c
}

// KeysLoaded reports whether every trust entry carries the PEM of each of
// its keys. The CLI fills them; the controller should not store a policy
// without them, since signatures could not be verified.
func (p *Policy) KeysLoaded() bool {
	for _, e := range p.Trust {
		if len(e.KeysPEM) != len(e.Keys) {
			return false
		}
	}
	return true
}

// TrustRules converts the trust entries for signature.Verifier: one rule
// per entry, in order, each key named by its file. A key whose PEM is not
// loaded has an empty PEM, which the verifier refuses as ErrBadKey.
func (p *Policy) TrustRules() []signature.TrustRule {
	rules := make([]signature.TrustRule, len(p.Trust))
	for i, e := range p.Trust {
		rules[i] = trustRule(e)
	}
	return rules
}

func trustRule(e TrustEntry) signature.TrustRule {
	keys := make([]signature.Key, len(e.Keys))
	for j, file := range e.Keys {
		keys[j] = signature.Key{Name: file}
		if j < len(e.KeysPEM) {
			keys[j].PEM = e.KeysPEM[j]
		}
	}
	return signature.TrustRule{Match: e.Match, Keys: keys}
}

// ValidationError lists every problem of a policy, each with the YAML line
// when Parse found it (Line 0 from Validate). It matches ErrInvalidPolicy.
type ValidationError struct {
	Problems []specs.Problem
}

// Error prints one problem per line.
func (e *ValidationError) Error() string {
	if len(e.Problems) == 0 {
		return ErrInvalidPolicy.Error()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalidPolicy }

// Validate checks a policy built in Go or decoded from JSON against the
// rules Parse applies, and returns a *ValidationError listing every
// problem. When the trust keys' PEM is loaded, the keys are parsed too
// (signature.Verifier.Validate).
func (p *Policy) Validate() error {
	if problems := p.problems(); len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

type validator struct {
	problems []specs.Problem
}

func (v *validator) addf(field, format string, args ...any) {
	v.problems = append(v.problems, specs.Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (p *Policy) problems() []specs.Problem {
	var v validator
	v.capabilities(p.AllowCapabilities)
	v.seccompSyscalls(p.AllowSeccompSyscalls)
	v.volumePrefixes(p.VolumePrefixes)
	v.registries(p.Registries)
	v.ingressListenPorts(p.IngressListenPorts)
	v.trust(p.Trust)
	v.connectionRules(p.Connections)
	if p.RequireSignatures && len(p.Trust) == 0 {
		v.addf("require_signatures", "true, but there are no trust entries, so every image would be refused; add trust entries for the registries you deploy from, like {match: registry.example.com/**, keys: [cosign.pub]}, or set require_signatures: false")
	}
	if err := p.Scan.Validate(); err != nil {
		field, msg := scanProblem(err)
		v.addf(field, "%s", msg)
	}
	for _, l := range []struct {
		key   string
		level Level
	}{
		{"writable_rootfs", p.WritableRootfs},
		{"ports_on_all_interfaces", p.PortsOnAllInterfaces},
		{"custom_apparmor", p.CustomAppArmor},
		{"env_secrets", p.EnvSecrets},
	} {
		if l.level != "" && !slices.Contains(Levels(), l.level) {
			v.addf(l.key, "%q is not a level; write refuse, warn or allow", string(l.level))
		}
	}
	if p.Version < 0 {
		v.addf("version", "%d is negative", p.Version)
	}
	return v.problems
}

// scanProblem splits the error of scangate.Policy.Validate into the field
// it is about and the rest: its text starts with the field
// ("scan.mode \"x\"; use off, warn or enforce").
func scanProblem(err error) (field, message string) {
	text := strings.TrimPrefix(err.Error(), scangate.ErrBadPolicy.Error()+": ")
	field, rest, _ := strings.Cut(text, " ")
	if !strings.HasPrefix(field, "scan.") || rest == "" {
		return "scan", text
	}
	return field, rest
}

func (v *validator) capabilities(caps []string) {
	for i, c := range caps {
		canonical := specs.CanonicalCapability(c)
		if slices.Contains(specs.Capabilities(), canonical) {
			continue
		}
		msg := fmt.Sprintf("%q is not a Linux capability (see capabilities(7))", c)
		if best, ok := specs.ClosestName(canonical, specs.Capabilities()); ok {
			msg += "; did you mean " + best + "?"
		}
		v.addf(fmt.Sprintf("allow_capabilities[%d]", i), "%s", msg)
	}
}

// seccompSyscalls checks allow_seccomp_syscalls: ALL or names of
// libseccomp's syscall table.
func (v *validator) seccompSyscalls(names []string) {
	for i, name := range names {
		if name == seccomprules.All || seccomprules.IsSyscall(name) {
			continue
		}
		msg := fmt.Sprintf("%q is not a syscall of libseccomp's table; list syscall names such as keyctl, or ALL for any profile", name)
		if best, ok := seccomprules.ClosestSyscall(name); ok {
			msg += "; did you mean " + best + "?"
		}
		v.addf(fmt.Sprintf("allow_seccomp_syscalls[%d]", i), "%s", msg)
	}
}

func (v *validator) volumePrefixes(prefixes []string) {
	for i, prefix := range prefixes {
		field := fmt.Sprintf("volume_prefixes[%d]", i)
		switch {
		case !strings.HasPrefix(prefix, "/"):
			v.addf(field, "%q is not an absolute path; write a host directory, like /srv", prefix)
		case prefix == "/":
			v.addf(field, "/ would allow every host path; list the directories volumes may come from, like /srv")
		case slices.Contains(strings.Split(prefix, "/"), ".."):
			v.addf(field, "%q contains \"..\"; write the directory it leads to", prefix)
		case path.Clean(prefix) != prefix:
			v.addf(field, "write %q as %s", prefix, path.Clean(prefix))
		default:
			// A prefix equal to an always-refused path is refused too:
			// "/etc" would allow /etc/shadow, "/run" the engine's socket.
			if reason := protectedHostPath(prefix); reason != "" {
				hint := "list a directory outside it"
				if example, ok := systemSubdirectoryExample(prefix); ok {
					hint = "list the subdirectory volumes need, like " + example
				}
				v.addf(field, "%s, so it cannot be a prefix; %s", reason, hint)
			}
		}
	}
}

// systemSubdirectoryExample names a subdirectory of a system directory
// that services commonly mount read-only.
func systemSubdirectoryExample(dir string) (string, bool) {
	switch dir {
	case "/etc":
		return "/etc/ssl/certs", true
	case "/usr":
		return "/usr/share/zoneinfo", true
	case "/lib":
		return "/lib/modules", true
	}
	return "", false
}

func (v *validator) registries(registries []string) {
	for i, r := range registries {
		field := fmt.Sprintf("registries[%d]", i)
		if r == "" || strings.Contains(r, "/") {
			v.addf(field, "%q is not a registry; write its host, or host:port, without a scheme or path, like registry.example.com:5000", r)
			continue
		}
		if _, err := name.NewRegistry(r, name.StrictValidation); err != nil {
			v.addf(field, "%q is not a registry host[:port]: %v", r, err)
		} else if _, err := registryhost.Canonical(r); err != nil {
			v.addf(field, "%v", err)
		}
	}
}

func (v *validator) ingressListenPorts(entries []string) {
	for i, e := range entries {
		if _, _, err := parsePortRange(e); err != nil {
			v.addf(fmt.Sprintf("ingress_listen_ports[%d]", i), "%v", err)
		}
	}
}

func (v *validator) trust(entries []TrustEntry) {
	for i, e := range entries {
		field := fmt.Sprintf("trust[%d]", i)
		switch err := signature.ValidateMatch(e.Match); {
		case e.Match == "":
			v.addf(field+".match", "empty; write the images the keys sign, like registry.example.com/team/** (\"*\" stays within one path segment, \"**\" crosses \"/\")")
		case err != nil:
			v.addf(field+".match", "%s", strings.TrimPrefix(err.Error(), signature.ErrBadRule.Error()+": "))
		}
		if len(e.Keys) == 0 {
			v.addf(field+".keys", "no keys, so no image could ever satisfy this entry; list public key files, like [cosign.pub]")
		}
		for j, k := range e.Keys {
			if strings.TrimSpace(k) == "" {
				v.addf(fmt.Sprintf("%s.keys[%d]", field, j), "empty; write the path of a public key file")
			}
		}
		switch {
		case len(e.KeysPEM) == 0:
			// Not loaded yet: the CLI validates the file before reading the keys.
		case len(e.KeysPEM) != len(e.Keys):
			v.addf(field+".keys", "%d keys but %d PEM contents; every key needs its content", len(e.Keys), len(e.KeysPEM))
		case !v.hasProblemUnder(field):
			// The keys are parsed only once the entry is otherwise sound,
			// so that the verifier's message is about the keys.
			verifier := signature.Verifier{Rules: []signature.TrustRule{trustRule(e)}}
			if err := verifier.Validate(); err != nil {
				v.addf(field+".keys", "%v", err)
			}
		}
	}
}

func (v *validator) hasProblemUnder(field string) bool {
	return slices.ContainsFunc(v.problems, func(p specs.Problem) bool {
		return p.Field == field || strings.HasPrefix(p.Field, field+".") || strings.HasPrefix(p.Field, field+"[")
	})
}
