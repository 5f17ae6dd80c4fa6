package specs

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Walker is what a strict YAML reader needs while it walks a node tree
// against its schema: it collects every problem with its field and line,
// remembers the line of every field seen (so that problems found later on
// the built value get a line too), and reads scalars and lists with
// "expected X; got Y" messages. The spec and the cluster policy are read
// with it.
type Walker struct {
	Problems []Problem
	// Lines maps the path of every field and list item seen to its line.
	Lines map[string]int
}

// NewWalker returns an empty Walker.
func NewWalker() *Walker { return &Walker{Lines: map[string]int{}} }

// Add records a problem.
func (w *Walker) Add(field string, line int, format string, args ...any) {
	w.Problems = append(w.Problems, Problem{Field: field, Line: line, Message: fmt.Sprintf(format, args...)})
}

// Sorted returns the problems by line (nil when there are none).
func (w *Walker) Sorted() []Problem {
	if len(w.Problems) == 0 {
		return nil
	}
	problems := slices.Clone(w.Problems)
	slices.SortStableFunc(problems, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return problems
}

// AddValidation adds the problems a Validate found on the built value,
// with the line of their field (or of its nearest enclosing field), leaving
// out those about a field the walk already reported, or a field inside it:
// a value that failed to decode was left at its default or zero, and saying
// so twice is noise.
func (w *Walker) AddValidation(problems []Problem) {
	walked := make(map[string]bool, len(w.Problems))
	for _, q := range w.Problems {
		if q.Field != "" {
			walked[q.Field] = true
		}
	}
	for _, prob := range problems {
		if !reportedIn(walked, prob.Field) {
			prob.Line = w.LineOf(prob.Field)
			w.Problems = append(w.Problems, prob)
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

// LineOf is the line of a field, or of its nearest enclosing field seen.
func (w *Walker) LineOf(field string) int {
	for ; field != ""; field = enclosingField(field) {
		if line, ok := w.Lines[field]; ok {
			return line
		}
	}
	return 0
}

// Sequence reads a list.
func (w *Walker) Sequence(field string, n *yaml.Node) ([]*yaml.Node, bool) {
	line, n := n.Line, ResolveNode(n)
	if n.Kind != yaml.SequenceNode {
		w.Add(field, line, "expected a list; got %s", DescribeNode(n))
		return nil, false
	}
	return n.Content, true
}

// StringList reads a list of scalars as text; the result is never nil, so
// that an explicit empty list ("cap_drop: []") stays distinct from an
// absent one.
func (w *Walker) StringList(field string, n *yaml.Node) ([]string, bool) {
	items, ok := w.Sequence(field, n)
	if !ok {
		return nil, false
	}
	list := make([]string, len(items))
	allOK := true
	for i, item := range items {
		itemField := fmt.Sprintf("%s[%d]", field, i)
		w.Lines[itemField] = item.Line
		text, ok := w.Text(itemField, item)
		allOK = allOK && ok
		list[i] = text
	}
	return list, allOK
}

// Text reads a scalar as the text written. Where a string is expected, a
// number or a boolean is taken as its text ("user: 10001"); what the text
// must look like is Validate's business.
func (w *Walker) Text(field string, n *yaml.Node) (string, bool) {
	line, n := n.Line, ResolveNode(n)
	if n.Kind != yaml.ScalarNode || IsNullNode(n) {
		w.Add(field, line, "expected a string; got %s", DescribeNode(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return n.Value, true
	}
	w.Add(field, line, "expected a string; the YAML tag %s is not supported", n.Tag)
	return "", false
}

// SetBool reads true or false into dst.
func (w *Walker) SetBool(field string, n *yaml.Node, dst *bool) {
	line, n := n.Line, ResolveNode(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(dst) != nil {
		w.Add(field, line, "expected true or false; got %s", DescribeNode(n))
	}
}

// ResolveNode follows an alias ("*name") to the node it names. Aliases are
// followed only where a schema expects a value, so a document cannot make
// the walk expand more than the schema's few levels.
func ResolveNode(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// IsNullNode reports an explicit null ("key:" or "key: null").
func IsNullNode(n *yaml.Node) bool {
	n = ResolveNode(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// DescribeNode names what a node holds, for "expected X; got Y" messages.
func DescribeNode(n *yaml.Node) string {
	n = ResolveNode(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if IsNullNode(n) {
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

// JoinField appends a field name to a dotted path.
func JoinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
