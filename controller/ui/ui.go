// Package ui is the web dashboard every server serves under /ui/: pages
// rendered on the server from embedded Go templates, a small script for
// live updates over server-sent events, and a rollback form. It reads and
// writes only through the API handler it is given, as the caller of the
// page's request (see backend), so nothing here bypasses the API's
// authentication, roles or checks. See DESIGN.md.
package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/hashicorp/go-hclog"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the dashboard is mounted.
const Prefix = "/ui/"

// csrfCookie holds the page's same-origin token (double-submit: every
// form carries it, and a POST is refused unless the form's copy equals
// the cookie's).
const csrfCookie = "deployctl_ui_csrf"

// Config wires a dashboard.
type Config struct {
	// API is the API's handler (with its authentication): every read and
	// write of the dashboard is an in-process request to it.
	API http.Handler
	// Logger: nil discards.
	Logger hclog.Logger
}

// UI is the dashboard's handler.
type UI struct {
	api   http.Handler
	log   hclog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New parses the embedded templates and returns the dashboard.
func New(cfg Config) (*UI, error) {
	if cfg.API == nil {
		return nil, errors.New("ui: Config.API is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	u := &UI{api: cfg.API, log: cfg.Logger, pages: map[string]*template.Template{}}
	for _, page := range []string{"services", "service", "hosts", "policy", "confirm", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse %s: %w", page, err)
		}
		u.pages[page] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: static files: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/{$}", u.servicesPage)
	mux.HandleFunc("GET /ui/services/{name}", u.servicePage)
	mux.HandleFunc("POST /ui/services/{name}/rollback", u.rollback)
	mux.HandleFunc("GET /ui/services/{name}/live", u.serviceLive)
	mux.HandleFunc("GET /ui/live", u.listLive)
	mux.HandleFunc("GET /ui/hosts", u.hostsPage)
	mux.HandleFunc("GET /ui/policy", u.policyPage)
	fileServer := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	mux.Handle("GET /ui/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	}))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		u.fail(w, r, http.StatusNotFound, fmt.Sprintf("no page %s %s; the dashboard has /ui/, /ui/services/NAME, /ui/hosts and /ui/policy", r.Method, r.URL.Path))
	})
	u.mux = mux
	return u, nil
}

// ServeHTTP serves the dashboard with headers that keep its pages out of
// frames and let only its own scripts and styles run.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	u.mux.ServeHTTP(w, r)
}

func (u *UI) backend(r *http.Request) backend { return backend{api: u.api, in: r} }

// csrfToken returns the request's token, setting a new cookie when it has
// none (or a malformed one).
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && validToken(c.Value) {
		return c.Value
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: Prefix, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	return tok
}

func validToken(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ErrCrossOrigin: a state-changing request without the page's same-origin
// token, or sent by another origin.
var ErrCrossOrigin = errors.New("cross-origin request refused")

// checkSameOrigin accepts a POST only from a page of this dashboard: the
// form's token equals the cookie's (which another site can neither read
// nor send: SameSite=Strict, HttpOnly), and the browser's Origin and
// Sec-Fetch-Site, when sent, say the same origin.
func checkSameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("%w: Sec-Fetch-Site is %q; submit the form from the dashboard's own page", ErrCrossOrigin, site)
	}
	if o := r.Header.Get("Origin"); o != "" {
		ou, err := url.Parse(o)
		if err != nil || o == "null" || !strings.EqualFold(ou.Host, r.Host) {
			return fmt.Errorf("%w: Origin %q is not this dashboard (%s)", ErrCrossOrigin, o, r.Host)
		}
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || !validToken(c.Value) {
		return fmt.Errorf("%w: no same-origin token cookie; reload the page and submit again", ErrCrossOrigin)
	}
	if subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		return fmt.Errorf("%w: the form's csrf field does not match this browser's token; reload the page and submit again", ErrCrossOrigin)
	}
	return nil
}

// layout is what every page's frame needs.
type layout struct {
	Title string
	Nav   string // services, hosts, policy
	CSRF  string
	// Live is the URL of the page's event stream ("" for none).
	Live string
	Err  string
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf strings.Builder
	if err := u.pages[page].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		u.log.Error("ui: render", "page", page, "error", err)
		http.Error(w, "render "+page+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

type errorPage struct {
	layout
	Status int
}

// fail answers a page with the API's (or the dashboard's) message.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	u.render(w, r, status, "error", errorPage{layout: layout{Title: http.StatusText(status), Err: msg}, Status: status})
}

// failErr answers err, with the API's status when it came from the API.
func (u *UI) failErr(w http.ResponseWriter, r *http.Request, err error) {
	var ae *APIError
	if errors.As(err, &ae) {
		u.fail(w, r, ae.Status, ae.Message)
		return
	}
	u.fail(w, r, http.StatusBadGateway, err.Error())
}
