package raftstore

import (
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the raft node's Prometheus metrics: how long a command takes
// from its proposal to its result on the leader (commit on a quorum, then
// the leader's FSM), how long the FSM takes to apply one on this server,
// and, sampled at each scrape, the node's state, term and indexes. They
// live in the registry given to NewMetrics (never the global one, and not
// hashicorp/raft's go-metrics sink, which is process-global). A nil
// *Metrics records nothing.
type Metrics struct {
	reg      prometheus.Registerer
	commit   *prometheus.HistogramVec
	fsmApply *prometheus.HistogramVec
}

// latencyBuckets suit a local commit (sub-millisecond on loopback) as well
// as a cross-zone one or a slow disk.
func latencyBuckets() []float64 {
	return []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
}

// NewMetrics registers the command latencies with reg. Give it to
// Config.Metrics and to the FSM (WithMetrics); Open registers the node's
// state with the same registry.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		commit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "deployctl_raft_commit_duration_seconds",
			Help:    "Time from proposing a command on the leader to its result: committed on a quorum and applied by the leader's FSM; by command type.",
			Buckets: latencyBuckets(),
		}, []string{"command"}),
		fsmApply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "deployctl_raft_fsm_apply_duration_seconds",
			Help:    "Time this server's FSM took to apply one committed command, by command type.",
			Buckets: latencyBuckets(),
		}, []string{"command"}),
	}
	for _, c := range []prometheus.Collector{m.commit, m.fsmApply} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observeCommit(cmd []byte, took time.Duration) {
	if m == nil || len(cmd) == 0 {
		return
	}
	m.commit.WithLabelValues(CommandType(cmd[0]).String()).Observe(took.Seconds())
}

func (m *Metrics) observeApply(t CommandType, took time.Duration) {
	if m == nil {
		return
	}
	m.fsmApply.WithLabelValues(t.String()).Observe(took.Seconds())
}

// WithMetrics makes the FSM time every command it applies.
func WithMetrics(m *Metrics) FSMOption { return func(f *FSM) { f.metrics = m } }

// nodeCollector samples the node's raft state at each scrape.
type nodeCollector struct {
	r                                  *raft.Raft
	state, term, commit, applied, last *prometheus.Desc
	lastContact, peers                 *prometheus.Desc
}

func newNodeCollector(r *raft.Raft) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("deployctl_raft_"+name, help, labels, nil)
	}
	return &nodeCollector{
		r:           r,
		state:       d("state", "1 for the raft state this server is in (leader, follower, candidate, shutdown), 0 for the others.", "state"),
		term:        d("term", "The raft term this server is in."),
		commit:      d("commit_index", "The highest log index this server knows to be committed."),
		applied:     d("applied_index", "The highest log index this server's FSM has applied."),
		last:        d("last_log_index", "The highest log index in this server's log."),
		lastContact: d("last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader, -1 never)."),
		peers:       d("peers", "Other voters in the raft configuration as this server knows it."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.term, c.commit, c.applied, c.last, c.lastContact, c.peers} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.State()
	for _, s := range []raft.RaftState{raft.Leader, raft.Follower, raft.Candidate, raft.Shutdown} {
		v := 0.0
		if s == st {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, strings.ToLower(s.String()))
	}
	stats := c.r.Stats()
	num := func(key string) float64 {
		n, _ := strconv.ParseUint(stats[key], 10, 64)
		return float64(n)
	}
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, num("term"))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, num("commit_index"))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(c.r.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(c.r.LastIndex()))
	ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, num("num_peers"))
	contact := -1.0
	switch {
	case st == raft.Leader:
		contact = 0
	case !c.r.LastContact().IsZero():
		contact = time.Since(c.r.LastContact()).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.lastContact, prometheus.GaugeValue, contact)
}
