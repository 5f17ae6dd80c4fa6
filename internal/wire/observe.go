package wire

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// ReplicaRow is one replica in `deployctl ps`: a replica the service has
// now, or (Ended) one whose record was removed after it stopped, kept by
// the FSM (state.MaxEndedPerService a service).
type ReplicaRow struct {
	ID       string `json:"id"`
	Slot     int    `json:"slot"`
	Revision int    `json:"revision"`
	Host     string `json:"host"`
	Desired  string `json:"desired"`
	// State is what the host's agent last reported (pending, starting,
	// healthy, unhealthy, failed, stopped, lost); Health the probes'
	// verdict while the container runs ("" otherwise).
	State       string    `json:"state"`
	Health      string    `json:"health,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	ContainerID string    `json:"container_id,omitempty"`
	// Error is the last failure the agent reported (an exit code, the
	// probe's answer), kept after the replica stopped.
	Error string `json:"error,omitempty"`
	Ended bool   `json:"ended,omitempty"`
}

// PsView is `deployctl ps SVC -o json`.
type PsView struct {
	Service  string       `json:"service"`
	Revision int          `json:"revision"`
	Replicas []ReplicaRow `json:"replicas"`
}

// EventsPage is what GET /v1/events answers: the events after the asked
// Seq, and Last, the Seq to ask after next (also when none matched).
type EventsPage struct {
	Events []state.Event `json:"events"`
	Last   uint64        `json:"last"`
}

// AgentLogsPath is where an agent serves its containers' logs, on its
// proxy's hop listener (mutual TLS; server certificates only).
const AgentLogsPath = "/deployctl/v1/logs"

// LogLine is one line a container printed, or a notice about the stream:
// Error names a host or replica whose logs cannot be read, End says a
// replica's stream ended (its container stopped). The logs endpoints answer
// one JSON LogLine per line.
type LogLine struct {
	Time    time.Time `json:"time,omitzero"`
	Replica string    `json:"replica,omitempty"`
	Host    string    `json:"host,omitempty"`
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream,omitempty"`
	Text   string `json:"text,omitempty"`
	Error  string `json:"error,omitempty"`
	End    bool   `json:"end,omitempty"`
}

// LogsQuery is what `deployctl logs` asks for. Tail < 0 means every line.
type LogsQuery struct {
	Follow  bool
	Since   time.Time
	Tail    int
	Replica string
}

// Values encodes the query as URL parameters (the same for the server
// and, with the replica, for the agent).
func (q LogsQuery) Values() url.Values {
	v := url.Values{}
	if q.Follow {
		v.Set("follow", "true")
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	v.Set("tail", strconv.Itoa(q.Tail))
	if q.Replica != "" {
		v.Set("replica", q.Replica)
	}
	return v
}

// ParseLogsQuery reads what Values wrote; a bad value is an error naming
// the parameter.
func ParseLogsQuery(v url.Values) (LogsQuery, error) {
	q := LogsQuery{Tail: -1, Replica: v.Get("replica")}
	if f := v.Get("follow"); f != "" {
		b, err := strconv.ParseBool(f)
		if err != nil {
			return q, fmt.Errorf("follow: %q is not true or false", f)
		}
		q.Follow = b
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return q, fmt.Errorf("since: %q is not an RFC 3339 time", s)
		}
		q.Since = t
	}
	if s := v.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < -1 {
			return q, fmt.Errorf("tail: %q is not a number of lines (-1 for all)", s)
		}
		q.Tail = n
	}
	return q, nil
}

// Ps lists a service's replicas; all adds those that ended.
func (c *Client) Ps(ctx context.Context, service string, all bool) (PsView, error) {
	var out PsView
	err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/ps?all="+strconv.FormatBool(all), nil, nil, &out)
	return out, err
}

// Events returns the events after Seq after, of service (all when ""),
// at or after since; with wait > 0 it waits that long for one.
func (c *Client) Events(ctx context.Context, after uint64, service string, since time.Time, wait time.Duration) (EventsPage, error) {
	q := url.Values{}
	q.Set("after", strconv.FormatUint(after, 10))
	if service != "" {
		q.Set("service", service)
	}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out EventsPage
	err := c.do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, nil, &out)
	return out, err
}

// Logs streams a service's logs from the first server that answers, and
// calls fn with each line until the stream ends, ctx ends or fn fails.
func (c *Client) Logs(ctx context.Context, service string, q LogsQuery, fn func(LogLine) error) error {
	if len(c.addrs) == 0 {
		return fmt.Errorf("%w: no server address; set --addr or DEPLOYCTL_ADDR", ErrUnreachable)
	}
	path := "/v1/services/" + url.PathEscape(service) + "/logs?" + q.Values().Encode()
	var last error
	for _, base := range c.addrs {
		body, err := c.openStream(ctx, base+path)
		if err != nil {
			if !retryable(err) || ctx.Err() != nil {
				return err
			}
			last = err
			continue
		}
		defer body.Close()
		return ReadLogLines(body, fn)
	}
	return last
}

// openStream sends a GET and returns the body of a 200 answer.
func (c *Client) openStream(ctx context.Context, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		re := &RemoteError{Status: resp.StatusCode}
		if json.Unmarshal(data, &re.APIError) != nil || re.APIError.Error == "" {
			re.APIError.Error = fmt.Sprintf("GET %s: HTTP %d: %s", u, resp.StatusCode, data)
		}
		return nil, re
	}
	return resp.Body, nil
}

// MaxLogLine bounds one line of a logs stream (a container's longer
// line is cut by the agent).
const MaxLogLine = 64 << 10

// ReadLogLines decodes a stream of JSON LogLines, calling fn with each.
func ReadLogLines(r io.Reader, fn func(LogLine) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 2*MaxLogLine)
	for sc.Scan() {
		var l LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("decode a log line: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("read logs: %w", err)
	}
	return nil
}
