package main

// Issue 10: ps, logs and events.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

func newPsCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "ps SERVICE",
		Short: "List a service's replicas: slot, revision, host, desired and actual state, health, since, last error",
		Long: `ps lists every replica of a service, by slot: its ID, the revision it
runs, its host, what the cluster wants of it (desired) and what its host's
agent last reported (state), the probes' verdict while it runs (health),
since when it is in that state, and its last error (an exit code, a probe's
answer). With -a (--all) the replicas that ended in recent revisions (stopped,
failed, lost) are listed under the slot they served, newest first; the
cluster keeps the last ` + fmt.Sprint(state.MaxEndedPerService) + ` of each service.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			view, err := g.client().Ps(ctx, args[0], all)
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), view, func(w io.Writer) { printPs(w, view, time.Now()) })
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list the replicas that ended in recent revisions")
	return cmd
}

func printPs(w io.Writer, view wire.PsView, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tID\tREVISION\tHOST\tDESIRED\tSTATE\tHEALTH\tSINCE\tERROR")
	for _, r := range view.Replicas {
		slot, id := fmt.Sprint(r.Slot), short(r.ID)
		if r.Ended {
			slot, id = "", `\_ `+id
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", slot, id, r.Revision, r.Host, r.Desired, r.State,
			orDash(r.Health), ago(now, r.Since), orDash(r.Error))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago says how long before now t was, to the second.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

// parseSince reads --since: a duration back from now (10m) or a time
// (RFC 3339, e.g. 2026-12-05T20:00:00Z).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, exitWith(ExitUsage, fmt.Errorf("--since %q: want a duration such as 10m or a time such as 2026-12-05T20:00:00Z", s))
}

// interruptible is ctx ending at Ctrl-C or SIGTERM: following stops
// there, with exit 0.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow, timestamps bool
	var since, replica string
	var tail int
	cmd := &cobra.Command{
		Use:   "logs SERVICE",
		Short: "Print the stdout and stderr of every replica of a service, on every host",
		Long: `logs prints what every replica of a service wrote to stdout and stderr,
each line prefixed with the replica and its host, in order within each
replica. The server you ask reads each replica's host agent over the
cluster's mutual TLS; a host that cannot be reached is named on stderr and
the others are printed. With -f (--follow) it keeps printing through
rollouts: replicas that start are added, stopped ones end; Ctrl-C stops.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			if tail < -1 {
				return exitWith(ExitUsage, fmt.Errorf("--tail %d: want a number of lines, or -1 for all", tail))
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			if !follow {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
			}
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			err = g.client().Logs(ctx, args[0], wire.LogsQuery{Follow: follow, Since: from, Tail: tail, Replica: replica}, func(l wire.LogLine) error {
				return printLogLine(out, errw, l, timestamps)
			})
			if err != nil && !(follow && errors.Is(err, context.Canceled)) {
				return clientErr(err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new lines, through rollouts, until Ctrl-C")
	f.StringVar(&since, "since", "", "only lines since a duration ago (10m) or a time (RFC 3339)")
	f.IntVar(&tail, "tail", -1, "only the last N lines of each replica (-1: all)")
	f.StringVar(&replica, "replica", "", "only this replica (its ID, or the start of it as ps shows it)")
	f.BoolVarP(&timestamps, "timestamps", "t", false, "print each line's time")
	return cmd
}

// printLogLine prints one line as "REPLICA@HOST | text"; notices go to
// errw.
func printLogLine(out, errw io.Writer, l wire.LogLine, timestamps bool) error {
	switch {
	case l.Error != "":
		_, err := fmt.Fprintf(errw, "deployctl: %s\n", l.Error)
		return err
	case l.End:
		return nil
	}
	prefix := short(l.Replica) + "@" + l.Host
	if timestamps {
		prefix = l.Time.UTC().Format(time.RFC3339Nano) + " " + prefix
	}
	_, err := fmt.Fprintf(out, "%s | %s\n", prefix, l.Text)
	return err
}

func newEventsCmd(g *globals) *cobra.Command {
	var follow bool
	var service, since string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the cluster's events: revisions, replicas, rollouts, rollbacks, hosts, refusals, leaders",
		Long: `events prints what the cluster did and saw, oldest first: revisions
stored, replicas placed, started, healthy, unhealthy (with the probe's
answer), failed, stopped, lost; rollouts succeeded, paused, failed, rolled
back (with why); hosts up and down; applies the policy refused; leaders
elected. The cluster keeps the last ` + fmt.Sprint(state.MaxEvents) + ` events in raft, so they survive a
leader change. -f (--follow) waits for new ones until Ctrl-C; -o json
prints one JSON object a line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			if g.output != "json" && g.output != "table" && g.output != "" {
				return exitWith(ExitUsage, fmt.Errorf("-o %q: want table or json", g.output))
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			return followEvents(ctx, g, cmd.OutOrStdout(), cmd.ErrOrStderr(), service, from, follow)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "wait for new events until Ctrl-C")
	f.StringVar(&service, "service", "", "only the events of this service")
	f.StringVar(&since, "since", "", "only events since a duration ago (10m) or a time (RFC 3339)")
	return cmd
}

// followEvents prints the events, and with follow goes on asking for
// those after the last one; an election in between only delays them.
func followEvents(ctx context.Context, g *globals, out, errw io.Writer, service string, since time.Time, follow bool) error {
	var after uint64
	enc := json.NewEncoder(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if g.output != "json" {
		fmt.Fprintln(tw, "TIME\tTYPE\tSERVICE\tREVISION\tREPLICA\tHOST\tMESSAGE")
	}
	wait := time.Duration(0)
	backoff := 200 * time.Millisecond
	for {
		callCtx, cancel := context.WithTimeout(ctx, wait+requestTimeout)
		page, err := g.client().Events(callCtx, after, service, since, wait)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			tw.Flush()
			return nil
		case err != nil && follow && wire.Retryable(err):
			fmt.Fprintf(errw, "deployctl: %v; asking again\n", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		case err != nil:
			tw.Flush()
			return clientErr(err)
		}
		backoff = 200 * time.Millisecond
		for _, e := range page.Events {
			if g.output == "json" {
				if err := enc.Encode(e); err != nil {
					return err
				}
				continue
			}
			rev := ""
			if e.Revision != 0 {
				rev = fmt.Sprint(e.Revision)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Type, orDash(e.Service), orDash(rev),
				orDash(short(e.Replica)), orDash(e.Host), strings.ReplaceAll(e.Message, "\n", " "))
		}
		tw.Flush()
		if !follow {
			return nil
		}
		after, wait = page.Last, 30*time.Second
	}
}
