package controller

import (
	"net/http"
	"strings"
	"testing"
)

// A web page the operator opens must not drive a --dev API: a cross-site
// POST of an apply (a "simple" request, no preflight) and a DNS-rebound
// page (Host: a name of the attacker's) are refused and store nothing;
// the CLI (no browser headers) and the dashboard at 127.0.0.1 still work.
func TestBrowserRequestsCannotDriveTheAPI(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	spec := "service: web\nimage: " + ref + "\nreplicas: 1\n"
	post := func(header map[string]string, host string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, n.api.URL+"/v1/services", strings.NewReader(spec))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/plain")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		name   string
		header map[string]string
		host   string
	}{
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, ""},
		{"same-site page on another port", map[string]string{"Sec-Fetch-Site": "same-site"}, ""},
		{"origin of another site", map[string]string{"Origin": "http://evil.example"}, ""},
		{"origin of another port", map[string]string{"Origin": "http://127.0.0.1:1"}, ""},
		{"dns rebinding", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example:7070"}, "evil.example:7070"},
	} {
		if resp := post(tc.header, tc.host); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s, want 403", tc.name, resp.Status)
		}
	}
	if _, ok := n.store.View().Service("web"); ok {
		t.Fatal("a refused browser request stored the service")
	}

	// The dashboard's pages answer a browser at the loopback address, not
	// at a rebound name.
	get := func(path, host string) int {
		req, _ := http.NewRequest(http.MethodGet, n.api.URL+path, nil)
		req.Header.Set("Sec-Fetch-Site", "none")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/ui/", ""); code != http.StatusOK {
		t.Errorf("the dashboard at the loopback address: %d, want 200", code)
	}
	for _, host := range []string{"evil.example:7070", "127.0.0.1.nip.io:7070"} {
		if code := get("/ui/", host); code != http.StatusForbidden {
			t.Errorf("the dashboard for Host %s: %d, want 403", host, code)
		}
	}
	for _, host := range []string{"localhost:7070", "[::1]:7070", "app.localhost"} {
		if !loopbackOrIPHost(host) {
			t.Errorf("%s refused", host)
		}
	}

	// The CLI sends no browser headers; a same-origin request passes too.
	if resp := post(nil, ""); resp.StatusCode != http.StatusCreated {
		t.Fatalf("apply without browser headers: %s, want 201", resp.Status)
	}
	if resp := post(map[string]string{"Origin": n.api.URL, "Sec-Fetch-Site": "same-origin"}, ""); resp.StatusCode >= 400 {
		t.Fatalf("same-origin apply: %s", resp.Status)
	}
}
