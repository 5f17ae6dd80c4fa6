package controller

import (
	"net/http"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
)

// RaftHealth is what GET /v1/cluster/raft needs of the raft node: its own
// state, known without a leader.
type RaftHealth interface {
	Health() raftstore.Health
}

// raftHealth answers this server's own raft state, never forwarded: with no
// leader it is what `cluster status` shows for each server it reaches.
func (a *API) raftHealth(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Health == nil {
		a.writeErr(w, ErrNotClustered)
		return
	}
	h := a.cfg.Health.Health()
	out := wire.RaftHealth{
		ID: a.cfg.Self.ID, APIAddr: a.cfg.Self.APIAddr, RaftAddr: a.cfg.Self.RaftAddr,
		State: strings.ToLower(h.State), Term: h.Term, Leader: h.LeaderID,
		LastLogIndex: h.LastLogIndex, CommitIndex: h.CommitIndex, AppliedIndex: h.AppliedIndex,
		Members: []wire.Member{},
	}
	if !h.LastContact.IsZero() {
		ago := max(time.Since(h.LastContact), 0).Seconds()
		out.LastContactSeconds = &ago
	}
	if a.cfg.Membership != nil {
		servers, err := a.cfg.Membership.Servers(r.Context())
		if err != nil {
			a.writeErr(w, translate(err))
			return
		}
		view := a.c.cfg.Store.View()
		for _, s := range servers {
			m := wire.Member{ID: s.ID, RaftAddr: s.Address}
			if info, ok := view.Server(s.ID); ok {
				m.APIAddr = info.APIAddr
			}
			out.Members = append(out.Members, m)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
