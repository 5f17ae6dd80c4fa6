// Command proxybench is the helper process of deployer/proxy's comparison
// benchmark (TestCompareProxies, `make bench-proxy`): it runs the backends,
// or deployctl's proxy in front of them, in a process of its own, so that
// neither shares the test process's heap and garbage collector, and the
// proxy gets the CPU the way nginx and Caddy (also separate processes) do.
//
//	proxybench backends -n 4
//	proxybench proxy -targets 127.0.0.1:A,127.0.0.1:B [-cpuprofile f]
//
// Each listens on a free loopback port, prints one line "ready ADDR..."
// on stdout and serves until SIGTERM or SIGINT (the benchmark kills it by
// PID). It is not part of deployctl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deployctl/deployctl/deployer/proxy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: proxybench backends|proxy [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch args[0] {
	case "backends":
		return backends(ctx, args[1:])
	case "proxy":
		return runProxy(ctx, args[1:])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// backends serves n tiny HTTP servers, each answering every request with a
// 3-byte text body: the cheapest backend, so that what the benchmark
// measures is the proxies in front of it.
func backends(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backends", flag.ContinueOnError)
	n := fs.Int("n", 4, "number of backends")
	if err := fs.Parse(args); err != nil {
		return err
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	var addrs []string
	var servers []*http.Server
	for range *n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		servers = append(servers, srv)
		addrs = append(addrs, ln.Addr().String())
	}
	fmt.Println("ready", strings.Join(addrs, " "))
	<-ctx.Done()
	for _, srv := range servers {
		_ = srv.Close()
	}
	return nil
}

// runProxy serves one http route to the targets through a proxy.Table, with
// the http.Server settings the agent uses for an ingress port
// (deployer/ingress.go).
func runProxy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	targets := fs.String("targets", "", "comma-separated host:port of the backends")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *targets == "" {
		return errors.New("proxy: -targets is required")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	table := proxy.NewTable(nil)
	want := proxy.Desired{Routes: []proxy.Route{{Listen: port, Protocol: proxy.HTTP, Path: "/", Service: "web", Port: 8080}}}
	for i, addr := range strings.Split(*targets, ",") {
		want.Targets = append(want.Targets, proxy.DesiredTarget{
			TargetKey: proxy.TargetKey{Service: "web", Port: 8080, ID: "r" + strconv.Itoa(i), Addr: addr},
			Healthy:   true,
		})
	}
	if ch := table.Apply(want); len(ch.Refused) > 0 {
		return fmt.Errorf("proxy: routes refused: %v", ch.Refused)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return fmt.Errorf("cpuprofile: %w", err)
		}
		// Stopped when the benchmark's SIGTERM ends the run below.
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	srv := &http.Server{Handler: table.HTTPHandler(port), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Println("ready", ln.Addr().String())
	select {
	case <-ctx.Done():
		_ = srv.Close()
		return nil
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	}
}
