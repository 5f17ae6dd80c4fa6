package controller

import (
	"context"
	"time"

	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// Defaults for host liveness.
const (
	DefaultHostTTL       = 10 * time.Second
	DefaultHostDownGrace = 30 * time.Second
)

// markLeading resets the heartbeat memory when this node becomes leader:
// heartbeats seen in an earlier term say nothing about now, and a host gets
// a full TTL from the start of this term before it is marked down.
func (c *Controller) markLeading(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.heartbeat = map[string]time.Time{}
	c.leadingSince = now
}

func (c *Controller) lastSeen(host string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.heartbeat[host]; ok {
		return t
	}
	return c.leadingSince
}

// checkHosts marks hosts down whose agent has not reported for HostTTL, and
// gives up on the replicas of hosts down for HostDownGrace, so that their
// slots are placed elsewhere and nothing waits on them. Losing quorum stops nothing: this runs only
// on a leader, and it never touches a container, only assignments.
func (c *Controller) checkHosts(ctx context.Context, view *state.Tables) {
	now := c.cfg.Now()
	for _, h := range view.Hosts() {
		cmd := state.SetHostStateCmd{Now: now, Host: h.ID, State: state.HostDown, ExpectSeenAt: h.SeenAt}
		switch {
		case h.State == state.HostReady && now.Sub(c.lastSeen(h.ID)) > c.cfg.HostTTL:
			c.log.Warn("host down: no report within the TTL", "host", h.ID, "ttl", c.cfg.HostTTL)
		case h.State == state.HostDown && now.Sub(h.DownSince) > c.cfg.HostDownGrace && holdsReplicas(view, h.ID):
			cmd.LoseReplicas = true
			c.log.Warn("host down past the grace period: placing its replicas elsewhere", "host", h.ID, "grace", c.cfg.HostDownGrace)
		default:
			continue
		}
		if _, err := c.apply(ctx, raftstore.CmdSetHostState, cmd); err != nil {
			c.log.Debug("host state not changed", "host", h.ID, "error", err)
		}
	}
}

// holdsReplicas reports whether a host may still hold a container the
// cluster waits on: a replica desired running, or one desired stopped whose
// stop it has not confirmed. A host that vanished never confirms, so past
// the grace period such replicas are marked lost: a removal (`rm`) or a
// rollout or rollback waiting for the stop goes on without it.
func holdsReplicas(view *state.Tables, host string) bool {
	for _, r := range view.HostReplicas(host) {
		if state.HeldByHost(r) {
			return true
		}
	}
	return false
}
