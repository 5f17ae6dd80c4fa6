package wire

import (
	"context"
	"net/http"
	"strings"
)

// RaftHealth is one server's own view of raft, GET /v1/cluster/raft:
// answered by that server itself, with or without a leader, so that
// `cluster status` can say what each server reports when there is none.
type RaftHealth struct {
	ID       string `json:"id"`
	APIAddr  string `json:"api_addr"`
	RaftAddr string `json:"raft_addr"`
	// State is follower, candidate, leader or shutdown.
	State string `json:"state"`
	Term  uint64 `json:"term"`
	// Leader is the leader this server follows, "" when it knows none.
	Leader       string `json:"leader"`
	LastLogIndex uint64 `json:"last_log_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// LastContactSeconds is how long ago it last heard from a leader; nil
	// when it never did since it started.
	LastContactSeconds *float64 `json:"last_contact_seconds"`
	// Members are the servers of its raft configuration, with the API
	// addresses it knows for them.
	Members []Member `json:"members"`
}

// Member is one server of a raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
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
