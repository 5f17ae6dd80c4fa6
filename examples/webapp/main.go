// Command webapp is the tiny HTTP service that the deployctl demo and the
// deployer tests run in containers. Its behaviour is steered by environment
// variables so that one binary can play a good, a broken and a crashing
// release:
//
//	PORT            port to listen on (default 8080)
//	WEBAPP_VERSION  text that GET / answers with
//	WEBAPP_BROKEN=1 GET /healthz answers 500 (a release that fails its checks)
//	WEBAPP_WARMUP   a duration (e.g. 1s): GET /healthz answers 503 for that
//	                long after start (a release that warms up before it is
//	                ready, which a health check's start_period covers)
//	WEBAPP_CRASH=1  exit 1 right at start (a release that cannot run)
//	WEBAPP_REQUIRE_SECRET=PATH:PREFIX  GET /healthz answers 500 unless
//	                the file PATH starts with PREFIX (a release whose new
//	                secret the service rejects; a prefix, so that the value
//	                itself need not be in the environment)
//
// GET / also sets X-Webapp-Hostname to the container's hostname.
//
// "webapp -check" GETs its own /healthz on 127.0.0.1:$PORT and exits 0 when
// it passes, 1 otherwise: images built FROM scratch have no shell or curl, so
// the binary doubles as the tool an exec health check runs.
//
// It is also the client tests run inside containers (docker exec):
// "webapp -fetch URL" GETs URL and prints the status and the body (exit 0
// for 2xx, 3 for another status, 1 when no answer came), "webapp -dial
// HOST:PORT" opens a TCP connection and closes it (exit 0 when it
// connected, 1 otherwise, with the error), "webapp -resolve NAME" prints
// the addresses NAME resolves to (exit 1 when it does not), "webapp -cat
// FILE" prints a file's mode, owner and content ("mode 0400 uid 10001 gid
// 10001\n" then the content; exit 1 when it cannot be read).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// shutdownGrace bounds how long in-flight requests may finish after SIGTERM;
// it stays below Docker's default 10s stop timeout so the exit is clean.
const shutdownGrace = 5 * time.Second

func main() {
	check := flag.Bool("check", false, "GET http://127.0.0.1:$PORT/healthz and exit 0 if it passes, 1 otherwise")
	fetchURL := flag.String("fetch", "", "GET this URL, print the status and body; exit 0 for 2xx, 3 for another status, 1 without an answer")
	dialAddr := flag.String("dial", "", "open a TCP connection to HOST:PORT; exit 0 when it connects")
	resolveName := flag.String("resolve", "", "print the addresses a name resolves to; exit 1 when it does not")
	catFile := flag.String("cat", "", "print FILE's mode, owner and content; exit 1 when it cannot be read")
	repeat := flag.Duration("repeat", 0, "with -fetch: GET the URL again and again for this long, each on a new connection every 10ms; print ok and failed counts; exit 0 when none failed")
	flag.Parse()
	switch {
	case *fetchURL != "" && *repeat > 0:
		os.Exit(runFetchRepeat(*fetchURL, *repeat))
	case *fetchURL != "":
		os.Exit(runFetch(*fetchURL))
	case *dialAddr != "":
		os.Exit(runDial(*dialAddr))
	case *resolveName != "":
		os.Exit(runResolve(*resolveName))
	case *catFile != "":
		os.Exit(runCat(*catFile))
	}

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if *check {
		os.Exit(runCheck(port))
	}
	b := behaviour{version: os.Getenv("WEBAPP_VERSION"), broken: os.Getenv("WEBAPP_BROKEN") == "1"}
	if w := os.Getenv("WEBAPP_WARMUP"); w != "" {
		warmup, err := time.ParseDuration(w)
		if err != nil {
			log.Printf("webapp: WEBAPP_WARMUP=%q: %v (want a duration such as 1s)", w, err)
			os.Exit(2)
		}
		b.warmUntil = time.Now().Add(warmup)
	}
	if n := os.Getenv("WEBAPP_FAIL_EVERY"); n != "" {
		every, err := strconv.Atoi(n)
		if err != nil || every < 1 {
			log.Printf("webapp: WEBAPP_FAIL_EVERY=%q: want a whole number >= 1 (2: every second request to / fails)", n)
			os.Exit(2)
		}
		b.failEvery = every
	}
	if d := os.Getenv("WEBAPP_DELAY"); d != "" {
		delay, err := time.ParseDuration(d)
		if err != nil {
			log.Printf("webapp: WEBAPP_DELAY=%q: %v (want a duration such as 600ms)", d, err)
			os.Exit(2)
		}
		b.delay = delay
	}
	if req := os.Getenv("WEBAPP_REQUIRE_SECRET"); req != "" {
		path, value, ok := strings.Cut(req, ":")
		if !ok || path == "" {
			log.Printf("webapp: WEBAPP_REQUIRE_SECRET=%q: want PATH:PREFIX", req)
			os.Exit(2)
		}
		b.requireFile, b.requirePrefix = path, value
	}
	if os.Getenv("WEBAPP_CRASH") == "1" {
		log.Print("webapp: WEBAPP_CRASH=1, exiting with code 1")
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	listener, err := net.Listen("tcp", ":"+port)
	if err != nil {
		log.Printf("webapp: listen on :%s: %v", port, err)
		os.Exit(1)
	}
	if err := serve(ctx, listener, b); err != nil {
		log.Printf("webapp: %v", err)
		os.Exit(1)
	}
}

// behaviour is what the environment asks the service to play.
type behaviour struct {
	version   string
	broken    bool
	warmUntil time.Time // /healthz answers 503 before this
	// failEvery > 0: every failEvery-th request to / answers 500 (a
	// release that passes its health check and fails real requests).
	failEvery int
	// delay holds every answer to / this long (a slow release).
	delay time.Duration
	// requireFile must start with requirePrefix, or /healthz fails (a
	// secret the release does not accept).
	requireFile, requirePrefix string
}

// newHandler returns the routes of the service.
func newHandler(b behaviour) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if b.broken {
			http.Error(w, "broken (WEBAPP_BROKEN=1)", http.StatusInternalServerError)
			return
		}
		if time.Now().Before(b.warmUntil) {
			http.Error(w, "warming up (WEBAPP_WARMUP)", http.StatusServiceUnavailable)
			return
		}
		if b.requireFile != "" {
			// Never echo the content: it is a secret.
			if got, err := os.ReadFile(b.requireFile); err != nil || !strings.HasPrefix(string(got), b.requirePrefix) {
				http.Error(w, "the file "+b.requireFile+" does not start as expected (WEBAPP_REQUIRE_SECRET)", http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	// X-Webapp-Hostname tells which replica answered: Docker names a
	// container's host after its short ID, so tests map answers to hosts.
	hostname, _ := os.Hostname()
	var served atomic.Uint64
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Webapp-Hostname", hostname)
		time.Sleep(b.delay)
		if n := served.Add(1); b.failEvery > 0 && n%uint64(b.failEvery) == 0 {
			http.Error(w, "failing (WEBAPP_FAIL_EVERY)", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "webapp %s\n", b.version)
	})
	return mux
}

// serve answers on listener until ctx is cancelled, then shuts down
// gracefully: in-flight requests finish, new connections are refused.
func serve(ctx context.Context, listener net.Listener, b behaviour) error {
	server := &http.Server{Handler: newHandler(b), ReadHeaderTimeout: 5 * time.Second}
	log.Printf("webapp %s listening on %s (broken=%t)", b.version, listener.Addr(), b.broken)

	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Print("webapp: signal received, shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// clientTimeout bounds the client modes: a blocked connection (a firewall
// that drops) must end the docker exec, not hang it.
const clientTimeout = 3 * time.Second

func runFetch(url string) int {
	client := &http.Client{Timeout: clientTimeout}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fetch: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Printf("%d\n%s", resp.StatusCode, body)
	if h := resp.Header.Get("X-Webapp-Hostname"); h != "" {
		fmt.Printf("hostname: %s\n", h)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fetch: reading the body: %v\n", err)
		return 1
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 3
	}
	return 0
}

// runFetchRepeat is a steady stream of requests from inside a container:
// new connections and kept-alive ones in turn, one every 10ms, for d.
func runFetchRepeat(url string, d time.Duration) int {
	keepAlive := &http.Client{Timeout: clientTimeout}
	fresh := &http.Client{Timeout: clientTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var ok, failed int
	first := ""
	// took holds the durations of the answered requests, [0] on a kept
	// connection and [1] on a new one, so that a test can measure what a
	// hop costs either way.
	var took [2][]time.Duration
	for i, end := 0, time.Now().Add(d); time.Now().Before(end); i++ {
		client := keepAlive
		if i%2 == 1 {
			client = fresh
		}
		began := time.Now()
		resp, err := client.Get(url)
		switch {
		case err != nil:
			failed++
			if first == "" {
				first = err.Error()
			}
		default:
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				failed++
				if first == "" {
					first = resp.Status
				}
			} else {
				ok++
				took[i%2] = append(took[i%2], time.Since(began))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("ok=%d failed=%d first=%q\n", ok, failed, first)
	for kind, name := range []string{"kept", "new"} {
		if len(took[kind]) > 0 {
			fmt.Printf("latency_%s_us p50=%d p99=%d n=%d\n", name, percentile(took[kind], 0.50).Microseconds(), percentile(took[kind], 0.99).Microseconds(), len(took[kind]))
		}
	}
	if failed > 0 {
		return 3
	}
	return 0
}

// percentile is the q-quantile of ds (nearest rank); it sorts ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(i, 0)]
}

func runDial(addr string) int {
	conn, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dial: %v\n", err)
		return 1
	}
	_ = conn.Close()
	fmt.Println("dial: connected")
	return 0
}

func runResolve(name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "resolve: %v\n", err)
		return 1
	}
	for _, a := range addrs {
		fmt.Println(a)
	}
	return 0
}

// runCheck is the exec health check: 0 when /healthz answers 200.
func runCheck(port string) int {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		fmt.Fprintf(os.Stderr, "check: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "check: /healthz answered %s\n", resp.Status)
		return 1
	}
	fmt.Println("check: ok")
	return 0
}

// runCat prints a file's mode, owner and content.
func runCat(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cat:", err)
		return 1
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cat:", err)
		return 1
	}
	uid, gid := -1, -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	fmt.Printf("mode %04o uid %d gid %d\n%s", fi.Mode().Perm(), uid, gid, data)
	return 0
}
