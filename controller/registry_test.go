package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/deployctl/deployctl/controller/policy"
)

// Issue 16, finding 11: an apply pointed at some local service must not
// echo what it answered, and private addresses get TLS.

const secret = "SECRET-7f3a-the-body-of-an-internal-service"

// postApply sends a spec as the CLI does and returns status and body.
func postApply(t *testing.T, n *testNode, yaml string) (int, string) {
	t.Helper()
	resp, err := http.Post(n.api.URL+"/v1/services", "application/yaml", strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestApplyDoesNotEchoRegistryAnswers(t *testing.T) {
	answers := map[string]http.HandlerFunc{
		"plain text": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, secret)
		},
		"registry errors": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"errors":[{"code":"DENIED","message":%q,"detail":%q},{"code":%q}]}`, secret, secret, secret)
		},
		"json of another service": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"error":%q,"code":"internal"}`, secret)
		},
	}
	n := mustStartNode(t)
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(answer)
			t.Cleanup(srv.Close)
			image := strings.TrimPrefix(srv.URL, "http://") + "/x:1"
			_, err := n.ctrl.Apply(context.Background(), specFor(image), "")
			if !errors.Is(err, ErrImageUnresolvable) || strings.Contains(err.Error(), secret) {
				t.Fatalf("Apply = %v; want ErrImageUnresolvable without the answer's body", err)
			}
			if !strings.Contains(err.Error(), "the registry answered") {
				t.Errorf("Apply = %v; want the status code kept", err)
			}
			status, body := postApply(t, n, "service: web\nimage: "+image+"\n")
			if status != http.StatusUnprocessableEntity || strings.Contains(body, secret) || !strings.Contains(body, "image_unresolvable") {
				t.Fatalf("POST /v1/services = %d %s; want 422 without the answer's body", status, body)
			}
		})
	}
}

// The signature lookup goes through the same transport: a registry that
// serves the image but answers the signature lookup with a body does not
// get it echoed either.
func TestSignatureLookupDoesNotEchoRegistryAnswers(t *testing.T) {
	n := mustStartNode(t)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, ".sig") || strings.Contains(r.URL.Path, "/referrers/") {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"errors":[{"code":"UNKNOWN","message":%q}]} %s`, secret, secret)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/web:v1"
	mustPush(t, ref)
	p := policy.Default()
	p.Trust = []policy.TrustEntry{trustRuleFor(t, strings.TrimSuffix(ref, ":v1"))}
	mustSetPolicy(t, n, p)
	status, body := postApply(t, n, "service: web\nimage: "+ref+"\n")
	if status < 400 || strings.Contains(body, secret) {
		t.Fatalf("POST /v1/services = %d %s; want a refusal without the answer's body", status, body)
	}
}

// recorder is a transport that sends nothing: it notes each request and
// fails it.
type recorder struct {
	mu   sync.Mutex
	urls []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL.String())
	r.mu.Unlock()
	return nil, errors.New("recorder: no network in this test")
}

func (r *recorder) schemes() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, u := range r.urls {
		out[strings.SplitN(u, ":", 2)[0]] = true
	}
	return out
}

func TestRegistrySchemeDecision(t *testing.T) {
	access := RegistryAccess{Insecure: []string{"10.9.9.9:5000", "Registry.LAN:5000"}}
	for reg, plain := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true,
		"10.9.9.9:5000": true, "registry.lan:5000": true, // listed
		"10.1.2.3:5000": false, "192.168.1.10:5000": false, "172.16.0.1": false, "10.9.9.9:5001": false,
		"registry.lan": false, "registry.example.com": false, "foo.localhost:5000": false,
	} {
		if got := access.PlainHTTPAllowed(reg); got != plain {
			t.Errorf("PlainHTTPAllowed(%q) = %v, want %v", reg, got, plain)
		}
	}
	// go-containerregistry itself picks http for RFC 1918 addresses; the
	// resolver's requests must still all be https. The recorder sends
	// nothing, so no traffic leaves the machine.
	for _, c := range []struct {
		image     string
		access    RegistryAccess
		wantPlain bool
	}{
		{"10.1.2.3:5000/team/app:1", RegistryAccess{}, false},
		{"192.168.7.8:5000/team/app:1", RegistryAccess{}, false},
		{"172.20.0.1:443/team/app:1", RegistryAccess{}, false},
		{"10.1.2.3:5000/team/app:1", RegistryAccess{Insecure: []string{"10.1.2.3:5000"}}, true},
		{"registry.lan:5000/team/app:1", RegistryAccess{Insecure: []string{"registry.lan:5000"}}, true},
	} {
		rec := &recorder{}
		_, err := RegistryResolver{Access: c.access, Transport: rec}.Resolve(context.Background(), c.image)
		if err == nil {
			t.Fatalf("%s: resolved through a transport that fails everything", c.image)
		}
		schemes := rec.schemes()
		if !schemes["https"] || schemes["http"] != c.wantPlain {
			t.Errorf("%s with insecure %v: requests %v; want https and plain http %v", c.image, c.access.Insecure, rec.urls, c.wantPlain)
		}
	}
}

func TestValidateInsecureRegistry(t *testing.T) {
	for _, ok := range []string{"registry.lan:5000", "10.0.0.1:5000", "registry.lan", "[fd00::1]:5000"} {
		if err := ValidateInsecureRegistry(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "http://registry.lan:5000", "registry.lan:5000/path", "registry.lan:port", "registry.lan:0"} {
		if err := ValidateInsecureRegistry(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// fakeTLSless answers https with the error of a server that speaks plain
// HTTP, and http with 200; it sends nothing.
type fakeTLSless struct{ recorder }

func (f *fakeTLSless) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.urls = append(f.urls, req.URL.String())
	f.mu.Unlock()
	if req.URL.Scheme == "https" {
		return nil, &url.Error{Op: req.Method, URL: req.URL.String(), Err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

func TestListedInsecureRegistryFallsBackToPlainHTTP(t *testing.T) {
	for _, c := range []struct {
		host   string
		listed bool
	}{{"registry.lan:5000", true}, {"10.1.2.3:5000", true}, {"registry.lan:5000", false}, {"10.1.2.3:5000", false}} {
		access := RegistryAccess{}
		if c.listed {
			access.Insecure = []string{c.host}
		}
		inner := &fakeTLSless{}
		req, _ := http.NewRequest(http.MethodGet, "https://"+c.host+"/v2/", nil)
		resp, err := access.Transport(inner).RoundTrip(req)
		if c.listed != (err == nil) {
			t.Errorf("%s listed %v: err %v, requests %v", c.host, c.listed, err, inner.urls)
		}
		if err == nil {
			resp.Body.Close()
		}
		if plain := inner.schemes()["http"]; plain != c.listed {
			t.Errorf("%s listed %v: requests %v", c.host, c.listed, inner.urls)
		}
	}
}
