package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// TestErrorCodesRoundTrip: every code of the wire table, written by the
// server's writeErr for an error wrapping any of its sentinels, comes back
// from the client as a wire.RemoteError with the code's status that matches the
// code's sentinel (errors.Is).
func TestErrorCodesRoundTrip(t *testing.T) {
	n := mustStartNode(t)
	api := NewAPI(APIConfig{Controller: n.ctrl})
	rows := wire.Codes()
	var sent []error
	type sentRow struct {
		row int
		err error
	}
	var cases []sentRow
	for i, row := range rows {
		for _, s := range append([]error{row.Err}, row.Also...) {
			cases = append(cases, sentRow{i, fmt.Errorf("while testing: %w", s)})
			sent = append(sent, s)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/v1/services/case-"))
		api.writeErr(w, cases[i].err)
	}))
	defer srv.Close()
	c := wire.NewClient([]string{srv.URL}, nil)
	for i, tc := range cases {
		row := rows[tc.row]
		_, err := c.Status(context.Background(), fmt.Sprintf("case-%d", i), 0, 0)
		var re *wire.RemoteError
		if !errors.As(err, &re) {
			t.Fatalf("%s (%v): client error %v is not a RemoteError", row.Code, tc.err, err)
		}
		if re.Code != row.Code || re.Status != row.Status || !errors.Is(err, row.Err) {
			t.Errorf("%v: client got code %q status %d (Is %v: %v), want %s %d", tc.err, re.Code, re.Status, row.Err, errors.Is(err, row.Err), row.Code, row.Status)
		}
		if row.Code == wire.CodeNotLeader && re.Leader == "" {
			t.Errorf("not_leader answer names no leader")
		}
	}
	if len(sent) < 30 {
		t.Fatalf("only %d sentinels in the table; it lost rows", len(sent))
	}
}

// TestWriteErrorCodesAreInTheTable reads the package's source: every
// writeError call names a code of the wire table with the table's status,
// so a hand-written answer cannot invent a code the client does not know.
func TestWriteErrorCodesAreInTheTable(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	calls := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(node ast.Node) bool {
			call, ok := node.(*ast.CallExpr)
			if !ok || len(call.Args) != 4 {
				return true
			}
			if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "writeError" {
				return true
			}
			calls++
			pos := fset.Position(call.Pos())
			status, ok := call.Args[1].(*ast.SelectorExpr)
			if !ok {
				t.Errorf("%s: writeError status is not an http.Status constant", pos)
				return true
			}
			var code string
			switch a := call.Args[2].(type) {
			case *ast.BasicLit:
				code, _ = strconv.Unquote(a.Value)
			case *ast.SelectorExpr:
				code = wireConst(t, a.Sel.Name)
			default:
				t.Errorf("%s: writeError code is neither a literal nor a wire constant", pos)
				return true
			}
			row, ok := wire.Lookup(code)
			if !ok {
				t.Errorf("%s: code %q is not in the wire table", pos, code)
				return true
			}
			if http.StatusText(row.Status) == "" || statusConst(row.Status) != status.Sel.Name {
				t.Errorf("%s: code %q written with %s, the table says %d", pos, code, status.Sel.Name, row.Status)
			}
			return true
		})
	}
	if calls < 10 {
		t.Fatalf("found %d writeError calls; the scan is broken", calls)
	}
}

// wireConst maps a wire.Code... constant name to its value, read from the
// wire package's source so that the map is never kept by hand.
func wireConst(t *testing.T, name string) string {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "internal", "wire", "errors.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	obj := file.Scope.Lookup(name)
	if obj == nil || obj.Kind != ast.Con {
		t.Errorf("wire.%s: not a constant of internal/wire/errors.go", name)
		return ""
	}
	spec := obj.Decl.(*ast.ValueSpec)
	for i, id := range spec.Names {
		if id.Name == name {
			if lit, ok := spec.Values[i].(*ast.BasicLit); ok {
				v, _ := strconv.Unquote(lit.Value)
				return v
			}
		}
	}
	t.Errorf("wire.%s: not a string literal constant", name)
	return ""
}

func statusConst(status int) string {
	return map[int]string{
		400: "StatusBadRequest", 401: "StatusUnauthorized", 403: "StatusForbidden", 404: "StatusNotFound", 409: "StatusConflict",
		413: "StatusRequestEntityTooLarge", 415: "StatusUnsupportedMediaType", 422: "StatusUnprocessableEntity",
		500: "StatusInternalServerError", 501: "StatusNotImplemented", 502: "StatusBadGateway",
		503: "StatusServiceUnavailable", 504: "StatusGatewayTimeout",
	}[status]
}

// badInputCases are requests no valid client sends, with the answer each
// must get: a 4xx whose code is in the wire table and whose message names
// the problem.
var badInputCases = []struct {
	name, method, path, ctype, body string
	status                          int
	code, mentions                  string
}{
	// Content types.
	{"apply form post", "POST", "/v1/services", "application/x-www-form-urlencoded", "service: web\n", 415, "unsupported_media_type", "application/yaml"},
	{"apply xml", "POST", "/v1/services", "application/xml", "<a/>", 415, "unsupported_media_type", "application/json"},
	{"apply bad content type", "POST", "/v1/services", "application/json; ===", "{}", 415, "unsupported_media_type", "cannot be parsed"},
	{"report without content type", "POST", "/v1/agent/report", "", `{"host":"h1"}`, 415, "unsupported_media_type", "no Content-Type"},
	{"report as text", "POST", "/v1/agent/report", "text/plain", `{"host":"h1"}`, 415, "unsupported_media_type", "application/json"},
	{"policy as yaml", "PUT", "/v1/policy", "application/yaml", "version: 1\n", 415, "unsupported_media_type", "application/json"},
	{"join as form", "POST", "/v1/cluster/join", "multipart/form-data; boundary=x", "--x--", 415, "unsupported_media_type", "application/json"},
	{"audit without content type", "POST", "/v1/agent/audit", "", `{"host":"h1"}`, 415, "unsupported_media_type", "application/json"},
	{"rollback body as text", "POST", "/v1/services/web/rollback", "text/plain", `{"to":1}`, 415, "unsupported_media_type", "application/json"},
	{"scale without content type", "POST", "/v1/services/web/scale", "", `{"replicas":1}`, 415, "unsupported_media_type", "application/json"},
	// JSON bodies.
	{"apply json trailing data", "POST", "/v1/services", "application/json", `{"spec_yaml":"service: web"} {"spec_yaml":""}`, 400, "bad_request", "trailing data"},
	{"apply json unknown field", "POST", "/v1/services", "application/json", `{"spec_yml":"x"}`, 400, "bad_request", `unknown field "spec_yml"`},
	{"apply json wrong type", "POST", "/v1/services", "application/json", `{"spec_yaml":5}`, 400, "bad_request", `"spec_yaml"`},
	{"apply json bad base64", "POST", "/v1/services", "application/json", `{"spec_yaml":"x","seccomp_profile":"!!!"}`, 400, "bad_request", "seccomp_profile"},
	{"apply json empty", "POST", "/v1/services", "application/json", ``, 400, "bad_request", "empty"},
	{"apply json cut", "POST", "/v1/services", "application/json", `{"spec_yaml":"ab`, 400, "bad_request", "ends in the middle"},
	{"apply json syntax", "POST", "/v1/services", "application/json; charset=utf-8", `{"spec_yaml" "x"}`, 400, "bad_request", "at byte"},
	{"apply yaml not a spec", "POST", "/v1/services", "", "\x00\xff[", 400, "invalid_spec", ""},
	{"rollback huge to", "POST", "/v1/services/web/rollback", "application/json", `{"to": 99999999999999999999}`, 400, "bad_request", `field "to"`},
	{"rollback 1e400", "POST", "/v1/services/web/rollback", "application/json", `{"to": 1e400}`, 400, "bad_request", `field "to"`},
	{"rollback fraction", "POST", "/v1/services/web/rollback", "application/json", `{"to": 1.5}`, 400, "bad_request", `field "to"`},
	{"rollback negative", "POST", "/v1/services/web/rollback", "application/json", `{"to": -3}`, 400, "bad_request", "to: -3"},
	{"rollback absurd revision", "POST", "/v1/services/web/rollback", "application/json", `{"to": 9007199254740993}`, 404, "not_found", "web"},
	{"rollback array", "POST", "/v1/services/web/rollback", "application/json", `[1]`, 400, "bad_request", "array"},
	{"scale empty body", "POST", "/v1/services/web/scale", "application/json", ``, 400, "bad_request", "empty"},
	{"scale huge count", "POST", "/v1/services/web/scale", "application/json", `{"replicas": 99999999999999999999}`, 400, "bad_request", `field "replicas"`},
	{"scale null count", "POST", "/v1/services/web/scale", "application/json", `{"replicas": null}`, 400, "bad_request", "replicas: required"},
	{"scale absent service", "POST", "/v1/services/web/scale", "application/json", `{"replicas": 2}`, 404, "not_found", "web"},
	{"report trailing", "POST", "/v1/agent/report", "application/json", `{"host":"h1"}x`, 400, "bad_request", "trailing data"},
	{"report no host", "POST", "/v1/agent/report", "application/json", `{}`, 400, "bad_request", "host: required"},
	{"report control host", "POST", "/v1/agent/report", "application/json", `{"host":"h\u0000 1"}`, 400, "bad_request", "not a valid host id"},
	{"policy huge version", "PUT", "/v1/policy", "application/json", `{"version": 1e400}`, 400, "bad_request", `field "version"`},
	{"join huge version", "POST", "/v1/cluster/join", "application/json", `{"id":"n2","raft_addr":"a","api_addr":"b","version":99999999999999999999}`, 400, "bad_request", `field "version"`},
	{"join missing fields", "POST", "/v1/cluster/join", "application/json", `{"id":"n2"}`, 400, "bad_request", "required"},
	{"remove unknown field", "POST", "/v1/cluster/remove", "application/json", `{"id":"n2","force":true}`, 400, "bad_request", `"force"`},
	{"remove unclustered", "POST", "/v1/cluster/remove", "application/json", `{"id":"n2"}`, 501, "not_clustered", "membership"},
	// Sizes.
	{"oversized json", "POST", "/v1/agent/report", "application/json", `{"host":"` + strings.Repeat("h", maxBody) + `"}`, 413, "too_large", "1 MiB"},
	{"oversized policy", "PUT", "/v1/policy", "application/json", strings.Repeat(" ", maxBody+1), 413, "too_large", "bytes"},
	// Names in the path.
	{"name dot dot escaped", "GET", "/v1/services/%2E%2E", "", "", 400, "bad_request", "service name"},
	{"name slash escaped", "GET", "/v1/services/a%2Fb/history", "", "", 400, "bad_request", `"a/b"`},
	{"name nul", "DELETE", "/v1/services/web%00", "", "", 400, "bad_request", `"web\x00"`},
	{"name upper case", "POST", "/v1/services/Web/rollback", "", "", 400, "bad_request", "lowercase"},
	{"name unicode", "GET", "/v1/services/w%C3%A9b", "", "", 400, "bad_request", "service name"},
	{"name too long", "GET", "/v1/services/" + strings.Repeat("a", 300), "", "", 400, "bad_request", "(302 bytes)"},
	{"name refresh", "POST", "/v1/services/-web/refresh", "", "", 400, "bad_request", "service name"},
	{"name valid but absent", "GET", "/v1/services/nope", "", "", 404, "not_found", "nope"},
	// Query parameters.
	{"index negative", "GET", "/v1/services/web?index=-1&wait=1s", "", "", 400, "bad_request", "index"},
	{"index huge", "GET", "/v1/services/web?index=99999999999999999999999", "", "", 400, "bad_request", "index"},
	{"wait huge", "GET", "/v1/services/web?index=1&wait=99999999999h", "", "", 400, "bad_request", "wait"},
	{"wait negative", "GET", "/v1/services/web?index=1&wait=-1s", "", "", 400, "bad_request", "wait"},
	{"wait no unit", "GET", "/v1/services/web?index=1&wait=30", "", "", 400, "bad_request", "30s"},
	{"host missing", "GET", "/v1/agent/assignments", "", "", 400, "bad_request", "host: required"},
	{"host with spaces", "GET", "/v1/agent/assignments?host=a+b", "", "", 400, "bad_request", "not a valid host id"},
	{"host too long", "GET", "/v1/agent/assignments?host=" + strings.Repeat("h", 254), "", "", 400, "bad_request", "host"},
	{"assignments bad index", "GET", "/v1/agent/assignments?host=h1&index=x", "", "", 400, "bad_request", "index"},
	// Routes.
	{"wrong method", "PATCH", "/v1/services", "", "", 404, "not_found", "PATCH"},
	{"no route", "GET", "/v2/services", "", "", 404, "not_found", "/v1/"},
}

func TestAPIBadInput(t *testing.T) {
	n := mustStartNode(t)
	for _, c := range badInputCases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, n.api.URL+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			var e wire.APIError
			if err := json.Unmarshal(data, &e); err != nil {
				t.Fatalf("%d: error body is not JSON: %q", resp.StatusCode, data)
			}
			if resp.StatusCode != c.status || e.Code != c.code || !strings.Contains(e.Error, c.mentions) {
				t.Fatalf("%d %s %q; want %d %s mentioning %q", resp.StatusCode, e.Code, e.Error, c.status, c.code, c.mentions)
			}
		})
	}
	if n.store.View().Index() > 2 {
		t.Fatalf("bad requests wrote to raft (index %d)", n.store.View().Index())
	}
}

// TestAPIContentTypesTheCLISends: what the client sends is accepted, and a
// YAML body is accepted under each YAML type and with none.
func TestAPIContentTypesAccepted(t *testing.T) {
	n := mustStartNode(t)
	spec := []byte("service: Web\nimage: a/b:1\n") // invalid name: reaches the parser, stores nothing
	for _, ct := range append([]string{"", "application/yaml; charset=utf-8", "TEXT/YAML"}, yamlMediaTypes...) {
		req, _ := http.NewRequest(http.MethodPost, n.api.URL+"/v1/services", bytes.NewReader(spec))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e wire.APIError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Code != wire.CodeInvalidSpec || len(e.Problems) == 0 {
			t.Fatalf("Content-Type %q: %d %+v, want the spec parsed (400 invalid_spec with problems)", ct, resp.StatusCode, e)
		}
	}
	c := wire.NewClient([]string{n.api.URL}, nil)
	if _, err := c.Rollback(context.Background(), "web", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("client rollback: %v, want not found (its body and content type accepted)", err)
	}
	if _, err := c.Refresh(context.Background(), "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("client refresh: %v, want not found", err)
	}
	if _, err := c.Scale(context.Background(), "web", 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("client scale: %v, want not found (its body and content type accepted)", err)
	}
	if _, err := c.ApplyWith(context.Background(), wire.ApplyBody{SpecYAML: string(spec)}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("client apply: %v, want invalid spec", err)
	}
	if err := c.Report(context.Background(), state.HostReport{Host: "h1"}); err != nil {
		t.Fatalf("client report: %v", err)
	}
}

// TestRemoveOnlyVoterIsAConflict: removing the last voter is refused with
// a 409 that says why, not the 500 raft's "cannot find peer" became.
func TestRemoveOnlyVoterIsAConflict(t *testing.T) {
	n := mustStartNode(t)
	srv := httptest.NewServer(NewAPI(APIConfig{Controller: n.ctrl, Membership: fuzzMembership{}}).Handler())
	defer srv.Close()
	err := wire.NewClient([]string{srv.URL}, nil).RemoveServer(context.Background(), "n1")
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Status != http.StatusConflict || !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "only voter") {
		t.Fatalf("remove the only voter: %v, want 409 conflict naming the only voter", err)
	}
}

// TestAPIRefusesBadIdempotencyKeys: the key is stored in raft with the
// request, so a huge or binary one is a 400 before anything is stored.
func TestAPIRefusesBadIdempotencyKeys(t *testing.T) {
	n := mustStartNode(t)
	for _, key := range []string{strings.Repeat("k", maxIdempotencyKey+1), "a b", "kéy"} {
		for _, path := range []string{"/v1/services", "/v1/services/web/rollback", "/v1/services/web/refresh", "/v1/services/web/scale"} {
			req, _ := http.NewRequest(http.MethodPost, n.api.URL+path, strings.NewReader(""))
			req.Header.Set("Idempotency-Key", key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e wire.APIError
			_ = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || e.Code != wire.CodeBadRequest || !strings.Contains(e.Error, "Idempotency-Key") {
				t.Errorf("%s with key %q: %d %+v, want 400 naming Idempotency-Key", path, key, resp.StatusCode, e)
			}
		}
	}
	if n.store.View().Index() > 2 {
		t.Fatalf("bad requests wrote to raft (index %d)", n.store.View().Index())
	}
}
