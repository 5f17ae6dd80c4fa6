package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/controller/scangate"
	"github.com/deployctl/deployctl/internal/seccomprules"
	"github.com/deployctl/deployctl/specs"
	"go.yaml.in/yaml/v3"
)

// The accepted YAML keys, section by section ("" is the top level,
// "trust" each entry of the trust list).
func schemaFields(section string) []string {
	switch section {
	case "":
		return []string{"allow_privileged", "allow_capabilities", "allow_host_network", "allow_host_pid",
			"allow_host_ipc", "allow_host_userns", "allow_root", "allow_root_group", "allow_new_privileges",
			"writable_rootfs", "ports_on_all_interfaces", "custom_apparmor", "env_secrets", "allow_seccomp_unconfined",
			"allow_seccomp_syscalls", "allow_apparmor_unconfined", "allow_privileged_ports", "ingress_listen_ports", "volume_prefixes", "registries",
			"trust", "require_signatures", "scan", "require_userns", "connections"}
	case "trust":
		return []string{"match", "keys"}
	case "scan":
		return []string{"mode", "max_severity", "ignore", "max_age", "accept_unsigned_reports"}
	case "connections":
		return []string{"service", "from"}
	}
	return nil
}

// aliases are spellings edit distance would not find: the spec's own
// field names, and plurals.
func alias(section, key string) (string, bool) {
	if section == "connections" {
		switch key {
		case "to", "target", "name", "services":
			return "service", true
		case "callers", "allow", "allowed", "allow_from", "allowed_from", "sources", "clients":
			return "from", true
		}
		return "", false
	}
	if section != "" {
		return "", false
	}
	switch key {
	case "connects_to", "allow_connections", "allowed_connections", "connection_rules", "network_policy", "network_policies":
		return "connections", true
	case "privileged":
		return "allow_privileged", true
	case "capabilities", "cap_add", "allow_cap_add", "allowed_capabilities":
		return "allow_capabilities", true
	case "volumes", "allow_volumes", "volume_prefix":
		return "volume_prefixes", true
	case "registry", "allowed_registries", "allow_registries":
		return "registries", true
	case "signatures", "trusted_keys":
		return "trust", true
	case "require_signature", "require_signed", "signatures_required", "require_signed_images", "unmatched":
		return "require_signatures", true
	case "userns_remap", "require_userns_remap":
		return "require_userns", true
	case "allow_gid_0", "allow_group_root", "allow_root_gid":
		return "allow_root_group", true
	case "no_new_privileges", "allow_no_new_privileges":
		return "allow_new_privileges", true
	case "read_only", "allow_writable_rootfs", "allow_read_write":
		return "writable_rootfs", true
	case "ingress_ports", "listen_ports", "allow_ingress_ports", "allowed_ingress_ports", "ingress_listen":
		return "ingress_listen_ports", true
	case "apparmor", "allow_custom_apparmor":
		return "custom_apparmor", true
	case "seccomp_weaker_than_default", "allow_seccomp_weaker_than_default", "allow_seccomp_weaker", "seccomp_syscalls":
		return "allow_seccomp_syscalls", true
	}
	return "", false
}

// unknownFieldMessage suggests the closest valid key, as the spec parser
// does: an alias, a key within a small edit distance in the same section,
// the same key in another section, else the list of valid keys.
func unknownFieldMessage(section, key string) string {
	if a, ok := alias(section, key); ok {
		return "unknown field; did you mean " + a + "?"
	}
	valid := schemaFields(section)
	if best, ok := specs.ClosestName(key, valid); ok {
		return "unknown field; did you mean " + best + "?"
	}
	for _, other := range []string{"", "trust", "scan", "connections"} {
		if other == section {
			continue
		}
		for _, f := range schemaFields(other) {
			if f == key {
				switch other {
				case "":
					return "unknown field; did you mean " + f + " (at the top level)?"
				case "trust":
					return "unknown field; did you mean " + f + " in a trust entry?"
				case "connections":
					return "unknown field; did you mean " + f + " in a connections entry?"
				}
				return "unknown field; did you mean " + other + "." + f + "?"
			}
		}
	}
	return "unknown field; valid fields are " + strings.Join(valid, ", ")
}

// Parse reads a policy from YAML strictly, like a spec: unknown keys
// (with a suggestion), duplicate keys, wrong types and invalid values are
// all reported at once, each with its line, in a *ValidationError that
// matches ErrInvalidPolicy. Absent keys keep Default's value, so
// "allow_capabilities: []" allows none while leaving the key out allows
// NET_BIND_SERVICE. Trust keys are file names; the caller reads them into
// KeysPEM.
func Parse(data []byte) (*Policy, error) {
	p := &parser{Walker: specs.NewWalker()}
	root, problems := specs.DecodeYAMLDocument(data, "policy")
	p.Problems = append(p.Problems, problems...)
	if root == nil {
		if len(problems) == 0 {
			p.Add("", 0, "the policy is empty; write {} for the default policy, which allows no exception")
		}
		return nil, p.err()
	}
	if root.Kind != yaml.MappingNode {
		p.Add("", root.Line, "a policy is a mapping of keys, like \"allow_privileged: false\"; got %s", specs.DescribeNode(root))
		return nil, p.err()
	}
	policy := Default()
	p.policy(root, policy)
	p.AddValidation(policy.problems())
	if len(p.Problems) > 0 {
		return nil, p.err()
	}
	return policy, nil
}

// parser collects problems while it walks the node tree, and the line of
// every field it sees, so that Validate's problems get a line too.
type parser struct {
	*specs.Walker
}

func (p *parser) err() error {
	if problems := p.Sorted(); problems != nil {
		return &ValidationError{Problems: problems}
	}
	return nil
}

func (p *parser) policy(root *yaml.Node, pol *Policy) {
	f := p.fields("", root)
	bools := []struct {
		key string
		dst *bool
	}{
		{"allow_privileged", &pol.AllowPrivileged},
		{"allow_host_network", &pol.AllowHostNetwork},
		{"allow_host_pid", &pol.AllowHostPID},
		{"allow_host_ipc", &pol.AllowHostIPC},
		{"allow_host_userns", &pol.AllowHostUserns},
		{"allow_root", &pol.AllowRoot},
		{"allow_root_group", &pol.AllowRootGroup},
		{"allow_new_privileges", &pol.AllowNewPrivileges},
		{"allow_seccomp_unconfined", &pol.AllowSeccompUnconfined},
		{"allow_apparmor_unconfined", &pol.AllowAppArmorUnconfined},
		{"allow_privileged_ports", &pol.AllowPrivilegedPorts},
		{"require_userns", &pol.RequireUserns},
		{"require_signatures", &pol.RequireSignatures},
	}
	for _, b := range bools {
		if n, ok := f[b.key]; ok {
			p.SetBool(b.key, n, b.dst)
		}
	}
	for _, l := range []struct {
		key string
		dst *Level
	}{
		{"writable_rootfs", &pol.WritableRootfs},
		{"ports_on_all_interfaces", &pol.PortsOnAllInterfaces},
		{"custom_apparmor", &pol.CustomAppArmor},
		{"env_secrets", &pol.EnvSecrets},
	} {
		if n, ok := f[l.key]; ok {
			if text, ok := p.Text(l.key, n); ok {
				*l.dst = Level(text)
			}
		}
	}
	if n, ok := f["allow_capabilities"]; ok {
		if caps, ok := p.StringList("allow_capabilities", n); ok {
			for i, c := range caps {
				caps[i] = specs.CanonicalCapability(c)
			}
			pol.AllowCapabilities = caps
		}
	}
	if n, ok := f["allow_seccomp_syscalls"]; ok {
		if names, ok := p.StringList("allow_seccomp_syscalls", n); ok {
			for i, name := range names {
				if strings.EqualFold(strings.TrimSpace(name), seccomprules.All) {
					names[i] = seccomprules.All
				}
			}
			pol.AllowSeccompSyscalls = names
		}
	}
	if n, ok := f["volume_prefixes"]; ok {
		pol.VolumePrefixes, _ = p.StringList("volume_prefixes", n)
	}
	if n, ok := f["registries"]; ok {
		pol.Registries, _ = p.StringList("registries", n)
	}
	if n, ok := f["ingress_listen_ports"]; ok {
		if ports, ok := p.StringList("ingress_listen_ports", n); ok {
			if ports == nil {
				ports = []string{} // an empty list allows no ingress; nil would mean the default
			}
			pol.IngressListenPorts = ports
		}
	}
	if n, ok := f["trust"]; ok {
		pol.Trust = p.trust("trust", n)
	}
	if n, ok := f["scan"]; ok {
		p.scan("scan", n, &pol.Scan)
	}
	if n, ok := f["connections"]; ok {
		pol.Connections = p.connectionRules("connections", n)
	}
}

func (p *parser) trust(path string, n *yaml.Node) []TrustEntry {
	items, ok := p.Sequence(path, n)
	if !ok {
		return nil
	}
	entries := make([]TrustEntry, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.Lines[field] = item.Line
		f := p.fieldsOf("trust", field, item)
		if n, ok := f["match"]; ok {
			entries[i].Match, _ = p.Text(field+".match", n)
		}
		if n, ok := f["keys"]; ok {
			entries[i].Keys, _ = p.StringList(field+".keys", n)
		}
	}
	return entries
}

func (p *parser) scan(path string, n *yaml.Node, s *scangate.Policy) {
	f := p.fields(path, n)
	if n, ok := f["mode"]; ok {
		s.Mode, _ = p.Text(path+".mode", n)
	}
	if n, ok := f["max_severity"]; ok {
		s.MaxSeverity, _ = p.Text(path+".max_severity", n)
	}
	if n, ok := f["ignore"]; ok {
		s.Ignore, _ = p.StringList(path+".ignore", n)
	}
	if n, ok := f["accept_unsigned_reports"]; ok {
		p.SetBool(path+".accept_unsigned_reports", n, &s.AcceptUnsignedReports)
	}
	if n, ok := f["max_age"]; ok {
		field := path + ".max_age"
		if text, ok := p.Text(field, n); ok {
			if age, err := scangate.ParsePolicyDuration(text); err != nil {
				// scangate's message already says what to write.
				p.Add(field, n.Line, "%s", strings.TrimPrefix(err.Error(), scangate.ErrBadPolicy.Error()+": "))
			} else {
				s.MaxAge = age
			}
		}
	}
}

// fields reads the mapping of a section whose schema is named like it.
func (p *parser) fields(section string, n *yaml.Node) map[string]*yaml.Node {
	return p.fieldsOf(section, section, n)
}

// fieldsOf checks that n is a mapping whose keys are unique names from
// the schema of section, records the line of each under path, and returns
// the value nodes by name. A key set to null counts as absent.
func (p *parser) fieldsOf(section, path string, n *yaml.Node) map[string]*yaml.Node {
	line, n := n.Line, specs.ResolveNode(n)
	known := schemaFields(section)
	if n.Kind != yaml.MappingNode {
		p.Add(path, line, "expected a mapping of %s; got %s", strings.Join(known, ", "), specs.DescribeNode(n))
		return nil
	}
	values := map[string]*yaml.Node{}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keyNode := specs.ResolveNode(n.Content[i])
		keyLine := n.Content[i].Line
		switch {
		case keyNode.Kind != yaml.ScalarNode:
			p.Add(path, keyLine, "a key must be a plain name; got %s", specs.DescribeNode(keyNode))
			continue
		case keyNode.ShortTag() == "!!merge":
			p.Add(path, keyLine, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		key := keyNode.Value
		field := specs.JoinField(path, key)
		if first, dup := firstLine[key]; dup {
			p.Add(field, keyLine, "duplicate key; it is already set on line %d, keep one", first)
			continue
		}
		firstLine[key] = keyLine
		if !slices.Contains(known, key) {
			p.Add(field, keyLine, "%s", unknownFieldMessage(section, key))
			continue
		}
		p.Lines[field] = keyLine
		if value := n.Content[i+1]; !specs.IsNullNode(value) {
			values[key] = value
		}
	}
	return values
}
