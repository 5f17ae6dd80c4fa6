package controller

import (
	"net/http"
	"strings"
	"testing"
)

// The review's spec (issue 16, finding 10): 45 KB whose anchor is
// referenced 4,000 times was stored as a 131 MB revision. The API refuses
// it with the line and the limit, and stores nothing.
func TestAPIRefusesAliasAmplification(t *testing.T) {
	n := mustStartNode(t)
	doc := "service: web\nimage: registry.example.com/web:1\nenv: {BIG: &big " + strings.Repeat("x", 30_000) + "}\ncommand: [" +
		strings.TrimSuffix(strings.Repeat("*big, ", 4000), ", ") + "]\n"
	status, body := postApply(t, n, doc)
	if status != http.StatusBadRequest || !strings.Contains(body, "invalid_spec") || !strings.Contains(body, "line 4") ||
		!strings.Contains(body, "1048576 bytes") {
		t.Fatalf("POST /v1/services = %d %.300s; want 400 naming line 4 and the limit", status, body)
	}
	if len(body) > 4096 {
		t.Errorf("the refusal is %d bytes", len(body))
	}
	if _, ok := n.store.View().Service("web"); ok {
		t.Fatal("the spec was stored")
	}
}
