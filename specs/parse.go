package specs

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Parse decodes a YAML spec strictly, fills the defaults of absent fields and
// validates the result. On any problem it returns a *ValidationError listing
// every problem found, each with its line; the error matches ErrInvalidSpec.
//
// The YAML is decoded into a node tree and walked by hand, not unmarshalled
// into the struct, so that every problem (unknown field, duplicate key, wrong
// type, bad value) carries a line and all of them are reported at once.
func Parse(data []byte) (*Spec, error) {
	p := &parser{lines: map[string]int{}}
	root := p.document(data)
	if root == nil {
		return nil, p.err()
	}
	if root.Kind != yaml.MappingNode {
		p.add("", root.Line, "a spec is a mapping of fields, like \"service: web\"; got %s", describe(root))
		return nil, p.err()
	}
	spec := newDefaultSpec()
	p.spec(root, spec)
	p.addValidation(spec.problems())
	if len(p.problems) > 0 {
		return nil, p.err()
	}
	return spec, nil
}

// parser collects problems while it walks the node tree.
type parser struct {
	problems []Problem
	// lines maps the path of every field and list item seen to its line, so
	// that the problems Validate finds on the built Spec get a line too.
	lines map[string]int
}

func (p *parser) add(field string, line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{Field: field, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	problems := slices.Clone(p.problems)
	slices.SortStableFunc(problems, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return &ValidationError{Problems: problems}
}

// addValidation adds the problems Validate found on the built spec, with
// the line of their field (or of its nearest enclosing field), leaving out
// those about a field the walk already reported, or a field inside it: a
// value that failed to decode was left at its default or zero, and saying so
// twice is noise.
func (p *parser) addValidation(problems []Problem) {
	walked := make(map[string]bool, len(p.problems))
	for _, q := range p.problems {
		if q.Field != "" {
			walked[q.Field] = true
		}
	}
	for _, prob := range problems {
		if !reportedIn(walked, prob.Field) {
			prob.Line = p.lineOf(prob.Field)
			p.problems = append(p.problems, prob)
		}
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

// enclosingField strips the last part of a path: "healthcheck.http.port" ->
// "healthcheck.http", "ports[2]" -> "ports", "env.A" -> "env".
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

// document decodes the single YAML document of data and returns its root
// node, or nil after recording why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	root, problems := DecodeYAMLDocument(data, "spec")
	p.problems = append(p.problems, problems...)
	if root == nil && len(problems) == 0 {
		p.add("", 0, "the spec is empty; write at least service and image")
	}
	return root
}

// spec walks the top-level mapping into s, which holds the defaults.
func (p *parser) spec(root *yaml.Node, s *Spec) {
	f := p.fields("", root)
	if n, ok := f["service"]; ok {
		s.Service, _ = p.text("service", n)
	}
	if n, ok := f["image"]; ok {
		s.Image, _ = p.text("image", n)
	}
	if n, ok := f["replicas"]; ok {
		if v, ok := p.integer("replicas", n); ok {
			s.Replicas = v
		}
	}
	if n, ok := f["command"]; ok {
		s.Command, _ = p.stringList("command", n)
	}
	if n, ok := f["entrypoint"]; ok {
		s.Entrypoint, _ = p.stringList("entrypoint", n)
	}
	if n, ok := f["env"]; ok {
		s.Env = p.env("env", n)
	}
	if n, ok := f["ports"]; ok {
		s.Ports = p.ports("ports", n)
	}
	if n, ok := f["volumes"]; ok {
		s.Volumes = p.volumes("volumes", n)
	}
	if n, ok := f["resources"]; ok {
		p.resources("resources", n, &s.Resources)
	}
	if n, ok := f["healthcheck"]; ok {
		p.healthcheck("healthcheck", n, &s.Healthcheck)
	}
	if n, ok := f["update"]; ok {
		p.update("update", n, &s.Update)
	}
	if n, ok := f["placement"]; ok {
		p.placement("placement", n, &s.Placement)
	}
	if n, ok := f["security"]; ok {
		p.security("security", n, &s.Security)
	}
	if n, ok := f["network_mode"]; ok {
		if mode, ok := p.text("network_mode", n); ok {
			s.NetworkMode = canonicalNetworkMode(mode)
		}
	}
	if n, ok := f["pid"]; ok {
		s.PID, _ = p.text("pid", n)
	}
	if n, ok := f["ipc"]; ok {
		s.IPC, _ = p.text("ipc", n)
	}
	if n, ok := f["userns_mode"]; ok {
		s.UsernsMode, _ = p.text("userns_mode", n)
	}
	if n, ok := f["stop_grace_period"]; ok {
		p.setDuration("stop_grace_period", n, &s.StopGracePeriod)
	}
}

func (p *parser) resources(path string, n *yaml.Node, r *Resources) {
	f := p.fields(path, n)
	if n, ok := f["cpus"]; ok {
		if cpus, ok := p.cpus(path+".cpus", n); ok {
			r.NanoCPUs = int64(math.Round(cpus * 1e9))
		}
	}
	if n, ok := f["memory"]; ok {
		field := path + ".memory"
		if text, ok := p.text(field, n); ok {
			if size, err := ParseMemory(text); err != nil {
				p.add(field, n.Line, "%v", err)
			} else {
				r.MemoryBytes = size
			}
		}
	}
	if n, ok := f["pids"]; ok {
		if v, ok := p.integer(path+".pids", n); ok {
			r.Pids = int64(v)
		}
	}
}

// cpus accepts a number, or a string holding one as Compose allows
// ("cpus: '0.5'").
func (p *parser) cpus(field string, n *yaml.Node) (float64, bool) {
	line, n := n.Line, resolve(n)
	var cpus float64
	var err error
	switch {
	case n.Kind != yaml.ScalarNode:
		err = errors.New("not a scalar")
	case n.ShortTag() == "!!str":
		cpus, err = strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
	case n.ShortTag() == "!!int" || n.ShortTag() == "!!float":
		err = n.Decode(&cpus)
	default:
		err = errors.New("not a number")
	}
	if err != nil {
		p.add(field, line, "expected a number of CPUs, like 0.5 or 2; got %s", describe(n))
		return 0, false
	}
	// Out of this range the conversion to nanoCPUs would overflow; the
	// real limits are Validate's.
	if math.IsNaN(cpus) || math.Abs(cpus) > 1e6 {
		p.add(field, line, "%s is not a number of CPUs between 0.01 and 1024", n.Value)
		return 0, false
	}
	return cpus, true
}

func (p *parser) healthcheck(path string, n *yaml.Node, h *Healthcheck) {
	f := p.fields(path, n)
	if n, ok := f["http"]; ok {
		h.HTTP = &HTTPCheck{Path: DefaultHTTPCheckPath}
		hf := p.fields(path+".http", n)
		if n, ok := hf["path"]; ok {
			h.HTTP.Path, _ = p.text(path+".http.path", n)
		}
		if n, ok := hf["port"]; ok {
			h.HTTP.Port, _ = p.integer(path+".http.port", n)
		}
	}
	if n, ok := f["tcp"]; ok {
		h.TCP = &TCPCheck{}
		tf := p.fields(path+".tcp", n)
		if n, ok := tf["port"]; ok {
			h.TCP.Port, _ = p.integer(path+".tcp.port", n)
		}
	}
	if n, ok := f["exec"]; ok {
		field := path + ".exec"
		if exec, ok := p.stringList(field, n); ok {
			if len(exec) == 0 {
				p.add(field, n.Line, "empty; name a command and its arguments, like [curl, -f, http://localhost:8080/]")
			}
			h.Exec = exec
		}
	}
	if n, ok := f["interval"]; ok {
		p.setDuration(path+".interval", n, &h.Interval)
	}
	if n, ok := f["timeout"]; ok {
		p.setDuration(path+".timeout", n, &h.Timeout)
	}
	if n, ok := f["retries"]; ok {
		if v, ok := p.integer(path+".retries", n); ok {
			h.Retries = v
		}
	}
	if n, ok := f["start_period"]; ok {
		p.setDuration(path+".start_period", n, &h.StartPeriod)
	}
}

func (p *parser) update(path string, n *yaml.Node, u *Update) {
	f := p.fields(path, n)
	if n, ok := f["parallelism"]; ok {
		if v, ok := p.integer(path+".parallelism", n); ok {
			u.Parallelism = v
		}
	}
	if n, ok := f["delay"]; ok {
		p.setDuration(path+".delay", n, &u.Delay)
	}
	if n, ok := f["order"]; ok {
		if v, ok := p.text(path+".order", n); ok {
			u.Order = v
		}
	}
	if n, ok := f["monitor"]; ok {
		p.setDuration(path+".monitor", n, &u.Monitor)
	}
	if n, ok := f["max_failure_ratio"]; ok {
		if v, ok := p.float(path+".max_failure_ratio", n, "a fraction between 0 and 1, like 0.2"); ok {
			u.MaxFailureRatio = v
		}
	}
	if n, ok := f["failure_action"]; ok {
		if v, ok := p.text(path+".failure_action", n); ok {
			u.FailureAction = v
		}
	}
	if n, ok := f["progress_deadline"]; ok {
		p.setDuration(path+".progress_deadline", n, &u.ProgressDeadline)
	}
}

func (p *parser) placement(path string, n *yaml.Node, pl *Placement) {
	f := p.fields(path, n)
	if n, ok := f["constraints"]; ok {
		if constraints, ok := p.stringList(path+".constraints", n); ok {
			pl.Constraints = canonicalConstraints(constraints)
		}
	}
	if n, ok := f["max_per_host"]; ok {
		if v, ok := p.integer(path+".max_per_host", n); ok {
			pl.MaxPerHost = v
		}
	}
}

func (p *parser) security(path string, n *yaml.Node, s *Security) {
	f := p.fields(path, n)
	if n, ok := f["user"]; ok {
		s.User, _ = p.text(path+".user", n)
	}
	if n, ok := f["allow_root"]; ok {
		p.setBool(path+".allow_root", n, &s.AllowRoot)
	}
	if n, ok := f["read_only"]; ok {
		p.setBool(path+".read_only", n, &s.ReadOnly)
	}
	if n, ok := f["no_new_privileges"]; ok {
		p.setBool(path+".no_new_privileges", n, &s.NoNewPrivileges)
	}
	if n, ok := f["cap_drop"]; ok {
		if caps, ok := p.stringList(path+".cap_drop", n); ok {
			s.CapDrop = canonicalCapabilities(caps)
		}
	}
	if n, ok := f["cap_add"]; ok {
		if caps, ok := p.stringList(path+".cap_add", n); ok {
			s.CapAdd = canonicalCapabilities(caps)
		}
	}
	if n, ok := f["privileged"]; ok {
		p.setBool(path+".privileged", n, &s.Privileged)
	}
	if n, ok := f["seccomp"]; ok {
		if value, ok := p.text(path+".seccomp", n); ok {
			s.Seccomp = canonicalSeccomp(value)
		}
	}
	if n, ok := f["apparmor"]; ok {
		s.AppArmor, _ = p.text(path+".apparmor", n)
	}
}

func canonicalCapabilities(caps []string) []string {
	for i, c := range caps {
		caps[i] = CanonicalCapability(c)
	}
	return caps
}

// env reads a mapping of variable names to scalar values. A number or a
// boolean is kept as written ("PORT: 8080" is "8080", "DEBUG: yes" is "yes").
func (p *parser) env(path string, n *yaml.Node) map[string]string {
	line, n := n.Line, resolve(n)
	if n.Kind != yaml.MappingNode {
		p.add(path, line, "expected a mapping of names to values, like {LOG_LEVEL: info}; got %s", describe(n))
		return nil
	}
	env := make(map[string]string, len(n.Content)/2)
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok := p.key(path, n.Content[i])
		if !ok {
			continue
		}
		field := path + "." + key
		keyLine := n.Content[i].Line
		if first, dup := firstLine[key]; dup {
			p.add(field, keyLine, "duplicate key; it is already set on line %d, keep one", first)
			continue
		}
		firstLine[key] = keyLine
		p.lines[field] = keyLine
		value := n.Content[i+1]
		if isNull(value) {
			p.add(field, keyLine, "has no value; write %s: \"\" for an empty one", key)
			continue
		}
		if text, ok := p.text(field, value); ok {
			env[key] = text
		}
	}
	return env
}

// ports reads the list of published ports. A port that does not parse is
// kept as a zero Port so that the indexes of the others match the YAML.
func (p *parser) ports(path string, n *yaml.Node) []Port {
	items, ok := p.sequence(path, n)
	if !ok {
		return nil
	}
	ports := make([]Port, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.lines[field] = item.Line
		if resolve(item).Kind != yaml.ScalarNode {
			p.add(field, item.Line, "expected a string like \"8080:80\"; got %s (Compose's long port syntax is not supported)", describe(item))
			continue
		}
		text, ok := p.text(field, item)
		if !ok {
			continue
		}
		port, err := ParsePort(text)
		if err != nil {
			p.add(field, item.Line, "%v", err)
			continue
		}
		ports[i] = port
	}
	return ports
}

// volumes reads the list of bind mounts. A volume that does not parse is
// kept as a zero Volume so that the indexes of the others match the YAML.
func (p *parser) volumes(path string, n *yaml.Node) []Volume {
	items, ok := p.sequence(path, n)
	if !ok {
		return nil
	}
	volumes := make([]Volume, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.lines[field] = item.Line
		if resolve(item).Kind != yaml.ScalarNode {
			p.add(field, item.Line, "expected a string like \"/srv/data:/data:ro\"; got %s (Compose's long volume syntax is not supported)", describe(item))
			continue
		}
		text, ok := p.text(field, item)
		if !ok {
			continue
		}
		volume, err := ParseVolume(text)
		if err != nil {
			p.add(field, item.Line, "%v", err)
			continue
		}
		volumes[i] = volume
	}
	return volumes
}

// fields checks that n is a mapping whose keys are unique names from the
// schema of section path, records the line of each, and returns the value
// nodes by name. A key set to null counts as absent.
func (p *parser) fields(path string, n *yaml.Node) map[string]*yaml.Node {
	line, n := n.Line, resolve(n)
	if n.Kind != yaml.MappingNode {
		p.add(path, line, "expected a mapping of %s; got %s", strings.Join(schemaFields(path), ", "), describe(n))
		return nil
	}
	known := schemaFields(path)
	values := map[string]*yaml.Node{}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, ok := p.key(path, n.Content[i])
		if !ok {
			continue
		}
		field := join(path, name)
		keyLine := n.Content[i].Line
		if first, dup := firstLine[name]; dup {
			p.add(field, keyLine, "duplicate key; it is already set on line %d, keep one", first)
			continue
		}
		firstLine[name] = keyLine
		if !slices.Contains(known, name) {
			p.add(field, keyLine, "%s", unknownFieldMessage(path, name))
			continue
		}
		p.lines[field] = keyLine
		if value := n.Content[i+1]; !isNull(value) {
			values[name] = value
		}
	}
	return values
}

// key returns the text of a mapping key, refusing keys that are not plain
// scalars and merge keys ("<<: *defaults"), which would hide where a value
// comes from.
func (p *parser) key(path string, n *yaml.Node) (string, bool) {
	line, n := n.Line, resolve(n)
	switch {
	case n.Kind != yaml.ScalarNode:
		p.add(path, line, "a key must be a plain name; got %s", describe(n))
		return "", false
	case n.ShortTag() == "!!merge":
		p.add(path, line, "merge keys (<<) are not supported; write the fields out")
		return "", false
	}
	return n.Value, true
}

func (p *parser) sequence(field string, n *yaml.Node) ([]*yaml.Node, bool) {
	line, n := n.Line, resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.add(field, line, "expected a list; got %s", describe(n))
		return nil, false
	}
	return n.Content, true
}

// stringList reads a list of scalars as text; the result is never nil, so
// that an explicit empty list ("cap_drop: []") stays distinct from an absent one.
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

// text reads a scalar as the text written. Where the spec expects a string,
// a number or a boolean is taken as its text ("user: 10001"); what the text
// must look like is Validate's business.
func (p *parser) text(field string, n *yaml.Node) (string, bool) {
	line, n := n.Line, resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.add(field, line, "expected a string; got %s", describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return n.Value, true
	}
	p.add(field, line, "expected a string; the YAML tag %s is not supported", n.Tag)
	return "", false
}

func (p *parser) integer(field string, n *yaml.Node) (int, bool) {
	line, n := n.Line, resolve(n)
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil || int64(int(v)) != v {
		p.add(field, line, "expected an integer; got %s", describe(n))
		return 0, false
	}
	return int(v), true
}

func (p *parser) float(field string, n *yaml.Node, expected string) (float64, bool) {
	line, n := n.Line, resolve(n)
	var v float64
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&v) != nil {
		p.add(field, line, "expected %s; got %s", expected, describe(n))
		return 0, false
	}
	return v, true
}

func (p *parser) setBool(field string, n *yaml.Node, dst *bool) {
	line, n := n.Line, resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(dst) != nil {
		p.add(field, line, "expected true or false; got %s", describe(n))
	}
}

// setDuration reads a Go duration ("5s", "1m30s"); a bare 0 is accepted.
func (p *parser) setDuration(field string, n *yaml.Node, dst *time.Duration) {
	text, ok := p.text(field, n)
	if !ok {
		return
	}
	d, err := time.ParseDuration(strings.TrimSpace(text))
	if err != nil {
		if _, isNumber := strconv.ParseFloat(strings.TrimSpace(text), 64); isNumber == nil {
			p.add(field, n.Line, "%q has no unit; write a duration like %ss (units: ms, s, m, h)", text, strings.TrimSpace(text))
		} else {
			p.add(field, n.Line, "%q is not a duration; write a number with a unit, like 5s or 1m30s", text)
		}
		return
	}
	*dst = d
}

// resolve follows an alias ("*name") to the node it names. Aliases are
// followed only where the schema expects a value, so a document cannot make
// the walk expand more than the schema's few levels.
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

// describe names what a node holds, for "expected X; got Y" messages.
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

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
