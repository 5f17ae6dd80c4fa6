package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
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
		case h.ForgetWhenDown && h.State == state.HostDown && len(view.HostReplicas(h.ID)) == 0:
			// The server of this host left the cluster, and nothing of it
			// is left: it stops being a host.
			if _, err := c.apply(ctx, raftstore.CmdRemoveHost, state.RemoveHostCmd{Host: h.ID}); err != nil {
				c.log.Debug("host not removed", "host", h.ID, "error", err)
				continue
			}
			c.forgetHost(h.ID)
			c.log.Info("host of a server that left the cluster removed", "host", h.ID)
			continue
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

// hostNotFound is the answer for a host id the state does not know.
func hostNotFound(id string) error {
	return fmt.Errorf("%w: host %q; `deployctl host ls` lists the hosts", ErrNotFound, id)
}

// SetHostAvailability drains a host (drain true) or makes it active
// again (issue 17). A drained host takes no new replica, and the loop
// moves its replicas off as it replaces failed ones: a replacement starts
// on another host and the drained replica stops once it is done
// (rollout.Input.Draining). Setting what is set already writes nothing.
// The command needs FSM version 4 on every server (409 version_gate).
func (c *Controller) SetHostAvailability(ctx context.Context, id string, drain bool) (wire.HostView, error) {
	if !c.Ready() {
		return wire.HostView{}, c.notLeader()
	}
	h, ok := c.cfg.Store.View().Host(id)
	if !ok {
		return wire.HostView{}, hostNotFound(id)
	}
	want := state.HostActive
	if drain {
		want = state.HostDrain
	}
	if h.Draining() != drain || h.ForgetWhenDown && !drain {
		cmd := state.SetHostAvailabilityCmd{Now: c.cfg.Now(), Host: id, Availability: want}
		if _, err := c.apply(ctx, raftstore.CmdSetHostAvailability, cmd); err != nil {
			return wire.HostView{}, fmt.Errorf("%s host %s: %w", map[bool]string{true: "drain", false: "activate"}[drain], id, err)
		}
		c.log.Info("host availability set", "host", id, "availability", want)
	}
	view := c.cfg.Store.View()
	h, ok = view.Host(id)
	if !ok {
		return wire.HostView{}, hostNotFound(id)
	}
	return c.hostView(view, h), nil
}

// RemoveHost forgets a host (`deployctl host rm`): it leaves `cluster
// status`, `host ls` and the audit. Only a host that is down and holds no
// replica (its replicas were replaced: lost past the grace period, or
// moved by a drain) is removed; otherwise 409 says what to do. An agent
// that reports again under the id makes it a host again.
func (c *Controller) RemoveHost(ctx context.Context, id string) error {
	if !c.Ready() {
		return c.notLeader()
	}
	view := c.cfg.Store.View()
	h, ok := view.Host(id)
	if !ok {
		return hostNotFound(id)
	}
	if h.State != state.HostDown {
		return fmt.Errorf("%w: host %s is up (its agent reported %s ago); stop its agent first, and move its replicas off before with `deployctl host drain %s`",
			ErrConflict, id, c.cfg.Now().Sub(c.lastSeen(id)).Round(time.Second), id)
	}
	if held := heldReplicas(view, id); len(held) > 0 {
		return fmt.Errorf("%w: host %s is down since %s but %d %s not replaced yet (%s): they are placed elsewhere once it has been down for %s; retry then",
			ErrConflict, id, h.DownSince.Format(time.RFC3339), len(held), plural(len(held), "replica is", "replicas are"),
			strings.Join(held, ", "), c.cfg.HostDownGrace)
	}
	if _, err := c.apply(ctx, raftstore.CmdRemoveHost, state.RemoveHostCmd{Host: id}); err != nil {
		return fmt.Errorf("remove host %s: %w", id, err)
	}
	c.forgetHost(id)
	c.log.Info("host removed", "host", id)
	return nil
}

// retireHost is what `cluster remove` does to the host of the server that
// left: drained (its replicas move while its agent still runs) and
// forgotten once down and empty (checkHosts). A cluster below FSM version
// 4 keeps the host as before; the removal of the server goes on.
func (c *Controller) retireHost(ctx context.Context, id string) {
	if _, ok := c.cfg.Store.View().Host(id); !ok {
		return
	}
	cmd := state.SetHostAvailabilityCmd{Now: c.cfg.Now(), Host: id, Availability: state.HostDrain, ForgetWhenDown: true}
	if _, err := c.apply(ctx, raftstore.CmdSetHostAvailability, cmd); err != nil {
		c.log.Warn("the host of the server that left stays a host", "host", id, "error", err)
	}
}

// forgetHost drops what the leader remembers of a removed host.
func (c *Controller) forgetHost(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.heartbeat, id)
	delete(c.audits, id)
}

// heldReplicas names the replicas a host still holds ("web slot 0").
func heldReplicas(view *state.Tables, host string) []string {
	var out []string
	for _, r := range view.HostReplicas(host) {
		if state.HeldByHost(r) {
			out = append(out, fmt.Sprintf("%s slot %d", r.Service, r.Slot))
		}
	}
	slices.Sort(out)
	return out
}

// noteUnplaced keeps, per service, why the steady state could not place
// its starts on the last pass (leader memory): a drained host's replicas
// that cannot move say so in `host ls`.
func (c *Controller) noteUnplaced(service string, reasons []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(reasons) == 0 {
		delete(c.unplaced, service)
		return
	}
	if c.unplaced == nil {
		c.unplaced = map[string][]string{}
	}
	c.unplaced[service] = slices.Clone(reasons)
}

func (c *Controller) unplacedOf(service string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unplaced[service]
}

// Hosts lists every host as `host ls` shows it.
func (c *Controller) Hosts() []wire.HostView {
	view := c.cfg.Store.View()
	out := []wire.HostView{}
	for _, h := range view.Hosts() {
		out = append(out, c.hostView(view, h))
	}
	return out
}

// Host returns one host.
func (c *Controller) Host(id string) (wire.HostView, error) {
	view := c.cfg.Store.View()
	h, ok := view.Host(id)
	if !ok {
		return wire.HostView{}, hostNotFound(id)
	}
	return c.hostView(view, h), nil
}

// hostView is h with its replicas and, when it is draining, why those
// that remain are still there, per service.
func (c *Controller) hostView(view *state.Tables, h state.Host) wire.HostView {
	out := wire.HostView{ID: h.ID, State: h.State, Availability: state.HostActive, AvailabilitySince: h.AvailabilitySince,
		Labels: h.Labels, SeenAt: h.SeenAt, DownSince: h.DownSince, Left: h.ForgetWhenDown}
	if h.Draining() {
		out.Availability = state.HostDrain
	}
	perService := map[string]int{}
	for _, r := range view.HostReplicas(h.ID) {
		if r.Desired == state.DesiredRunning {
			out.Replicas++
			perService[r.Service]++
		}
	}
	if !h.Draining() {
		return out
	}
	for _, name := range slices.Sorted(maps.Keys(perService)) {
		n := perService[name]
		what := fmt.Sprintf("%s: %d %s", name, n, plural(n, "replica", "replicas"))
		svc, _ := view.Service(name)
		var line string
		switch {
		case h.State == state.HostDown:
			line = fmt.Sprintf("%s on a down host: replaced elsewhere once it has been down for %s", what, c.cfg.HostDownGrace)
		case svc.Rollout != nil && svc.Rollout.State == state.RolloutInProgress:
			line = fmt.Sprintf("%s wait for the rollout of revision %d to end, then move", what, svc.Current)
		case svc.State != state.ServiceRunning:
			line = fmt.Sprintf("%s stay: the service is %s and moves nothing until a human decides (deployctl apply --force, rollback or rm)", what, svc.State)
		case len(c.unplacedOf(name)) > 0:
			line = fmt.Sprintf("%s cannot move, kept running here: %s", what, strings.Join(c.unplacedOf(name), "; "))
		default:
			line = fmt.Sprintf("%s moving: replacements start on other hosts and these stop once those are healthy", what)
		}
		out.Waiting = append(out.Waiting, line)
	}
	return out
}
