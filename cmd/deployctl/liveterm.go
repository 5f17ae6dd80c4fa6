package main

// The live view's terminal driver: when to draw it, and drawing it in
// place (cursor up, clear line) as followRevision's observations, the ps
// rows and the service's events come in. renderLive (liveview.go) makes
// the lines.

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// liveTerminal returns stdout as a terminal when the live view may draw
// on it: stdout is a terminal, no --plain, NO_COLOR unset or empty, TERM
// set and not dumb.
func liveTerminal(w io.Writer, plain bool, getenv func(string) string) (*os.File, bool) {
	if plain || getenv("NO_COLOR") != "" {
		return nil, false
	}
	if t := getenv("TERM"); t == "" || t == "dumb" {
		return nil, false
	}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// rolloutView picks how a command follows a rollout: the live view on a
// terminal, plain lines otherwise. Stop the live view's helpers with the
// finish.
func (g *globals) rolloutView(ctx context.Context, w io.Writer, service string, revision int) rolloutObserver {
	if f, ok := liveTerminal(w, g.plain, os.Getenv); ok {
		return newLiveView(ctx, f, g.client(), service, revision)
	}
	return newPlainObserver(w)
}

// liveRefresh is how often the view redraws without news (its clock).
const liveRefresh = 500 * time.Millisecond

// liveView draws the live view on a terminal: followRevision's
// observations, the ps rows fetched at each change and the service's
// events (blocking reads) go into its snapshot, which a goroutine redraws
// at each change and every liveRefresh.
type liveView struct {
	out     *os.File
	c       *wire.Client
	started time.Time

	mu     sync.Mutex
	snap   liveSnapshot
	drawn  int // lines of the last draw, to go back over
	seeded bool
	after  uint64 // the last event kept (eventsLoop, then lastEvents)

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

func newLiveView(parent context.Context, out *os.File, c *wire.Client, service string, revision int) *liveView {
	ctx, cancel := context.WithCancel(parent)
	v := &liveView{out: out, c: c, started: time.Now(), ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
		snap: liveSnapshot{Service: service, Following: revision, From: map[int]int{}, Ps: map[string]wire.ReplicaRow{}}}
	fmt.Fprint(out, "\x1b[?25l") // hide the cursor while redrawing
	v.wg.Add(2)
	go v.redrawLoop()
	go v.eventsLoop()
	return v
}

func (v *liveView) poke() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func (v *liveView) status(st wire.ServiceStatus, following int) {
	ctx, cancel := context.WithTimeout(v.ctx, 5*time.Second)
	ps, err := v.c.Ps(ctx, st.Service, false)
	cancel()
	v.mu.Lock()
	if !v.seeded {
		v.snap.From = startRevisions(st, following)
		v.seeded = true
	}
	v.snap.Status, v.snap.Following = st, following
	if err == nil {
		v.snap.Ps = map[string]wire.ReplicaRow{}
		for _, r := range ps.Replicas {
			v.snap.Ps[r.ID] = r
		}
	}
	v.mu.Unlock()
	v.poke()
}

// startRevisions is the revision each slot ran when the rollout of
// following began: that of its replica of another revision, else
// following's.
func startRevisions(st wire.ServiceStatus, following int) map[int]int {
	from := map[int]int{}
	for _, in := range st.Instances {
		if in.Desired != state.DesiredRunning {
			continue
		}
		if in.Revision != following || from[in.Slot] == 0 {
			from[in.Slot] = in.Revision
		}
	}
	return from
}

func (v *liveView) lostContact(err error) {
	v.mu.Lock()
	v.snap.Problem = fmt.Sprintf("lost contact with the servers (%v); retrying", err)
	v.mu.Unlock()
	v.poke()
}

func (v *liveView) reconnected() {
	v.mu.Lock()
	v.snap.Problem = ""
	v.mu.Unlock()
	v.poke()
}

func (v *liveView) rollingBack(failed, next int, why string) {
	v.mu.Lock()
	v.snap.FailedRevision, v.snap.Why, v.snap.Following = failed, why, next
	// The slots' old side is now what the failed revision left in them.
	for _, in := range v.snap.Status.Instances {
		if in.Revision == failed {
			v.snap.From[in.Slot] = failed
		}
	}
	v.mu.Unlock()
	v.poke()
}

// finish stops the helpers, draws the view a last time with the closing
// line and gives the cursor back.
func (v *liveView) finish(line string, _ error) {
	v.once.Do(func() {
		v.cancel()
		v.wg.Wait()
		v.lastEvents()
		v.mu.Lock()
		v.snap.End, v.snap.Ended = line, true
		seeded := v.seeded
		v.mu.Unlock()
		if seeded {
			v.draw()
		} else if line != "" {
			fmt.Fprintln(v.out, line) // ended before the first answer: no view to draw
		}
		fmt.Fprint(v.out, "\x1b[?25h")
	})
}

func (v *liveView) redrawLoop() {
	defer v.wg.Done()
	t := time.NewTicker(liveRefresh)
	defer t.Stop()
	for {
		v.draw()
		select {
		case <-v.ctx.Done():
			return
		case <-v.wake:
		case <-t.C:
		}
	}
}

// draw goes back over the last draw and writes the view anew.
func (v *liveView) draw() {
	width, height, err := term.GetSize(int(v.out.Fd()))
	if err != nil || width <= 0 {
		width, height = 80, 24
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.seeded {
		return // nothing to show before the first answer
	}
	v.snap.Elapsed = time.Since(v.started)
	lines := renderLive(v.snap, width, max(height-1, 3), true)
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\r\x1b[%dA", v.drawn)
	}
	for _, l := range lines {
		b.WriteString("\x1b[2K" + l + "\n")
	}
	b.WriteString("\x1b[J") // clear what a longer last draw left below
	v.drawn = len(lines)
	_, _ = io.WriteString(v.out, b.String())
}

// liveEvents is how many of the service's events the view keeps.
const liveEvents = 50

// eventsLoop reads the service's events with blocking reads: first those
// of the last minute, kept from the followed revision's revision_stored
// on when it is among them, then each new one as it comes.
func (v *liveView) eventsLoop() {
	defer v.wg.Done()
	wait := time.Duration(0)
	for v.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(v.ctx, wait+requestTimeout)
		page, err := v.c.Events(ctx, v.after, v.snap.Service, v.started.Add(-time.Minute), wait)
		cancel()
		if err != nil {
			select {
			case <-v.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		v.addEvents(page)
		v.poke()
		wait = 30 * time.Second
	}
}

// addEvents keeps a page of events; v.after is only written here, by
// eventsLoop and, once it ended, by lastEvents.
func (v *liveView) addEvents(page wire.EventsPage) {
	v.mu.Lock()
	defer v.mu.Unlock()
	evs := page.Events
	if v.after == 0 {
		evs = fromRevisionStored(evs, v.snap.Following)
	}
	v.snap.Events = append(v.snap.Events, evs...)
	if len(v.snap.Events) > liveEvents {
		v.snap.Events = append([]state.Event(nil), v.snap.Events[len(v.snap.Events)-liveEvents:]...)
	}
	v.after = page.Last
}

// lastEvents reads, without waiting, the events the blocking read had not
// brought yet when the rollout ended (its closing event comes with the
// status that ends it), for the closing frame.
func (v *liveView) lastEvents() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(v.ctx), 2*time.Second)
	defer cancel()
	if page, err := v.c.Events(ctx, v.after, v.snap.Service, v.started.Add(-time.Minute), 0); err == nil {
		v.addEvents(page)
	}
}

// fromRevisionStored keeps the events from the last revision_stored of
// revision on, or all when it is not among them (or not known yet).
func fromRevisionStored(evs []state.Event, revision int) []state.Event {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == state.EventRevisionStored && evs[i].Revision == revision && revision != 0 {
			return evs[i:]
		}
	}
	return evs
}
