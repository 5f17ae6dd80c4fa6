package wire

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Snapshot streams a backup of the cluster's state from the leader into
// w (`deployctl snapshot save`; the file's format is raftstore's backup).
// Servers are tried in turn while none can answer (no leader, down); once
// one starts sending, its stream is the answer: a transfer cut short is
// an error here, and the file it left lacks its checksum.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) error {
	if len(c.addrs) == 0 {
		return fmt.Errorf("%w: no server address; set --addr or DEPLOYCTL_ADDR", ErrUnreachable)
	}
	var last error
	for _, base := range c.addrs {
		started, err := c.snapshotFrom(ctx, base+"/v1/snapshot", w)
		if err == nil || started || !retryable(err) || ctx.Err() != nil {
			return err
		}
		last = err
	}
	return last
}

// snapshotFrom asks one server; started reports whether any byte of the
// backup reached w.
func (c *Client) snapshotFrom(ctx context.Context, u string, w io.Writer) (started bool, err error) {
	// The answer's headers must come within a normal request's time; the
	// body may take longer (a large state over a slow link): ctx bounds it.
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	headerTimer := time.AfterFunc(requestTimeout, cancel)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u, nil)
	if err != nil {
		return false, fmt.Errorf("build request: %w", err)
	}
	resp, err := c.http.Do(req)
	timedOut := !headerTimer.Stop()
	switch {
	case err != nil && ctx.Err() != nil:
		return false, ctx.Err()
	case err != nil && timedOut:
		return false, fmt.Errorf("%w: %s did not answer within %s", ErrUnreachable, u, requestTimeout)
	case err != nil:
		return false, fmt.Errorf("%w: %s: %v", ErrUnreachable, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return false, remoteError(http.MethodGet, u, resp.StatusCode, data)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n > 0, fmt.Errorf("snapshot from %s cut short after %d bytes: %w", u, n, err)
	}
	return n > 0, nil
}
