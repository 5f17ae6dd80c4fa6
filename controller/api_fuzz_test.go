package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
)

// fuzzResolver pins every image to one digest without a registry.
type fuzzResolver struct{}

func (fuzzResolver) Resolve(_ context.Context, image string) (PinnedImage, error) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	return PinnedImage{Repository: "registry.test/app", Digest: d, Ref: "registry.test/app@" + d}, nil
}

// fuzzMembership is a cluster of one voter (n1) that takes every join
// and removal without changing: membership requests reach their checks
// and raft without a second server.
type fuzzMembership struct{}

func (fuzzMembership) Servers(context.Context) ([]RaftServer, error) {
	return []RaftServer{{ID: "n1", Address: "127.0.0.1:1", Voter: true, Leader: true}}, nil
}
func (fuzzMembership) AddVoter(context.Context, string, string) error { return nil }
func (fuzzMembership) RemoveServer(context.Context, string) error     { return nil }
func (fuzzMembership) TransferLeadership(context.Context) error {
	return errors.New("cannot find peer") // what raft says with one voter
}
func (fuzzMembership) HadState() bool { return true }

var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions}

// FuzzAPI sends arbitrary methods, paths (with queries), content types,
// idempotency keys and bodies to the API of a controller on a real single-node raft and checks
// that no request panics or gets a 5xx, and that every error answer is a
// JSON body whose code is in the wire table with the status it was sent
// with. A request that outlives its deadline may get 504 timeout.
func FuzzAPI(f *testing.F) {
	seeds := []struct {
		method      uint8
		path, ctype string
		body        string
	}{
		{1, "/v1/services", "application/yaml", "service: web\nimage: a/b:1\nreplicas: 2\n"},
		{1, "/v1/services", "", "service: web\nimage: a/b:1\n"},
		{1, "/v1/services", "application/json", `{"spec_yaml":"service: api\nimage: a/b:1\n","seccomp_profile":"e30="}`},
		{1, "/v1/services", "application/json", `{"spec_yaml":"service: web\nimage: a/b:1\n","scan_report":"bm90IGpzb24="}`},
		{1, "/v1/services/web/rollback", "application/json", `{"to":1}`},
		{1, "/v1/services/web/rollback", "application/json", `{"to":1e400}`},
		{1, "/v1/services/web/scale", "application/json", `{"replicas":3}`},
		{1, "/v1/services/web/scale", "application/json", `{"replicas":-1}`},
		{1, "/v1/services/web/refresh", "", ""},
		{3, "/v1/services/web", "", ""},
		{0, "/v1/services/web?index=1&wait=10ms", "", ""},
		{0, "/v1/services/web/history", "", ""},
		{0, "/v1/services/%2e%2e/history", "", ""},
		{0, "/v1/agent/assignments?host=h1&index=0", "", ""},
		{1, "/v1/agent/report", "application/json", `{"host":"h1","labels":{"zone":"a"},"reports":[{"replica_id":"x","state":"running"}]}`},
		{1, "/v1/agent/audit", "application/json", `{"host":"h1","checks":[]}`},
		{1, "/v1/agent/traffic", "application/json", `{"host":"h1","replicas":{"x":{"requests":3,"errors":1,"latency":{"12":2}}}}`},
		{1, "/v1/agent/traffic", "application/json", `{"host":"h1","replicas":{"x":{"requests":1,"errors":2,"latency":{"-1":1}}}}`},
		{1, "/v1/services/web/promote", "", ""},
		{2, "/v1/policy", "application/json", `{"version":0,"allow":{"privileged":true}}`},
		{0, "/v1/policy", "", ""},
		{1, "/v1/cluster/join", "application/json", `{"id":"n2","raft_addr":"127.0.0.1:1","api_addr":"127.0.0.1:2","version":1}`},
		{1, "/v1/cluster/remove", "application/json", `{"id":"n1"}`},
		{0, "/v1/cluster", "", ""},
		{0, "/v1/outdated", "", ""},
		{0, "/v1/audit", "", ""},
		{0, "/v1/health", "", ""},
		{4, "/v1/services", "text/plain; charset=\"", "x"},
		{1, "/v1/secrets/db-password", "application/octet-stream", "value"},
		{1, "/v1/secrets/DB", "", "value"},
		{0, "/v1/secrets", "", ""},
		{0, "/v1/secrets/db-password", "", ""},
		{3, "/v1/secrets/db-password?version=x", "", ""},
		{0, "/v1/agent/secrets?host=h1&replica=r1", "", ""},
		{0, "/v1/services/web/ps?all=true", "", ""},
		{0, "/v1/services/web/ps?all=maybe", "", ""},
		{0, "/v1/events?after=3&service=web&since=2026-01-01T00:00:00Z&wait=10ms", "", ""},
		{0, "/v1/events?after=-1", "", ""},
		{0, "/v1/services/web/logs?follow=true&tail=5&since=2026-01-01T00:00:00Z", "", ""},
		{0, "/v1/services/web/logs?tail=-2&replica=x", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.ctype, []byte(s.body), "")
	}
	key, err := secretbox.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	n := mustStartNodeWith(f, func(c *Config) { c.Resolver = fuzzResolver{}; c.SecretsKey = key })
	handler := NewAPI(APIConfig{Controller: n.ctrl, Membership: fuzzMembership{}}).Handler()
	f.Add(uint8(1), "/v1/services/web/rollback", "application/json", []byte(`{}`), strings.Repeat("k", 200))
	f.Fuzz(func(t *testing.T, method uint8, path, ctype string, body []byte, key string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, fuzzMethods[int(method)%len(fuzzMethods)], "http://deployctl.test/"+strings.TrimPrefix(path, "/"), bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		code := rec.Code
		if code >= 500 && !(code == http.StatusGatewayTimeout && ctx.Err() != nil) {
			t.Fatalf("%s %s (Content-Type %q, body %q): %d %s", req.Method, req.URL, ctype, body, code, rec.Body.Bytes())
		}
		if code < 400 {
			return
		}
		var e wire.APIError
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("%s %s: %d with a body that is not an error answer: %q", req.Method, req.URL, code, rec.Body.Bytes())
		}
		row, ok := wire.Lookup(e.Code)
		if !ok || row.Status != code {
			t.Fatalf("%s %s: %d with code %q, which the wire table does not give that status", req.Method, req.URL, code, e.Code)
		}
	})
}
