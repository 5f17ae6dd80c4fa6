package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/deployctl/deployctl/controller/scangate"
	"github.com/deployctl/deployctl/specs"
	"go.yaml.in/yaml/v3"
)

// The accepted YAML keys, section by section ("" is the top level,
// "trust" each entry of the trust list).
func schemaFields(section string) []string {
	switch section {
	case "":
		return []string{"allow_privileged", "allow_capabilities", "allow_host_network", "allow_host_pid",
			"allow_host_ipc", "allow_host_userns", "allow_root", "allow_seccomp_unconfined",
			"allow_apparmor_unconfined", "allow_privileged_ports", "volume_prefixes", "registries",
			"trust", "scan", "require_userns"}
	case "trust":
		return []string{"match", "keys"}
	case "scan":
		return []string{"mode", "max_severity", "ignore", "max_age"}
	}
	return nil
}

// aliases are spellings edit distance would not find: the spec's own
// field names, and plurals.
func alias(section, key string) (string, bool) {
	if section != "" {
		return "", false
	}
	switch key {
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
	case "userns_remap", "require_userns_remap":
		return "require_userns", true
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
	for _, other := range []string{"", "trust", "scan"} {
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
	p := &parser{lines: map[string]int{}}
	root, problems := specs.DecodeYAMLDocument(data, "policy")
	p.problems = append(p.problems, problems...)
	if root == nil {
		if len(problems) == 0 {
			p.add("", 0, "the policy is empty; write {} for the default policy, which allows no exception")
		}
		return nil, p.err()
	}
	if root.Kind != yaml.MappingNode {
		p.add("", root.Line, "a policy is a mapping of keys, like \"allow_privileged: false\"; got %s", describe(root))
		return nil, p.err()
	}
	policy := Default()
	p.policy(root, policy)
	p.addValidation(policy.problems())
	if len(p.problems) > 0 {
		return nil, p.err()
	}
	return policy, nil
}

// parser collects problems while it walks the node tree, and the line of
// every field it sees, so that Validate's problems get a line too.
type parser struct {
	problems []specs.Problem
	lines    map[string]int
}

func (p *parser) add(field string, line int, format string, args ...any) {
	p.problems = append(p.problems, specs.Problem{Field: field, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	problems := slices.Clone(p.problems)
	slices.SortStableFunc(problems, func(a, b specs.Problem) int { return cmp.Compare(a.Line, b.Line) })
	return &ValidationError{Problems: problems}
}

// addValidation adds Validate's problems with the line of their field,
// leaving out those about a field the walk already reported (a value that
// did not decode was left at its default).
func (p *parser) addValidation(problems []specs.Problem) {
	walked := map[string]bool{}
	for _, q := range p.problems {
		walked[q.Field] = true
	}
	for _, prob := range problems {
		if reportedIn(walked, prob.Field) {
			continue
		}
		prob.Line = p.lineOf(prob.Field)
		p.problems = append(p.problems, prob)
	}
}

func reportedIn(fields map[string]bool, field string) bool {
	for ; field != ""; field = enclosingField(field) {
		if fields[field] {
			return true
		}
	}
	return false
}

func enclosingField(field string) string {
	if cut := strings.LastIndexAny(field, ".["); cut >= 0 {
		return field[:cut]
	}
	return ""
}

func (p *parser) lineOf(field string) int {
	for ; field != ""; field = enclosingField(field) {
		if line, ok := p.lines[field]; ok {
			return line
		}
	}
	return 0
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
		{"allow_seccomp_unconfined", &pol.AllowSeccompUnconfined},
		{"allow_apparmor_unconfined", &pol.AllowAppArmorUnconfined},
		{"allow_privileged_ports", &pol.AllowPrivilegedPorts},
		{"require_userns", &pol.RequireUserns},
	}
	for _, b := range bools {
		if n, ok := f[b.key]; ok {
			p.setBool(b.key, n, b.dst)
		}
	}
	if n, ok := f["allow_capabilities"]; ok {
		if caps, ok := p.stringList("allow_capabilities", n); ok {
			for i, c := range caps {
				caps[i] = specs.CanonicalCapability(c)
			}
			pol.AllowCapabilities = caps
		}
	}
	if n, ok := f["volume_prefixes"]; ok {
		pol.VolumePrefixes, _ = p.stringList("volume_prefixes", n)
	}
	if n, ok := f["registries"]; ok {
		pol.Registries, _ = p.stringList("registries", n)
	}
	if n, ok := f["trust"]; ok {
		pol.Trust = p.trust("trust", n)
	}
	if n, ok := f["scan"]; ok {
		p.scan("scan", n, &pol.Scan)
	}
}

func (p *parser) trust(path string, n *yaml.Node) []TrustEntry {
	items, ok := p.sequence(path, n)
	if !ok {
		return nil
	}
	entries := make([]TrustEntry, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.lines[field] = item.Line
		f := p.fieldsOf("trust", field, item)
		if n, ok := f["match"]; ok {
			entries[i].Match, _ = p.text(field+".match", n)
		}
		if n, ok := f["keys"]; ok {
			entries[i].Keys, _ = p.stringList(field+".keys", n)
		}
	}
	return entries
}

func (p *parser) scan(path string, n *yaml.Node, s *scangate.Policy) {
	f := p.fields(path, n)
	if n, ok := f["mode"]; ok {
		s.Mode, _ = p.text(path+".mode", n)
	}
	if n, ok := f["max_severity"]; ok {
		s.MaxSeverity, _ = p.text(path+".max_severity", n)
	}
	if n, ok := f["ignore"]; ok {
		s.Ignore, _ = p.stringList(path+".ignore", n)
	}
	if n, ok := f["max_age"]; ok {
		field := path + ".max_age"
		if text, ok := p.text(field, n); ok {
			if age, err := scangate.ParsePolicyDuration(text); err != nil {
				// scangate's message already says what to write.
				p.add(field, n.Line, "%s", strings.TrimPrefix(err.Error(), scangate.ErrBadPolicy.Error()+": "))
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
	line, n := n.Line, resolve(n)
	known := schemaFields(section)
	if n.Kind != yaml.MappingNode {
		p.add(path, line, "expected a mapping of %s; got %s", strings.Join(known, ", "), describe(n))
		return nil
	}
	values := map[string]*yaml.Node{}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keyNode := resolve(n.Content[i])
		keyLine := n.Content[i].Line
		switch {
		case keyNode.Kind != yaml.ScalarNode:
			p.add(path, keyLine, "a key must be a plain name; got %s", describe(keyNode))
			continue
		case keyNode.ShortTag() == "!!merge":
			p.add(path, keyLine, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		key := keyNode.Value
		field := join(path, key)
		if first, dup := firstLine[key]; dup {
			p.add(field, keyLine, "duplicate key; it is already set on line %d, keep one", first)
			continue
		}
		firstLine[key] = keyLine
		if !slices.Contains(known, key) {
			p.add(field, keyLine, "%s", unknownFieldMessage(section, key))
			continue
		}
		p.lines[field] = keyLine
		if value := n.Content[i+1]; !isNull(value) {
			values[key] = value
		}
	}
	return values
}

func (p *parser) sequence(field string, n *yaml.Node) ([]*yaml.Node, bool) {
	line, n := n.Line, resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.add(field, line, "expected a list; got %s", describe(n))
		return nil, false
	}
	return n.Content, true
}

// stringList reads a list of scalars; the result is never nil, so that an
// explicit empty list stays distinct from an absent one.
func (p *parser) stringList(field string, n *yaml.Node) ([]string, bool) {
	items, ok := p.sequence(field, n)
	if !ok {
		return nil, false
	}
	list := make([]string, len(items))
	allOK := true
	for i, item := range items {
		itemField := fmt.Sprintf("%s[%d]", field, i)
		p.lines[itemField] = item.Line
		text, ok := p.text(itemField, item)
		allOK = allOK && ok
		list[i] = text
	}
	return list, allOK
}

// text reads a scalar as the text written; a number is taken as its text
// ("max_age: 0").
func (p *parser) text(field string, n *yaml.Node) (string, bool) {
	line, n := n.Line, resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.add(field, line, "expected a string; got %s", describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool":
		return n.Value, true
	}
	p.add(field, line, "expected a string; the YAML tag %s is not supported", n.Tag)
	return "", false
}

func (p *parser) setBool(field string, n *yaml.Node, dst *bool) {
	line, n := n.Line, resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(dst) != nil {
		p.add(field, line, "expected true or false; got %s", describe(n))
	}
}

// resolve follows an alias to the node it names; the walk never goes
// deeper than the schema, so aliases cannot make it expand.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing (null)"
		}
		const maxShown = 40
		if len(n.Value) > maxShown {
			return strconv.Quote(n.Value[:maxShown]) + "..."
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported YAML node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
