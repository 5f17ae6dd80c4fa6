package wire

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestTableIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	sentinels := map[error]string{}
	for _, c := range Codes() {
		if c.Code == "" || c.Err == nil || http.StatusText(c.Status) == "" || c.Status < 400 {
			t.Errorf("row %+v: want a code, a sentinel and an error status", c)
		}
		if seen[c.Code] {
			t.Errorf("code %q has two rows; the client could not tell which sentinel it means", c.Code)
		}
		seen[c.Code] = true
		for _, s := range append([]error{c.Err}, c.Also...) {
			if other, dup := sentinels[s]; dup {
				t.Errorf("sentinel %q is in rows %s and %s", s, other, c.Code)
			}
			sentinels[s] = c.Code
			// Each sentinel, wrapped as callers wrap it, is answered with
			// its own row: no earlier row shadows it.
			if got := Classify(fmt.Errorf("context: %w", s)); got.Code != c.Code {
				t.Errorf("Classify(%q) = %s, want %s", s, got.Code, c.Code)
			}
		}
	}
	if got := Classify(errors.New("something else")); got.Code != CodeInternal || got.Status != http.StatusInternalServerError {
		t.Errorf("an unknown error is %+v, want internal 500", got)
	}
	for _, code := range []string{CodeForbidden, CodeVersionGate, CodeTooLarge, CodeUnsupportedMedia, CodeSignature, CodeScan, CodeRegistry, CodeTimeout} {
		if !seen[code] {
			t.Errorf("code %s missing from the table", code)
		}
	}
}
