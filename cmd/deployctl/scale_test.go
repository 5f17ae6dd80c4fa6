package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/deployctl/deployctl/internal/wire"
)

// fakeScaleAPI answers a scale with a canned answer (or error) and every
// status with revision 4 succeeded on the count last asked for; it
// records the scale bodies it read.
type fakeScaleAPI struct {
	answer  wire.ApplyOutcome
	errCode string
	status  int

	mu       sync.Mutex
	bodies   []string
	statuses int
}

func (f *fakeScaleAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/services/web/scale":
		body, _ := io.ReadAll(r.Body)
		f.bodies = append(f.bodies, string(body))
		if f.errCode != "" {
			w.WriteHeader(f.status)
			_ = json.NewEncoder(w).Encode(wire.APIError{Error: "refused: " + f.errCode, Code: f.errCode})
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(f.answer)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/services/web":
		f.statuses++
		_ = json.NewEncoder(w).Encode(wire.ServiceStatus{Service: "web", Revision: f.answer.Revision, RevisionState: "succeeded",
			Digest: f.answer.Digest, Replicas: wire.ReplicaCounts{Desired: 3, Running: 3, Healthy: 3}, Index: 9})
	default:
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(wire.APIError{Error: "no route", Code: wire.CodeNotFound})
	}
}

// seen returns the scale bodies and the number of status reads so far.
func (f *fakeScaleAPI) seen() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...), f.statuses
}

// refuse makes every later scale answer the error code with status.
func (f *fakeScaleAPI) refuse(code string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errCode, f.status = code, status
}

// runCLI runs the command line in process and returns its exit code and
// standard output.
func runCLI(t *testing.T, args ...string) (int, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	code := ExitOK
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case err != nil && isUsageError(err):
		code = ExitUsage
	case err != nil:
		code = ExitError
	}
	return code, out.String() + errOut.String(), err
}

// `deployctl scale SERVICE N` sends the count, says what was stored and
// follows the revision like apply; it refuses a count that is not one
// before sending anything, and maps refusals to apply's exit codes.
func TestScaleCommand(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	f := &fakeScaleAPI{answer: wire.ApplyOutcome{Service: "web", Revision: 4, Digest: digest}}
	srv := httptest.NewServer(f)
	defer srv.Close()

	code, out, err := runCLI(t, "--addr", srv.URL, "scale", "web", "3")
	if code != ExitOK {
		t.Fatalf("scale web 3: exit %d, %v\n%s", code, err, out)
	}
	for _, want := range []string{"web: revision 4 stored, scaling to 3 replicas of " + digest, "done: revision 4 is healthy on 3/3 replicas"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if bodies, _ := f.seen(); len(bodies) != 1 || bodies[0] != `{"replicas":3}` {
		t.Fatalf("bodies sent %q, want one {\"replicas\":3}", bodies)
	}

	// --detach: stored, no wait. 0 is a count.
	_, before := f.seen()
	code, out, err = runCLI(t, "--addr", srv.URL, "scale", "web", "0", "--detach")
	if bodies, after := f.seen(); code != ExitOK || after != before || len(bodies) != 2 || bodies[1] != `{"replicas":0}` {
		t.Fatalf("scale web 0 --detach: exit %d, %v, %d status reads, bodies %q\n%s", code, err, after-before, bodies, out)
	}

	f.mu.Lock()
	f.answer.Unchanged = true
	f.mu.Unlock()
	if _, out, _ := runCLI(t, "--addr", srv.URL, "scale", "web", "3", "--detach"); !strings.Contains(out, "web: unchanged, revision 4 already has 3 replicas") {
		t.Fatalf("unchanged scale output:\n%s", out)
	}

	// Not a count: exit 2, nothing sent.
	sent, _ := f.seen()
	for _, args := range [][]string{{"scale", "web", "three"}, {"scale", "web", "-1"}, {"scale", "web"}, {"scale", "web", "1.5"}} {
		if code, out, _ := runCLI(t, append([]string{"--addr", srv.URL}, args...)...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, ExitUsage, out)
		}
	}
	if bodies, _ := f.seen(); len(bodies) != len(sent) {
		t.Fatalf("a refused command line sent %d scales", len(bodies)-len(sent))
	}

	// The server's refusals: an invalid count is a usage error (2), an
	// unknown service an error (1).
	for _, c := range []struct {
		code   string
		status int
		exit   int
	}{{wire.CodeInvalidSpec, http.StatusBadRequest, ExitUsage}, {wire.CodeNotFound, http.StatusNotFound, ExitError}} {
		f.refuse(c.code, c.status)
		if code, out, err := runCLI(t, "--addr", srv.URL, "scale", "web", "20000"); code != c.exit || err == nil || !strings.Contains(err.Error(), c.code) {
			t.Errorf("server answers %s: exit %d, %v, want %d\n%s", c.code, code, err, c.exit, out)
		}
	}
}
