package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/wire"
)

// backend reads and writes through the API's own handler, in process,
// as the browser's caller: each call is a new request to the /v1/ route
// the CLI would call, carrying the TLS state (the verified client
// certificate) and the context of the page's request. So the UI sees and
// changes exactly what that caller may through the CLI: authentication,
// the roles of each route, forwarding to the leader and every check of
// the controller run as for `deployctl`.
type backend struct {
	api http.Handler
	in  *http.Request
}

// APIError is an answer of the API that is not a success, with the
// status and the API's message; the pages show the message.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// ErrNotFound: the API answered 404 (a service or host that does not exist).
var ErrNotFound = errors.New("not found")

func (e *APIError) Unwrap() error {
	if e.Status == http.StatusNotFound {
		return ErrNotFound
	}
	return nil
}

// bufferedResponse is the http.ResponseWriter an in-process API call
// writes into.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

// logs reads the last tail lines of each replica of a service (the
// API's ndjson answer), keeping what arrived when ctx ends.
func (b backend) logs(ctx context.Context, name string, tail int) ([]wire.LogLine, error) {
	rec, err := b.do(ctx, http.MethodGet, svcPath(name, "/logs"), url.Values{"tail": {strconv.Itoa(tail)}}, nil, nil)
	if err != nil {
		return nil, err
	}
	var out []wire.LogLine
	dec := json.NewDecoder(io.LimitReader(&rec.body, 8<<20))
	for {
		var l wire.LogLine
		if err := dec.Decode(&l); err != nil {
			break // the end, or a line cut by the deadline
		}
		if l.Text != "" || l.Error != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

func (b backend) call(ctx context.Context, method, path string, q url.Values, header http.Header, body []byte, out any) error {
	rec, err := b.do(ctx, method, path, q, header, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(&rec.body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("ui: read %s %s: %w", method, path, err)
	}
	return nil
}

// do makes one in-process API request and answers its buffered response,
// or an *APIError for a status of 300 and above.
func (b backend) do(ctx context.Context, method, path string, q url.Values, header http.Header, body []byte) (*bufferedResponse, error) {
	u := path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("ui: build %s %s: %w", method, path, err)
	}
	req.RequestURI = req.URL.RequestURI()
	req.TLS = b.in.TLS
	req.RemoteAddr = b.in.RemoteAddr
	req.Host = b.in.Host
	for k, v := range header {
		req.Header[k] = v
	}
	rec := &bufferedResponse{header: http.Header{}}
	b.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status >= 300 {
		var e wire.APIError
		_ = json.Unmarshal(rec.body.Bytes(), &e)
		if e.Error == "" {
			e.Error = http.StatusText(rec.status)
		}
		return nil, &APIError{Status: rec.status, Code: e.Code, Message: e.Error}
	}
	return rec, nil
}

func (b backend) get(ctx context.Context, path string, q url.Values, out any) error {
	return b.call(ctx, http.MethodGet, path, q, nil, nil, out)
}

func svcPath(name string, rest string) string {
	return "/v1/services/" + url.PathEscape(name) + rest
}

func (b backend) services(ctx context.Context) ([]wire.ServiceStatus, error) {
	var out []wire.ServiceStatus
	return out, b.get(ctx, "/v1/services", nil, &out)
}

// status answers a service's status; with index > 0 it waits up to wait
// for a state newer than index (the API's blocking query).
func (b backend) status(ctx context.Context, name string, index uint64, wait time.Duration) (wire.ServiceStatus, error) {
	var out wire.ServiceStatus
	q := url.Values{}
	if index > 0 {
		q.Set("index", fmt.Sprint(index))
		q.Set("wait", wait.String())
	}
	return out, b.get(ctx, svcPath(name, ""), q, &out)
}

func (b backend) history(ctx context.Context, name string) ([]wire.HistoryEntry, error) {
	var out []wire.HistoryEntry
	return out, b.get(ctx, svcPath(name, "/history"), url.Values{"spec": {"1"}}, &out)
}

func (b backend) ps(ctx context.Context, name string) (wire.PsView, error) {
	var out wire.PsView
	return out, b.get(ctx, svcPath(name, "/ps"), url.Values{"all": {"true"}}, &out)
}

// events answers the events after seq (of service, "" for all), waiting
// up to wait for one.
func (b backend) events(ctx context.Context, service string, after uint64, wait time.Duration) (wire.EventsPage, error) {
	q := url.Values{"after": {fmt.Sprint(after)}}
	if service != "" {
		q.Set("service", service)
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out wire.EventsPage
	return out, b.get(ctx, "/v1/events", q, &out)
}

func (b backend) cluster(ctx context.Context) (wire.ClusterStatus, error) {
	var out wire.ClusterStatus
	return out, b.get(ctx, "/v1/cluster", nil, &out)
}

func (b backend) hosts(ctx context.Context) ([]wire.HostView, error) {
	var out []wire.HostView
	return out, b.get(ctx, "/v1/hosts", nil, &out)
}

func (b backend) audit(ctx context.Context) (wire.AuditReport, error) {
	var out wire.AuditReport
	return out, b.get(ctx, "/v1/audit", nil, &out)
}

func (b backend) policy(ctx context.Context) (*policy.Policy, error) {
	var out policy.Policy
	return &out, b.get(ctx, "/v1/policy", nil, &out)
}

// rollback posts to the route `deployctl rollback --to N` posts to, with
// a fresh idempotency key.
func (b backend) rollback(ctx context.Context, name string, to int) (wire.ApplyOutcome, error) {
	body, err := json.Marshal(wire.RollbackBody{To: to})
	if err != nil {
		return wire.ApplyOutcome{}, fmt.Errorf("ui: encode rollback: %w", err)
	}
	h := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {wire.NewID()}}
	var out wire.ApplyOutcome
	return out, b.call(ctx, http.MethodPost, svcPath(name, "/rollback"), nil, h, body, &out)
}
