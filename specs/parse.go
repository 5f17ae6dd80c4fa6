package specs

import (
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
	p := &parser{Walker: NewWalker()}
	root := p.document(data)
	if root == nil {
		return nil, p.err()
	}
	if root.Kind != yaml.MappingNode {
		p.Add("", root.Line, "a spec is a mapping of fields, like \"service: web\"; got %s", DescribeNode(root))
		return nil, p.err()
	}
	spec := newDefaultSpec()
	p.spec(root, spec)
	spec.applySecretDefaults()
	p.AddValidation(spec.problems())
	if len(p.Problems) > 0 {
		return nil, p.err()
	}
	spec.sortConnections()
	return spec, nil
}

// parser walks a spec's node tree, collecting problems.
type parser struct {
	*Walker
}

// err is the collected problems as one error, nil when there are none.
func (p *parser) err() error {
	if problems := p.Sorted(); problems != nil {
		return &ValidationError{Problems: problems}
	}
	return nil
}

// document decodes the single YAML document of data and returns its root
// node, or nil after recording why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	root, problems := DecodeYAMLDocument(data, "spec")
	p.Problems = append(p.Problems, problems...)
	if root == nil && len(problems) == 0 {
		p.Add("", 0, "the spec is empty; write at least service and image")
	}
	return root
}

// spec walks the top-level mapping into s, which holds the defaults.
func (p *parser) spec(root *yaml.Node, s *Spec) {
	f := p.fields("", root)
	if n, ok := f["service"]; ok {
		s.Service, _ = p.Text("service", n)
	}
	if n, ok := f["image"]; ok {
		s.Image, _ = p.Text("image", n)
	}
	if n, ok := f["replicas"]; ok {
		if v, ok := p.integer("replicas", n); ok {
			s.Replicas = v
		}
	}
	if n, ok := f["command"]; ok {
		s.Command, _ = p.StringList("command", n)
	}
	if n, ok := f["entrypoint"]; ok {
		s.Entrypoint, _ = p.StringList("entrypoint", n)
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
		if mode, ok := p.Text("network_mode", n); ok {
			s.NetworkMode = canonicalNetworkMode(mode)
		}
	}
	if n, ok := f["pid"]; ok {
		s.PID, _ = p.Text("pid", n)
	}
	if n, ok := f["ipc"]; ok {
		s.IPC, _ = p.Text("ipc", n)
	}
	if n, ok := f["userns_mode"]; ok {
		s.UsernsMode, _ = p.Text("userns_mode", n)
	}
	if n, ok := f["stop_grace_period"]; ok {
		p.setDuration("stop_grace_period", n, &s.StopGracePeriod)
	}
	if n, ok := f["ingress"]; ok {
		s.Ingress = p.ingress("ingress", n)
	}
	if n, ok := f["expose"]; ok {
		s.Expose = p.expose("expose", n)
	}
	if n, ok := f["connects_to"]; ok {
		s.ConnectsTo = p.connectsTo("connects_to", n)
	}
	if n, ok := f["secrets"]; ok {
		s.Secrets = p.secrets("secrets", n)
	}
}

// ingress reads the list of ingress entries, each a mapping. An entry keeps
// its index even when it has problems, so that fields match the YAML.
// Protocol and host are stored lower-case, and an http entry without a
// path gets "/": what Validate checks is the canonical form.
func (p *parser) ingress(path string, n *yaml.Node) []Ingress {
	items, ok := p.Sequence(path, n)
	if !ok {
		return nil
	}
	out := make([]Ingress, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.Lines[field] = item.Line
		if ResolveNode(item).Kind != yaml.MappingNode {
			p.Add(field, item.Line, "expected a mapping like {listen: 80, port: 8080, host: www.example.com}; got %s", DescribeNode(item))
			continue
		}
		in := Ingress{Protocol: DefaultIngressProtocol}
		f := p.fields(field, item)
		if n, ok := f["listen"]; ok {
			in.Listen, _ = p.integer(field+".listen", n)
		} else {
			p.Add(field+".listen", item.Line, "required; name the port every host's proxy listens on, like 80")
		}
		if n, ok := f["port"]; ok {
			in.Port, _ = p.integer(field+".port", n)
		} else {
			p.Add(field+".port", item.Line, "required; name the container port the service listens on, like 8080")
		}
		if n, ok := f["protocol"]; ok {
			if v, ok := p.Text(field+".protocol", n); ok {
				in.Protocol = strings.ToLower(v)
			}
		}
		if n, ok := f["host"]; ok {
			if v, ok := p.Text(field+".host", n); ok {
				in.Host = strings.ToLower(v)
			}
		}
		if n, ok := f["path"]; ok {
			in.Path, _ = p.Text(field+".path", n)
		}
		if n, ok := f["tls"]; ok {
			in.TLS = p.ingressTLS(field+".tls", n)
		}
		if in.Protocol == IngressHTTP && in.Path == "" {
			if _, written := f["path"]; !written {
				in.Path = DefaultIngressPath
			}
		}
		out[i] = in
	}
	return out
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
		if text, ok := p.Text(field, n); ok {
			if size, err := ParseMemory(text); err != nil {
				p.Add(field, n.Line, "%v", err)
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
	line, n := n.Line, ResolveNode(n)
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
		p.Add(field, line, "expected a number of CPUs, like 0.5 or 2; got %s", DescribeNode(n))
		return 0, false
	}
	// Out of this range the conversion to nanoCPUs would overflow; the
	// real limits are Validate's.
	if math.IsNaN(cpus) || math.Abs(cpus) > 1e6 {
		p.Add(field, line, "%s is not a number of CPUs between 0.01 and 1024", n.Value)
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
			h.HTTP.Path, _ = p.Text(path+".http.path", n)
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
		if exec, ok := p.StringList(field, n); ok {
			if len(exec) == 0 {
				p.Add(field, n.Line, "empty; name a command and its arguments, like [curl, -f, http://localhost:8080/]")
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
		if v, ok := p.Text(path+".order", n); ok {
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
		if v, ok := p.Text(path+".failure_action", n); ok {
			u.FailureAction = v
		}
	}
	if n, ok := f["progress_deadline"]; ok {
		p.setDuration(path+".progress_deadline", n, &u.ProgressDeadline)
	}
	if n, ok := f["canary"]; ok {
		u.Canary = p.canary(path+".canary", n)
	}
	if n, ok := f["rollback_on"]; ok {
		u.RollbackOn = p.rollbackOn(path+".rollback_on", n)
	}
}

// canary reads update.canary. Both fields are required: a canary without
// a weight or a duration has no meaning worth guessing.
func (p *parser) canary(path string, n *yaml.Node) *Canary {
	c := &Canary{}
	f := p.fields(path, n)
	if f == nil {
		return c
	}
	if n, ok := f["weight"]; ok {
		if v, ok := p.percent(path+".weight", n); ok {
			c.Weight = v
		}
	} else {
		p.Add(path+".weight", p.LineOf(path), "required; write the share of the service's requests the canary gets, like 10%%")
	}
	if n, ok := f["duration"]; ok {
		p.setDuration(path+".duration", n, &c.Duration)
	} else {
		p.Add(path+".duration", p.LineOf(path), "required; write how long the canary runs once healthy, like 30s")
	}
	return c
}

// rollbackOn reads update.rollback_on; min_requests defaults to
// DefaultRollbackMinRequests. An explicit latency_p99 of 0 is refused
// here, where it can be told from an absent one (0 means "not judged").
func (p *parser) rollbackOn(path string, n *yaml.Node) *RollbackOn {
	r := &RollbackOn{MinRequests: DefaultRollbackMinRequests}
	f := p.fields(path, n)
	// A threshold written but unreadable still counts as named (a
	// placeholder; the spec is not returned): the walk has said what is
	// wrong with it, and "names no threshold" would be noise.
	if n, ok := f["error_rate"]; ok {
		v, _ := p.percent(path+".error_rate", n)
		r.ErrorRate = &v
	}
	if n, ok := f["latency_p99"]; ok {
		field := path + ".latency_p99"
		p.setDuration(field, n, &r.LatencyP99)
		if r.LatencyP99 == 0 && !p.reported(field) {
			p.Add(field, n.Line, "must be greater than 0 (e.g. 500ms); leave it out to judge the error rate only")
		}
		if p.reported(field) {
			r.LatencyP99 = time.Nanosecond
		}
	}
	if n, ok := f["min_requests"]; ok {
		if v, ok := p.integer(path+".min_requests", n); ok {
			r.MinRequests = v
		}
	}
	return r
}

// reported says whether the walk already has a problem about field.
func (p *parser) reported(field string) bool {
	return slices.ContainsFunc(p.Problems, func(q Problem) bool { return q.Field == field })
}

// percent reads a share: a percentage ("10%", "0.5%") or a fraction
// between 0 and 1 (0.1), as max_failure_ratio is written. A bare number
// above 1 is refused with both spellings, since "weight: 10" most likely
// means 10%. The range is Validate's.
func (p *parser) percent(field string, n *yaml.Node) (float64, bool) {
	line, n := n.Line, ResolveNode(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		text := strings.TrimSpace(n.Value)
		number, isPercent := strings.CutSuffix(text, "%")
		v, err := strconv.ParseFloat(strings.TrimSpace(number), 64)
		if !isPercent || err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			p.Add(field, line, "%q is not a percentage; write a number followed by %%, like 10%% (or a fraction like 0.1)", n.Value)
			return 0, false
		}
		return v / 100, true
	}
	v, ok := p.float(field, n, "a percentage like 10% (or a fraction like 0.1)")
	if !ok {
		return 0, false
	}
	if v > 1 {
		p.Add(field, line, "%v is not a fraction between 0 and 1; write %v%% for %v percent (or the fraction %v)", n.Value, n.Value, n.Value, v/100)
		return 0, false
	}
	return v, true
}

func (p *parser) placement(path string, n *yaml.Node, pl *Placement) {
	f := p.fields(path, n)
	if n, ok := f["constraints"]; ok {
		if constraints, ok := p.StringList(path+".constraints", n); ok {
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
		s.User, _ = p.Text(path+".user", n)
	}
	if n, ok := f["allow_root"]; ok {
		p.SetBool(path+".allow_root", n, &s.AllowRoot)
	}
	if n, ok := f["allow_root_group"]; ok {
		p.SetBool(path+".allow_root_group", n, &s.AllowRootGroup)
	}
	if n, ok := f["read_only"]; ok {
		p.SetBool(path+".read_only", n, &s.ReadOnly)
	}
	if n, ok := f["no_new_privileges"]; ok {
		p.SetBool(path+".no_new_privileges", n, &s.NoNewPrivileges)
	}
	if n, ok := f["cap_drop"]; ok {
		if caps, ok := p.StringList(path+".cap_drop", n); ok {
			s.CapDrop = canonicalCapabilities(caps)
		}
	}
	if n, ok := f["cap_add"]; ok {
		if caps, ok := p.StringList(path+".cap_add", n); ok {
			s.CapAdd = canonicalCapabilities(caps)
		}
	}
	if n, ok := f["privileged"]; ok {
		p.SetBool(path+".privileged", n, &s.Privileged)
	}
	if n, ok := f["seccomp"]; ok {
		if value, ok := p.Text(path+".seccomp", n); ok {
			s.Seccomp = canonicalSeccomp(value)
		}
	}
	if n, ok := f["apparmor"]; ok {
		s.AppArmor, _ = p.Text(path+".apparmor", n)
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
	line, n := n.Line, ResolveNode(n)
	if n.Kind != yaml.MappingNode {
		p.Add(path, line, "expected a mapping of names to values, like {LOG_LEVEL: info}; got %s", DescribeNode(n))
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
			p.Add(field, keyLine, "duplicate key; it is already set on line %d, keep one", first)
			continue
		}
		firstLine[key] = keyLine
		p.Lines[field] = keyLine
		value := n.Content[i+1]
		if IsNullNode(value) {
			p.Add(field, keyLine, "has no value; write %s: \"\" for an empty one", key)
			continue
		}
		if text, ok := p.Text(field, value); ok {
			env[key] = text
		}
	}
	return env
}

// ports reads the list of published ports. A port that does not parse is
// kept as a zero Port so that the indexes of the others match the YAML.
func (p *parser) ports(path string, n *yaml.Node) []Port {
	return shortSyntaxList(p, path, n, `"8080:80"`, "port", ParsePort)
}

// volumes reads the list of bind mounts. A volume that does not parse is
// kept as a zero Volume so that the indexes of the others match the YAML.
func (p *parser) volumes(path string, n *yaml.Node) []Volume {
	return shortSyntaxList(p, path, n, `"/srv/data:/data:ro"`, "volume", ParseVolume)
}

// shortSyntaxList reads a list of Compose short-syntax strings (example
// shows one) with parse; an item that does not parse stays the zero value
// so that the indexes of the others match the YAML. kind names Compose's
// long syntax, which is refused.
func shortSyntaxList[T any](p *parser, path string, n *yaml.Node, example, kind string, parse func(string) (T, error)) []T {
	items, ok := p.Sequence(path, n)
	if !ok {
		return nil
	}
	out := make([]T, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.Lines[field] = item.Line
		if ResolveNode(item).Kind != yaml.ScalarNode {
			p.Add(field, item.Line, "expected a string like %s; got %s (Compose's long %s syntax is not supported)", example, DescribeNode(item), kind)
			continue
		}
		text, ok := p.Text(field, item)
		if !ok {
			continue
		}
		v, err := parse(text)
		if err != nil {
			p.Add(field, item.Line, "%v", err)
			continue
		}
		out[i] = v
	}
	return out
}

// fields checks that n is a mapping whose keys are unique names from the
// schema of section path, records the line of each, and returns the value
// nodes by name. A key set to null counts as absent.
func (p *parser) fields(path string, n *yaml.Node) map[string]*yaml.Node {
	line, n := n.Line, ResolveNode(n)
	section := schemaSection(path)
	if n.Kind != yaml.MappingNode {
		p.Add(path, line, "expected a mapping of %s; got %s", strings.Join(schemaFields(section), ", "), DescribeNode(n))
		return nil
	}
	known := schemaFields(section)
	values := map[string]*yaml.Node{}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, ok := p.key(path, n.Content[i])
		if !ok {
			continue
		}
		field := JoinField(path, name)
		keyLine := n.Content[i].Line
		if first, dup := firstLine[name]; dup {
			p.Add(field, keyLine, "duplicate key; it is already set on line %d, keep one", first)
			continue
		}
		firstLine[name] = keyLine
		if !slices.Contains(known, name) {
			p.Add(field, keyLine, "%s", unknownFieldMessage(section, name))
			continue
		}
		p.Lines[field] = keyLine
		if value := n.Content[i+1]; !IsNullNode(value) {
			values[name] = value
		}
	}
	return values
}

// key returns the text of a mapping key, refusing keys that are not plain
// scalars and merge keys ("<<: *defaults"), which would hide where a value
// comes from.
func (p *parser) key(path string, n *yaml.Node) (string, bool) {
	line, n := n.Line, ResolveNode(n)
	switch {
	case n.Kind != yaml.ScalarNode:
		p.Add(path, line, "a key must be a plain name; got %s", DescribeNode(n))
		return "", false
	case n.ShortTag() == "!!merge":
		p.Add(path, line, "merge keys (<<) are not supported; write the fields out")
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(field string, n *yaml.Node) (int, bool) {
	line, n := n.Line, ResolveNode(n)
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil || int64(int(v)) != v {
		p.Add(field, line, "expected an integer; got %s", DescribeNode(n))
		return 0, false
	}
	return int(v), true
}

func (p *parser) float(field string, n *yaml.Node, expected string) (float64, bool) {
	line, n := n.Line, ResolveNode(n)
	var v float64
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&v) != nil {
		p.Add(field, line, "expected %s; got %s", expected, DescribeNode(n))
		return 0, false
	}
	return v, true
}

// setDuration reads a Go duration ("5s", "1m30s"); a bare 0 is accepted.
func (p *parser) setDuration(field string, n *yaml.Node, dst *time.Duration) {
	text, ok := p.Text(field, n)
	if !ok {
		return
	}
	d, err := time.ParseDuration(strings.TrimSpace(text))
	if err != nil {
		if _, isNumber := strconv.ParseFloat(strings.TrimSpace(text), 64); isNumber == nil {
			p.Add(field, n.Line, "%q has no unit; write a duration like %ss (units: ms, s, m, h)", text, strings.TrimSpace(text))
		} else {
			p.Add(field, n.Line, "%q is not a duration; write a number with a unit, like 5s or 1m30s", text)
		}
		return
	}
	*dst = d
}
