// Package hollow simulates host agents for scale tests (kubemark's hollow
// nodes): one process runs N hosts, each with its own host ID, assignment
// long-poll, report batches, heartbeats and health, over the same API
// client and TLS as a real agent, with a fake runtime in place of a Docker
// Engine. See DESIGN.md.
//
// Nothing on the real path imports this package: the real agent is
// deployer, and only `deployctl agent --hollow N` and the scale tests use
// it.
package hollow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/raftstore/state"
)

// Defaults of Config.
const (
	DefaultPrefix            = "hollow"
	DefaultStartLatency      = 300 * time.Millisecond
	DefaultJitter            = 100 * time.Millisecond
	DefaultStopLatency       = 50 * time.Millisecond
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultAssignmentWait    = 30 * time.Second

	minRetry      = 100 * time.Millisecond
	maxRetry      = 5 * time.Second
	reportTimeout = 10 * time.Second
)

// ErrInvalidConfig means New was given an unusable Config.
var ErrInvalidConfig = errors.New("invalid hollow config")

// BadMarker in a revision's image (its name or tag, not its digest) makes every
// replica of it fail its health check: how a scale test releases a bad
// version without a real image.
const BadMarker = "bad"

// Controller is what a hollow host needs from the servers: the two calls
// a real agent's poller and reporter make. *wire.Client implements it.
type Controller interface {
	Assignments(ctx context.Context, host string, afterIndex uint64, wait time.Duration) (state.AssignmentSet, error)
	Report(ctx context.Context, r state.HostReport) error
}

// Config configures a Fleet. Zero durations take the defaults.
type Config struct {
	// Hosts is how many hosts to simulate: PREFIX-0001 .. PREFIX-<Hosts>.
	Hosts  int
	Prefix string
	// Labels are sent by every host (placement constraints).
	Labels map[string]string
	// StartLatency is how long a replica takes from its assignment to its
	// first health verdict, ± a uniform Jitter.
	StartLatency time.Duration
	Jitter       time.Duration
	StopLatency  time.Duration
	// FailFraction of starts fail ("failed", as a container that exits at
	// once), drawn per start; 0 ≤ FailFraction ≤ 1.
	FailFraction      float64
	HeartbeatInterval time.Duration
	AssignmentWait    time.Duration
	Logger            hclog.Logger
}

// HostID is the id of the i-th hollow host (from 1): PREFIX-0001.
func HostID(prefix string, i int) string { return fmt.Sprintf("%s-%04d", prefix, i) }

// Stats are a fleet's counters since it started.
type Stats struct {
	Starts, Healthy, Unhealthy, Failed, Stops int64
	// Reports are report calls that succeeded, ReportErrors those that
	// failed (and were retried); AssignmentSets the sets received.
	Reports, ReportErrors, AssignmentSets int64
}

type counters struct {
	starts, healthy, unhealthy, failed, stops atomic.Int64
	reports, reportErrors, sets, pollFailures atomic.Int64
}

// Fleet is a set of hollow hosts.
type Fleet struct {
	cfg   Config
	log   hclog.Logger
	hosts []*host
	n     counters
}

// New checks cfg and makes its hosts; clientFor gives each host its
// controller client (with TLS, one that presents that host's certificate).
func New(cfg Config, clientFor func(hostID string) (Controller, error)) (*Fleet, error) {
	if cfg.Hosts <= 0 {
		return nil, fmt.Errorf("%w: hosts %d: give at least 1", ErrInvalidConfig, cfg.Hosts)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if err := pki.ValidateNodeName(HostID(cfg.Prefix, cfg.Hosts)); err != nil {
		return nil, fmt.Errorf("%w: prefix %q: %w", ErrInvalidConfig, cfg.Prefix, err)
	}
	if cfg.FailFraction < 0 || cfg.FailFraction > 1 {
		return nil, fmt.Errorf("%w: fail fraction %v: want a number from 0 to 1", ErrInvalidConfig, cfg.FailFraction)
	}
	if cfg.StartLatency < 0 || cfg.Jitter < 0 || cfg.StopLatency < 0 {
		return nil, fmt.Errorf("%w: latencies and jitter cannot be negative", ErrInvalidConfig)
	}
	if cfg.StartLatency == 0 {
		cfg.StartLatency = DefaultStartLatency
	}
	if cfg.StopLatency == 0 {
		cfg.StopLatency = DefaultStopLatency
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.AssignmentWait <= 0 {
		cfg.AssignmentWait = DefaultAssignmentWait
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	f := &Fleet{cfg: cfg, log: log.Named("hollow")}
	for i := 1; i <= cfg.Hosts; i++ {
		id := HostID(cfg.Prefix, i)
		ctrl, err := clientFor(id)
		if err != nil {
			return nil, fmt.Errorf("hollow host %s: %w", id, err)
		}
		f.hosts = append(f.hosts, &host{
			id: id, ctrl: ctrl, fleet: f, log: f.log.With("host", id),
			replicas: map[string]*fake{}, pending: map[string]state.StatusReport{},
			wake: make(chan struct{}, 1), rng: rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano()))),
		})
	}
	return f, nil
}

// HostIDs are the fleet's host ids in order.
func (f *Fleet) HostIDs() []string {
	ids := make([]string, len(f.hosts))
	for i, h := range f.hosts {
		ids[i] = h.id
	}
	return ids
}

// Stats reads the counters.
func (f *Fleet) Stats() Stats {
	return Stats{Starts: f.n.starts.Load(), Healthy: f.n.healthy.Load(), Unhealthy: f.n.unhealthy.Load(), Failed: f.n.failed.Load(),
		Stops: f.n.stops.Load(), Reports: f.n.reports.Load(), ReportErrors: f.n.reportErrors.Load(), AssignmentSets: f.n.sets.Load()}
}

// Run runs every host until ctx ends, then returns nil once all their
// goroutines have ended. Simulated containers end with it.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, h := range f.hosts {
		wg.Go(func() { h.poll(ctx) })
		wg.Go(func() { h.report(ctx) })
	}
	wg.Wait()
	return nil
}

// fake is one simulated container.
type fake struct {
	fingerprint string
	containerID string
	state       string
	// gen changes whenever the container is replaced or stopped, so a
	// timer of an earlier one does nothing.
	gen      uint64
	stopping bool
}

// host is one hollow host: its poller and reporter goroutines, and the
// fake runtime's records (under mu; timers change them too).
type host struct {
	id    string
	ctrl  Controller
	fleet *Fleet
	log   hclog.Logger

	mu       sync.Mutex
	replicas map[string]*fake
	pending  map[string]state.StatusReport // newest per replica
	gen      uint64
	// index is the Index of the last assignment set applied; reports
	// carry it (state.HostReport.AssignmentIndex).
	index uint64
	rng   *rand.Rand
	wake  chan struct{}
}

// poll long-polls the host's assignment set, as the real agent does, and
// applies each new one. Errors back off and retry; never fatal.
func (h *host) poll(ctx context.Context) {
	var index uint64
	first := true
	var fails int
	for ctx.Err() == nil {
		set, err := h.ctrl.Assignments(ctx, h.id, index, h.fleet.cfg.AssignmentWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.fleet.n.pollFailures.Add(1)
			fails++
			if fails == 1 || fails%20 == 0 {
				h.log.Warn("cannot get assignments; retrying", "error", err)
			}
			if !wait(ctx, h.retryDelay(fails)) {
				return
			}
			continue
		}
		fails = 0
		if !first && set.Index <= index {
			if !wait(ctx, minRetry) {
				return
			}
			continue
		}
		first = false
		index = set.Index
		h.fleet.n.sets.Add(1)
		h.apply(ctx, set)
	}
}

// retryDelay doubles from minRetry to maxRetry with the n-th failure in
// a row, with up to a quarter of random spread so a thousand hosts that
// lost the same leader do not come back in step.
func (h *host) retryDelay(n int) time.Duration {
	d := minRetry << min(n-1, 6)
	d = min(d, maxRetry)
	h.mu.Lock()
	spread := time.Duration(h.rng.Int64N(int64(d)/4 + 1))
	h.mu.Unlock()
	return d + spread
}

// apply makes the fake runtime match set: a replica desired running that
// has no container of its fingerprint starts one, one desired stopped is
// stopped, and containers of replicas no longer in the set go away.
func (h *host) apply(ctx context.Context, set state.AssignmentSet) {
	cfg := &h.fleet.cfg
	h.mu.Lock()
	defer h.mu.Unlock()
	h.index = max(h.index, set.Index)
	inSet := make(map[string]bool, len(set.Assignments))
	for _, a := range set.Assignments {
		r := a.Replica
		inSet[r.ID] = true
		f := h.replicas[r.ID]
		switch r.Desired {
		case state.DesiredRunning:
			if f != nil && f.fingerprint == r.Fingerprint && !f.stopping {
				continue
			}
			h.gen++
			f = &fake{fingerprint: r.Fingerprint, containerID: fmt.Sprintf("hollow%016x%08x", h.rng.Uint64(), h.gen), state: state.ReplicaStarting, gen: h.gen}
			h.replicas[r.ID] = f
			h.fleet.n.starts.Add(1)
			h.put(state.StatusReport{ReplicaID: r.ID, State: state.ReplicaStarting, ContainerID: f.containerID})
			outcome, msg := state.ReplicaHealthy, ""
			switch {
			case cfg.FailFraction > 0 && h.rng.Float64() < cfg.FailFraction:
				outcome, msg = state.ReplicaFailed, "hollow: the container exited with code 1 (simulated start failure)"
			case isBad(a.Revision):
				outcome, msg = state.ReplicaUnhealthy, fmt.Sprintf("hollow: health check failed %d times (image %s is a bad release)",
					max(a.Revision.Spec.Healthcheck.Retries, 1), a.Revision.Spec.Image)
			}
			id, gen := r.ID, f.gen
			time.AfterFunc(h.startLatency(), func() { h.settle(ctx, id, gen, outcome, msg) })
		case state.DesiredStopped:
			if f == nil {
				if r.Status.State != state.ReplicaStopped {
					h.put(state.StatusReport{ReplicaID: r.ID, State: state.ReplicaStopped})
				}
				continue
			}
			if f.stopping {
				continue
			}
			h.gen++
			f.stopping, f.gen = true, h.gen
			id, gen := r.ID, f.gen
			time.AfterFunc(cfg.StopLatency, func() { h.stopped(ctx, id, gen) })
		}
	}
	for id := range h.replicas {
		if !inSet[id] {
			delete(h.replicas, id) // an orphan: removed, nothing to report
		}
	}
	h.poke()
}

// isBad looks for BadMarker in the image as the spec names it and in the
// repository of its reference, never in a digest: "bad" is hexadecimal,
// and one random digest in 70 holds it (a good release of the scale run
// once failed that way).
func isBad(rev state.Revision) bool {
	repo, _, _ := strings.Cut(rev.Ref, "@")
	image, _, _ := strings.Cut(rev.Spec.Image, "@")
	return strings.Contains(image, BadMarker) || strings.Contains(repo, BadMarker)
}

// startLatency draws StartLatency ± Jitter (never below zero). mu held.
func (h *host) startLatency() time.Duration {
	cfg := &h.fleet.cfg
	d := cfg.StartLatency
	if cfg.Jitter > 0 {
		d += time.Duration(h.rng.Int64N(int64(2*cfg.Jitter)+1)) - cfg.Jitter
	}
	return max(d, 0)
}

// settle gives a started container its verdict, unless it was replaced or
// stopped meanwhile.
func (h *host) settle(ctx context.Context, id string, gen uint64, outcome, msg string) {
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.replicas[id]
	if f == nil || f.gen != gen {
		return
	}
	f.state = outcome
	switch outcome {
	case state.ReplicaHealthy:
		h.fleet.n.healthy.Add(1)
	case state.ReplicaUnhealthy:
		h.fleet.n.unhealthy.Add(1)
	case state.ReplicaFailed:
		h.fleet.n.failed.Add(1)
	}
	h.put(state.StatusReport{ReplicaID: id, State: outcome, ContainerID: f.containerID, Message: msg})
	h.poke()
}

// stopped ends a stop: the container is gone.
func (h *host) stopped(ctx context.Context, id string, gen uint64) {
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.replicas[id]
	if f == nil || f.gen != gen {
		return
	}
	delete(h.replicas, id)
	h.fleet.n.stops.Add(1)
	h.put(state.StatusReport{ReplicaID: id, State: state.ReplicaStopped})
	h.poke()
}

// put queues a report; a newer one of the same replica replaces it. mu held.
func (h *host) put(r state.StatusReport) { h.pending[r.ReplicaID] = r }

func (h *host) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// take empties the queue; it also returns the index of the assignment
// set the reports come from.
func (h *host) take() ([]state.StatusReport, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	batch := make([]state.StatusReport, 0, len(h.pending))
	for _, r := range h.pending {
		batch = append(batch, r)
	}
	clear(h.pending)
	return batch, h.index
}

// putBack requeues a batch that was not delivered, under whatever was
// queued since (newer).
func (h *host) putBack(batch []state.StatusReport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range batch {
		if _, newer := h.pending[r.ReplicaID]; !newer {
			h.pending[r.ReplicaID] = r
		}
	}
}

// report sends queued changes when poked and a heartbeat every
// HeartbeatInterval, as the real agent's reporter does.
func (h *host) report(ctx context.Context) {
	cfg := &h.fleet.cfg
	// Hosts start their heartbeat clocks spread over one interval.
	h.mu.Lock()
	offset := time.Duration(h.rng.Int64N(int64(cfg.HeartbeatInterval)))
	h.mu.Unlock()
	if !wait(ctx, offset) {
		return
	}
	heartbeat := time.NewTicker(cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	engine := &state.EngineFeatures{Seccomp: true}
	fails := 0
	for {
		batch, index := h.take()
		callCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		err := h.ctrl.Report(callCtx, state.HostReport{Host: h.id, AssignmentIndex: index, Labels: cfg.Labels, Engine: engine, Reports: batch})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.putBack(batch)
			h.fleet.n.reportErrors.Add(1)
			fails++
			if fails == 1 || fails%20 == 0 {
				h.log.Warn("cannot report; retrying", "error", err, "changes", len(batch))
			}
			if !wait(ctx, h.retryDelay(fails)) {
				return
			}
			continue
		}
		fails = 0
		h.fleet.n.reports.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-heartbeat.C:
		}
	}
}

// wait sleeps d or until ctx ends; false when ctx ended.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
