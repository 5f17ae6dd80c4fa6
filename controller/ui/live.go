package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Each wait of a stream is a blocking query of the API this long; a
// comment line is sent after each so that proxies keep the stream open.
const liveWait = 20 * time.Second

// streamLife ends a stream after a while: the browser's EventSource opens
// a new one (with the page's index; the first answer is then the state).
const streamLife = 10 * time.Minute

// stream is an open text/event-stream answer.
type stream struct {
	w http.ResponseWriter
	f http.Flusher
}

func openStream(w http.ResponseWriter) (*stream, bool) {
	f, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	return &stream{w: w, f: f}, true
}

func (s *stream) send(event, data string) error {
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

func (s *stream) ping() error {
	if _, err := fmt.Fprint(s.w, ": ping\n\n"); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// sendErr tells the page the stream's trouble (it shows it and the browser
// retries); it returns whether the stream should end.
func (s *stream) sendErr(ctx context.Context, err error) bool {
	_ = s.send("problem", strconv.Quote(err.Error()))
	select {
	case <-ctx.Done():
		return true
	case <-time.After(2 * time.Second):
	}
	return errors.Is(err, ErrNotFound)
}

// serviceLive streams a service page's live regions each time the
// service's state passes the index the page was rendered at: a blocking
// query of GET /v1/services/{name} per wait.
func (u *UI) serviceLive(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	index, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if err != nil {
		index = 0
	}
	token := csrfToken(w, r) // the rollback forms of the regions carry it
	s, ok := openStream(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), streamLife)
	defer cancel()
	b := u.backend(r.WithContext(ctx))
	for ctx.Err() == nil {
		st, err := b.status(ctx, name, max(index, 1), liveWait)
		if err != nil {
			if s.sendErr(ctx, err) {
				return
			}
			continue
		}
		if st.Index <= index {
			if s.ping() != nil {
				return
			}
			continue
		}
		index = st.Index
		v, err := u.serviceData(r.WithContext(ctx), name, st)
		if err != nil {
			if s.sendErr(ctx, err) {
				return
			}
			continue
		}
		v.CSRF = token
		data, err := u.fragments("service", v, "summary", "rollout", "replicas", "revisions", "events")
		if err != nil {
			u.log.Error("ui: live", "error", err)
			return
		}
		if s.send("update", data) != nil {
			return
		}
	}
}

// listLive streams the services or hosts table each time an event is
// recorded after the one the page was rendered at (a blocking query of
// GET /v1/events).
func (u *UI) listLive(w http.ResponseWriter, r *http.Request) {
	view := r.URL.Query().Get("view")
	if view != "services" && view != "hosts" {
		http.Error(w, fmt.Sprintf("view: %q; want services or hosts", view), http.StatusBadRequest)
		return
	}
	after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if err != nil {
		after = 0
	}
	s, ok := openStream(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), streamLife)
	defer cancel()
	rc := r.WithContext(ctx)
	b := u.backend(rc)
	for ctx.Err() == nil {
		ev, err := b.events(ctx, "", after, liveWait)
		if err != nil {
			if s.sendErr(ctx, err) {
				return
			}
			continue
		}
		if ev.Last <= after {
			if s.ping() != nil {
				return
			}
			continue
		}
		after = ev.Last
		var data string
		if view == "services" {
			v, err := u.servicesData(rc)
			if err == nil {
				data, err = u.fragments("services", v, "table")
			}
			if err != nil {
				if s.sendErr(ctx, err) {
					return
				}
				continue
			}
		} else {
			v, err := u.hostsData(rc)
			if err == nil {
				data, err = u.fragments("hosts", v, "table")
			}
			if err != nil {
				if s.sendErr(ctx, err) {
					return
				}
				continue
			}
		}
		if s.send("update", data) != nil {
			return
		}
	}
}
