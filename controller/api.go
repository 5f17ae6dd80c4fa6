package controller

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/controller/ui"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// maxBody bounds every request body; a spec is a few KiB.
const maxBody = 1 << 20

// maxWait bounds a blocking query; the client allows for it.
const maxWait = wire.MaxWait

// Membership is what the cluster endpoints need of the raft node.
type Membership interface {
	Servers(ctx context.Context) ([]RaftServer, error)
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context) error
	HadState() bool
}

// RaftServer is one member of the raft configuration.
type RaftServer struct {
	ID, Address   string
	Voter, Leader bool
}

// APIConfig wires an API.
type APIConfig struct {
	Controller *Controller
	// Membership is nil where there is no cluster to manage (tests).
	Membership Membership
	// Self is this server's identity and addresses.
	Self state.ServerInfo
	// Forward sends requests to the leader's API; it carries the node's
	// client certificate in cluster mode. nil: http.DefaultClient.
	Forward *http.Client
	// AgentTLS is what this server presents to agents' hop listeners to
	// read logs (pki.ProxyConfig with its server certificate); nil: plain
	// HTTP (dev).
	AgentTLS *tls.Config
	// Scheme of the servers' APIs: "http" (dev) or "https".
	Scheme string
	// Health is this server's raft state for GET /v1/cluster/raft (nil:
	// not clustered).
	Health RaftHealth
	// Metrics serves GET /metrics (the process's Prometheus registry) to
	// any caller with a role; nil: no such route.
	Metrics http.Handler
}

// API serves the controller over HTTP/JSON under /v1/.
type API struct {
	c         *Controller
	cfg       APIConfig
	reporters *hostReporters
	// agents reads logs from the agents (logs.go) over agentScheme.
	agents      *http.Client
	agentScheme string
}

// hostReporters remembers, per host, the caller its last report came
// from, for `cluster status`. It is this server's memory only: it is an
// observation like the heartbeats, not state to replicate.
type hostReporters struct {
	mu sync.Mutex
	m  map[string]string
}

func (h *hostReporters) note(host string, c Caller) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[host] = c.String()
}

func (h *hostReporters) of(host string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[host]
}

// NewAPI returns the HTTP API of a controller.
func NewAPI(cfg APIConfig) *API {
	if cfg.Forward == nil {
		cfg.Forward = http.DefaultClient
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	agents, scheme := agentClient(cfg.AgentTLS)
	return &API{c: cfg.Controller, cfg: cfg, reporters: &hostReporters{m: map[string]string{}}, agents: agents, agentScheme: scheme}
}

// Handler returns the routes. Every request is authenticated first (see
// authenticate) and each route names the roles that may call it:
//
//	operator  everything but the agent endpoints and join
//	server    health, peer, join (itself only), remove (itself only) and
//	          the agent endpoints for the host named like the node
//	agent     health and the agent endpoints for its own host
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	const (
		op    = pki.RoleOperator
		srv   = pki.RoleServer
		agent = pki.RoleAgent
	)
	// Answered by this server itself.
	mux.HandleFunc("GET /v1/health", a.allow(a.health, op, srv, agent))
	mux.HandleFunc("GET /v1/cluster/peer", a.allow(a.peer, op, srv))
	mux.HandleFunc("GET /v1/cluster/raft", a.allow(a.raftHealth, op, srv))
	// Unlock gives this very server the key-encryption key (--autolock, or
	// the cluster's new key after a rotation): never forwarded.
	mux.HandleFunc("POST /v1/cluster/unlock", a.allow(a.unlock, op))
	if a.cfg.Metrics != nil {
		mux.HandleFunc("GET /metrics", a.allow(a.cfg.Metrics.ServeHTTP, op, srv, agent))
	}
	// Answered by the leader: any other server forwards them. allow runs
	// before forwarding and again on the leader.
	lead := func(h http.HandlerFunc, roles ...pki.Role) http.HandlerFunc {
		return a.allow(a.onLeader(h), roles...)
	}
	mux.HandleFunc("GET /v1/cluster", lead(a.cluster, op))
	mux.HandleFunc("POST /v1/cluster/join", lead(a.join, srv))
	mux.HandleFunc("POST /v1/cluster/remove", lead(a.removeServer, op, srv))
	mux.HandleFunc("POST /v1/cluster/secrets-key", lead(a.unsealed(a.rotateKey), op))
	mux.HandleFunc("GET /v1/hosts", lead(a.listHosts, op))
	mux.HandleFunc("GET /v1/hosts/{id}", lead(a.getHost, op))
	mux.HandleFunc("POST /v1/hosts/{id}/drain", lead(a.drainHost(true), op))
	mux.HandleFunc("POST /v1/hosts/{id}/activate", lead(a.drainHost(false), op))
	mux.HandleFunc("DELETE /v1/hosts/{id}", lead(a.removeHost, op))
	mux.HandleFunc("GET /v1/services", lead(a.listServices, op))
	mux.HandleFunc("POST /v1/services", lead(a.applyService, op))
	mux.HandleFunc("POST /v1/services/diff", lead(a.diffService, op))
	mux.HandleFunc("GET /v1/services/{name}", lead(a.getService, op))
	mux.HandleFunc("DELETE /v1/services/{name}", lead(a.removeService, op))
	mux.HandleFunc("GET /v1/services/{name}/history", lead(a.getHistory, op))
	mux.HandleFunc("GET /v1/services/{name}/ps", lead(a.getPs, op))
	mux.HandleFunc("GET /v1/services/{name}/logs", a.allow(a.getLogs, op)) // answered here: logs.go
	mux.HandleFunc("GET /v1/events", lead(a.getEvents, op))
	mux.HandleFunc("POST /v1/services/{name}/rollback", lead(a.rollbackService, op))
	mux.HandleFunc("POST /v1/services/{name}/scale", lead(a.scaleService, op))
	mux.HandleFunc("POST /v1/services/{name}/promote", lead(a.promoteService, op))
	mux.HandleFunc("GET /v1/policy", lead(a.getPolicy, op))
	mux.HandleFunc("PUT /v1/policy", lead(a.putPolicy, op))
	mux.HandleFunc("GET /v1/outdated", lead(a.getOutdated, op))
	mux.HandleFunc("POST /v1/services/{name}/refresh", lead(a.refreshService, op))
	mux.HandleFunc("GET /v1/audit", lead(a.getAudit, op))
	mux.HandleFunc("GET /v1/secrets", lead(a.listSecrets, op))
	mux.HandleFunc("POST /v1/secrets/{name}", a.allow(a.unsealed(a.onLeader(a.createSecret)), op))
	mux.HandleFunc("GET /v1/secrets/{name}", lead(a.getSecret, op))
	mux.HandleFunc("DELETE /v1/secrets/{name}", lead(a.removeSecret, op))
	mux.HandleFunc("GET /v1/snapshot", lead(a.snapshot, op))
	// The agent endpoints: the handler also checks the host named in the
	// query or body against the certificate (speaksFor).
	mux.HandleFunc("POST /v1/agent/audit", lead(a.postAudit, agent, srv))
	// Any server answers an agent's long-poll from its own copy of the
	// log once it holds what the agent holds (assignments).
	mux.HandleFunc("GET /v1/agent/assignments", a.allow(a.assignments, agent, srv))
	mux.HandleFunc("POST /v1/agent/report", lead(a.report, agent, srv))
	mux.HandleFunc("POST /v1/agent/traffic", lead(a.postTraffic, agent, srv))
	mux.HandleFunc("GET /v1/agent/ingress", lead(a.ingress, agent, srv))
	mux.HandleFunc("GET /v1/agent/secrets", a.allow(a.unsealed(a.onLeader(a.agentSecrets)), agent, srv))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s; the API lives under /v1/", r.Method, r.URL.Path))
	})
	// The dashboard (controller/ui), for operators: its pages read and
	// write through this very handler as the page's caller.
	var self http.Handler
	mux.HandleFunc(ui.Prefix, a.allow(a.dashboard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { self.ServeHTTP(w, r) })), op))
	self = a.authenticate(mux)
	return a.c.cfg.Metrics.instrument(mux, a.browserGuard(self))
}

// dashboard is the web UI over api; a template error (a bug caught by the
// ui tests) is answered on its pages.
func (a *API) dashboard(api http.Handler) http.HandlerFunc {
	d, err := ui.New(ui.Config{API: api, Logger: a.c.log.Named("ui")})
	if err != nil {
		return func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
	return d.ServeHTTP
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, wire.APIError{Error: msg, Code: kind})
}

// writeErr answers err with the code, status and details the wire table
// gives it (internal/wire): the same table the client reads answers with.
func (a *API) writeErr(w http.ResponseWriter, err error) {
	status, body := wire.Body(err)
	if body.Code == wire.CodeNotLeader {
		_, body.Leader = a.c.cfg.Raft.Leader()
	}
	writeJSON(w, status, body)
}

// waitFor blocks until the index of what watch returns (a state version,
// the ingress table) passes index, or wait elapses, and returns what to
// answer from.
func waitFor[T any](ctx context.Context, index uint64, wait time.Duration, watch func() (T, <-chan struct{}), idx func(T) uint64) T {
	t, ch := watch()
	if index == 0 || wait == 0 || idx(t) > index {
		return t
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for idx(t) <= index {
		select {
		case <-ctx.Done():
			return t
		case <-timer.C:
			return t
		case <-ch:
			t, ch = watch()
		}
	}
	return t
}

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	id, _ := a.c.cfg.Raft.Leader()
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_id": a.c.cfg.Raft.ID(), "leader": id})
}

func (a *API) cluster(w http.ResponseWriter, r *http.Request) {
	view := a.c.cfg.Store.View()
	leader, _ := a.c.cfg.Raft.Leader()
	out := wire.ClusterStatus{NodeID: a.c.cfg.Raft.ID(), Leader: leader, Nodes: []wire.NodeInfo{}, Hosts: []wire.HostInfo{}, Index: view.Index()}
	if leader == "" {
		writeError(w, http.StatusServiceUnavailable, "no_leader", ErrNoLeader.Error())
		return
	}
	if a.c.cfg.Raft.IsLeader() && !a.c.Ready() {
		a.writeErr(w, ErrNotReady)
		return
	}
	if a.cfg.Membership != nil {
		nodes, err := a.nodes(r.Context(), view)
		if err != nil {
			a.writeErr(w, err)
			return
		}
		out.Nodes = nodes
	}
	for _, h := range view.Hosts() {
		n := 0
		for _, rep := range view.HostReplicas(h.ID) {
			if rep.Desired == state.DesiredRunning {
				n++
			}
		}
		out.Hosts = append(out.Hosts, wire.HostInfo{ID: h.ID, Labels: h.Labels, State: h.State, Replicas: n, SeenAt: h.SeenAt, Engine: h.Engine,
			Identity: a.reporters.of(h.ID), ProxyAddr: h.ProxyAddr, ProxyProblems: h.ProxyProblems, Availability: availabilityOf(h)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) listServices(w http.ResponseWriter, r *http.Request) {
	view := a.c.cfg.Store.View()
	judge := connectionJudgeOf(view)
	out := []wire.ServiceStatus{}
	for _, svc := range view.Services() {
		out = append(out, a.c.withTraffic(view, serviceSummary(view, judge, svc).ServiceStatus))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) applyService(w http.ResponseWriter, r *http.Request) {
	req, ok := a.readApply(w, r)
	if !ok {
		return
	}
	out, err := a.c.ApplyWith(r.Context(), req)
	if err != nil {
		a.c.noteRefusal(req.Spec.Service, err)
		a.writeErr(w, err)
		return
	}
	writeApplyOutcome(w, out)
}

// readApply reads the body of an apply or a diff: a wire.ApplyBody as
// JSON, or the spec's YAML alone. On false it has answered.
func (a *API) readApply(w http.ResponseWriter, r *http.Request) (ApplyRequest, bool) {
	mt, ok := requestMediaType(w, r)
	if !ok {
		return ApplyRequest{}, false
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return ApplyRequest{}, false
	}
	body, ok := readBody(w, r)
	if !ok {
		return ApplyRequest{}, false
	}
	var req wire.ApplyBody
	switch {
	case mt == mediaJSON:
		if err := unmarshalStrict(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
			return ApplyRequest{}, false
		}
	case mt == "" || slices.Contains(yamlMediaTypes, mt):
		req.SpecYAML = string(body)
	default:
		unsupportedMedia(w, r.Header.Get("Content-Type"), append([]string{mediaJSON + " (an wire.ApplyBody)"}, yamlMediaTypes...)...)
		return ApplyRequest{}, false
	}
	if req.IfRevision != nil && *req.IfRevision < 0 {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("if_revision: %d is not a revision number; send the current revision, or 0 for a service that must not exist yet", *req.IfRevision))
		return ApplyRequest{}, false
	}
	spec, err := specs.Parse([]byte(req.SpecYAML))
	if err != nil {
		a.writeErr(w, err)
		return ApplyRequest{}, false
	}
	spec.Security.SeccompProfile = req.SeccompProfile
	return ApplyRequest{Spec: spec, IdempotencyKey: key, ScanReport: req.ScanReport, Force: req.Force, IfRevision: req.IfRevision}, true
}

func (a *API) getService(w http.ResponseWriter, r *http.Request) {
	name, ok := pathService(w, r)
	if !ok {
		return
	}
	index, wait, ok := blockingParams(w, r)
	if !ok {
		return
	}
	view := waitFor(r.Context(), index, wait, a.c.cfg.Store.Watch, (*state.Tables).Index)
	svc, found := view.Service(name)
	if !found {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("service %q not found; `deployctl services` lists them", name))
		return
	}
	writeJSON(w, http.StatusOK, a.c.withTraffic(view, serviceStatus(view, connectionJudgeOf(view), svc)))
}

func (a *API) getHistory(w http.ResponseWriter, r *http.Request) {
	name, ok := pathService(w, r)
	if !ok {
		return
	}
	view := a.c.cfg.Store.View()
	svc, found := view.Service(name)
	if !found {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("service %q not found", name))
		return
	}
	withSpecs := false
	if v := r.URL.Query().Get("spec"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("spec=%q: want true or false (1 or 0)", v))
			return
		}
		withSpecs = b
	}
	writeJSON(w, http.StatusOK, history(view, svc, withSpecs))
}

func (a *API) rollbackService(w http.ResponseWriter, r *http.Request) {
	name, key, ok := serviceWriteParams(w, r)
	if !ok {
		return
	}
	var body wire.RollbackBody
	if !readJSON(w, r, &body, true) {
		return
	}
	if body.To < 0 {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("to: %d is not a revision number; send a positive number, or 0 (or none) for the last good revision", body.To))
		return
	}
	out, err := a.c.Rollback(r.Context(), RollbackRequest{Service: name, To: body.To, IdempotencyKey: key})
	if err != nil {
		a.c.noteRefusal(name, err)
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) removeService(w http.ResponseWriter, r *http.Request) {
	name, ok := pathService(w, r)
	if !ok {
		return
	}
	if err := a.c.Remove(r.Context(), name); err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"service": name, "state": state.ServiceRemoving})
}

// assignments answers an agent's long-poll for its host's set. The leader
// answers; so does a follower that knows a leader, once the agent holds
// an index (issue 12: spreading 1,000 agents' polls over the servers,
// Nomad's stale reads of a client's allocations; waitForHost says when it
// hands the poll to the leader after all).
// What a follower answers is the state at a point of the log at or past
// what the agent already acted on, never before it: the agent's index is
// the guard, as Nomad's MinQueryIndex. A first poll (index 0) goes to the
// leader: a follower still replaying its log would hand out an old set
// and the agent would remove what it runs. No leader check (VerifyLeader)
// either way: an answer from a deposed leader is a true past state too.
func (a *API) assignments(w http.ResponseWriter, r *http.Request) {
	host := r.URL.Query().Get("host")
	if !hostParam(w, "host", host) {
		return
	}
	if !speaksFor(w, r, host) {
		return
	}
	index, wait, ok := blockingParams(w, r)
	if !ok {
		return
	}
	leading := a.c.Ready() && a.c.cfg.Raft.IsLeader()
	if leading {
		a.nameSelfLeader(w)
	} else {
		leaderID, _ := a.c.cfg.Raft.Leader()
		if index == 0 || leaderID == "" || leaderID == a.c.cfg.Raft.ID() {
			// A partial state would tell the agent to remove what it runs.
			a.forwardOnce(w, r)
			return
		}
	}
	view, err := a.waitForHost(r.Context(), host, index, wait, leading)
	switch {
	case errors.Is(err, errBehind):
		a.forwardOnce(w, r)
		return
	case err != nil:
		a.writeErr(w, err)
		return
	}
	// form=delta (agents since issue 12): each revision once, only the
	// replicas written after base, the IDs of the rest. Without it, the
	// whole set, for agents of earlier releases.
	if r.URL.Query().Get("form") == wire.AssignmentFormDelta {
		base, ok := uintParam(w, r, "base")
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, view.AssignmentDelta(host, base))
		return
	}
	writeJSON(w, http.StatusOK, view.Assignments(host))
}

// errBehind: a follower's log stayed behind the index an agent holds for
// a second; the leader answers instead.
var errBehind = errors.New("this server's log is behind the agent's index")

// waitForHost waits for host's assignments to pass index (or wait to end).
// A follower waits on its own log, which may trail the index the agent
// got from the leader by a few entries: forwarding at once would keep an
// agent on the leader for good under load, each answer a little ahead of
// the follower. Every second it looks whether it still knows a leader (a
// follower cut off from the others answers "no leader" instead of holding
// the agent on a log that no longer grows) and whether it is still behind
// the agent's index (a follower catching up after a restart: errBehind).
func (a *API) waitForHost(ctx context.Context, host string, index uint64, wait time.Duration, leading bool) (*state.Tables, error) {
	watch := func() (*state.Tables, <-chan struct{}) { return a.c.cfg.Store.WatchHost(host) }
	idx := func(t *state.Tables) uint64 { return t.HostIndex(host) }
	if leading {
		return waitFor(ctx, index, wait, watch, idx), nil
	}
	deadline := time.Now().Add(wait)
	for {
		view := waitFor(ctx, index, min(time.Until(deadline), time.Second), watch, idx)
		if idx(view) > index || ctx.Err() != nil {
			return view, nil
		}
		if id, _ := a.c.cfg.Raft.Leader(); id == "" {
			return nil, ErrNoLeader
		}
		if view.Index() < index {
			return nil, errBehind
		}
		if time.Until(deadline) <= 0 {
			return view, nil
		}
	}
}

// ingress answers the cluster's ingress table to the hosts' proxies. It
// names no host: every host routes to every service, so any agent (or a
// server's local agent) may read it; the operator may not, as with every
// /v1/agent/ route.
func (a *API) ingress(w http.ResponseWriter, r *http.Request) {
	index, wait, ok := blockingParams(w, r)
	if !ok {
		return
	}
	table, err := a.c.Ingress(r.Context(), index, wait)
	if err != nil {
		// Not ready: a partial state would withdraw routes that exist.
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, table)
}

func (a *API) report(w http.ResponseWriter, r *http.Request) {
	var rep state.HostReport
	if !decodeJSON(w, r, &rep) || !hostParam(w, "host", rep.Host) {
		return
	}
	if rep.Host == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "host: required")
		return
	}
	if !speaksFor(w, r, rep.Host) {
		return
	}
	if err := a.c.Report(r.Context(), rep); err != nil {
		a.writeErr(w, err)
		return
	}
	if caller, ok := CallerOf(r.Context()); ok {
		a.reporters.note(rep.Host, caller)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := a.c.Policy()
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// putPolicy stores a policy (JSON, trust keys' PEM included). The Version
// field is the version the client read: a concurrent change wins a 409.
func (a *API) putPolicy(w http.ResponseWriter, r *http.Request) {
	var p policy.Policy
	if !decodeJSON(w, r, &p) {
		return
	}
	v, err := a.c.SetPolicy(r.Context(), &p, p.Version)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"version": v})
}

// writeApplyOutcome answers an apply: 201 for a new revision, 200 when the
// spec (or the refreshed tag) was unchanged.
func writeApplyOutcome(w http.ResponseWriter, out wire.ApplyOutcome) {
	code := http.StatusCreated
	if out.Unchanged {
		code = http.StatusOK
	}
	writeJSON(w, code, out)
}

// availabilityOf is a host's availability as the API spells it.
func availabilityOf(h state.Host) string {
	if h.Draining() {
		return state.HostDrain
	}
	return state.HostActive
}

func (a *API) listHosts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.c.Hosts())
}

func (a *API) getHost(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !hostParam(w, "host", id) {
		return
	}
	h, err := a.c.Host(id)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// drainHost answers `host drain` (drain true) and `host activate`.
func (a *API) drainHost(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !hostParam(w, "host", id) {
			return
		}
		h, err := a.c.SetHostAvailability(r.Context(), id, drain)
		if err != nil {
			a.writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, h)
	}
}

func (a *API) removeHost(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !hostParam(w, "host", id) {
		return
	}
	if err := a.c.RemoveHost(r.Context(), id); err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"host": id, "state": "removed"})
}
