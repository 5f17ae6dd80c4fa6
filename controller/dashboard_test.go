package controller

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller/ui"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// The dashboard (controller/ui) served by a real API on real raft: its
// pages carry the data on the first render, its stream moves with the
// state, and its rollback goes through the API's route with a same-origin
// token. The browser-driven proof is cmd/deployctl/ui_e2e_test.go.

// twoRevisions applies web (no replicas) with two images and waits until
// revision 2 succeeded.
func twoRevisions(t *testing.T, c *wire.Client) {
	t.Helper()
	ctx := context.Background()
	_, ref1, _ := mustRegistryImage(t, "team/web:v1")
	_, ref2, _ := mustRegistryImage(t, "team/web:v2")
	for i, ref := range []string{ref1, ref2} {
		spec := fmt.Sprintf("service: web\nimage: %s\nreplicas: 0\n", ref)
		if i == 1 {
			spec += "env:\n  LOG_LEVEL: debug\n"
		}
		if _, err := c.Apply(ctx, []byte(spec)); err != nil {
			t.Fatal(err)
		}
		waitSucceeded(t, c)
	}
}

func waitSucceeded(t *testing.T, c *wire.Client) wire.ServiceStatus {
	t.Helper()
	ctx := context.Background()
	var st wire.ServiceStatus
	for st.RevisionState != state.RevisionSucceeded {
		var err error
		if st, err = c.Status(ctx, "web", st.Index, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func getPage(t *testing.T, hc *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, body)
		}
	}
}

func TestDashboardPagesCarryTheData(t *testing.T) {
	n := mustStartNode(t)
	c := wire.NewClient([]string{n.api.URL}, nil)
	twoRevisions(t, c)
	hc := n.api.Client()

	code, body := getPage(t, hc, n.api.URL+"/ui/")
	if code != 200 {
		t.Fatalf("GET /ui/: %d %s", code, body)
	}
	mustContain(t, "services page", body, `href="/ui/services/web"`, "succeeded", `<span class="replicas">0/0</span>`, `data-live="/ui/live?view=services&amp;after=`)
	code, body = getPage(t, hc, n.api.URL+"/ui/?q=nomatch")
	if code != 200 || !strings.Contains(body, `hidden>`) {
		t.Errorf("the filter q=nomatch hides no row: %d\n%s", code, body)
	}
	code, body = getPage(t, hc, n.api.URL+"/ui/services/web?a=1&b=2")
	if code != 200 {
		t.Fatalf("GET service: %d %s", code, body)
	}
	mustContain(t, "service page", body, `id="rev-2"`, `id="rev-1"`, "Roll back to revision 1", `id="diff-table"`, `<tr class="changed"><th scope="row">digest`, `<tr class="changed"><th scope="row">spec: env.LOG_LEVEL`, "revision_stored", "rollout_succeeded")
	if strings.Contains(body, "Roll back to revision 2") {
		t.Errorf("the current revision offers a rollback to itself")
	}
	code, body = getPage(t, hc, n.api.URL+"/ui/services/nope")
	if code != 404 || !strings.Contains(body, `service \&#34;nope\&#34; not found`) && !strings.Contains(body, "not found") {
		t.Errorf("unknown service: %d %s", code, body)
	}
	for _, p := range []string{"/ui/hosts", "/ui/policy", "/ui/static/app.js", "/ui/static/app.css"} {
		if code, body := getPage(t, hc, n.api.URL+p); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	// The history carries whole specs only when asked (the diff above).
	if _, body := getPage(t, hc, n.api.URL+"/v1/services/web/history"); strings.Contains(body, `"spec"`) {
		t.Errorf("history without spec=1 carries specs: %s", body)
	}
	if _, body := getPage(t, hc, n.api.URL+"/v1/services/web/history?spec=1"); !strings.Contains(body, `"LOG_LEVEL":"debug"`) {
		t.Errorf("history?spec=1 lacks revision 2's env: %s", body)
	}
	if code, body := getPage(t, hc, n.api.URL+"/v1/services/web/history?spec=maybe"); code != http.StatusBadRequest || !strings.Contains(body, "spec=") {
		t.Errorf("history?spec=maybe: %d %s, want 400 naming spec", code, body)
	}
	// A host's engine: its release and security features.
	if err := c.Report(context.Background(), state.HostReport{Host: "h1", Engine: &state.EngineFeatures{Seccomp: true, Version: "20.10.24+dfsg1"}}); err != nil {
		t.Fatal(err)
	}
	_, body = getPage(t, hc, n.api.URL+"/ui/hosts")
	mustContain(t, "hosts page", body, "h1", "Docker 20.10.24&#43;dfsg1", "seccomp: yes")
	_, body = getPage(t, hc, n.api.URL+"/ui/policy")
	mustContain(t, "policy page", body, "allow_capabilities", "version")
}

func TestDashboardStreamFollowsTheService(t *testing.T) {
	n := mustStartNode(t)
	c := wire.NewClient([]string{n.api.URL}, nil)
	twoRevisions(t, c)
	st := waitSucceeded(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/ui/services/web/live?index=%d", n.api.URL, st.Index), nil)
	resp, err := n.api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream Content-Type %q", ct)
	}
	if _, err := c.Rollback(ctx, "web", 1); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, "rollback of 2 to 1") {
			return
		}
	}
	t.Fatalf("the stream ended without the rollback: %v", sc.Err())
}

// formPost posts the rollback form as a browser of origin would.
func formPost(t *testing.T, hc *http.Client, base, origin string, form url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/ui/services/web/rollback", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func csrfOf(t *testing.T, jar http.CookieJar, base string) string {
	t.Helper()
	u, _ := url.Parse(base + "/ui/")
	for _, c := range jar.Cookies(u) {
		if c.Name == "deployctl_ui_csrf" {
			return c.Value
		}
	}
	t.Fatal("no csrf cookie after a page")
	return ""
}

func TestDashboardRollbackNeedsTheSameOriginToken(t *testing.T) {
	n := mustStartNode(t)
	c := wire.NewClient([]string{n.api.URL}, nil)
	twoRevisions(t, c)
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// Another site's form: no cookie, no token.
	if code, body := formPost(t, http.DefaultClient, n.api.URL, "http://evil.example", url.Values{"to": {"1"}, "confirm": {"yes"}}); code != 403 || !strings.Contains(body, "Origin") {
		t.Fatalf("cross-origin post: %d %s", code, body)
	}
	getPage(t, hc, n.api.URL+"/ui/services/web")
	tok := csrfOf(t, jar, n.api.URL)
	if code, body := formPost(t, hc, n.api.URL, "", url.Values{"to": {"1"}, "confirm": {"yes"}, "csrf": {strings.Repeat("0", 64)}}); code != 403 || !strings.Contains(body, "csrf") {
		t.Fatalf("wrong token: %d %s", code, body)
	}
	if code, body := formPost(t, hc, n.api.URL, n.api.URL, url.Values{"to": {"x"}, "csrf": {tok}}); code != 400 || !strings.Contains(body, "to:") {
		t.Fatalf("bad to: %d %s", code, body)
	}
	// Without confirm=yes (a browser without the script): the
	// confirmation names both revisions; nothing is stored.
	code, body := formPost(t, hc, n.api.URL, n.api.URL, url.Values{"to": {"1"}, "csrf": {tok}})
	if code != 200 {
		t.Fatalf("confirmation: %d %s", code, body)
	}
	mustContain(t, "confirmation", body, "Roll back web from revision 2 to revision 1?", `name="confirm" value="yes"`)
	if st, _ := c.Status(context.Background(), "web", 0, 0); st.Revision != 2 {
		t.Fatalf("the confirmation stored a revision: %+v", st)
	}
	code, _ = formPost(t, hc, n.api.URL, n.api.URL, url.Values{"to": {"1"}, "csrf": {tok}, "confirm": {"yes"}})
	if code != http.StatusSeeOther {
		t.Fatalf("rollback: %d", code)
	}
	st := waitSucceeded(t, c)
	if st.Revision != 3 || st.Cause != "rollback of 2 to 1" {
		t.Fatalf("after the dashboard's rollback: %+v", st)
	}
	// A refusal of the API is shown with its message and status.
	if code, body := formPost(t, hc, n.api.URL, n.api.URL, url.Values{"to": {"9"}, "csrf": {tok}, "confirm": {"yes"}}); code < 400 || code >= 500 {
		t.Fatalf("rollback to a revision that does not exist: %d %s", code, body)
	}
}

// TestDashboardKeepsTheAPIRoles: over mutual TLS the dashboard is the
// operator's; an agent's certificate gets the API's 403, through the
// dashboard's proxy too, while the operator's rolls back through it.
func TestDashboardKeepsTheAPIRoles(t *testing.T) {
	cl := mustStartTLSCluster(t)
	opc := wire.NewTLSClient([]string{strings.TrimPrefix(cl.url, "https://")}, cl.client(t, "operator").Transport.(*http.Transport).TLSClientConfig)
	twoRevisions(t, opc)
	if code, body := getPage(t, cl.client(t, "h1"), cl.url+"/ui/"); code != 403 || !strings.Contains(body, "operator") {
		t.Fatalf("agent certificate on /ui/: %d %s", code, body)
	}
	if code, body := getPage(t, cl.client(t, "operator"), cl.url+"/ui/services/web"); code != 200 || !strings.Contains(body, `id="rev-2"`) {
		t.Fatalf("operator on /ui/services/web: %d %s", code, body)
	}
	proxyOf := func(name string) string {
		tr := cl.client(t, name).Transport
		p, err := ui.NewProxy(ui.ProxyConfig{Servers: []string{strings.TrimPrefix(cl.url, "https://")}, Scheme: "https", Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	if code, _ := getPage(t, http.DefaultClient, proxyOf("h1")+"/ui/"); code != 403 {
		t.Fatalf("agent certificate through the proxy: %d", code)
	}
	base := proxyOf("operator")
	if code, body := getPage(t, http.DefaultClient, base+"/v1/services"); code != 404 || !strings.Contains(body, "dashboard only") {
		t.Fatalf("the proxy forwards the API: %d %s", code, body)
	}
	// DNS rebinding: a Host that is not the loopback.
	req, _ := http.NewRequest("GET", base+"/ui/", nil)
	req.Host = "evil.example"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("foreign Host through the proxy: %v %v", resp, err)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	if code, body := getPage(t, hc, base+"/"); code != 200 || !strings.Contains(body, `href="/ui/services/web"`) {
		t.Fatalf("operator through the proxy: %d %s", code, body)
	}
	tok := csrfOf(t, jar, base)
	if code, body := formPost(t, hc, base, base, url.Values{"to": {"1"}, "csrf": {tok}, "confirm": {"yes"}}); code != 200 || !strings.Contains(body, "Rollback stored as revision 3") {
		t.Fatalf("rollback through the proxy: %d %s", code, body)
	}
	if st := waitSucceeded(t, opc); st.Cause != "rollback of 2 to 1" {
		t.Fatalf("after the rollback through the proxy: %+v", st)
	}
	if err := ui.CheckLoopback("0.0.0.0:8001"); err == nil {
		t.Fatal("the proxy accepts a listen address off the loopback")
	}
}
