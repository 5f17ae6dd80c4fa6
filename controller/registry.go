package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/deployctl/deployctl/internal/registryhost"
)

// RegistryAccess is how the controller speaks to registries (resolving
// tags, fetching signatures and scan attestations).
//
//   - TLS for every registry except those on loopback and those the
//     operator lists in Insecure (`--insecure-registry host:port`).
//     go-containerregistry on its own also speaks plain HTTP to RFC 1918
//     addresses (10/8, 172.16/12, 192.168/16: name.Registry.Scheme); the
//     transport sends such requests over https instead.
//   - Nothing a registry answers with an error reaches an error message: the
//     body of an error answer is replaced by its registry error codes
//     (MANIFEST_UNKNOWN...), so `image: 127.0.0.1:7070/x:1` cannot make the
//     controller echo what some local service answered.
type RegistryAccess struct {
	// Insecure lists registries ("host" or "host:port", as written in
	// image references) that may be spoken to over plain HTTP.
	Insecure []string
}

// PlainHTTPAllowed reports whether registry ("host" or "host:port") may be
// spoken to over plain HTTP.
func (a RegistryAccess) PlainHTTPAllowed(registry string) bool {
	return registryhost.IsLoopback(registry) || a.listed(registry)
}

func (a RegistryAccess) listed(registry string) bool {
	for _, r := range a.Insecure {
		if strings.EqualFold(r, registry) {
			return true
		}
	}
	return false
}

// ValidateInsecureRegistry checks one --insecure-registry entry.
func ValidateInsecureRegistry(entry string) error {
	host := entry
	if h, port, err := net.SplitHostPort(entry); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("insecure registry %q: port %q is not a number from 1 to 65535", entry, port)
		}
		host = h
	}
	if net.ParseIP(host) == nil && (host == "" || strings.ContainsAny(host, "/:@ ")) {
		return fmt.Errorf("insecure registry %q: want host or host:port as in the image reference, e.g. registry.lan:5000 (no scheme, no path)", entry)
	}
	return nil
}

// Transport wraps inner (nil: a clone of http.DefaultTransport) with the
// rules above. Give it to go-containerregistry (remote.WithTransport): its
// own layers (auth, retries) wrap it, so it sees every request, token
// requests and redirects included.
func (a RegistryAccess) Transport(inner http.RoundTripper) http.RoundTripper {
	if inner == nil {
		inner = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &registryTransport{access: a, inner: inner}
}

type registryTransport struct {
	access RegistryAccess
	inner  http.RoundTripper
}

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.access.PlainHTTPAllowed(req.URL.Host) {
		up := req.Clone(req.Context())
		up.URL.Scheme = "https"
		req = up
	}
	resp, err := t.inner.RoundTrip(req)
	var notTLS tls.RecordHeaderError
	if err != nil && req.URL.Scheme == "https" && errors.As(err, &notTLS) && t.access.listed(req.URL.Host) && (req.Body == nil || req.GetBody != nil) {
		// A listed registry that answers https with plain HTTP: try plain
		// HTTP, as the Docker Engine does for its insecure registries
		// (every caller, signature lookups included, then works the same).
		plain := req.Clone(req.Context())
		plain.URL.Scheme = "http"
		if req.GetBody != nil {
			if plain.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		resp, err = t.inner.RoundTrip(plain)
	}
	if err != nil || resp.StatusCode < 400 {
		return resp, err
	}
	body := scrubErrorBody(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header = resp.Header.Clone()
	resp.Header.Del("Content-Encoding")
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Set("Content-Type", "application/json")
	return resp, nil
}

// scrubErrorBody reads (at most 64 KiB of) an error answer and returns a
// body with only its registry error codes, each with a fixed message; an
// answer without codes becomes empty. Codes are kept only when they look
// like the distribution spec's (upper-case letters and _).
func scrubErrorBody(body io.ReadCloser) []byte {
	defer body.Close()
	raw, _ := io.ReadAll(io.LimitReader(body, 64<<10))
	var answer struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	type diagnostic struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	var kept struct {
		Errors []diagnostic `json:"errors"`
	}
	if json.Unmarshal(raw, &answer) == nil {
		for _, e := range answer.Errors {
			if isErrorCode(e.Code) && len(kept.Errors) < 4 {
				kept.Errors = append(kept.Errors, diagnostic{Code: e.Code, Message: strings.ToLower(strings.ReplaceAll(e.Code, "_", " "))})
			}
		}
	}
	if len(kept.Errors) == 0 {
		return nil
	}
	out, _ := json.Marshal(kept)
	return out
}

func isErrorCode(code string) bool {
	if code == "" || len(code) > 40 {
		return false
	}
	for _, r := range code {
		if (r < 'A' || r > 'Z') && r != '_' {
			return false
		}
	}
	return true
}

// registryProblem says in a few words why a registry call failed, with the
// status code when there was an answer; never what the registry said.
func registryProblem(err error) string {
	var terr *transport.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var recordErr tls.RecordHeaderError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &terr):
		msg := fmt.Sprintf("the registry answered %d %s", terr.StatusCode, http.StatusText(terr.StatusCode))
		var codes []string
		for _, d := range terr.Errors {
			if isErrorCode(string(d.Code)) {
				codes = append(codes, string(d.Code))
			}
		}
		if len(codes) > 0 {
			msg += " (" + strings.Join(codes, ", ") + ")"
		}
		return msg
	case errors.Is(err, context.DeadlineExceeded):
		return "the registry did not answer in time"
	case errors.Is(err, context.Canceled):
		return "the request was canceled"
	case errors.As(err, &recordErr):
		return "the registry does not speak TLS (a plain-HTTP registry must be listed with the server's --insecure-registry)"
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname):
		return "the registry's TLS certificate is not trusted for its name"
	case errors.As(err, &dnsErr):
		return "the registry's name does not resolve"
	case errors.As(err, &opErr):
		return "cannot connect to the registry: " + opErr.Err.Error()
	}
	return "the registry's answer could not be used"
}
