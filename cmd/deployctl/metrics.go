package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
)

// newRegistry is the process's own Prometheus registry (never the global
// default): the server's, raft's and the agent's metrics, and the Go
// runtime's and the process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// metricsHandler serves reg in the Prometheus text format.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// bindMetricsFlag declares --metrics-addr, shared by server and agent.
func bindMetricsFlag(f *pflag.FlagSet) {
	f.String("metrics-addr", "", "also serve GET /metrics (Prometheus text format) on this HOST:PORT, plain HTTP without authentication: give an address only your monitoring reaches")
}

// checkMetricsAddr checks --metrics-addr ("" is none).
func checkMetricsAddr(addr string) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--metrics-addr %q: want HOST:PORT, e.g. 127.0.0.1:9090: %w", addr, err)
	}
	return nil
}

// serveMetrics serves /metrics alone on addr, plain HTTP, until ctx ends.
// The listener is opened before it returns, so a taken port fails the
// start with the flag named.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log hclog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(reg))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close(); <-done }, nil
}
