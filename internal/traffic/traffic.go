// Package traffic holds the figures by which a release is judged (issue
// 15): how many requests the proxies sent to a set of replicas, how many
// failed, and how long they took, as a latency histogram that adds up
// across replicas, hosts and seconds. The proxy fills them, the agent
// ships them, the leader sums them per revision; all three share these
// types so that a figure means the same thing everywhere.
package traffic

import (
	"math"
	"sort"
	"time"
)

// Buckets: bucket i holds latencies in (bound(i-1), bound(i)], bound(i) =
// firstBound * growth^i; bucket 0 holds everything up to firstBound and
// the last everything above the last bound. With growth 1.1 a quantile is
// off by at most 10% (it is reported as its bucket's upper bound, never
// below the truth), which is enough to compare with a threshold such as
// 500 ms; 150 buckets span 100 µs to about 160 s.
const (
	firstBound = 100 * time.Microsecond
	growth     = 1.1
	// NumBuckets is the number of latency buckets.
	NumBuckets = 150
)

// Bound is the upper bound of bucket i (the last bucket has none: it is
// reported as its lower bound's successor, Bound(NumBuckets-1)).
func Bound(i int) time.Duration {
	return time.Duration(float64(firstBound) * math.Pow(growth, float64(i)))
}

// BucketOf is the bucket that holds d.
func BucketOf(d time.Duration) int {
	if d <= firstBound {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(firstBound)) / math.Log(growth)))
	// Rounding in Log can put d one bucket too low or high; fix it with
	// the exact bounds.
	for i > 0 && Bound(i-1) >= d {
		i--
	}
	for i < NumBuckets-1 && Bound(i) < d {
		i++
	}
	return min(i, NumBuckets-1)
}

// Figures are what a proxy saw of the requests it sent to a set of
// replicas: every attempt (a retried request counts once per replica it
// was sent to), those that failed (a 5xx answer or no answer: refused,
// reset, timed out), and the latency of those answered, from sending the
// request to the response's headers. Sparse: Latency maps a bucket to its
// count and holds only buckets that were hit.
type Figures struct {
	Requests uint64         `json:"requests"`
	Errors   uint64         `json:"errors"`
	Latency  map[int]uint64 `json:"latency,omitempty"`
}

// Observe records one attempt.
func (f *Figures) Observe(latency time.Duration, failed bool, answered bool) {
	f.Requests++
	if failed {
		f.Errors++
	}
	if answered {
		if f.Latency == nil {
			f.Latency = map[int]uint64{}
		}
		f.Latency[BucketOf(latency)]++
	}
}

// Add adds o to f.
func (f *Figures) Add(o Figures) {
	f.Requests += o.Requests
	f.Errors += o.Errors
	for b, n := range o.Latency {
		if b < 0 || b >= NumBuckets || n == 0 {
			continue // not a bucket of this version: ignored, not fatal
		}
		if f.Latency == nil {
			f.Latency = map[int]uint64{}
		}
		f.Latency[b] += n
	}
}

// Empty says nothing was recorded.
func (f Figures) Empty() bool { return f.Requests == 0 && len(f.Latency) == 0 }

// ErrorRate is Errors / Requests (0 without requests).
func (f Figures) ErrorRate() float64 {
	if f.Requests == 0 {
		return 0
	}
	return float64(f.Errors) / float64(f.Requests)
}

// Quantile is the q-quantile (0 < q <= 1) of the answered requests'
// latency, as the upper bound of the bucket that holds it (nearest rank);
// 0 when none was answered.
func (f Figures) Quantile(q float64) time.Duration {
	var total uint64
	buckets := make([]int, 0, len(f.Latency))
	for b, n := range f.Latency {
		total += n
		buckets = append(buckets, b)
	}
	if total == 0 {
		return 0
	}
	sort.Ints(buckets)
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for _, b := range buckets {
		seen += f.Latency[b]
		if seen >= rank {
			return Bound(b)
		}
	}
	return Bound(buckets[len(buckets)-1])
}

// Summary is Figures reduced to what a revision keeps: counts and two
// quantiles.
type Summary struct {
	Requests uint64        `json:"requests"`
	Errors   uint64        `json:"errors"`
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
}

// Summary reduces f.
func (f Figures) Summary() Summary {
	return Summary{Requests: f.Requests, Errors: f.Errors, P50: f.Quantile(0.50), P99: f.Quantile(0.99)}
}

// ErrorRate is Errors / Requests (0 without requests).
func (s Summary) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}
