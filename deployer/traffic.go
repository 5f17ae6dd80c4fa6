package deployer

import (
	"context"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/hashicorp/go-hclog"
)

// Traffic report (issue 15): what the host's proxy sent to each of the
// host's replicas, shipped to the leader, which judges a release by the
// figures of its replicas (error rate, latency) and rolls it back on a
// breach.

// DefaultTrafficInterval is how often the proxy's figures are sent (while
// there are any): often enough for the leader to judge a release within
// seconds, rarely enough to cost nothing next to the requests counted.
const DefaultTrafficInterval = time.Second

// trafficWarnEvery bounds the warnings about traffic reports that could
// not be sent: a controller that is down (or older, without the endpoint)
// would otherwise log one a second.
const trafficWarnEvery = time.Minute

// trafficShipper sends the figures of take to the controller every
// interval. A report that cannot be sent is dropped, not kept for the
// next: the leader judges a release on recent traffic, and figures piling
// up while it is unreachable would only grow.
type trafficShipper struct {
	host     string
	ctrl     Controller
	take     func() map[string]traffic.Figures
	interval time.Duration
	log      hclog.Logger
}

func (s *trafficShipper) run(ctx context.Context) {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	var warned time.Time
	dropped := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		replicas := byReplica(s.take())
		if len(replicas) == 0 {
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		err := s.ctrl.ReportTraffic(callCtx, wire.TrafficReport{Host: s.host, Replicas: replicas})
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		default:
			dropped++
			if time.Since(warned) >= trafficWarnEvery {
				s.log.Warn("cannot send the proxy's traffic figures; dropping them", "error", err, "reports_dropped", dropped, "next_warning_in", trafficWarnEvery)
				warned, dropped = time.Now(), 0
			}
		}
	}
}

// byReplica merges the figures of a replica's targets (local target IDs
// carry the container, localTargetID) under its replica ID, as the
// leader knows it.
func byReplica(byTarget map[string]traffic.Figures) map[string]traffic.Figures {
	if len(byTarget) == 0 {
		return nil
	}
	out := make(map[string]traffic.Figures, len(byTarget))
	for id, f := range byTarget {
		replica := replicaOfTarget(id)
		sum := out[replica]
		sum.Add(f)
		out[replica] = sum
	}
	return out
}
