package controller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// forwardedHeader marks a request one server forwarded to the leader; a
// server that receives one and is not the leader refuses it instead of
// forwarding again, so a request never loops between servers.
const forwardedHeader = "X-Deployctl-Forwarded-By"

// onLeader runs h on the ready leader and forwards the request to the
// leader from any other server. Reads on the leader first confirm with a
// quorum that it still leads (raft VerifyLeader), so an answer is never
// from a deposed leader: every read through the API is linearizable with
// respect to the writes acknowledged before it started.
func (a *API) onLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Ready lags a lost leadership by up to a loop turn: raft's own
		// state decides, so a deposed leader does not take a write (and
		// resolve its image) while no one leads (found by issue 17's e2e).
		if a.c.Ready() && a.c.cfg.Raft.IsLeader() {
			if r.Method == http.MethodGet {
				ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
				err := a.c.cfg.Raft.VerifyLeader(ctx)
				cancel()
				if err != nil {
					a.writeErr(w, translate(err))
					return
				}
			}
			a.nameSelfLeader(w)
			h(w, r)
			return
		}
		a.forwardOnce(w, r)
	}
}

// forwardOnce forwards r to the leader, unless another server already
// did: one hop only, so a forwarded request that lands on a server that
// does not lead either gets "not the leader" rather than a second hop.
func (a *API) forwardOnce(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(forwardedHeader) != "" {
		a.writeErr(w, a.c.notLeader())
		return
	}
	a.forward(w, r)
}

// nameSelfLeader tells the caller that this server leads
// (wire.LeaderAPIHeader).
func (a *API) nameSelfLeader(w http.ResponseWriter) {
	if a.cfg.Self.APIAddr != "" {
		w.Header().Set(wire.LeaderAPIHeader, a.cfg.Self.APIAddr)
	}
}

// forward proxies a request to the leader's API.
func (a *API) forward(w http.ResponseWriter, r *http.Request) {
	leaderID, _ := a.c.cfg.Raft.Leader()
	if leaderID == "" {
		a.writeErr(w, ErrNoLeader)
		return
	}
	if leaderID == a.c.cfg.Raft.ID() {
		a.writeErr(w, ErrNotReady)
		return
	}
	info, ok := a.c.cfg.Store.View().Server(leaderID)
	if !ok {
		a.writeErr(w, fmt.Errorf("%w: the API address of leader %s is not known yet; retry", ErrNoLeader, leaderID))
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, a.cfg.Scheme+"://"+info.APIAddr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		a.writeErr(w, fmt.Errorf("%w: the API address %q of leader %s is unusable: %v", ErrNoLeader, info.APIAddr, leaderID, err))
		return
	}
	for _, k := range []string{"Content-Type", "Idempotency-Key"} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(forwardedHeader, a.c.cfg.Raft.ID())
	// The leader sees this server's certificate on the connection; the
	// caller it acts for goes in callerHeader, which the leader believes
	// from server certificates only. A dev caller is never forwarded (a
	// dev server is alone), but refuse rather than forward it as this
	// server.
	caller, ok := CallerOf(r.Context())
	if !ok || caller.Dev {
		a.writeErr(w, fmt.Errorf("%w: a request without a certificate is not forwarded", ErrNotReady))
		return
	}
	req.Header.Set(callerHeader, caller.Identity.String())
	resp, err := a.cfg.Forward.Do(req)
	if err != nil {
		a.writeErr(w, fmt.Errorf("%w: forwarding to leader %s at %s: %v", ErrNoLeader, leaderID, info.APIAddr, err))
		return
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	// The caller may go to the leader itself next time.
	w.Header().Set(wire.LeaderAPIHeader, info.APIAddr)
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (a *API) peer(w http.ResponseWriter, r *http.Request) {
	leader, _ := a.c.cfg.Raft.Leader()
	had := false
	if a.cfg.Membership != nil {
		had = a.cfg.Membership.HadState()
	}
	writeJSON(w, http.StatusOK, wire.PeerInfo{ID: a.cfg.Self.ID, RaftAddr: a.cfg.Self.RaftAddr, APIAddr: a.cfg.Self.APIAddr, HadState: had, Leader: leader})
}

// join adds a voter and records its addresses. Both steps are idempotent,
// so a server calls join at every start and after every election.
func (a *API) join(w http.ResponseWriter, r *http.Request) {
	var req wire.JoinRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.ID == "" || req.RaftAddr == "" || req.APIAddr == "" {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, "id, raft_addr and api_addr are required")
		return
	}
	// Only the node itself joins: its server certificate names it.
	if caller, _ := CallerOf(r.Context()); !caller.Dev && (caller.Role != pki.RoleServer || caller.Name != req.ID) {
		writeError(w, http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf(
			"joining as node %q needs the server certificate of %q; this request came with the certificate of %s", req.ID, req.ID, caller))
		return
	}
	if a.cfg.Membership == nil {
		a.writeErr(w, ErrNotClustered)
		return
	}
	if err := a.c.Join(r.Context(), a.cfg.Membership, req); err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// Join makes a server a voter and records its addresses. A join that
// would move an existing member (same id, another raft or API address) or
// take another member's address is refused with ErrConflict: otherwise a
// join could redirect where every server forwards (the leader's API
// address) or split a member's raft traffic. Such a member is removed
// first (cluster remove), then joins again.
func (c *Controller) Join(ctx context.Context, m Membership, req wire.JoinRequest) error {
	servers, err := m.Servers(ctx)
	if err != nil {
		return fmt.Errorf("read the raft configuration: %w", translate(err))
	}
	view := c.cfg.Store.View()
	for _, s := range servers {
		info, registered := view.Server(s.ID)
		switch {
		case s.ID == req.ID && s.Address != req.RaftAddr:
			return fmt.Errorf("%w: node %s is a member with raft address %s, not %s: remove it first (deployctl cluster remove %s), then let it join again",
				ErrConflict, req.ID, s.Address, req.RaftAddr, req.ID)
		case s.ID == req.ID && registered && info.APIAddr != req.APIAddr:
			return fmt.Errorf("%w: node %s is a member with API address %s, not %s: remove it first (deployctl cluster remove %s), then let it join again",
				ErrConflict, req.ID, info.APIAddr, req.APIAddr, req.ID)
		case s.ID != req.ID && s.Address == req.RaftAddr:
			return fmt.Errorf("%w: raft address %s belongs to member %s: remove %s first or give node %s its own address",
				ErrConflict, req.RaftAddr, s.ID, s.ID, req.ID)
		case s.ID != req.ID && registered && info.APIAddr == req.APIAddr:
			return fmt.Errorf("%w: API address %s belongs to member %s: remove %s first or give node %s its own address",
				ErrConflict, req.APIAddr, s.ID, s.ID, req.ID)
		}
	}
	if req.Unlocking {
		if want, source := expectedKeyID(view, req.ID); want != "" && want != req.SecretsKeyID {
			return fmt.Errorf("%w: the key given to %s has id %s, but %s key %s; it stays sealed", ErrWrongKey, req.ID, req.SecretsKeyID, source, want)
		}
	}
	if err := m.AddVoter(ctx, req.ID, req.RaftAddr); err != nil {
		return fmt.Errorf("add voter %s: %w", req.ID, translate(err))
	}
	cur, ok := c.cfg.Store.View().Server(req.ID)
	if ok && cur.RaftAddr == req.RaftAddr && cur.APIAddr == req.APIAddr && cur.Version == req.Version && cur.SecretsKeyID == req.SecretsKeyID && cur.Sealed == req.Sealed {
		return nil
	}
	_, err = c.apply(ctx, raftstore.CmdRegisterServer, state.RegisterServerCmd{Server: state.ServerInfo{
		ID: req.ID, RaftAddr: req.RaftAddr, APIAddr: req.APIAddr, Version: req.Version, SecretsKeyID: req.SecretsKeyID, Sealed: req.Sealed}})
	return err
}

func (a *API) removeServer(w http.ResponseWriter, r *http.Request) {
	var req wire.RemoveRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.ID == "" {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, "id is required")
		return
	}
	// An operator removes any server; a server only itself.
	if caller, _ := CallerOf(r.Context()); caller.Role == pki.RoleServer && caller.Name != req.ID {
		writeError(w, http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf(
			"removing node %q needs the operator role or the server certificate of %q; this request came with the certificate of %s", req.ID, req.ID, caller))
		return
	}
	if a.cfg.Membership == nil {
		a.writeErr(w, ErrNotClustered)
		return
	}
	if req.ID == a.c.cfg.Raft.ID() {
		// The leader cannot remove itself safely: hand leadership over and
		// let the client retry on the new leader. With no other voter
		// there is no one to hand over to.
		servers, err := a.cfg.Membership.Servers(r.Context())
		if err != nil {
			a.writeErr(w, translate(err))
			return
		}
		if !slices.ContainsFunc(servers, func(s RaftServer) bool { return s.Voter && s.ID != req.ID }) {
			a.writeErr(w, fmt.Errorf("%w: %s is the cluster's only voter; it cannot be removed (add another server first)", ErrConflict, req.ID))
			return
		}
		if err := a.cfg.Membership.TransferLeadership(r.Context()); err != nil {
			a.writeErr(w, translate(err))
			return
		}
		a.writeErr(w, fmt.Errorf("%w: leadership handed over before removing this server; retry", ErrNotLeader))
		return
	}
	if err := a.cfg.Membership.RemoveServer(r.Context(), req.ID); err != nil {
		a.writeErr(w, translate(err))
		return
	}
	if _, err := a.c.apply(r.Context(), raftstore.CmdDeregisterServer, state.DeregisterServerCmd{ID: req.ID}); err != nil {
		a.writeErr(w, err)
		return
	}
	// A server that left stops being a host too (its local agent reports
	// as host = node id): drained now, forgotten once down and empty.
	a.c.retireHost(r.Context(), req.ID)
	writeJSON(w, http.StatusOK, req)
}

// nodes lists the raft servers with their health: the leader is healthy,
// and another server is healthy when its API answers /v1/health now.
func (a *API) nodes(ctx context.Context, view *state.Tables) ([]wire.NodeInfo, error) {
	servers, err := a.cfg.Membership.Servers(ctx)
	if err != nil {
		return nil, translate(err)
	}
	out := make([]wire.NodeInfo, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		role := "follower"
		if s.Leader {
			role = "leader"
		}
		out[i] = wire.NodeInfo{ID: s.ID, Address: s.Address, Role: role, Voter: s.Voter, Healthy: s.ID == a.c.cfg.Raft.ID(),
			Identity: pki.Identity{Role: pki.RoleServer, Name: s.ID}.String()}
		info, ok := view.Server(s.ID)
		if out[i].Healthy || !ok {
			continue
		}
		out[i].APIAddr = info.APIAddr
		wg.Add(1)
		go func(n *wire.NodeInfo, addr string) {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(pctx, http.MethodGet, a.cfg.Scheme+"://"+addr+"/v1/health", nil)
			resp, err := a.cfg.Forward.Do(req)
			if err == nil {
				resp.Body.Close()
				n.Healthy = resp.StatusCode == http.StatusOK
			}
		}(&out[i], info.APIAddr)
	}
	wg.Wait()
	clusterKey := view.SecretsKeyID()
	for i := range out {
		if info, ok := view.Server(out[i].ID); ok {
			out[i].APIAddr = info.APIAddr
			out[i].Secrets = secretsNote(info, clusterKey)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
