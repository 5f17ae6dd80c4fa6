package controller

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deployctl/deployctl/controller/rollout"
	"github.com/deployctl/deployctl/raftstore/state"
)

// replicaStates are the replica states the replicas gauge always has a
// series for (zero included), so an alert on "unhealthy > 0" sees a 0
// rather than no series at all.
var replicaStates = [...]string{
	state.ReplicaPending, state.ReplicaStarting, state.ReplicaHealthy, state.ReplicaUnhealthy,
	state.ReplicaFailed, state.ReplicaStopped, state.ReplicaLost,
}

// Rollout outcomes as the rollouts counter labels them.
const (
	outcomeSucceeded  = "succeeded"
	outcomeRolledBack = "rolled_back"
	outcomePaused     = "paused"
	outcomeFailed     = "failed"
)

// Metrics are the controller's Prometheus metrics: what the API served,
// the rollouts this server's loop ended while it led, and the replicas of
// its state by service and state. They live in the registry the process
// gives NewMetrics (never the global one), so two servers in one test
// process each have their own. A nil *Metrics records nothing.
type Metrics struct {
	apiRequests     *prometheus.CounterVec
	apiDuration     *prometheus.HistogramVec
	rollouts        *prometheus.CounterVec
	rolloutDuration *prometheus.HistogramVec
}

// NewMetrics registers the controller's metrics with reg. store is read at
// each scrape for the replicas by state: every server has the whole state,
// so any of them answers (a follower's may lag the leader's by the entries
// it has not applied yet).
func NewMetrics(reg prometheus.Registerer, store *state.Store) (*Metrics, error) {
	m := &Metrics{
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deployctl_api_requests_total",
			Help: "API requests this server answered, by route (the route's pattern, \"other\" for none) and HTTP status code.",
		}, []string{"route", "code"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "deployctl_api_request_duration_seconds",
			Help:    "Time this server took to answer an API request, by route; blocking queries wait up to their wait parameter.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		rollouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deployctl_rollouts_total",
			Help: "Rollouts this server's loop ended while it led, by outcome (succeeded, rolled_back, paused, failed); sum over the servers for the cluster.",
		}, []string{"outcome"}),
		rolloutDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "deployctl_rollout_duration_seconds",
			Help:    "Time from a rollout's start to its end, by outcome, for the rollouts this server's loop ended.",
			Buckets: []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600},
		}, []string{"outcome"}),
	}
	for _, outcome := range []string{outcomeSucceeded, outcomeRolledBack, outcomePaused, outcomeFailed} {
		m.rollouts.WithLabelValues(outcome)
	}
	for _, c := range []prometheus.Collector{m.apiRequests, m.apiDuration, m.rollouts, m.rolloutDuration, newReplicaCollector(store)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// rolloutEnded counts a rollout the loop ended and how long it ran.
func (m *Metrics) rolloutEnded(outcome string, ran time.Duration) {
	if m == nil {
		return
	}
	m.rollouts.WithLabelValues(outcome).Inc()
	m.rolloutDuration.WithLabelValues(outcome).Observe(max(ran, 0).Seconds())
}

// instrument counts and times every request next serves, labelled with the
// route mux picks for it (its pattern: bounded, unlike paths). Requests
// refused before routing (no certificate) are counted under their route
// too.
func (m *Metrics) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, route := mux.Handler(r)
		if route == "" || route == "/" {
			route = "other"
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		m.apiRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		m.apiDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush and Hijack pass through: forwarding and promhttp use them.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := s.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// replicaCollector reports the replicas of the state by service and state
// at each scrape: no bookkeeping on the write path, and a series per
// (service, state), never per replica.
type replicaCollector struct {
	store *state.Store
	desc  *prometheus.Desc
}

func newReplicaCollector(store *state.Store) replicaCollector {
	return replicaCollector{store: store, desc: prometheus.NewDesc("deployctl_replicas",
		"Replicas by service and state (pending, starting, healthy, unhealthy, failed, stopped, lost), as this server's state has them.",
		[]string{"service", "state"}, nil)}
}

func (c replicaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c replicaCollector) Collect(ch chan<- prometheus.Metric) {
	view := c.store.View()
	for _, svc := range view.Services() {
		counts := map[string]int{}
		for _, r := range view.ServiceReplicas(svc.Name) {
			st := r.Status.State
			if st == "" {
				st = state.ReplicaPending
			}
			counts[st]++
		}
		for _, st := range replicaStates {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), svc.Name, st)
			delete(counts, st)
		}
		for st, n := range counts { // a state this version does not list
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), svc.Name, st)
		}
	}
}

// countRolloutEnd counts a rollout the loop just ended with outcome (once:
// the step that ends it is written once, guarded by the service's
// ModifyIndex; a rollback once its revision is stored).
func (c *Controller) countRolloutEnd(outcome rollout.Outcome, ran time.Duration) {
	switch outcome {
	case rollout.Succeeded:
		c.cfg.Metrics.rolloutEnded(outcomeSucceeded, ran)
	case rollout.Rollback:
		c.cfg.Metrics.rolloutEnded(outcomeRolledBack, ran)
	case rollout.Paused:
		c.cfg.Metrics.rolloutEnded(outcomePaused, ran)
	case rollout.Failed:
		c.cfg.Metrics.rolloutEnded(outcomeFailed, ran)
	}
}
