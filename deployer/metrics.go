package deployer

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deployctl/deployctl/deployer/proxy"
)

// Metrics are the agent's Prometheus metrics: failed health probes by
// service and check kind, and, read from the proxy's counters at each
// scrape, the requests its proxy answered by service and status class with
// their latency. They live in the registry given to NewMetrics (never the
// global one). A nil *Metrics records nothing.
type Metrics struct {
	probeFailures *prometheus.CounterVec
	proxy         *proxyCollector
}

// NewMetrics registers the agent's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		probeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deployctl_health_probe_failures_total",
			Help: "Failed health probes of this host's replicas, by service and check (http, tcp, exec); every failure, counted towards unhealthy or not.",
		}, []string{"service", "check"}),
		proxy: newProxyCollector(),
	}
	for _, c := range []prometheus.Collector{m.probeFailures, m.proxy} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// probeFailed is what a prober calls on each failed probe of a replica of
// service (nil when there are no metrics).
func (m *Metrics) probeFailed(service, check string) func() {
	if m == nil {
		return nil
	}
	c := m.probeFailures.WithLabelValues(service, check)
	return c.Inc
}

// followProxy makes the proxy counters those of t (each Run has its own
// table; the registry keeps one collector).
func (m *Metrics) followProxy(t *proxy.Table) {
	if m != nil {
		m.proxy.table.Store(t)
	}
}

// proxyCollector turns the proxy's counters (proxy.Table.Counts) into
// metrics at each scrape: the request path keeps its atomics and knows
// nothing of Prometheus.
type proxyCollector struct {
	table             atomic.Pointer[proxy.Table]
	requests, latency *prometheus.Desc
}

func newProxyCollector() *proxyCollector {
	return &proxyCollector{
		requests: prometheus.NewDesc("deployctl_proxy_requests_total",
			"HTTP requests this host's proxy answered, by service (\"\" for no route) and status class (1xx..5xx), its own 404, 502 and 503 included.",
			[]string{"service", "class"}, nil),
		latency: prometheus.NewDesc("deployctl_proxy_request_duration_seconds",
			"Time from this host's proxy taking a request to the replica's response headers (or the failure), by service.",
			[]string{"service"}, nil),
	}
}

func (c *proxyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.latency
}

func (c *proxyCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.table.Load()
	if t == nil {
		return
	}
	bounds := proxy.LatencyBounds()
	for service, n := range t.Counts() {
		for class, v := range map[string]uint64{"1xx": n.Status1xx, "2xx": n.Status2xx, "3xx": n.Status3xx, "4xx": n.Status4xx, "5xx": n.Status5xx} {
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(v), service, class)
		}
		if len(n.Latency) != len(bounds)+1 {
			continue
		}
		buckets := make(map[float64]uint64, len(bounds))
		var cum uint64
		for i, b := range bounds {
			cum += n.Latency[i]
			buckets[b.Seconds()] = cum
		}
		total := cum + n.Latency[len(bounds)]
		ch <- prometheus.MustNewConstHistogram(c.latency, total, n.LatencySum.Seconds(), buckets, service)
	}
}
