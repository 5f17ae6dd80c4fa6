package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// addressRetry is how often the leader asks again to turn service
// addresses on while the version gate refuses and no server registers.
const addressRetry = 30 * time.Second

// addressAttempt is the leader's last try to turn service addresses on
// (leader memory): the servers registered then, and when.
type addressAttempt struct {
	servers string
	at      time.Time
	waiting bool // the gate refused; said once at Info
}

// enableAddresses writes CmdAssignAddresses once the version gate admits
// it (every server registered at FSM version 2, see raftstore/DESIGN.md),
// after which the FSM gives every service an address. It tries when the
// registered servers change (a server upgraded and registered again) and
// otherwise every addressRetry, so a cluster being upgraded costs one
// refused proposal per change, not one per pass.
func (c *Controller) enableAddresses(ctx context.Context, view *state.Tables) {
	if view.AddressesOn() {
		return
	}
	var servers strings.Builder
	for _, s := range view.Servers() {
		fmt.Fprintf(&servers, "%s=%d;", s.ID, s.Version)
	}
	now := c.cfg.Now()
	c.mu.Lock()
	last := c.addresses
	due := last.at.IsZero() || servers.String() != last.servers || now.Sub(last.at) >= addressRetry || now.Before(last.at)
	if due {
		c.addresses.servers, c.addresses.at = servers.String(), now
	}
	c.mu.Unlock()
	if !due {
		return
	}
	_, err := c.apply(ctx, raftstore.CmdAssignAddresses, state.AssignAddressesCmd{})
	switch {
	case err == nil:
		c.log.Info("service addresses on: every service has one", "range", state.ServiceAddressRange)
	case errors.Is(err, raftstore.ErrVersionGate):
		c.mu.Lock()
		said := c.addresses.waiting
		c.addresses.waiting = true
		c.mu.Unlock()
		if said {
			c.log.Debug("service addresses still wait for the servers' upgrade", "error", err)
		} else {
			c.log.Info("service addresses wait until every server runs this version; connections between services do not resolve until then", "error", err)
		}
	default:
		c.log.Warn("turning service addresses on failed; trying again", "error", err)
	}
}
