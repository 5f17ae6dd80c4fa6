package deployer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// ErrProbeFailed is the error of a health probe that ran and did not pass.
var ErrProbeFailed = errors.New("health probe failed")

// ErrUnhealthyAnswer marks a failed probe in which the service itself
// answered that it is not healthy (an HTTP status outside 2xx and 3xx), as
// opposed to one that could not reach it yet (refused, timed out). Such an
// answer counts even before the first interval: see healthTracker.
var ErrUnhealthyAnswer = errors.New("the service answered that it is unhealthy")

// unhealthyAnswer wraps a probe error as ErrUnhealthyAnswer without
// changing its message.
type unhealthyAnswer struct{ err error }

func (e unhealthyAnswer) Error() string   { return e.err.Error() }
func (e unhealthyAnswer) Unwrap() []error { return []error{e.err, ErrUnhealthyAnswer} }

// Probe timing. The first probe comes right after the container starts and
// is retried quickly until it passes, so a rollout waits for the service,
// not for a full interval; after the first pass probes run every interval.
// HTTP and TCP probes cost one connection on the host, so they start 10ms
// after the container and repeat every 25ms for its first half second, the
// time most services take to listen, then back off doubling. An exec probe
// costs the engine an exec (0.15s idle, more on a busy host: the check runs
// well after the exec starts), so it starts at 10ms too but then doubles
// from 250ms (and see runExecProber).
const (
	firstProbeDelay     = 10 * time.Millisecond
	earlyProbeDelay     = 25 * time.Millisecond
	fastProbeWindow     = 500 * time.Millisecond
	firstExecProbeDelay = 10 * time.Millisecond
	earlyExecProbeDelay = 250 * time.Millisecond
	defaultInterval     = 30 * time.Second // Docker's default, for a spec without one
	defaultTimeout      = 5 * time.Second
	defaultRetries      = 3
	maxProbeMessage     = 200
	probeUserAgent      = "deployctl-probe"
)

// Execer runs a command in a container (the exec health check).
type Execer interface {
	Exec(ctx context.Context, id string, cmd []string, timeout time.Duration) (exitCode int, output string, err error)
}

// ProbeTarget is what a probe runs against: the container and its address
// on the deployctl network, reachable from the host.
type ProbeTarget struct {
	ContainerID string
	IP          string
}

// Probe runs the configured check once; nil means it passed. A spec without
// a check passes.
func Probe(ctx context.Context, rt Execer, check specs.Healthcheck, target ProbeTarget) error {
	timeout := check.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	switch {
	case check.HTTP != nil:
		return ProbeHTTP(ctx, target.IP, check.HTTP.Port, check.HTTP.Path, timeout)
	case check.TCP != nil:
		return ProbeTCP(ctx, target.IP, check.TCP.Port, timeout)
	case len(check.Exec) > 0:
		return ProbeExec(ctx, rt, target.ContainerID, check.Exec, timeout)
	}
	return nil
}

// ProbeHTTP GETs http://ip:port/path from the host; 2xx and 3xx pass.
// Redirects are not followed (a 3xx already passes) and no proxy is used:
// the container address is only reachable from this host.
func ProbeHTTP(ctx context.Context, ip string, port int, path string, timeout time.Duration) error {
	if ip == "" {
		return fmt.Errorf("%w: container has no address on the network", ErrProbeFailed)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	url := "http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + path
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProbeFailed, err)
	}
	req.Header.Set("User-Agent", probeUserAgent)
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: GET %s: %w", ErrProbeFailed, url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return unhealthyAnswer{fmt.Errorf("%w: GET %s: %s", ErrProbeFailed, url, resp.Status)}
	}
	return nil
}

// ProbeTCP passes when a TCP connection to ip:port opens.
func ProbeTCP(ctx context.Context, ip string, port int, timeout time.Duration) error {
	if ip == "" {
		return fmt.Errorf("%w: container has no address on the network", ErrProbeFailed)
	}
	dialer := net.Dialer{Timeout: timeout}
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProbeFailed, err)
	}
	return conn.Close()
}

// ProbeExec runs cmd in the container; exit code 0 passes.
func ProbeExec(ctx context.Context, rt Execer, containerID string, cmd []string, timeout time.Duration) error {
	code, output, err := rt.Exec(ctx, containerID, cmd, timeout)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProbeFailed, err)
	}
	if code != 0 {
		return fmt.Errorf("%w: %q exited with code %d: %s", ErrProbeFailed, strings.Join(cmd, " "), code, truncate(strings.TrimSpace(output), maxProbeMessage))
	}
	return nil
}

// healthTracker turns probe outcomes into a verdict with Docker's rules:
// healthy after a pass, unhealthy after `retries` failures in a row, and
// failures within start_period do not count. Docker probes once per
// interval, the first one an interval after start; deployctl probes sooner
// (see nextDelay), so to keep Docker's pace at most one failure counts per
// interval slot since the container started, and a failure before the
// first interval (slot 0) counts only when the service itself answered
// unhealthy (ErrUnhealthyAnswer). A slow starter that is not listening yet
// thus gets the retries*interval Docker would give it, a fast one is seen
// healthy at once, and a release that answers "500" is judged at its first
// answer rather than an interval later. An app that answers 5xx while it
// warms up says so with start_period, as it would for Docker.
type healthTracker struct {
	check       specs.Healthcheck
	startedAt   time.Time
	interval    time.Duration
	startPeriod time.Duration
	retries     int
	state       string // "", healthy or unhealthy
	failures    int
	lastCounted int64 // interval slot of the last counted failure, -1 for none
	passedOnce  bool
	lastFailure string
}

func newHealthTracker(check specs.Healthcheck, startedAt time.Time) *healthTracker {
	t := &healthTracker{
		check:       check,
		startedAt:   startedAt,
		interval:    check.Interval,
		startPeriod: check.StartPeriod,
		retries:     check.Retries,
		lastCounted: -1,
	}
	if t.interval <= 0 {
		t.interval = defaultInterval
	}
	if t.retries <= 0 {
		t.retries = defaultRetries
	}
	return t
}

// observe records one probe outcome at now and returns the verdict
// (healthy, unhealthy, or "" while still undecided).
func (t *healthTracker) observe(now time.Time, probeErr error) string {
	if probeErr == nil {
		t.passedOnce = true
		t.failures = 0
		t.state = state.ReplicaHealthy
		return t.state
	}
	t.lastFailure = probeErr.Error()
	since := now.Sub(t.startedAt)
	if since < t.startPeriod {
		return t.state
	}
	// Docker's n-th probe is at startedAt + n*interval (n >= 1); count a
	// failure only in an interval slot that has not counted one yet, and in
	// slot 0, before Docker's first probe, only an answered failure.
	slot := max(int64(since/t.interval), 0)
	if slot <= t.lastCounted {
		return t.state
	}
	if slot == 0 && !errors.Is(probeErr, ErrUnhealthyAnswer) {
		return t.state
	}
	t.lastCounted = slot
	t.failures++
	if t.failures >= t.retries {
		t.state = state.ReplicaUnhealthy
	}
	return t.state
}

// timeout is the check's timeout, or Docker's default.
func (t *healthTracker) timeout() time.Duration {
	if t.check.Timeout > 0 {
		return t.check.Timeout
	}
	return defaultTimeout
}

// firstDelay is the wait from the container's start to its first probe.
func (t *healthTracker) firstDelay() time.Duration {
	if t.check.Kind() == "exec" { // an exec costs the engine: a slower early schedule
		return firstExecProbeDelay
	}
	return firstProbeDelay
}

// nextDelay is the wait before the next probe: fast until the first pass
// (every 25ms in the first half second, then doubling; for an exec check
// doubling from 250ms; never more than the interval), then the interval.
// While the replica has not passed, a probe is also due right at the next
// interval boundary since start, where a failure starts to count: a broken
// replica is then judged when Docker would judge it, not up to an interval
// later.
func (t *healthTracker) nextDelay(now time.Time, previous time.Duration) time.Duration {
	if t.passedOnce {
		return t.interval
	}
	since := now.Sub(t.startedAt)
	early, window := earlyProbeDelay, fastProbeWindow
	if t.check.Kind() == "exec" { // an exec costs the engine: a slower early schedule
		early, window = earlyExecProbeDelay, 0
	}
	next := early
	if previous >= early && since >= window {
		next = previous * 2
	}
	next = min(next, t.interval)
	if since >= 0 && since >= t.startPeriod {
		boundary := (since/t.interval+1)*t.interval - since + time.Millisecond
		next = min(next, boundary)
	}
	return next
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// runProber probes target until ctx ends and calls emit with every change of
// verdict (healthy or unhealthy, and the last failure as message), and
// failed (when not nil) with every failed probe, counted or not.
func runProber(ctx context.Context, rt Execer, check specs.Healthcheck, target ProbeTarget, startedAt time.Time, emit func(state, message string), failed func()) {
	tracker := newHealthTracker(check, startedAt)
	delay := tracker.firstDelay()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	reported := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		probeErr := Probe(ctx, rt, check, target)
		if ctx.Err() != nil {
			return
		}
		if probeErr != nil && failed != nil {
			failed()
		}
		verdict := tracker.observe(time.Now(), probeErr)
		if verdict != "" && verdict != reported {
			reported = verdict
			message := ""
			if verdict == state.ReplicaUnhealthy {
				message = fmt.Sprintf("health check failed %d times in a row: %s", tracker.failures, truncate(tracker.lastFailure, maxProbeMessage))
			}
			emit(verdict, message)
		}
		delay = tracker.nextDelay(time.Now(), delay)
		timer.Reset(delay)
	}
}
