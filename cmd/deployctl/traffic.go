package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/controller/rollout"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Judging a release by its traffic (issue 15): `deployctl promote`, and
// how status, history and apply show canaries and figures.

func newPromoteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "promote SERVICE",
		Short: "End the canary of a service's rollout now; the rollout goes on with its next batches",
		Long: `promote ends the canary (update.canary) of a service's rollout at once,
instead of waiting out its duration: the rollout goes on with its other
batches. The release is still judged by update.rollback_on: a breach still
rolls it back, and it does not succeed before it has min_requests requests.
A service without a running canary is an error that says why (exit 1).
'deployctl rollback' during a canary ends it too, by restoring the previous
revision.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			out, err := g.client().Promote(ctx, args[0])
			if err != nil {
				return clientErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: canary of revision %d promoted; the rollout goes on (follow it with `deployctl status %s`)\n",
				out.Service, out.Revision, out.Service)
			return nil
		},
	}
}

// printTraffic adds the canary and the figures to `status`: the live ones
// while the rollout runs, those kept with the revision afterwards.
func printTraffic(w io.Writer, st wire.ServiceStatus) {
	if line := canaryStatusLine(st); line != "" {
		fmt.Fprintf(w, "canary:    %s\n", line)
	}
	tr := st.Traffic
	if tr == nil {
		return
	}
	when := "during its rollout"
	if tr.Live {
		when = "live, since " + tr.Since.Local().Format(time.TimeOnly)
		if tr.Since.IsZero() {
			when = "live, none yet"
		}
	}
	fmt.Fprintf(w, "traffic:   revision %d: %s (%s)\n", tr.Revision, rollout.Describe(tr.New), when)
	if tr.Old != nil {
		fmt.Fprintf(w, "           other replicas: %s\n", rollout.Describe(*tr.Old))
	}
	if tr.RollbackOn != nil {
		fmt.Fprintf(w, "judged:    %s\n", thresholds(tr.RollbackOn))
	}
	if tr.Waiting != "" {
		fmt.Fprintf(w, "           %s\n", tr.Waiting)
	}
}

// canaryStatusLine is "slots 0 at 10% for 30s: running", or "" without a
// canary in the current rollout.
func canaryStatusLine(st wire.ServiceStatus) string {
	ro := st.Rollout
	if ro == nil || ro.Canary == nil || ro.Revision != st.Revision || len(ro.Canary.Slots) == 0 {
		return ""
	}
	phase := "running"
	switch {
	case !ro.Canary.Running():
		phase = "ended: " + ro.Canary.Ended
	case ro.State != state.RolloutInProgress:
		phase = "keeps its share while the rollout is " + ro.State + " (apply or rollback to end it)"
	case ro.Canary.Promoted:
		phase = "promoted, ending"
	}
	return fmt.Sprintf("slots %s: %s", joinInts(ro.Canary.Slots), phase)
}

// thresholds is "error rate > 2 %, p99 > 500ms, once 50 requests came".
func thresholds(r *specs.RollbackOn) string {
	var parts []string
	if r.ErrorRate != nil {
		parts = append(parts, "error rate > "+rollout.Percent(*r.ErrorRate))
	}
	if r.LatencyP99 > 0 {
		parts = append(parts, "p99 > "+r.LatencyP99.String())
	}
	return fmt.Sprintf("rolls back on %s, once %d requests came", strings.Join(parts, " or "), r.MinRequests)
}

// historyTraffic is the history's TRAFFIC column: "212 requests, 31.1 %
// errors, p50 3ms, p99 812ms", or "-" for a revision without figures.
func historyTraffic(t *state.RevisionTraffic) string {
	if t == nil {
		return "-"
	}
	return rollout.Describe(t.New)
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}

// trafficWait is what `apply` prints while a judged release lacks
// evidence ("waiting for traffic: 12 of 50 requests"), and how long its
// next status query may wait: the count moves without a state change,
// so it asks again every couple of seconds instead of waiting for one.
func trafficWait(st wire.ServiceStatus, following int) (string, time.Duration) {
	if st.Traffic == nil || st.Traffic.Waiting == "" || st.Revision != following {
		return "", statusWait
	}
	return st.Traffic.Waiting, 2 * time.Second
}
