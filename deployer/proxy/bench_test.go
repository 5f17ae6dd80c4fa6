package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Requests through the proxy to 4 loopback backends against straight to
// one, keep-alive on both hops, GOMAXPROCS parallel clients. No timed
// assertion: run with
//
//	go test -run '^$' -bench . -benchtime 3s ./deployer/proxy/
//
// and read req/s, ns/op and allocs/op: a quick before/after check of the
// hot path. Issue 8's comparison with nginx and Caddy, each proxy in a
// process of its own, is TestCompareProxies (make bench-proxy).
func BenchmarkDirect(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer be.Close()
	benchGet(b, be.URL)
}

func BenchmarkProxy4Backends(b *testing.B) {
	tb := NewTable(nil)
	var want Desired
	want.Routes = []Route{webRoute}
	for i := range 4 {
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
		defer be.Close()
		want.Targets = append(want.Targets, DesiredTarget{TargetKey: TargetKey{Service: "web", ID: string(rune('a' + i)), Addr: be.Listener.Addr().String()}, Healthy: true})
	}
	tb.Apply(want)
	px := httptest.NewServer(tb.HTTPHandler(80))
	defer px.Close()
	benchGet(b, px.URL)
}

func benchGet(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
