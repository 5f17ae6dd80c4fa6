package specs

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidSpec is matched (errors.Is) by every error this package returns
// for bad user input: the *ValidationError of Parse and Validate, and the
// errors of ParseMemory and ParsePort.
var ErrInvalidSpec = errors.New("invalid spec")

// Problem is one thing wrong with a spec. The JSON names are snake_case like
// the rest of the API, which sends problems to clients.
type Problem struct {
	// Field is the dotted path of the offending field, like
	// "healthcheck.http.port", "ports[1]" or "env.LOG_LEVEL"; it is empty for
	// problems with the document itself (YAML syntax).
	Field string `json:"field,omitempty"`
	// Line is the 1-based line in the YAML source, 0 when unknown (a Spec
	// built in Go, or a required field that is absent).
	Line int `json:"line,omitempty"`
	// Message says what is wrong and how to fix it.
	Message string `json:"message"`
}

// String renders the problem as "line 4: replicaz: unknown field; did you
// mean replicas?", leaving out the parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a spec, not just the first,
// so that a user fixes their file in one go.
type ValidationError struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *ValidationError) Error() string {
	if len(e.Problems) == 0 {
		return ErrInvalidSpec.Error()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is(err, ErrInvalidSpec) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalidSpec }

// valueError is the error of the single-value parsers (ParseMemory,
// ParsePort). Its text is only the explanation, because it is shown to users
// inside a Problem, yet it still matches ErrInvalidSpec.
type valueError struct{ msg string }

func (e *valueError) Error() string { return e.msg }
func (e *valueError) Unwrap() error { return ErrInvalidSpec }

func invalidValuef(format string, args ...any) error {
	return &valueError{msg: fmt.Sprintf(format, args...)}
}
