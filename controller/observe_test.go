package controller

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

func eventTypesOf(es []state.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Type)
	}
	return out
}

// The leader's election and a refused apply reach the event ring through
// CmdRecordEvents, beside the events the FSM derives; a blocking read
// wakes with the next event; ps lists a replica's last error and, once
// it is removed, keeps it under -a.
func TestEventsAndPsOverTheAPI(t *testing.T) {
	n := mustStartNode(t)
	// Registered, the node passes the version gate of CmdRecordEvents;
	// the election recorded before that is written once it does.
	mustRegisterServer(t, n)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	client := wire.NewClient([]string{n.api.URL}, nil)
	ctx := context.Background()

	waitUntil(t, 20*time.Second, "the leader's election in the events", func() bool {
		page, err := client.Events(ctx, 0, "", time.Time{}, 0)
		return err == nil && slices.Contains(eventTypesOf(page.Events), state.EventLeaderElected)
	})
	bad := "service: web\nimage: " + ref + "\nreplicas: 1\nsecurity:\n  no_new_privileges: false\n"
	if _, err := client.Apply(ctx, []byte(bad)); err == nil {
		t.Fatal("the default policy took no_new_privileges: false")
	}
	waitUntil(t, 20*time.Second, "the refusal in the events", func() bool {
		page, err := client.Events(ctx, 0, "web", time.Time{}, 0)
		return err == nil && slices.Contains(eventTypesOf(page.Events), state.EventApplyRefused) &&
			strings.Contains(page.Events[0].Message, "no_new_privileges")
	})
	before, err := client.Events(ctx, 0, "", time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A blocking read returns with the next event: the host's first report.
	got := make(chan wire.EventsPage, 1)
	go func() {
		page, _ := client.Events(ctx, before.Last, "", time.Time{}, time.Minute)
		got <- page
	}()
	if err := client.Report(ctx, state.HostReport{Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	page := <-got
	if len(page.Events) == 0 || page.Events[0].Type != state.EventHostUp || page.Events[0].Host != "h1" || page.Events[0].Seq != before.Last+1 {
		t.Fatalf("blocking read after %d: %+v", before.Last, page)
	}

	good := "service: web\nimage: " + ref + "\nreplicas: 1\n"
	if _, err := client.Apply(ctx, []byte(good)); err != nil {
		t.Fatal(err)
	}
	var rep state.Replica
	waitUntil(t, 20*time.Second, "a replica placed on h1", func() bool {
		reps := n.store.View().ServiceReplicas("web")
		if len(reps) == 1 {
			rep = reps[0]
		}
		return len(reps) == 1
	})
	if err := client.Report(ctx, state.HostReport{Host: "h1", Reports: []state.StatusReport{{ReplicaID: rep.ID, State: state.ReplicaFailed, Message: "exited with code 3"}}}); err != nil {
		t.Fatal(err)
	}
	// The loop stops the failed replica and, since a failed replica is
	// confirmed not running, may remove it in the same pass: ps shows its
	// error while it is listed, and ps -a keeps it, ended, once removed.
	waitUntil(t, 20*time.Second, "ps to show the failed replica's error", func() bool {
		ps, err := client.Ps(ctx, "web", true)
		if err != nil {
			return false
		}
		i := slices.IndexFunc(ps.Replicas, func(r wire.ReplicaRow) bool { return r.ID == rep.ID })
		return i >= 0 && ps.Replicas[i].Error == "exited with code 3" && ps.Replicas[i].Host == "h1"
	})
	waitUntil(t, 20*time.Second, "the failed replica to be stopped and removed", func() bool {
		r, ok := n.store.View().Replica(rep.ID)
		if ok && r.Desired == state.DesiredStopped && r.Status.State != state.ReplicaFailed {
			_ = client.Report(ctx, state.HostReport{Host: "h1", Reports: []state.StatusReport{{ReplicaID: rep.ID, State: state.ReplicaStopped}}})
		}
		return !ok
	})
	all, err := client.Ps(ctx, "web", true)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all.Replicas, func(r wire.ReplicaRow) bool { return r.ID == rep.ID })
	if i < 0 || !all.Replicas[i].Ended || all.Replicas[i].Error != "exited with code 3" || all.Replicas[i].State != state.ReplicaFailed {
		t.Fatalf("ps -a: %+v", all)
	}
	now, err := client.Ps(ctx, "web", false)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(now.Replicas, func(r wire.ReplicaRow) bool { return r.ID == rep.ID }) {
		t.Fatalf("ps without -a lists the removed replica: %+v", now)
	}
	if _, err := client.Ps(ctx, "nosuch", false); !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("ps of an unknown service: %v", err)
	}
	if _, err := client.Events(ctx, 0, "", time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(n.api.URL + "/v1/events?after=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("after=x: %s, want 400", resp.Status)
	}
}

// Logs come from each replica's host agent, prefixed with the replica and
// host; a host whose agent cannot be reached is named once and the rest
// goes on.
func TestLogsFromAgentsNameUnreachableHosts(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	client := wire.NewClient([]string{n.api.URL}, nil)
	ctx := context.Background()

	var asked []string
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != wire.AgentLogsPath {
			http.NotFound(w, r)
			return
		}
		q, err := wire.ParseLogsQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		asked = append(asked, q.Replica)
		enc := json.NewEncoder(w)
		for _, text := range []string{"first", "second"} {
			_ = enc.Encode(wire.LogLine{Time: time.Now(), Stream: "stderr", Text: text + " of " + q.Replica})
		}
	}))
	t.Cleanup(agent.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	proxyAddr := map[string]string{"h1": strings.TrimPrefix(agent.URL, "http://"), "h2": closedAddr}
	for host, addr := range proxyAddr {
		if err := client.Report(ctx, state.HostReport{Host: host, ProxyAddr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Apply(ctx, []byte("service: web\nimage: "+ref+"\nreplicas: 2\nupdate:\n  parallelism: 2\n")); err != nil {
		t.Fatal(err)
	}
	byHost := map[string]string{}
	waitUntil(t, 20*time.Second, "a replica on each host", func() bool {
		for _, r := range n.store.View().ServiceReplicas("web") {
			byHost[r.Host] = r.ID
		}
		return len(byHost) == 2
	})
	for host, id := range byHost {
		if err := client.Report(ctx, state.HostReport{Host: host, ProxyAddr: proxyAddr[host],
			Reports: []state.StatusReport{{ReplicaID: id, State: state.ReplicaStarting, ContainerID: "c-" + id}}}); err != nil {
			t.Fatal(err)
		}
	}
	var lines, notices []wire.LogLine
	if err := client.Logs(ctx, "web", wire.LogsQuery{Tail: -1}, func(l wire.LogLine) error {
		if l.Error != "" {
			notices = append(notices, l)
		} else {
			lines = append(lines, l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].Text != "first of "+byHost["h1"] || lines[1].Text != "second of "+byHost["h1"] ||
		lines[0].Replica != byHost["h1"] || lines[0].Host != "h1" || lines[0].Stream != "stderr" {
		t.Fatalf("lines %+v", lines)
	}
	if len(notices) != 1 || notices[0].Host != "h2" || !strings.Contains(notices[0].Error, "host h2") || !strings.Contains(notices[0].Error, closedAddr) {
		t.Fatalf("notices %+v, want one naming h2 and its address", notices)
	}
	// The dashboard's service page shows the same tail: h1's lines and
	// the host it could not read.
	resp, err := http.Get(n.api.URL + "/ui/services/web")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`id="logs"`, "second of " + byHost["h1"], byHost["h1"][:12] + "@h1", "host h2", closedAddr} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the service page's log tail lacks %q", want)
		}
	}
	// --replica by the start of its ID reads that replica only.
	asked = nil
	if err := client.Logs(ctx, "web", wire.LogsQuery{Tail: -1, Replica: byHost["h1"][:8]}, func(wire.LogLine) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(asked, []string{byHost["h1"]}) {
		t.Fatalf("agent asked for %v", asked)
	}
	err = client.Logs(ctx, "web", wire.LogsQuery{Tail: -1, Replica: "nosuch"}, func(wire.LogLine) error { return nil })
	if !errors.Is(err, wire.ErrNotFound) || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("an unknown replica: %v", err)
	}
	err = client.Logs(ctx, "web", wire.LogsQuery{Tail: -1, Replica: byHost["h1"][:0] + "x"}, func(wire.LogLine) error { return nil })
	if err == nil {
		t.Fatal("a replica prefix matching none was taken")
	}
}
