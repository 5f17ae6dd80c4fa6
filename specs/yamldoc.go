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
	return doc.Content[0], problems
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
