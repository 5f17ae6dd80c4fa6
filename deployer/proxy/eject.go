package proxy

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// Passive ejection: a target whose address refused a connection leaves the
// pools at once, with every other target at that address (the replicas of
// a host whose proxy is down are hop targets at one address), until a dial
// check says the address accepts connections again.
//
// Why: the cluster's view of a dead host lags by the host TTL (seconds),
// and the agent's own probes of a dead local replica by a probe interval.
// Until then every request that picks the dead address pays a failed dial
// and a retry, and one whose retry also fails, or that may not be retried
// (POST), fails. One refusal is proof enough that the address takes no
// traffic now; the dial check (a TCP connect, no request) brings it back
// without risking a request on it.

// Ejection timing: the first dial check runs EjectFirst after the
// ejection, each failed one doubles the wait, up to EjectMax.
const (
	EjectFirst = 500 * time.Millisecond
	EjectMax   = 10 * time.Second
	// ejectCheckTimeout bounds one dial check.
	ejectCheckTimeout = time.Second
)

// ejection is one ejected address and its pending dial check.
type ejection struct {
	wait  time.Duration
	timer *time.Timer
}

// dialFailed says whether err is a failed dial: the address takes no
// connection now (refused, unreachable, dial timeout). Errors on a
// connection that was open (reset, EOF) are not: the peer may have closed
// an idle connection, which says nothing about the next one.
func dialFailed(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || op.Timeout()
}

func dialCheck(ctx context.Context, addr string) error {
	conn, err := (&net.Dialer{Timeout: ejectCheckTimeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// eject takes every target at addr out of the pools and schedules a dial
// check. An address already ejected is left as it is (its check is due).
func (t *Table) eject(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.ejections[addr] != nil {
		return
	}
	e := &ejection{wait: t.ejectFirst}
	t.ejections[addr] = e
	t.setEjectedLocked(addr, true)
	e.timer = time.AfterFunc(e.wait, func() { t.checkEjected(addr, e) })
}

// checkEjected runs the dial check of an ejected address: it comes back
// into the pools when the dial succeeds, else the next check waits twice
// as long (up to ejectMax).
func (t *Table) checkEjected(addr string, e *ejection) {
	ctx, cancel := context.WithTimeout(context.Background(), ejectCheckTimeout)
	err := t.dialCheck(ctx, addr)
	cancel()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.ejections[addr] != e {
		return // Close, or the address is no longer used
	}
	if err == nil {
		delete(t.ejections, addr)
		t.setEjectedLocked(addr, false)
		return
	}
	e.wait = min(2*e.wait, t.ejectMax)
	e.timer = time.AfterFunc(e.wait, func() { t.checkEjected(addr, e) })
}

// setEjectedLocked marks the targets at addr and rebuilds their pools'
// pick lists; under mu.
func (t *Table) setEjectedLocked(addr string, ejected bool) {
	touched := map[*pool]bool{}
	for _, tg := range t.targets {
		if tg.key.Addr == addr && tg.ejected != ejected {
			tg.ejected = ejected
			touched[t.poolLocked(tg.key.Service, tg.key.Port)] = true
		}
	}
	for p := range touched {
		p.refresh()
	}
}

// dropUnusedEjectionsLocked forgets ejections of addresses no target uses
// any more; under mu.
func (t *Table) dropUnusedEjectionsLocked() {
	if len(t.ejections) == 0 {
		return
	}
	used := map[string]bool{}
	for _, tg := range t.targets {
		used[tg.key.Addr] = true
	}
	for addr, e := range t.ejections {
		if !used[addr] {
			e.timer.Stop()
			delete(t.ejections, addr)
		}
	}
}

// Close stops the table's pending dial checks and ejects nothing any
// more (ejected targets come back). The agent closes its table when its
// proxy stops, so that no timer outlives it.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for addr, e := range t.ejections {
		e.timer.Stop()
		delete(t.ejections, addr)
		t.setEjectedLocked(addr, false)
	}
}
