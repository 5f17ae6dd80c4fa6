package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/internal/wire"
)

// newHostCmd is `deployctl host ls|drain|activate|rm` (issue 17).
func newHostCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "List hosts, drain one before maintenance, activate it again, remove one that is gone",
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "Every host: state, availability, replicas, and why a draining host still has some",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			hosts, err := g.client().Hosts(ctx)
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), hosts, func(w io.Writer) { printHosts(w, hosts) })
		},
	}
	var detach bool
	var timeout time.Duration
	drain := &cobra.Command{
		Use:   "drain HOST",
		Short: "Place no new replica on HOST and move its replicas to other hosts, health-gated; waits until none is left",
		Long: `drain marks HOST so that it takes no new replica, and moves its replicas off:
each gets a replacement on another host, and stops once that one is healthy
(the proxy stops sending it requests first). It waits until HOST holds no
replica (exit 0). When some cannot move (no other host can take them), it says
why, keeps them running, and exits 1; 'deployctl host ls' shows it too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setAvailability(cmd, g, args[0], true, detach, timeout)
		},
	}
	drain.Flags().BoolVar(&detach, "detach", false, "return once the host is marked, without waiting for its replicas to move")
	drain.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "stop waiting after this long (exit 5; the drain goes on)")
	activate := &cobra.Command{
		Use:   "activate HOST",
		Short: "Let HOST take replicas again (the replicas moved off stay where they are)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setAvailability(cmd, g, args[0], false, true, 0)
		},
	}
	rm := &cobra.Command{
		Use:   "rm HOST",
		Short: "Forget a host that is down and whose replicas were replaced: it leaves cluster status, host ls and audit",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			if err := g.client().RemoveHost(ctx, args[0]); err != nil {
				return clientErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "host %s removed\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(ls, drain, activate, rm)
	return cmd
}

func printHosts(w io.Writer, hosts []wire.HostView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tAVAILABILITY\tREPLICAS")
	for _, h := range hosts {
		avail := h.Availability
		if h.Left {
			avail += " (its server left the cluster)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", h.ID, h.State, avail, h.Replicas)
	}
	tw.Flush()
	for _, h := range hosts {
		for _, line := range h.Waiting {
			fmt.Fprintf(w, "%s: %s\n", h.ID, line)
		}
	}
}

// setAvailability drains or activates a host; a drain then waits until
// the host holds no replica, or every one left cannot move.
func setAvailability(cmd *cobra.Command, g *globals, id string, drain, detach bool, timeout time.Duration) error {
	ctx, stop := interruptContext(cmd.Context())
	defer stop()
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	h, err := g.client().SetHostAvailability(callCtx, id, drain)
	cancel()
	if err != nil {
		return clientErr(err)
	}
	w := cmd.OutOrStdout()
	if !drain {
		fmt.Fprintf(w, "host %s active: it takes replicas again\n", id)
		return nil
	}
	fmt.Fprintf(w, "host %s draining: %d %s to move\n", id, h.Replicas, plural(h.Replicas, "replica", "replicas"))
	if detach {
		return nil
	}
	ctx, cancel = context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		if h.Replicas == 0 {
			fmt.Fprintf(w, "host %s drained: no replica left\n", id)
			return nil
		}
		text := strings.Join(h.Waiting, "\n  ")
		if text != last {
			fmt.Fprintf(w, "  %d left: %s\n", h.Replicas, text)
			last = text
		}
		if stuck(h) {
			return exitWith(ExitError, fmt.Errorf("host %s cannot be drained now: %s; its replicas keep running there ('deployctl host ls')",
				id, strings.Join(h.Waiting, "; ")))
		}
		select {
		case <-ctx.Done():
			return exitWith(ExitTimeout, fmt.Errorf("stopped waiting; the drain of %s goes on: follow it with `deployctl host ls`", id))
		case <-time.After(500 * time.Millisecond):
		}
		callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
		h, err = g.client().Host(callCtx, id)
		cancel()
		if err != nil && !wire.Retryable(err) {
			return clientErr(err)
		}
	}
}

// stuck reports whether every replica left on a draining host stays there
// until something else changes (no host can take it, or its service waits
// for a human).
func stuck(h wire.HostView) bool {
	if len(h.Waiting) == 0 {
		return false
	}
	for _, line := range h.Waiting {
		if !strings.Contains(line, "cannot move") && !strings.Contains(line, "until a human decides") {
			return false
		}
	}
	return true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
