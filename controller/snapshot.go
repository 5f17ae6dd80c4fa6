package controller

import (
	"net/http"

	"github.com/deployctl/deployctl/raftstore"
)

// termReader is the raft node's current term, for the backup's metadata
// (raftstore.Node has it; a node without it reports 0).
type termReader interface{ Term() uint64 }

// snapshot streams a backup of the state (`deployctl snapshot save`,
// issue 17). It runs on the ready leader after onLeader's VerifyLeader,
// so the state holds every write acknowledged before the request. The
// state is the FSM's current immutable version: consistent at its index
// and cheap (no raft snapshot, no lock held while it streams; writes go
// on). The file ends with its checksum, so a transfer cut short (the
// leader lost mid-way) is refused by the CLI rather than kept.
func (a *API) snapshot(w http.ResponseWriter, r *http.Request) {
	view := a.c.cfg.Store.View()
	meta := raftstore.BackupMeta{FSMVersion: raftstore.FSMVersion, Index: view.Index(), Node: a.c.cfg.Raft.ID(), Created: a.c.cfg.Now()}
	if t, ok := a.c.cfg.Raft.(termReader); ok {
		meta.Term = t.Term()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	if err := raftstore.WriteBackup(w, meta, view); err != nil {
		// The status is sent: the missing trailer tells the client.
		a.c.log.Warn("snapshot stream cut short", "error", err, "index", meta.Index)
		return
	}
	a.c.log.Info("snapshot sent", "index", meta.Index, "caller", callerName(r))
}

func callerName(r *http.Request) string {
	c, _ := CallerOf(r.Context())
	return c.String()
}
