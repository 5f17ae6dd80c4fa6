package wire

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/raftstore/state"
)

// ErrUnreachable means no server answered at all.
var ErrUnreachable = errors.New("controller unreachable")

// Client speaks the /v1/ API. The CLI and the host agents use it. A
// request that finds no leader, or a server that is down, is retried on the
// next address; writes carry an idempotency key so that a retry after a
// lost answer never applies twice.
type Client struct {
	addrs  []string
	http   *http.Client
	scheme string // of addresses given without one
	// leaderWait bounds how long a write keeps retrying while no server
	// can take it (0: until its context ends).
	leaderWait time.Duration
	// held is each host's last assignment set, the base of the next
	// delta (Assignments).
	held *heldSets
	// leader is the index in addrs of the server that last said it leads
	// (LeaderAPIHeader), or -1: requests go to it first, so that a write
	// does not cost a follower's forwarding hop.
	leader atomic.Int32
	// spread is where in addrs this client starts its assignment
	// long-polls, which any server answers: drawn once per client, so
	// that a thousand agents do not all poll the first server.
	spread int
}

// LeaderAPIHeader names, in an answer, the API address of the server that
// leads: the leader sets it on what it answers, a follower on what it
// forwarded to it.
const LeaderAPIHeader = "X-Deployctl-Leader-Api"

// order is the order in which a request to path tries the servers: the
// leader first when one is known, except for assignment long-polls, which
// any server answers and which start at the client's own spread.
func (c *Client) order(path string) []string {
	n := len(c.addrs)
	first := 0
	if strings.HasPrefix(path, assignmentsPath) {
		first = c.spread
	} else if l := int(c.leader.Load()); l >= 0 && l < n {
		first = l
	}
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, c.addrs[(first+i)%n])
	}
	return out
}

// noteLeader remembers which of addrs the answer says leads.
func (c *Client) noteLeader(h http.Header) {
	v := h.Get(LeaderAPIHeader)
	if v == "" {
		return
	}
	for i, a := range c.addrs {
		if _, hostPort, ok := strings.Cut(a, "://"); ok && hostPort == v {
			c.leader.Store(int32(i))
			return
		}
	}
}

// heldSets are the assignment sets a client last received, per host: an
// agent process (or a hollow fleet) polls its hosts' sets through one
// client.
type heldSets struct {
	mu   sync.Mutex
	sets map[string]state.AssignmentSet
}

func (h *heldSets) get(host string) (state.AssignmentSet, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sets[host]
	return s, ok
}

// put keeps s unless the held set is newer (a follower behind the server
// that answered last, once its wait ran out).
func (h *heldSets) put(s state.AssignmentSet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.sets[s.Host]; ok && old.Index > s.Index {
		return
	}
	h.sets[s.Host] = s
}

// NewClient returns a client for one or more server addresses
// ("http://127.0.0.1:7070" or "127.0.0.1:7070").
func NewClient(addrs []string, hc *http.Client) *Client {
	return newClient(addrs, hc, "http://")
}

// NewTLSClient returns a client that speaks https with a client
// certificate (mutual TLS) to addresses given without a scheme.
func NewTLSClient(addrs []string, cfg *tls.Config) *Client {
	if cfg == nil {
		return NewClient(addrs, nil)
	}
	// A clone: the transport's HTTP/2 setup writes to its config, and
	// callers share theirs between clients.
	// An agent has several requests out at once (its assignments' and
	// ingress long-polls, reports, traffic): with the default of 2 idle
	// connections per server the others were closed after each use, and
	// every one paid a TLS handshake again.
	return newClient(addrs, &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}}, "https://")
}

func newClient(addrs []string, hc *http.Client, scheme string) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	var norm []string
	for _, a := range addrs {
		a = strings.TrimRight(strings.TrimSpace(a), "/")
		if a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			a = scheme + a
		}
		norm = append(norm, a)
	}
	c := &Client{addrs: norm, http: hc, scheme: scheme, held: &heldSets{sets: map[string]state.AssignmentSet{}}, spread: mathrand.IntN(max(len(norm), 1))}
	c.leader.Store(-1)
	return c
}

// WithLeaderWait makes writes give up after d of finding no leader (an
// election, no quorum) instead of retrying until their context ends, with
// an error that says so (ErrNoLeader). It returns c.
func (c *Client) WithLeaderWait(d time.Duration) *Client {
	c.leaderWait = d
	return c
}

// Retryable reports whether another server, or the same one a moment
// later, may succeed: no server answered, no leader, or the leader is
// catching up. Callers that wait (the CLI following a rollout) retry these.
func Retryable(err error) bool { return retryable(err) }

// retryable reports whether another server (or a later try) may succeed.
func retryable(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotReady)
}

// do sends one request, trying each address in turn for errors that
// another server may not have. body is re-sent on each try.
func (c *Client) do(ctx context.Context, method, path string, header http.Header, body []byte, out any) error {
	if len(c.addrs) == 0 {
		return fmt.Errorf("%w: no server address; set --addr or DEPLOYCTL_ADDR", ErrUnreachable)
	}
	var best error
	for _, base := range c.order(path) {
		// Each server gets a bounded try: a server that accepts the
		// connection but never answers (stopped, partitioned) must not
		// hold the client; the next one may answer.
		tryCtx, cancel := context.WithTimeout(ctx, tryTimeout(path))
		err := c.once(tryCtx, method, base+path, header, body, out)
		if err != nil && ctx.Err() == nil && tryCtx.Err() != nil {
			err = fmt.Errorf("%w: %s did not answer within %s", ErrUnreachable, base, tryTimeout(path))
		}
		cancel()
		// A sealed server (--autolock) serves no secret; another may.
		if err == nil || !(retryable(err) || errors.Is(err, ErrSealed)) || ctx.Err() != nil {
			return err
		}
		best = moreTelling(best, err)
	}
	return best
}

// moreTelling keeps, of two retryable errors, the one that says more: a
// server that answered (no leader, not ready) over one that did not, so
// that "no leader" is not hidden behind "connection refused" from a server
// that is down (issue 17). Between equals, the later one.
func moreTelling(kept, err error) error {
	if kept != nil && !errors.Is(kept, ErrUnreachable) && errors.Is(err, ErrUnreachable) {
		return kept
	}
	return err
}

func (c *Client) once(ctx context.Context, method, u string, header http.Header, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, u, err)
	}
	defer resp.Body.Close()
	c.noteLeader(resp.Header)
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: reading answer from %s: %v", ErrUnreachable, u, err)
	}
	if resp.StatusCode >= 400 {
		return remoteError(method, u, resp.StatusCode, data)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, u, err)
		}
	}
	return nil
}

// remoteError is the error of an answer with status >= 400: the API's
// error body, or the raw answer when it is not one.
func remoteError(method, u string, status int, data []byte) *RemoteError {
	re := &RemoteError{Status: status}
	if json.Unmarshal(data, &re.APIError) != nil || re.APIError.Error == "" {
		re.APIError.Error = fmt.Sprintf("%s %s: HTTP %d: %s", method, u, status, strings.TrimSpace(string(data)))
	}
	return re
}

// requestTimeout bounds one try of a request that does not block;
// blocking queries get their wait on top.
const requestTimeout = 15 * time.Second

// MaxWait bounds a blocking query: the server waits at most this long.
const MaxWait = 5 * time.Minute

// tryTimeout is how long one server may take to answer path.
func tryTimeout(path string) time.Duration {
	u, err := url.Parse(path)
	if err != nil {
		return requestTimeout
	}
	if w, err := time.ParseDuration(u.Query().Get("wait")); err == nil && w > 0 {
		return min(w, MaxWait) + requestTimeout
	}
	return requestTimeout
}

// Pauses between the tries of a write. While servers answer but none can
// take it (an election, a new leader applying its log) the pause stays
// short, so that the write lands within ElectionRetryMax of the new
// leader being ready: elections are over in a second or two and each try
// costs the servers a refused request. When no server answers at all it
// grows to UnreachableRetryMax.
const (
	retryMin            = 50 * time.Millisecond
	ElectionRetryMax    = 200 * time.Millisecond
	UnreachableRetryMax = 2 * time.Second
)

// RetryDelay is the pause before the next try after err, given the last
// pause (0 before the first retry): doubling from 50ms up to
// ElectionRetryMax while a server answered (no leader, not ready), up to
// UnreachableRetryMax while none did. Agents use it too.
func RetryDelay(last time.Duration, err error) time.Duration {
	limit := ElectionRetryMax
	if errors.Is(err, ErrUnreachable) {
		limit = UnreachableRetryMax
	}
	return min(max(2*last, retryMin), limit)
}

// retryWrite repeats a write with the same idempotency key while no server
// can take it (election in progress), until ctx ends.
func (c *Client) retryWrite(ctx context.Context, fn func() error) error {
	var backoff time.Duration
	var noLeaderSince time.Time
	for {
		err := fn()
		if err == nil || !retryable(err) {
			return err
		}
		if noLeaderSince.IsZero() {
			noLeaderSince = time.Now()
		}
		if c.leaderWait > 0 && time.Since(noLeaderSince) >= c.leaderWait {
			if errors.Is(err, ErrUnreachable) {
				return fmt.Errorf("%w: gave up after %s: no server answered (last: %v)", ErrUnreachable, c.leaderWait, err)
			}
			return fmt.Errorf("%w: gave up after %s without a leader (last answer: %v); see what each server reports with `deployctl cluster status`",
				ErrNoLeader, c.leaderWait, err)
		}
		backoff = RetryDelay(backoff, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
	}
}

// Apply sends a spec (YAML) for a new revision.
func (c *Client) Apply(ctx context.Context, specYAML []byte) (ApplyOutcome, error) {
	return c.ApplyWith(ctx, ApplyBody{SpecYAML: string(specYAML)})
}

// ApplyWith sends a spec with the files it names and a scan report.
func (c *Client) ApplyWith(ctx context.Context, body ApplyBody) (ApplyOutcome, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return ApplyOutcome{}, fmt.Errorf("encode apply: %w", err)
	}
	h := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {NewID()}}
	var out ApplyOutcome
	err = c.retryWrite(ctx, func() error { return c.do(ctx, http.MethodPost, "/v1/services", h, data, &out) })
	return out, err
}

// Diff asks what an apply of body would change, storing nothing. It is a
// read: retried on another server like one.
func (c *Client) Diff(ctx context.Context, body ApplyBody) (DiffOutcome, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return DiffOutcome{}, fmt.Errorf("encode diff: %w", err)
	}
	var out DiffOutcome
	err = c.do(ctx, http.MethodPost, "/v1/services/diff", http.Header{"Content-Type": {"application/json"}}, data, &out)
	return out, err
}

// Rollback asks for a rollback of a service (to 0: the last good revision).
func (c *Client) Rollback(ctx context.Context, service string, to int) (ApplyOutcome, error) {
	return c.serviceWrite(ctx, service, "rollback", RollbackBody{To: to})
}

// Scale sets a service's replica count: a new revision of its current
// spec with that count, pinned to the same digest (unchanged when the
// count is the current one).
func (c *Client) Scale(ctx context.Context, service string, replicas int) (ApplyOutcome, error) {
	return c.serviceWrite(ctx, service, "scale", ScaleBody{Replicas: &replicas})
}

// serviceWrite posts body (JSON; nil: no body) to one of a service's write
// endpoints (/v1/services/{service}/{action}) under one idempotency key for
// every try, so that a retry after a lost answer never writes twice.
func (c *Client) serviceWrite(ctx context.Context, service, action string, body any) (ApplyOutcome, error) {
	h := http.Header{"Idempotency-Key": {NewID()}}
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return ApplyOutcome{}, fmt.Errorf("encode %s: %w", action, err)
		}
		h.Set("Content-Type", "application/json")
	}
	var out ApplyOutcome
	err := c.retryWrite(ctx, func() error {
		return c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/"+action, h, data, &out)
	})
	return out, err
}

// Remove starts removing a service.
func (c *Client) Remove(ctx context.Context, service string) error {
	return c.retryWrite(ctx, func() error {
		return c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(service), nil, nil, nil)
	})
}

// Status returns a service's status; with index > 0 it waits (up to wait)
// for a state newer than index.
func (c *Client) Status(ctx context.Context, service string, index uint64, wait time.Duration) (ServiceStatus, error) {
	q := url.Values{}
	if index > 0 {
		q.Set("index", fmt.Sprint(index))
		q.Set("wait", wait.String())
	}
	var out ServiceStatus
	err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"?"+q.Encode(), nil, nil, &out)
	return out, err
}

// Services lists every service's status.
func (c *Client) Services(ctx context.Context) ([]ServiceStatus, error) {
	var out []ServiceStatus
	err := c.do(ctx, http.MethodGet, "/v1/services", nil, nil, &out)
	return out, err
}

// History lists a service's revisions.
func (c *Client) History(ctx context.Context, service string) ([]HistoryEntry, error) {
	var out []HistoryEntry
	err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/history", nil, nil, &out)
	return out, err
}

// Cluster returns the cluster status.
func (c *Client) Cluster(ctx context.Context) (ClusterStatus, error) {
	var out ClusterStatus
	err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, &out)
	return out, err
}

// AssignmentFormDelta asks /v1/agent/assignments for an
// state.AssignmentDelta instead of the whole set.
const AssignmentFormDelta = "delta"

const assignmentsPath = "/v1/agent/assignments"

// assignmentAnswer decodes both forms of /v1/agent/assignments: a server
// of an earlier release ignores form=delta and sends the whole set.
type assignmentAnswer struct {
	state.AssignmentDelta
	Assignments []state.Assignment `json:"assignments"`
}

// Assignments long-polls a host's assignment set (for host agents): it
// answers once the set's Index is past afterIndex, or when wait ends. When
// the client holds the set at afterIndex (it answered the last call for
// host) it asks only for what changed since (state.AssignmentDelta) and
// returns the whole set all the same.
func (c *Client) Assignments(ctx context.Context, host string, afterIndex uint64, wait time.Duration) (state.AssignmentSet, error) {
	held, ok := c.held.get(host)
	base := uint64(0)
	if ok && afterIndex != 0 && held.Index == afterIndex {
		base = afterIndex
	}
	for {
		q := url.Values{"host": {host}, "index": {fmt.Sprint(afterIndex)}, "wait": {wait.String()},
			"form": {AssignmentFormDelta}, "base": {fmt.Sprint(base)}}
		var out assignmentAnswer
		if err := c.do(ctx, http.MethodGet, assignmentsPath+"?"+q.Encode(), nil, nil, &out); err != nil {
			return state.AssignmentSet{}, err
		}
		var set state.AssignmentSet
		if out.IDs == nil {
			set = state.AssignmentSet{Host: out.Host, Index: out.Index, Assignments: out.Assignments}
		} else {
			var err error
			if set, err = out.Apply(held); err != nil {
				if base == 0 {
					return state.AssignmentSet{}, fmt.Errorf("assignments of %s: %w", host, err)
				}
				// Held set and delta disagree: ask for the whole set,
				// at once (index 0 does not wait).
				base, afterIndex = 0, 0
				continue
			}
		}
		if set.Host == "" {
			set.Host = host
		}
		c.held.put(set)
		return set, nil
	}
}

// Ingress long-polls the cluster's ingress table (for host agents' proxies):
// it answers once the table's Index is past afterIndex, or when wait ends
// (with the current table). afterIndex 0 answers at once.
func (c *Client) Ingress(ctx context.Context, afterIndex uint64, wait time.Duration) (IngressTable, error) {
	q := url.Values{"index": {fmt.Sprint(afterIndex)}, "wait": {wait.String()}}
	var out IngressTable
	err := c.do(ctx, http.MethodGet, "/v1/agent/ingress?"+q.Encode(), nil, nil, &out)
	return out, err
}

// Report sends an agent's batch.
func (c *Client) Report(ctx context.Context, r state.HostReport) error {
	return c.postJSON(ctx, "/v1/agent/report", r, nil)
}

// ReportTraffic sends a host's traffic figures since its last report.
func (c *Client) ReportTraffic(ctx context.Context, r TrafficReport) error {
	return c.postJSON(ctx, "/v1/agent/traffic", r, nil)
}

// Peer asks the first server about itself (never forwarded).
func (c *Client) Peer(ctx context.Context) (PeerInfo, error) {
	var out PeerInfo
	if len(c.addrs) == 0 {
		return out, fmt.Errorf("%w: no server address", ErrUnreachable)
	}
	err := c.once(ctx, http.MethodGet, c.addrs[0]+"/v1/cluster/peer", nil, nil, &out)
	return out, err
}

// Join asks the cluster to take a server as a voter.
func (c *Client) Join(ctx context.Context, req JoinRequest) error {
	body, _ := json.Marshal(req)
	return c.do(ctx, http.MethodPost, "/v1/cluster/join", http.Header{"Content-Type": {"application/json"}}, body, nil)
}

// RemoveServer asks the cluster to drop a server, retrying while the
// leader hands leadership over (when it is the one removed).
func (c *Client) RemoveServer(ctx context.Context, id string) error {
	body, _ := json.Marshal(RemoveRequest{ID: id})
	return c.retryWrite(ctx, func() error {
		return c.do(ctx, http.MethodPost, "/v1/cluster/remove", http.Header{"Content-Type": {"application/json"}}, body, nil)
	})
}

// Hosts lists every host with its availability and replicas.
func (c *Client) Hosts(ctx context.Context) ([]HostView, error) {
	var out []HostView
	err := c.do(ctx, http.MethodGet, "/v1/hosts", nil, nil, &out)
	return out, err
}

// Host reads one host.
func (c *Client) Host(ctx context.Context, id string) (HostView, error) {
	var out HostView
	err := c.do(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// SetHostAvailability drains (drain: true) or activates a host. Both are
// idempotent, so a retry after a lost answer is harmless.
func (c *Client) SetHostAvailability(ctx context.Context, id string, drain bool) (HostView, error) {
	action := "activate"
	if drain {
		action = "drain"
	}
	var out HostView
	err := c.retryWrite(ctx, func() error {
		return c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(id)+"/"+action, nil, nil, &out)
	})
	return out, err
}

// RemoveHost forgets a host that is down and holds no replica.
func (c *Client) RemoveHost(ctx context.Context, id string) error {
	return c.retryWrite(ctx, func() error {
		return c.do(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(id), nil, nil, nil)
	})
}

// Policy reads the cluster policy.
func (c *Client) Policy(ctx context.Context) (*policy.Policy, error) {
	var out policy.Policy
	err := c.do(ctx, http.MethodGet, "/v1/policy", nil, nil, &out)
	return &out, err
}

// SetPolicy stores a policy; p.Version must be the version last read.
func (c *Client) SetPolicy(ctx context.Context, p *policy.Policy) (int, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return 0, fmt.Errorf("encode policy: %w", err)
	}
	var out struct {
		Version int `json:"version"`
	}
	err = c.retryWrite(ctx, func() error {
		return c.do(ctx, http.MethodPut, "/v1/policy", http.Header{"Content-Type": {"application/json"}}, body, &out)
	})
	return out.Version, err
}

// postJSON sends v as a JSON body and decodes the answer into out.
func (c *Client) postJSON(ctx context.Context, path string, v, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return c.do(ctx, http.MethodPost, path, http.Header{"Content-Type": {"application/json"}}, body, out)
}

// Outdated lists the services whose tag moved.
func (c *Client) Outdated(ctx context.Context) (OutdatedReport, error) {
	var out OutdatedReport
	err := c.do(ctx, http.MethodGet, "/v1/outdated", nil, nil, &out)
	return out, err
}

// Promote ends the canary of a service's rollout now; the rollout goes
// on with its next batch. A service without a running canary is a
// conflict (ErrConflict) saying why.
func (c *Client) Promote(ctx context.Context, service string) (ApplyOutcome, error) {
	return c.serviceWrite(ctx, service, "promote", nil)
}

// Refresh re-resolves a service's image and rolls a new digest out.
func (c *Client) Refresh(ctx context.Context, service string) (ApplyOutcome, error) {
	return c.serviceWrite(ctx, service, "refresh", nil)
}

// Audit sends an agent's audit.
func (c *Client) Audit(ctx context.Context, a audit.HostAudit) error {
	return c.postJSON(ctx, "/v1/agent/audit", a, nil)
}

// AuditReport reads every host's latest audit.
func (c *Client) AuditReport(ctx context.Context) (AuditReport, error) {
	var out AuditReport
	err := c.do(ctx, http.MethodGet, "/v1/audit", nil, nil, &out)
	return out, err
}

// NewID returns a random 128-bit hex ID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RaftHealthOf asks the server at addr (host:port, or a URL) about its raft
// state. It is never forwarded or retried elsewhere: it is that server's
// answer or the reason there is none.
func (c *Client) RaftHealthOf(ctx context.Context, addr string) (RaftHealth, error) {
	if !strings.Contains(addr, "://") {
		addr = c.scheme + addr
	}
	var out RaftHealth
	err := c.once(ctx, http.MethodGet, strings.TrimRight(addr, "/")+"/v1/cluster/raft", nil, nil, &out)
	return out, err
}

// Addrs are the server addresses the client was given (as URLs).
func (c *Client) Addrs() []string { return c.addrs }
