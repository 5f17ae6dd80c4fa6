package wire

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// seenRequest is what a fake server received.
type seenRequest struct {
	method, path, ctype, key, body string
}

// TestServiceWritesKeepTheirKeyAcrossRetries: rollback, scale and refresh
// post to their own path with the body the server reads, and a try that
// found no leader is repeated with the same Idempotency-Key, so the server
// can answer the retry of a write that committed with its first outcome.
func TestServiceWritesKeepTheirKeyAcrossRetries(t *testing.T) {
	var mu sync.Mutex
	var seen []seenRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, seenRequest{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key"), string(body)})
		first := len(seen)%2 == 1
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if first {
			// Every write's first try finds no leader.
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(APIError{Error: "no leader", Code: CodeNoLeader})
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(ApplyOutcome{Service: "web", Revision: 7})
	}))
	defer srv.Close()
	c := NewClient([]string{srv.URL}, nil)
	ctx := context.Background()
	cases := []struct {
		name        string
		call        func() (ApplyOutcome, error)
		path, ctype string
		body        string
	}{
		{"scale to 0", func() (ApplyOutcome, error) { return c.Scale(ctx, "web", 0) }, "/v1/services/web/scale", "application/json", `{"replicas":0}`},
		{"scale to 3", func() (ApplyOutcome, error) { return c.Scale(ctx, "web", 3) }, "/v1/services/web/scale", "application/json", `{"replicas":3}`},
		{"rollback", func() (ApplyOutcome, error) { return c.Rollback(ctx, "web", 2) }, "/v1/services/web/rollback", "application/json", `{"to":2}`},
		{"refresh", func() (ApplyOutcome, error) { return c.Refresh(ctx, "web") }, "/v1/services/web/refresh", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			out, err := tc.call()
			if err != nil || out.Revision != 7 {
				t.Fatalf("%+v, %v; want revision 7 after a retry", out, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 2 {
				t.Fatalf("%d tries, want 2: %+v", len(seen), seen)
			}
			for _, s := range seen {
				if s.method != http.MethodPost || s.path != tc.path || s.ctype != tc.ctype || s.body != tc.body {
					t.Fatalf("request %+v, want POST %s (%q) %s", s, tc.path, tc.ctype, tc.body)
				}
			}
			if seen[0].key == "" || seen[0].key != seen[1].key {
				t.Fatalf("idempotency keys %q and %q: want one key for both tries", seen[0].key, seen[1].key)
			}
		})
	}
}

// TestRetryDelay: while a server answers without a leader the pause between
// a write's tries doubles from 50ms and stays at ElectionRetryMax, so the
// write lands within that of an election; while none answers it grows to
// UnreachableRetryMax.
func TestRetryDelay(t *testing.T) {
	for _, c := range []struct {
		err  error
		want []time.Duration
	}{
		{ErrNoLeader, []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}},
		{ErrNotReady, []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}},
		{ErrUnreachable, []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}},
	} {
		var d time.Duration
		for i, want := range c.want {
			if d = RetryDelay(d, c.err); d != want {
				t.Errorf("%v: pause %d is %s, want %s", c.err, i+1, d, want)
			}
		}
	}
	// Unreachable servers that start answering "no leader" bring the
	// pause back down at once.
	if d := RetryDelay(2*time.Second, ErrNoLeader); d != ElectionRetryMax {
		t.Errorf("after 2s unreachable, no leader: %s, want %s", d, ElectionRetryMax)
	}
}
