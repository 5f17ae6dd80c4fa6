package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the latency buckets Counts keeps
// per service (a last bucket holds what is slower than the last bound).
// Fewer and coarser than the traffic figures' (internal/traffic), which
// judge a release: these are exported as a Prometheus histogram per
// service.
func LatencyBounds() []time.Duration {
	return []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
		5 * time.Second, 10 * time.Second}
}

const numLatencyBuckets = 12 // len(LatencyBounds()) + 1

// Counts are the responses of one service by status class, as the proxy
// sent them to clients (its own 404, 502 and 503 included), and the
// requests and tcp connections retried on another target.
type Counts struct {
	Status1xx uint64 `json:"1xx"`
	Status2xx uint64 `json:"2xx"`
	Status3xx uint64 `json:"3xx"`
	Status4xx uint64 `json:"4xx"`
	Status5xx uint64 `json:"5xx"`
	Retries   uint64 `json:"retries"`
	// Latency counts the requests sent to a replica (answered or not) by
	// the time to the response's headers or the failure, per bucket of
	// LatencyBounds (not cumulative; the last is slower than every
	// bound); LatencySum adds those times up.
	Latency    []uint64      `json:"latency,omitempty"`
	LatencySum time.Duration `json:"latency_sum,omitempty"`
}

type serviceCounts struct {
	class      [5]atomic.Uint64
	retries    atomic.Uint64
	latency    [numLatencyBuckets]atomic.Uint64
	latencySum atomic.Int64
}

type stats struct {
	mu        sync.RWMutex
	byService map[string]*serviceCounts
}

func (s *stats) of(service string) *serviceCounts {
	s.mu.RLock()
	c := s.byService[service]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.byService[service]; c == nil {
		c = &serviceCounts{}
		s.byService[service] = c
	}
	return c
}

func (s *stats) count(service string, status int) {
	if class := status/100 - 1; class >= 0 && class < 5 {
		s.of(service).class[class].Add(1)
	}
}

func (s *stats) retry(service string) { s.of(service).retries.Add(1) }

// took records the latency of one request sent to a replica.
func (s *stats) took(service string, d time.Duration) {
	c := s.of(service)
	i := 0
	for _, bound := range LatencyBounds() {
		if d <= bound {
			break
		}
		i++
	}
	c.latency[i].Add(1)
	c.latencySum.Add(int64(d))
}

// Counts returns the counters by service since the table was made; ""
// holds the requests that matched no route.
func (t *Table) Counts() map[string]Counts {
	t.stats.mu.RLock()
	defer t.stats.mu.RUnlock()
	out := make(map[string]Counts, len(t.stats.byService))
	for name, c := range t.stats.byService {
		out[name] = Counts{
			Status1xx: c.class[0].Load(), Status2xx: c.class[1].Load(), Status3xx: c.class[2].Load(),
			Status4xx: c.class[3].Load(), Status5xx: c.class[4].Load(), Retries: c.retries.Load(),
			LatencySum: time.Duration(c.latencySum.Load()),
		}
		counts := out[name]
		for i := range c.latency {
			counts.Latency = append(counts.Latency, c.latency[i].Load())
		}
		out[name] = counts
	}
	return out
}
