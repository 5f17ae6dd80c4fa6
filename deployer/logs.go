package deployer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/deployer/proxy"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
)

// LogReader is what the logs endpoint needs of the engine; DockerRuntime
// implements it. A Runtime without it (a test's fake) serves no logs.
type LogReader interface {
	ListManaged(ctx context.Context, hostID string) ([]container.Summary, error)
	// ContainerLogs returns the engine's multiplexed stdout and stderr of
	// a container (8-byte frame headers), each line with its timestamp.
	ContainerLogs(ctx context.Context, id string, q wire.LogsQuery) (io.ReadCloser, error)
}

// ContainerLogs is the engine's log stream of a container this runtime
// manages, timestamps on.
func (r *DockerRuntime) ContainerLogs(ctx context.Context, id string, q wire.LogsQuery) (io.ReadCloser, error) {
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: q.Follow, Tail: "all"}
	if q.Tail >= 0 {
		opts.Tail = strconv.Itoa(q.Tail)
	}
	if !q.Since.IsZero() {
		opts.Since = q.Since.UTC().Format(time.RFC3339Nano)
	}
	rc, err := r.client.ContainerLogs(ctx, id, opts)
	if err != nil {
		return nil, engineError("logs of container "+shortID(id), err)
	}
	return rc, nil
}

// logsHandler serves GET wire.AgentLogsPath?replica=ID on the hop
// listener: the log lines of the container this agent made for that
// replica, as JSON wire.LogLines. Only a server certificate may ask (the
// listener's TLS admits agents and servers; agents proxy traffic, only
// servers read logs); without TLS (--dev, loopback) anyone on the host.
// Only containers labelled as this agent's (managed, this host) are
// found, and only their stdout and stderr are sent: no configuration,
// environment or secret file leaves this way.
type logsHandler struct {
	host string
	rt   LogReader
	tls  bool
	log  hclog.Logger
}

func (h *logsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "logs: GET only", http.StatusMethodNotAllowed)
		return
	}
	if h.tls {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "logs: a server certificate of the cluster is needed", http.StatusUnauthorized)
			return
		}
		id, err := pki.IdentityOf(r.TLS.PeerCertificates[0])
		if err != nil || id.Role != pki.RoleServer {
			http.Error(w, fmt.Sprintf("logs: only servers read logs; this request came with the certificate of %s", id), http.StatusForbidden)
			return
		}
	}
	q, err := wire.ParseLogsQuery(r.URL.Query())
	if err == nil && q.Replica == "" {
		err = errors.New("replica: required")
	}
	if err != nil {
		http.Error(w, "logs: "+err.Error(), http.StatusBadRequest)
		return
	}
	id, err := h.containerOf(r.Context(), q.Replica)
	if err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, ErrNotFound) {
			status = http.StatusNotFound
		}
		http.Error(w, "logs: "+err.Error(), status)
		return
	}
	rc, err := h.rt.ContainerLogs(r.Context(), id, q)
	if err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, ErrNotFound) {
			status = http.StatusNotFound
		}
		http.Error(w, "logs: "+err.Error(), status)
		return
	}
	defer rc.Close()
	stopClosing := context.AfterFunc(r.Context(), func() { rc.Close() })
	defer stopClosing()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	err = demuxLogLines(rc, func(l wire.LogLine) error {
		l.Replica, l.Host = q.Replica, h.host
		if err := enc.Encode(l); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		h.log.Debug("logs stream ended", "replica", q.Replica, "error", err)
	}
}

// containerOf finds the container this agent made for a replica.
func (h *logsHandler) containerOf(ctx context.Context, replica string) (string, error) {
	list, err := h.rt.ListManaged(ctx, h.host)
	if err != nil {
		return "", err
	}
	for _, c := range list {
		if c.Labels[LabelReplica] == replica {
			return c.ID, nil
		}
	}
	return "", fmt.Errorf("replica %s has no container on host %s: %w", replica, h.host, ErrNotFound)
}

// demuxLogLines reads the engine's multiplexed log stream (a header of 8
// bytes per frame: the stream, 3 zero bytes, the length big endian) and
// calls fn with each line, split at its timestamp. A line longer than
// wire.MaxLogLine is cut.
func demuxLogLines(r io.Reader, fn func(wire.LogLine) error) error {
	br := bufio.NewReader(r)
	var hdr [8]byte
	partial := map[byte][]byte{}
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		size := int(binary.BigEndian.Uint32(hdr[4:]))
		frame := make([]byte, size)
		if _, err := io.ReadFull(br, frame); err != nil {
			return err
		}
		buf := append(partial[hdr[0]], frame...)
		for {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				break
			}
			if err := fn(parseLogLine(hdr[0], buf[:i])); err != nil {
				return err
			}
			buf = buf[i+1:]
		}
		if len(buf) > wire.MaxLogLine {
			if err := fn(parseLogLine(hdr[0], buf[:wire.MaxLogLine])); err != nil {
				return err
			}
			buf = nil
		}
		partial[hdr[0]] = buf
	}
}

// parseLogLine splits "TIMESTAMP text" as the engine writes it.
func parseLogLine(stream byte, raw []byte) wire.LogLine {
	l := wire.LogLine{Stream: "stdout"}
	if stream == 2 {
		l.Stream = "stderr"
	}
	text := string(raw)
	if ts, rest, ok := strings.Cut(text, " "); ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			l.Time, text = t, rest
		}
	}
	l.Text = strings.TrimSuffix(text, "\r")
	if len(l.Text) > wire.MaxLogLine {
		l.Text = l.Text[:wire.MaxLogLine]
	}
	return l
}

// hopHandler is the hop listener's handler: the proxy's hops, and the
// logs endpoint for requests that are no hop. Every request another
// host's proxy forwards carries proxy.HeaderHopService (the sending proxy
// sets it), so a client's request that reaches this listener through a
// proxy never reaches the logs, whatever its path.
func hopHandler(hops, logs http.Handler) http.Handler {
	if logs == nil {
		return hops
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wire.AgentLogsPath && r.Header.Get(proxy.HeaderHopService) == "" && r.Header.Get("Upgrade") == "" {
			logs.ServeHTTP(w, r)
			return
		}
		hops.ServeHTTP(w, r)
	})
}
