package specs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// DecodeYAMLDocument decodes the single YAML document of data into a node
// tree, for the formats deployctl reads strictly by walking the tree (the
// spec, the cluster policy). noun names the document in messages ("spec",
// "policy").
//
// It returns the root node and the problems found, each with its line:
// bytes that are not UTF-8 or are control characters (with their column,
// which the YAML library does not give), syntax errors (with the line
// corrected, see syntaxError), and a second non-empty document (the root of
// the first is still returned). An empty document (nothing, or only
// comments) returns a nil root and no problem: what to say about it is the
// caller's business.
func DecodeYAMLDocument(data []byte, noun string) (*yaml.Node, []Problem) {
	if line, column, ok := findUnreadable(data); !ok {
		return nil, []Problem{{Line: line, Message: fmt.Sprintf(
			"column %d: the %s must be UTF-8 text without control characters; remove or replace that character", column, noun)}}
	}
	decoder := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decoder.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, []Problem{syntaxError(err)}
	}
	var problems []Problem
	// More documents are refused, but an empty one (a trailing "---") is
	// harmless.
	for {
		var next yaml.Node
		err := decoder.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			problems = append(problems, syntaxError(err))
			break
		}
		if !isEmptyDocument(&next) {
			problems = append(problems, Problem{Line: next.Line, Message: fmt.Sprintf(
				"a second YAML document starts here; write one %s per file", noun)})
			break
		}
	}
	if isEmptyDocument(&doc) {
		return nil, problems
	}
	if p, ok := checkExpansion(doc.Content[0], noun); !ok {
		return nil, append(problems, p)
	}
	return doc.Content[0], problems
}

// Limits on what a document's aliases may expand to. A YAML alias ("*a")
// stands for the whole value its anchor ("&a") names, so a small document
// can stand for a huge one: an anchor on a 30 KB string referenced 4,000
// times is 120 MB once the walk copies it into the spec, and anchors on
// lists of aliases multiply at each level ("billion laughs"). The node tree
// yaml.v3 builds shares the anchored nodes, so the expansion is measured on
// it, in time proportional to the document, before any value is built.
const (
	// MaxDecodedBytes bounds the document as the walk would read it, every
	// alias replaced by its value: the bytes of every scalar, plus one per
	// node. A document without aliases counts about its own size, so any
	// spec or policy that fits in an API request (1 MiB) fits.
	MaxDecodedBytes = 1 << 20
	// MaxAliasExpansions bounds how many aliases the expanded document
	// contains (an alias inside an anchored value counts each time that
	// value is used).
	MaxAliasExpansions = 1000
)

// expansion is what a node stands for once its aliases are replaced.
type expansion struct {
	bytes, aliases int64
}

// saturate keeps counts from overflowing on deeply nested anchors: past
// the limits the exact size no longer matters.
func (e expansion) add(o expansion) expansion {
	const ceiling = 1 << 40
	return expansion{bytes: min(e.bytes+o.bytes, ceiling), aliases: min(e.aliases+o.aliases, ceiling)}
}

func (e expansion) over() bool {
	return e.bytes > MaxDecodedBytes || e.aliases > MaxAliasExpansions
}

// expander measures anchored values once each (memo) and refuses an alias
// inside the value it names (active), which would expand forever.
type expander struct {
	memo   map[*yaml.Node]expansion
	active map[*yaml.Node]bool
}

// size is what n expands to; false when n contains an alias to itself.
func (x *expander) size(n *yaml.Node) (expansion, bool) {
	if e, ok := x.memo[n]; ok {
		return e, true
	}
	if x.active[n] {
		return expansion{}, false
	}
	x.active[n] = true
	defer delete(x.active, n)
	e := expansion{bytes: int64(len(n.Value)) + 1}
	if n.Kind == yaml.AliasNode {
		e = expansion{aliases: 1}
		if n.Alias != nil {
			sub, ok := x.size(n.Alias)
			if !ok {
				return expansion{}, false
			}
			e = e.add(sub)
		}
	}
	for _, c := range n.Content {
		sub, ok := x.size(c)
		if !ok {
			return expansion{}, false
		}
		e = e.add(sub)
		if e.over() {
			break // enough to refuse; do not measure the rest
		}
	}
	x.memo[n] = e
	return e, true
}

// checkExpansion walks the document in order, adding what each node
// expands to, and returns the problem at the first alias that takes the
// total over a limit (or that refers to a value containing itself), with
// its line and the path of keys leading to it.
func checkExpansion(root *yaml.Node, noun string) (Problem, bool) {
	x := &expander{memo: map[*yaml.Node]expansion{}, active: map[*yaml.Node]bool{}}
	var total expansion
	var problem Problem
	var walk func(path string, n *yaml.Node) bool
	walk = func(path string, n *yaml.Node) bool {
		switch n.Kind {
		case yaml.AliasNode:
			sub, ok := x.size(n)
			if !ok {
				problem = Problem{Field: path, Line: n.Line, Message: fmt.Sprintf(
					"the alias *%s is inside the value its anchor names, so it never ends; write the value out", n.Value)}
				return false
			}
			total = total.add(sub)
			if total.over() {
				limit := fmt.Sprintf("more than %d bytes", MaxDecodedBytes)
				if total.bytes <= MaxDecodedBytes {
					limit = fmt.Sprintf("more than %d aliases", MaxAliasExpansions)
				}
				problem = Problem{Field: path, Line: n.Line, Message: fmt.Sprintf(
					"with the alias *%s the %s expands to %s (an alias is a copy of its anchor's value, aliases inside it included; the limit is %d bytes and %d aliases); "+
						"write the values out or use the anchor fewer times", n.Value, noun, limit, MaxDecodedBytes, MaxAliasExpansions)}
				return false
			}
			return true
		case yaml.MappingNode:
			total = total.add(expansion{bytes: 1})
			for i := 0; i+1 < len(n.Content); i += 2 {
				key := JoinField(path, n.Content[i].Value)
				if !walk(path, n.Content[i]) || !walk(key, n.Content[i+1]) {
					return false
				}
			}
			return true
		case yaml.SequenceNode:
			total = total.add(expansion{bytes: 1})
			for i, c := range n.Content {
				if !walk(fmt.Sprintf("%s[%d]", path, i), c) {
					return false
				}
			}
			return true
		}
		total = total.add(expansion{bytes: int64(len(n.Value)) + 1})
		return true
	}
	if !walk("", root) {
		return problem, false
	}
	return Problem{}, true
}

func isEmptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	root := doc.Content[0]
	return root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" && root.Value == ""
}

// findUnreadable returns the line and column (1-based, in runes) of the
// first byte that is not UTF-8 or is a control character YAML forbids, and
// false; or true when there is none. The YAML reader refuses the same
// characters but without saying where.
func findUnreadable(data []byte) (line, column int, ok bool) {
	line, column = 1, 0
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		column++
		if (r == utf8.RuneError && size <= 1) || !isYAMLPrintable(r) {
			return line, column, false
		}
		if r == '\n' {
			line, column = line+1, 0
		}
		data = data[size:]
	}
	return 0, 0, true
}

// isYAMLPrintable is the c-printable production of YAML 1.2.
func isYAMLPrintable(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r' || r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7e:
		return true
	case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// syntaxError is the problem of a YAML syntax error, with the line taken
// out of the parser's "yaml: line 3: ..." text.
func syntaxError(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if number, text, found := strings.Cut(rest, ": "); found {
			if n, err := strconv.Atoi(number); err == nil {
				line, msg = n, text
			}
		}
	}
	// The YAML library's marks count lines from 0. It adds 1 for scanner
	// errors but not for parser errors, and it leaves the line out when the
	// mark is on line 0 (reading 0 as "unknown"). findUnreadable has
	// already caught the reader errors, which truly have no line.
	switch {
	case line == 0:
		line = 1
	case isYAMLParserProblem(msg):
		line++
	}
	return Problem{Line: line, Message: "invalid YAML: " + msg}
}

// isYAMLParserProblem recognises the messages of the YAML library's parser
// (as opposed to its scanner), whose line numbers are 0-based.
func isYAMLParserProblem(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>",
		"did not find expected <document start>",
		"found undefined tag handle",
		"did not find expected node content",
		"did not find expected '-' indicator",
		"did not find expected key",
		"did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found duplicate %TAG directive":
		return true
	}
	return false
}
