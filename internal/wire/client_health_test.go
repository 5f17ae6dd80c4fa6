package wire

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// noLeaderServer answers every request as a server without a leader.
func noLeaderServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(APIError{Error: ErrNoLeader.Error(), Code: CodeNoLeader})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Issue 17: given a server without a leader and one that is down, the
// client said "connection refused" (the last address tried). A server's
// answer says more, in either order.
func TestClientPrefersNoLeaderToRefusedConnection(t *testing.T) {
	up, down := noLeaderServer(t).URL, refusedAddr(t)
	for _, addrs := range [][]string{{up, down}, {down, up}} {
		_, err := NewClient(addrs, nil).Cluster(context.Background())
		if !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnreachable) {
			t.Errorf("%v: %v, want no leader", addrs, err)
		}
	}
	// With every server down, it is unreachable.
	if _, err := NewClient([]string{down}, nil).Cluster(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Errorf("all down: %v, want unreachable", err)
	}
}

// A write gives up after the leader wait with a message that says there
// is no leader, rather than retrying until its context ends.
func TestWriteGivesUpWithoutLeader(t *testing.T) {
	c := NewClient([]string{noLeaderServer(t).URL, refusedAddr(t)}, nil).WithLeaderWait(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.Apply(ctx, []byte("service: web\nimage: nginx\n"))
	if !errors.Is(err, ErrNoLeader) || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "gave up after 300ms") {
		t.Errorf("apply without a leader: %v, want no leader after the leader wait", err)
	}
	if ctx.Err() != nil {
		t.Error("the write ran until its context ended")
	}
	// Nothing answering at all: unreachable, also bounded.
	c = NewClient([]string{refusedAddr(t)}, nil).WithLeaderWait(300 * time.Millisecond)
	if err := c.Remove(ctx, "web"); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no server answered") {
		t.Errorf("remove with every server down: %v, want unreachable after the leader wait", err)
	}
}
