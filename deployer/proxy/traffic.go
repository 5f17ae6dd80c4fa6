package proxy

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
)

// Traffic figures (issue 15): what this proxy sent to each replica on
// this host, by which the leader judges a release. Every attempt the
// proxy makes to a container counts, once per container it was sent to: a
// request that failed on one replica and was retried on another is a
// failure of the first and a request of the second, so retries do not
// hide a failing revision. An attempt to another host's proxy (a hop
// target) does not count here: that host's proxy counts the attempt it
// makes to its own container.

// liveFigures are a target's figures since the last TakeTraffic: atomic
// counters, so that the request path takes no lock and allocates nothing.
type liveFigures struct {
	requests atomic.Uint64
	errors   atomic.Uint64
	latency  [traffic.NumBuckets]atomic.Uint64
}

// observe records one attempt. The request is counted last and taken
// first (take), so a take that sees an attempt's request also sees its
// error and latency (a take that runs in between may carry an error or a
// latency whose request comes in the next one: the sums stay exact).
func (f *liveFigures) observe(latency time.Duration, failed, answered bool) {
	if answered {
		f.latency[traffic.BucketOf(latency)].Add(1)
	}
	if failed {
		f.errors.Add(1)
	}
	f.requests.Add(1)
}

// observeHTTP records one round trip to a container that started at
// start: an error when it got no answer (refused, reset, timed out,
// closed before a response) or a 5xx; the latency is the time to the
// response's headers (a long body or an event stream is not slow). A
// client that went away before the answer is not the replica's failure;
// its wait so far counts as a latency (a lower bound), so a replica that
// hangs shows as slow even when clients give up first.
func (f *liveFigures) observeHTTP(ctx context.Context, start time.Time, resp *http.Response, err error) {
	if f == nil {
		return
	}
	switch {
	case err == nil:
		f.observe(time.Since(start), resp.StatusCode >= 500, true)
	case ctx.Err() != nil:
		f.observe(time.Since(start), false, true)
	default:
		f.observe(0, true, false)
	}
}

// observeDial records one connection to a container for a tcp route:
// an error when the dial failed, no latency (a connection has no answer
// to time). A dial cut short by ctx (the proxy stopping, the sending host
// giving up) is not the replica's failure.
func (f *liveFigures) observeDial(ctx context.Context, err error) {
	if f == nil {
		return
	}
	f.observe(0, err != nil && ctx.Err() == nil, false)
}

// take moves the figures into out[id] and resets them. Nothing observed
// concurrently is lost: each counter is swapped with zero.
func (f *liveFigures) take(out map[string]traffic.Figures, id string) {
	requests := f.requests.Swap(0)
	if requests == 0 {
		// Nothing since the last take: an attempt being observed now
		// counts its request last and goes to the next take whole.
		return
	}
	got := out[id]
	got.Requests += requests
	got.Errors += f.errors.Swap(0)
	for b := range f.latency {
		if f.latency[b].Load() == 0 {
			continue
		}
		if got.Latency == nil {
			got.Latency = map[int]uint64{}
		}
		got.Latency[b] += f.latency[b].Swap(0)
	}
	out[id] = got
}

// TakeTraffic returns what this proxy sent to each of this host's
// replicas since the previous call, by target ID (the targets of one
// replica on several ports add up), and resets the figures; replicas with
// nothing are not listed. Targets forgotten since the previous call are
// reported one last time. The agent calls it about once a second and
// ships the figures to the leader.
func (t *Table) TakeTraffic() map[string]traffic.Figures {
	out := map[string]traffic.Figures{}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tg := range t.targets {
		if tg.figures != nil {
			tg.figures.take(out, tg.key.ID)
		}
	}
	// A forgotten target with requests in flight (its drain ran out of
	// time) may still count their end: it is kept until none is left.
	kept := t.retired[:0]
	for _, tg := range t.retired {
		idle := tg.inflight.Load() == 0
		tg.figures.take(out, tg.key.ID)
		if !idle {
			kept = append(kept, tg)
		}
	}
	clear(t.retired[len(kept):])
	t.retired = kept
	return out
}
