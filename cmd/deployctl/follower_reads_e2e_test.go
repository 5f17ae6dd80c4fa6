package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// TestFollowersAnswerAgentsAssignments (issue 12): an agent's long-poll
// for its assignments is answered by the follower it reached, from the
// follower's own log, once the agent holds an index (a first poll goes to
// the leader); the answer is a delta from what the agent holds; and a
// follower that loses its leader says so instead of holding the agent for
// the whole wait.
func TestFollowersAnswerAgentsAssignments(t *testing.T) {
	needBinary(t)
	c := mustStartCluster(t, 3, "--no-agent", "--log-level", "info")
	leader := c.mustLeader(30 * time.Second)
	var follower *clusterNode
	for _, nd := range c.nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	ca, err := pki.LoadAuthority(c.tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	agentTLS, err := ca.AgentClientConfig("h1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// h1 heartbeats through the leader so that it stays ready.
	agent := wire.NewTLSClient([]string{leader.httpAddr}, agentTLS)
	go func() {
		for ctx.Err() == nil {
			_ = agent.Report(ctx, state.HostReport{Host: "h1"})
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	c.mustReadyHosts(t, 1)

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: agentTLS}}
	type answer struct {
		status int
		leader string
		delta  state.AssignmentDelta
	}
	poll := func(index, base uint64, wait time.Duration) answer {
		q := url.Values{"host": {"h1"}, "index": {fmt.Sprint(index)}, "wait": {wait.String()}, "form": {wire.AssignmentFormDelta}, "base": {fmt.Sprint(base)}}
		resp, err := hc.Get("https://" + follower.httpAddr + "/v1/agent/assignments?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		a := answer{status: resp.StatusCode, leader: resp.Header.Get(wire.LeaderAPIHeader)}
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&a.delta); err != nil {
				t.Fatal(err)
			}
		}
		return a
	}

	v1, v2, _ := scaleImages(t)
	client := c.client()
	if _, err := client.Apply(ctx, []byte(scaleSpec("web", v1, 1, 1))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the replica placed on h1", func() bool {
		set, err := agent.Assignments(ctx, "h1", 0, 0)
		return err == nil && len(set.Assignments) == 1
	})

	// A first poll: forwarded to the leader, which names itself. (A
	// follower that does not know the leader's API address yet answers
	// 503, and agents try again: so does this.)
	var first answer
	waitFor(t, 10*time.Second, "a first poll through the follower", func() bool {
		first = poll(0, 0, 0)
		return first.status != http.StatusServiceUnavailable
	})
	if first.status != http.StatusOK || first.leader != leader.httpAddr || len(first.delta.IDs) != 1 || len(first.delta.Replicas) != 1 {
		t.Fatalf("first poll through the follower: status %d, leader header %q (want %q), delta %+v", first.status, first.leader, leader.httpAddr, first.delta)
	}

	// A poll with an index: the follower waits on its own log and answers
	// the change, a delta that carries only the new replica.
	time.Sleep(300 * time.Millisecond) // the follower applies the index the agent holds
	got := make(chan answer, 1)
	go func() { got <- poll(first.delta.Index, first.delta.Index, 20*time.Second) }()
	time.Sleep(300 * time.Millisecond)
	if _, err := client.Apply(ctx, []byte(scaleSpec("web", v2, 1, 1))); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.status != http.StatusOK || a.leader != "" {
		t.Fatalf("poll with an index: status %d, leader header %q; want 200 answered by the follower itself (no leader header)", a.status, a.leader)
	}
	if a.delta.Index <= first.delta.Index || a.delta.Base != first.delta.Index || len(a.delta.IDs) != 2 || len(a.delta.Replicas) != 1 ||
		a.delta.Replicas[0].Revision != 2 || len(a.delta.Revisions) != 1 || a.delta.Revisions[0].Number != 2 {
		t.Fatalf("the follower's delta from %d: %+v; want the new revision-2 replica only, and both IDs", first.delta.Index, a.delta)
	}

	// The follower loses its leader and the other server: it answers "no
	// leader" before the wait ends.
	for _, nd := range c.nodes {
		if nd != follower {
			c.kill(nd, syscall.SIGKILL)
		}
	}
	start := time.Now()
	lost := poll(a.delta.Index, a.delta.Index, 30*time.Second)
	if lost.status != http.StatusServiceUnavailable || time.Since(start) >= 30*time.Second {
		t.Fatalf("a follower without a leader answered %d after %s; want 503 before the 30s wait ends", lost.status, time.Since(start).Round(time.Millisecond))
	}
}
