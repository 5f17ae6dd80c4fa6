package controller

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// GET /v1/cluster/raft answers the server's own raft state and the API
// addresses it knows for the members, from local state only.
func TestRaftHealthAnswersOwnState(t *testing.T) {
	n := mustStartNode(t)
	members := &fakeMembership{servers: []RaftServer{{ID: "n1", Address: n.node.Addr(), Voter: true, Leader: true}, {ID: "n2", Address: "127.0.0.9:1", Voter: true}}}
	self := state.ServerInfo{ID: "n1", RaftAddr: n.node.Addr(), APIAddr: "127.0.0.1:7070"}
	if err := n.ctrl.Join(context.Background(), members, wire.JoinRequest{ID: "n1", RaftAddr: self.RaftAddr, APIAddr: self.APIAddr}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewAPI(APIConfig{Controller: n.ctrl, Membership: members, Self: self, Health: n.node}).Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/v1/cluster/raft")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h wire.RaftHealth
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, decode %v", resp.StatusCode, err)
	}
	if h.ID != "n1" || h.State != "leader" || h.Leader != "n1" || h.Term == 0 || h.LastLogIndex == 0 || h.AppliedIndex == 0 || h.LastContactSeconds == nil {
		t.Errorf("health %+v, want n1 leading with a term, indexes and a last contact", h)
	}
	if len(h.Members) != 2 || h.Members[0].APIAddr != "127.0.0.1:7070" || h.Members[1].APIAddr != "" || h.Members[1].RaftAddr != "127.0.0.9:1" {
		t.Errorf("members %+v, want n1 with its API address and n2 without", h.Members)
	}

	// Without a Health source (no raft cluster) it says so, as a 4xx/5xx
	// the client reads, never a made-up state.
	bare := httptest.NewServer(NewAPI(APIConfig{Controller: n.ctrl, Self: self}).Handler())
	t.Cleanup(bare.Close)
	resp2, err := http.Get(bare.URL + "/v1/cluster/raft")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode == http.StatusOK {
		t.Error("answered raft health without a raft node")
	}
}
