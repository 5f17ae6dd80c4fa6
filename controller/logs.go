package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// getLogs streams a service's logs (GET /v1/services/{name}/logs): the
// server that receives the request asks the agent of each replica's host
// for that replica's lines, on the agent's hop listener (the host's
// advertised proxy address, mutual TLS, this server's certificate), and
// writes every line as a JSON wire.LogLine as it comes. Lines of one
// replica keep their order; replicas interleave. A host that cannot be
// reached is a LogLine with Error, once, and the rest goes on. With
// follow the stream goes on through rollouts: a replica's stream opens
// when its container appears in the state and ends when the container
// does. Answered by this server from its own state, never forwarded:
// a follower's state lags by a heartbeat at most, and a long stream must
// not hang on the leader.
func (a *API) getLogs(w http.ResponseWriter, r *http.Request) {
	name, ok := pathService(w, r)
	if !ok {
		return
	}
	q, err := wire.ParseLogsQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
		return
	}
	view, changed := a.c.cfg.Store.Watch()
	if _, found := view.Service(name); !found {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("service %q not found; `deployctl services` lists them", name))
		return
	}
	if q.Replica != "" {
		id, err := replicaByPrefix(view, name, q.Replica)
		if err != nil {
			writeError(w, http.StatusNotFound, "not_found", err.Error())
			return
		}
		q.Replica = id
	}
	ctx, cancel := context.WithCancel(r.Context())
	var streams sync.WaitGroup
	defer func() { cancel(); streams.Wait() }()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	write := func(l wire.LogLine) bool {
		if enc.Encode(l) != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if flusher != nil {
		flusher.Flush()
	}

	lines := make(chan wire.LogLine)
	opened := map[string]bool{}   // replica \x00 container: a stream was opened
	badHosts := map[string]bool{} // hosts already named as unreachable
	first := true
	open := func(view *state.Tables) {
		for _, rep := range view.ServiceReplicas(name) {
			if (q.Replica != "" && rep.ID != q.Replica) || rep.Status.ContainerID == "" {
				continue
			}
			key := rep.ID + "\x00" + rep.Status.ContainerID
			if opened[key] {
				continue
			}
			if q.Follow && !first && rep.Desired != state.DesiredRunning {
				continue
			}
			opened[key] = true
			host, _ := view.Host(rep.Host)
			rq := q
			if !first {
				// A replica that appeared while following: all of it.
				rq.Since, rq.Tail = time.Time{}, -1
			}
			streams.Add(1)
			go func() {
				defer streams.Done()
				a.streamReplica(ctx, host, rep, rq, lines)
			}()
		}
		first = false
	}
	open(view)
	// Without follow the answer ends when every stream has; with follow,
	// when the client goes.
	var done chan struct{}
	if !q.Follow {
		done = make(chan struct{})
		go func() { streams.Wait(); close(done) }()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-lines:
			if l.Error != "" && l.Replica == "" {
				if badHosts[l.Host] {
					continue
				}
				badHosts[l.Host] = true
			}
			if !write(l) {
				return
			}
		case <-done:
			return
		case <-changed:
			if !q.Follow {
				changed = nil
				continue
			}
			view, changed = a.c.cfg.Store.Watch()
			open(view)
		}
	}
}

// streamReplica reads one replica's lines from its host's agent and sends
// them on out, then an End line (follow) or nothing. A host that cannot be
// reached sends a line with Error and Host.
func (a *API) streamReplica(ctx context.Context, host state.Host, rep state.Replica, q wire.LogsQuery, out chan<- wire.LogLine) {
	send := func(l wire.LogLine) bool {
		select {
		case out <- l:
			return true
		case <-ctx.Done():
			return false
		}
	}
	fail := func(err error) {
		send(wire.LogLine{Host: rep.Host, Error: fmt.Sprintf("host %s: %v", rep.Host, err)})
	}
	if host.ProxyAddr == "" {
		fail(errors.New("its agent has no --proxy-addr, where agents serve logs"))
		return
	}
	q.Replica = rep.ID
	u := url.URL{Scheme: a.agentScheme, Host: host.ProxyAddr, Path: wire.AgentLogsPath, RawQuery: q.Values().Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fail(err)
		return
	}
	resp, err := a.agents.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL says nothing the address does not
		}
		if ctx.Err() == nil {
			fail(fmt.Errorf("cannot reach its agent at %s: %w", host.ProxyAddr, err))
		}
		return
	}
	defer resp.Body.Close()
	if resp.TLS != nil {
		// The agent must be the host's own: its certificate names it.
		id, err := pki.IdentityOf(resp.TLS.PeerCertificates[0])
		if err != nil || id.Name != rep.Host || (id.Role != pki.RoleAgent && id.Role != pki.RoleServer) {
			fail(fmt.Errorf("%s answers with the certificate of %s, not of host %s", host.ProxyAddr, id, rep.Host))
			return
		}
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return // the container is gone: nothing to read
	case resp.StatusCode != http.StatusOK:
		fail(fmt.Errorf("its agent at %s answered %s", host.ProxyAddr, resp.Status))
		return
	}
	err = wire.ReadLogLines(resp.Body, func(l wire.LogLine) error {
		l.Replica, l.Host, l.Error, l.End = rep.ID, rep.Host, "", false
		if !send(l) {
			return ctx.Err()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		send(wire.LogLine{Replica: rep.ID, Host: rep.Host, Error: fmt.Sprintf("replica %s on %s: %v", rep.ID, rep.Host, err)})
		return
	}
	if q.Follow {
		send(wire.LogLine{Replica: rep.ID, Host: rep.Host, End: true})
	}
}

// replicaByPrefix finds the replica of service whose ID is id or starts
// with it (ps shows the first 12 characters).
func replicaByPrefix(view *state.Tables, service, id string) (string, error) {
	var found []string
	for _, rep := range view.ServiceReplicas(service) {
		if rep.ID == id {
			return id, nil
		}
		if strings.HasPrefix(rep.ID, id) {
			found = append(found, rep.ID)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("replica: %q is no replica of %s; `deployctl ps %s` lists them", clip(id), service, service)
	}
	return "", fmt.Errorf("replica: %q starts %d replicas of %s; give more of the ID", clip(id), len(found), service)
}
