package traffic

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketOfIsWithinItsBounds(t *testing.T) {
	for _, d := range []time.Duration{0, 1, firstBound, firstBound + 1, time.Millisecond, 499 * time.Millisecond,
		500 * time.Millisecond, 501 * time.Millisecond, 3 * time.Second, time.Hour} {
		b := BucketOf(d)
		if b < 0 || b >= NumBuckets {
			t.Fatalf("BucketOf(%v) = %d, out of range", d, b)
		}
		if b < NumBuckets-1 && d > Bound(b) {
			t.Errorf("BucketOf(%v) = %d, whose bound %v is below it", d, b, Bound(b))
		}
		if b > 0 && d <= Bound(b-1) {
			t.Errorf("BucketOf(%v) = %d, but bucket %d (bound %v) holds it", d, b, b-1, Bound(b-1))
		}
	}
}

func TestQuantileWithinTenPercent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var f Figures
	var exact []time.Duration
	for range 10000 {
		d := time.Duration(r.ExpFloat64() * float64(20*time.Millisecond))
		exact = append(exact, d)
		f.Observe(d, false, true)
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := exact[int(q*float64(len(exact)))-1]
		got := f.Quantile(q)
		if got < want || float64(got) > float64(want)*1.1001+float64(firstBound) {
			t.Errorf("Quantile(%v) = %v, exact %v: want within +10%%", q, got, want)
		}
	}
}

func TestAddSumsAcrossReplicas(t *testing.T) {
	var a, b, sum Figures
	for range 98 {
		a.Observe(10*time.Millisecond, false, true)
	}
	a.Observe(0, true, false) // refused: an error without an answer
	b.Observe(2*time.Second, true, true)
	b.Observe(2*time.Second, true, true)
	sum.Add(a)
	sum.Add(b)
	sum.Add(Figures{Latency: map[int]uint64{-1: 5, NumBuckets: 7}}) // foreign buckets are ignored
	if sum.Requests != 101 || sum.Errors != 3 {
		t.Fatalf("sum = %d requests %d errors, want 101 and 3", sum.Requests, sum.Errors)
	}
	if got := sum.ErrorRate(); got < 0.0297 || got > 0.0298 {
		t.Errorf("ErrorRate = %v, want 3/101", got)
	}
	if p50 := sum.Quantile(0.5); p50 < 10*time.Millisecond || p50 > 11*time.Millisecond {
		t.Errorf("p50 = %v, want 10 ms (+10%%)", p50)
	}
	// 100 answered: the 99th is one of the two slow ones.
	if p99 := sum.Quantile(0.99); p99 < 2*time.Second || p99 > 2200*time.Millisecond {
		t.Errorf("p99 = %v, want 2 s (+10%%)", p99)
	}
	s := sum.Summary()
	if s.Requests != 101 || s.Errors != 3 || s.P99 != sum.Quantile(0.99) || s.ErrorRate() != sum.ErrorRate() {
		t.Errorf("Summary = %+v", s)
	}
	if (Figures{}).Quantile(0.99) != 0 || !(Figures{}).Empty() || sum.Empty() {
		t.Error("empty figures")
	}
}
