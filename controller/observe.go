package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// Issue 10: `ps`, `events` and the events the log carries nowhere else.
// `logs` is logs.go. See DESIGN.md, "Seeing what runs".

// psView lists a service's replicas, and with all the ended ones the FSM
// keeps, by slot, newest first within a slot.
func psView(t *state.Tables, svc state.Service, all bool) wire.PsView {
	out := wire.PsView{Service: svc.Name, Revision: svc.Current, Replicas: []wire.ReplicaRow{}}
	for _, r := range t.ServiceReplicas(svc.Name) {
		out.Replicas = append(out.Replicas, replicaRow(r, false))
	}
	if all {
		for _, r := range t.EndedReplicas(svc.Name) {
			out.Replicas = append(out.Replicas, replicaRow(r, true))
		}
	}
	slices.SortStableFunc(out.Replicas, func(a, b wire.ReplicaRow) int {
		if a.Slot != b.Slot {
			return a.Slot - b.Slot
		}
		if a.Ended != b.Ended {
			if a.Ended {
				return 1
			}
			return -1
		}
		return b.Since.Compare(a.Since)
	})
	return out
}

func replicaRow(r state.Replica, ended bool) wire.ReplicaRow {
	row := wire.ReplicaRow{ID: r.ID, Slot: r.Slot, Revision: r.Revision, Host: r.Host, Desired: r.Desired, State: r.Status.State,
		Since: r.Status.Since, ContainerID: r.Status.ContainerID, Error: r.Status.LastError, Ended: ended}
	if row.Since.IsZero() {
		row.Since = r.CreatedAt
	}
	if isRunning(r.Status.State) && r.Status.ContainerID != "" {
		row.Health = r.Status.State
		if r.Status.State == state.ReplicaStarting {
			row.Health = "checking"
		}
	}
	if row.Error == "" && (r.Status.State == state.ReplicaFailed || r.Status.State == state.ReplicaLost) {
		row.Error = r.Status.Message
	}
	return row
}

func (a *API) getPs(w http.ResponseWriter, r *http.Request) {
	name, ok := pathService(w, r)
	if !ok {
		return
	}
	all, err := boolParam(r, "all")
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
		return
	}
	view := a.c.cfg.Store.View()
	svc, found := view.Service(name)
	if !found {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("service %q not found; `deployctl services` lists them", name))
		return
	}
	writeJSON(w, http.StatusOK, psView(view, svc, all))
}

// getEvents answers the events after ?after= (of ?service=, at or after
// ?since=), waiting up to ?wait= for one when there is none yet.
func (a *API) getEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("after: %s is not an event number; send the last of the previous answer, or 0", clip(strconv.Quote(s))))
			return
		}
		after = n
	}
	var since time.Time
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("since: %s is not an RFC 3339 time", clip(strconv.Quote(s))))
			return
		}
		since = t
	}
	_, wait, ok := blockingParams(w, r)
	if !ok {
		return
	}
	service := q.Get("service")
	view := waitFor(r.Context(), after, wait, a.c.cfg.Store.Watch, (*state.Tables).EventSeq)
	page := wire.EventsPage{Events: []state.Event{}, Last: view.EventSeq()}
	for _, e := range view.Events(after) {
		if (service == "" || e.Service == service) && !e.Time.Before(since) {
			page.Events = append(page.Events, e)
		}
	}
	writeJSON(w, http.StatusOK, page)
}

func boolParam(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%s: %s is not true or false", name, clip(strconv.Quote(s)))
	}
	return b, nil
}

// eventQueue holds the events this leader saw that no command carries (its
// election, a refused apply) until the flusher writes them, batched, as one
// CmdRecordEvents: a burst of refusals costs one raft entry.
type eventQueue struct {
	ch chan state.Event
}

func newEventQueue() *eventQueue { return &eventQueue{ch: make(chan state.Event, 256)} }

// recordEvent queues an event for the log; it never blocks (a full queue
// drops the event, with a warning).
func (c *Controller) recordEvent(e state.Event) {
	if e.Time.IsZero() {
		e.Time = c.cfg.Now()
	}
	select {
	case c.events.ch <- e:
	default:
		c.log.Warn("event queue full; event dropped", "type", e.Type, "service", e.Service)
	}
}

// noteRefusal records an apply or rollback the policy, the signature or
// the scan gate refused (other errors are the caller's to read).
func (c *Controller) noteRefusal(service string, err error) {
	if err == nil {
		return
	}
	_, body := wire.Body(err)
	switch body.Code {
	case wire.CodeDenied, wire.CodeSignature, wire.CodeScan:
		c.recordEvent(state.Event{Type: state.EventApplyRefused, Service: service, Message: oneLine(err)})
	}
}

// flushEvents writes queued events while ctx lasts, batched. A batch the
// version gate refuses (a server too old, or not registered yet: a fresh
// cluster elects before its servers register) is tried again every
// second, up to a minute; events queued on a node that does not lead are
// dropped: they are about a term that is over.
func (c *Controller) flushEvents(ctx context.Context) {
	var batch []state.Event
	tries := 0
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case e := <-c.events.ch:
				batch = append(batch, e)
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-retry.C:
			}
		}
	more:
		for len(batch) < maxEventBatch {
			select {
			case e := <-c.events.ch:
				batch = append(batch, e)
			default:
				break more
			}
		}
		if !c.cfg.Raft.IsLeader() {
			batch, tries = nil, 0
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.apply(wctx, raftstore.CmdRecordEvents, state.RecordEventsCmd{Events: batch})
		cancel()
		tries++
		switch {
		case err == nil:
			batch, tries = nil, 0
		case errors.Is(err, raftstore.ErrVersionGate) && tries < 60:
			c.log.Debug("events wait for the version gate", "events", len(batch), "error", err)
			retry.Reset(time.Second)
		default:
			c.log.Warn("events not recorded", "events", len(batch), "error", err)
			batch, tries = nil, 0
		}
	}
}

// maxEventBatch bounds one CmdRecordEvents.
const maxEventBatch = 500

// agentClient returns the client that reads agents' logs: with the
// server's certificate (pki.ProxyConfig: it trusts agent and server
// certificates of the cluster) when TLS is on, plain HTTP otherwise.
func agentClient(cfg *tls.Config) (*http.Client, string) {
	if cfg == nil {
		return &http.Client{}, "http"
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true}}, "https"
}
