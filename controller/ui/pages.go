package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// recentEvents is how many of a service's events its page shows.
const recentEvents = 30

// logTail is how many lines of each replica the service page shows;
// logTailWait bounds how long the page waits for the agents.
const (
	logTail     = 20
	logTailWait = 2 * time.Second
)

var funcs = template.FuncMap{
	"short": func(d string) string {
		d = strings.TrimPrefix(d, "sha256:")
		if len(d) > 12 {
			return d[:12]
		}
		return d
	},
	"shortID": func(id string) string {
		if len(id) > 12 {
			return id[:12]
		}
		return id
	},
	// when renders a time the script turns into the browser's zone with a
	// relative time; the UTC text is what shows without the script.
	"when": func(t time.Time) template.HTML {
		if t.IsZero() {
			return "-"
		}
		t = t.UTC()
		return template.HTML(fmt.Sprintf(`<time datetime="%s">%s</time>`, t.Format(time.RFC3339Nano), t.Format("2006-01-02 15:04:05 UTC")))
	},
	"join": strings.Join,
	// matches is the filter box on the server: every word of q in the
	// row's name, state, outcome, digest or image.
	"matches": func(q string, s wire.ServiceStatus) bool {
		hay := strings.ToLower(strings.Join([]string{s.Service, s.State, s.RevisionState, s.Digest, s.Image}, " "))
		for _, w := range strings.Fields(strings.ToLower(q)) {
			if !strings.Contains(hay, w) {
				return false
			}
		}
		return true
	},
	"pct": func(n, of int) int {
		if of <= 0 {
			return 0
		}
		return min(100, n*100/of)
	},
	"slot": func(p *int) string {
		if p == nil {
			return ""
		}
		return strconv.Itoa(*p)
	},
	"stateClass": func(s string) string {
		switch s {
		case "running", "healthy", "succeeded", "ready", "active", "pass":
			return "ok"
		case "rolled_back", "failed", "down", "unhealthy", "lost", "rollback_failed", "warn":
			return "bad"
		case "in_progress", "rolling_out", "rolling_back", "starting", "checking", "paused", "drain", "pending":
			return "busy"
		}
		return ""
	},
}

type servicesView struct {
	layout
	Services []wire.ServiceStatus
	Q        string
	Last     uint64
}

func (u *UI) servicesData(r *http.Request) (servicesView, error) {
	b := u.backend(r)
	// The events' sequence first: an event after it wakes the stream.
	ev, err := b.events(r.Context(), "", ^uint64(0)>>1, 0)
	if err != nil {
		return servicesView{}, err
	}
	svcs, err := b.services(r.Context())
	if err != nil {
		return servicesView{}, err
	}
	slices.SortFunc(svcs, func(a, b wire.ServiceStatus) int { return strings.Compare(a.Service, b.Service) })
	return servicesView{Services: svcs, Last: ev.Last}, nil
}

func (u *UI) servicesPage(w http.ResponseWriter, r *http.Request) {
	v, err := u.servicesData(r)
	if err != nil {
		u.failErr(w, r, err)
		return
	}
	v.Q = r.URL.Query().Get("q")
	v.layout = layout{Title: "Services", Nav: "services", CSRF: csrfToken(w, r), Live: fmt.Sprintf("/ui/live?view=services&after=%d", v.Last)}
	u.render(w, r, http.StatusOK, "services", v)
}

type diffRow struct {
	Field   string
	A, B    string
	Changed bool
}

type serviceView struct {
	layout
	Name    string
	Status  wire.ServiceStatus
	History []wire.HistoryEntry // newest first
	Ps      wire.PsView
	Events  []state.Event // newest first
	// Progress of the rollout under way: replicas healthy on what its
	// revision asks for, out of desired.
	NewHealthy int
	// Diff between revisions DiffA and DiffB (both 0: none asked).
	DiffA, DiffB int
	Diff         []diffRow
	DiffErr      string
	Flash        string
	// Logs are the last LogTail lines of each replica (and a line per host
	// that could not be read), read once for the page; LogsErr when none
	// could be.
	Logs    []wire.LogLine
	LogsErr string
	LogTail int
}

func (u *UI) serviceData(r *http.Request, name string, st wire.ServiceStatus) (serviceView, error) {
	b := u.backend(r)
	ctx := r.Context()
	v := serviceView{Name: name, Status: st}
	var err error
	if v.Status.Service == "" {
		if v.Status, err = b.status(ctx, name, 0, 0); err != nil {
			return v, err
		}
	}
	if v.History, err = b.history(ctx, name); err != nil {
		return v, err
	}
	slices.Reverse(v.History)
	if v.Ps, err = b.ps(ctx, name); err != nil {
		return v, err
	}
	ev, err := b.events(ctx, name, 0, 0)
	if err != nil {
		return v, err
	}
	v.Events = ev.Events
	if len(v.Events) > recentEvents {
		v.Events = v.Events[len(v.Events)-recentEvents:]
	}
	slices.Reverse(v.Events)
	if ro := v.Status.Rollout; ro != nil {
		for _, in := range v.Status.Instances {
			// Current: the replica runs what the rollout's revision asks for
			// (a rollback adopts replicas of the revision it goes back to).
			onNew := in.Revision == ro.Revision || (ro.Revision == v.Status.Revision && in.Current)
			if onNew && in.Desired == state.DesiredRunning && in.State == "healthy" {
				v.NewHealthy++
			}
		}
	}
	return v, nil
}

func (u *UI) servicePage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	v, err := u.serviceData(r, name, wire.ServiceStatus{})
	if err != nil {
		u.failErr(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Has("a") || q.Has("b") {
		v.DiffA, v.DiffB, v.Diff, v.DiffErr = diffOf(v.History, q.Get("a"), q.Get("b"))
	}
	// The log tail is read for the page, not for its live updates: each
	// read asks every replica's agent. A slow host costs the page at most
	// logTailWait, and its lines are left out.
	v.LogTail = logTail
	logCtx, cancel := context.WithTimeout(r.Context(), logTailWait)
	v.Logs, err = u.backend(r).logs(logCtx, name, logTail)
	cancel()
	if err != nil {
		v.LogsErr = err.Error()
	}
	if n, err := strconv.Atoi(q.Get("rolledback")); err == nil && n > 0 {
		v.Flash = fmt.Sprintf("Rollback stored as revision %d; it rolls out below.", n)
	}
	v.layout = layout{Title: name, Nav: "services", CSRF: csrfToken(w, r), Live: fmt.Sprintf("/ui/services/%s/live?index=%d", template.URLQueryEscaper(name), v.Status.Index)}
	u.render(w, r, http.StatusOK, "service", v)
}

// diffOf compares two revisions field by field.
func diffOf(h []wire.HistoryEntry, as, bs string) (int, int, []diffRow, string) {
	a, errA := strconv.Atoi(as)
	b, errB := strconv.Atoi(bs)
	if errA != nil || errB != nil {
		return a, b, nil, fmt.Sprintf("a=%q, b=%q: choose two revision numbers", as, bs)
	}
	var ea, eb *wire.HistoryEntry
	for i := range h {
		if h[i].Revision == a {
			ea = &h[i]
		}
		if h[i].Revision == b {
			eb = &h[i]
		}
	}
	if ea == nil || eb == nil {
		return a, b, nil, fmt.Sprintf("revision %d or %d is not in this service's history", a, b)
	}
	fields := func(e *wire.HistoryEntry) [][2]string {
		return [][2]string{
			{"image", e.Image}, {"digest", e.Digest}, {"ref", e.Ref}, {"replicas", strconv.Itoa(e.Replicas)},
			{"signed by", e.SignedBy}, {"cause", e.Cause}, {"outcome", e.State}, {"message", e.Message},
			{"created", e.CreatedAt.UTC().Format(time.RFC3339)}, {"scan warnings", strings.Join(e.ScanWarnings, "; ")},
			{"policy warnings", strings.Join(e.PolicyWarnings, "; ")},
		}
	}
	fa, fb := fields(ea), fields(eb)
	rows := make([]diffRow, len(fa))
	for i := range fa {
		rows[i] = diffRow{Field: fa[i][0], A: fa[i][1], B: fb[i][1], Changed: fa[i][1] != fb[i][1]}
	}
	// The specs field by field, as `deployctl diff` names them: only
	// those that differ (a whole spec is long; the equal ones say nothing).
	if ea.Spec != nil && eb.Spec != nil {
		sa, sb := specs.Fields(ea.Spec), specs.Fields(eb.Spec)
		var paths []string
		for k := range sa {
			paths = append(paths, k)
		}
		for k := range sb {
			if _, ok := sa[k]; !ok {
				paths = append(paths, k)
			}
		}
		slices.Sort(paths)
		for _, k := range paths {
			if k != "image" && k != "replicas" && sa[k] != sb[k] {
				rows = append(rows, diffRow{Field: "spec: " + k, A: sa[k], B: sb[k], Changed: true})
			}
		}
	}
	return a, b, rows, ""
}

type confirmView struct {
	layout
	Name     string
	From, To int
	ToEntry  wire.HistoryEntry
}

// rollback asks for confirmation (a form without confirm=yes, as without
// the script) or posts the rollback to the API as `deployctl rollback
// --to N` does, and shows the service page again.
func (u *UI) rollback(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := checkSameOrigin(r); err != nil {
		u.fail(w, r, http.StatusForbidden, err.Error())
		return
	}
	name := r.PathValue("name")
	to, err := strconv.Atoi(r.PostFormValue("to"))
	if err != nil || to <= 0 {
		u.fail(w, r, http.StatusBadRequest, fmt.Sprintf("to: %q is not a revision number; choose a revision of the service's history", r.PostFormValue("to")))
		return
	}
	b := u.backend(r)
	if r.PostFormValue("confirm") != "yes" {
		st, err := b.status(r.Context(), name, 0, 0)
		if err != nil {
			u.failErr(w, r, err)
			return
		}
		h, err := b.history(r.Context(), name)
		if err != nil {
			u.failErr(w, r, err)
			return
		}
		v := confirmView{Name: name, From: st.Revision, To: to}
		for _, e := range h {
			if e.Revision == to {
				v.ToEntry = e
			}
		}
		v.layout = layout{Title: "Roll back " + name, Nav: "services", CSRF: csrfToken(w, r)}
		u.render(w, r, http.StatusOK, "confirm", v)
		return
	}
	out, err := b.rollback(r.Context(), name, to)
	if err != nil {
		u.failErr(w, r, err)
		return
	}
	u.log.Info("ui: rollback", "service", name, "to", to, "revision", out.Revision)
	http.Redirect(w, r, fmt.Sprintf("/ui/services/%s?rolledback=%d", template.URLQueryEscaper(name), out.Revision), http.StatusSeeOther)
}

type hostRow struct {
	wire.HostInfo
	View     wire.HostView
	Audit    *wire.HostAuditRecord
	Warnings int
	Findings []finding
}

type finding struct {
	Container, Service, ID, Title, Status, Detail string
}

type hostsView struct {
	layout
	Hosts     []hostRow
	Leader    string
	Nodes     []wire.NodeInfo
	Benchmark string
	Last      uint64
}

func (u *UI) hostsData(r *http.Request) (hostsView, error) {
	b := u.backend(r)
	ctx := r.Context()
	var v hostsView
	ev, err := b.events(ctx, "", ^uint64(0)>>1, 0)
	if err != nil {
		return v, err
	}
	v.Last = ev.Last
	cl, err := b.cluster(ctx)
	if err != nil {
		return v, err
	}
	views, err := b.hosts(ctx)
	if err != nil {
		return v, err
	}
	rep, err := b.audit(ctx)
	if err != nil {
		return v, err
	}
	v.Leader, v.Nodes, v.Benchmark = cl.Leader, cl.Nodes, rep.Benchmark
	for _, h := range cl.Hosts {
		row := hostRow{HostInfo: h}
		for _, hv := range views {
			if hv.ID == h.ID {
				row.View = hv
			}
		}
		for i := range rep.Hosts {
			if rep.Hosts[i].Host != h.ID {
				continue
			}
			row.Audit = &rep.Hosts[i]
			row.Warnings = rep.Hosts[i].Warnings()
			for _, c := range rep.Hosts[i].Containers {
				for _, res := range c.Results {
					if res.Status == "warn" {
						row.Findings = append(row.Findings, finding{Container: c.ContainerID, Service: c.Service, ID: res.ID, Title: res.Title, Status: res.Status, Detail: strings.TrimSpace(res.Field + " " + res.Value)})
					}
				}
				for _, d := range c.Drift {
					row.Findings = append(row.Findings, finding{Container: c.ContainerID, Service: c.Service, ID: "drift", Title: d.Field, Status: "warn", Detail: fmt.Sprintf("want %s, got %s", d.Want, d.Got)})
				}
			}
		}
		v.Hosts = append(v.Hosts, row)
	}
	slices.SortFunc(v.Hosts, func(a, b hostRow) int { return strings.Compare(a.ID, b.ID) })
	return v, nil
}

func (u *UI) hostsPage(w http.ResponseWriter, r *http.Request) {
	v, err := u.hostsData(r)
	if err != nil {
		u.failErr(w, r, err)
		return
	}
	v.layout = layout{Title: "Hosts", Nav: "hosts", CSRF: csrfToken(w, r), Live: fmt.Sprintf("/ui/live?view=hosts&after=%d", v.Last)}
	u.render(w, r, http.StatusOK, "hosts", v)
}

type policyView struct {
	layout
	Version int
	YAML    string
}

func (u *UI) policyPage(w http.ResponseWriter, r *http.Request) {
	p, err := u.backend(r).policy(r.Context())
	if err != nil {
		u.failErr(w, r, err)
		return
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		u.fail(w, r, http.StatusInternalServerError, "encode policy: "+err.Error())
		return
	}
	v := policyView{Version: p.Version, YAML: buf.String()}
	v.layout = layout{Title: "Policy", Nav: "policy", CSRF: csrfToken(w, r)}
	u.render(w, r, http.StatusOK, "policy", v)
}

// fragments renders the named templates of a page (its live regions) for
// the stream.
func (u *UI) fragments(page string, data any, names ...string) (string, error) {
	out := map[string]string{}
	for _, n := range names {
		var buf bytes.Buffer
		if err := u.pages[page].ExecuteTemplate(&buf, n, data); err != nil {
			return "", fmt.Errorf("ui: render %s/%s: %w", page, n, err)
		}
		out[n] = buf.String()
	}
	data2, err := json.Marshal(out)
	return string(data2), err
}
