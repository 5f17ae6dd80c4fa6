package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deployctl/deployctl/internal/wire"
)

// diagnoseWait bounds each server's answer about itself.
const diagnoseWait = 3 * time.Second

// serverReport is one server `cluster status` tried when the cluster
// gave no status: its own raft state, or why it did not answer.
type serverReport struct {
	// ID is the server's node id: from its answer, or from the members
	// the others know.
	ID     string           `json:"id,omitempty"`
	Addr   string           `json:"addr"`
	Health *wire.RaftHealth `json:"health,omitempty"`
	Error  string           `json:"error,omitempty"`
}

// noLeaderReport is `cluster status -o json` without a leader.
type noLeaderReport struct {
	Leader  string         `json:"leader"`
	Servers []serverReport `json:"servers"`
}

// diagnoseCluster answers `cluster status` when the cluster's status could
// not be had (statusErr): it asks every server it can reach, the given
// addresses and the members they know, for its own raft state, prints what
// each reports and says plainly whether there is a leader. It exits 1 with
// "no leader" when none is known, and returns statusErr when no server
// answered at all or the error was not one of reaching a leader.
func diagnoseCluster(ctx context.Context, cmd *cobra.Command, g *globals, statusErr error) error {
	if !wire.Retryable(statusErr) {
		return clientErr(statusErr)
	}
	c := g.client()
	reports := map[string]*serverReport{}
	var order []string
	ask := func(addrs []string) {
		var wg sync.WaitGroup
		for _, a := range addrs {
			if _, done := reports[a]; done {
				continue
			}
			r := &serverReport{Addr: a}
			reports[a] = r
			order = append(order, a)
			wg.Add(1)
			go func() {
				defer wg.Done()
				actx, cancel := context.WithTimeout(ctx, diagnoseWait)
				defer cancel()
				h, err := c.RaftHealthOf(actx, a)
				if err != nil { // each goroutine writes its own report
					r.Error = err.Error()
					return
				}
				r.Health = &h
			}()
		}
		wg.Wait()
	}
	given := make([]string, 0, len(c.Addrs()))
	for _, a := range c.Addrs() {
		given = append(given, hostPort(a))
	}
	ask(given)
	// The members the answering servers know, at their API addresses.
	var more []string
	for _, a := range order {
		if h := reports[a].Health; h != nil {
			for _, m := range h.Members {
				if m.APIAddr != "" && m.APIAddr != h.APIAddr && !slices.Contains(order, m.APIAddr) && !slices.Contains(more, m.APIAddr) {
					more = append(more, m.APIAddr)
				}
			}
		}
	}
	ask(more)

	// Name every member: the unreachable ones by the id the others know
	// them by, those no one knows an API address of (never registered) as
	// such.
	known := map[string]bool{}
	memberAt := map[string]wire.Member{}
	var members []wire.Member
	for _, a := range order {
		if h := reports[a].Health; h != nil {
			known[h.ID] = true
			for _, m := range h.Members {
				if _, seen := memberAt[m.ID]; !seen {
					members = append(members, m)
				}
				memberAt[m.ID] = m
			}
		}
	}
	for _, m := range members {
		for _, a := range order {
			if r := reports[a]; r.Health == nil && a == m.APIAddr {
				r.ID = m.ID
			}
		}
		if !known[m.ID] && m.APIAddr == "" {
			reports["raft "+m.RaftAddr] = &serverReport{ID: m.ID, Addr: "raft " + m.RaftAddr,
				Error: "a member whose API address no server that answered knows (it never registered): not asked"}
			order = append(order, "raft "+m.RaftAddr)
		}
	}

	rep := noLeaderReport{Servers: []serverReport{}}
	answered, unreachable := 0, 0
	for _, a := range order {
		r := reports[a]
		if r.Health != nil {
			r.ID = r.Health.ID
		}
		rep.Servers = append(rep.Servers, *r)
		if r.Health == nil {
			unreachable++
			continue
		}
		answered++
		if r.Health.Leader != "" && rep.Leader == "" {
			rep.Leader = r.Health.Leader
		}
	}
	if answered == 0 {
		return clientErr(statusErr)
	}
	if err := g.print(cmd.OutOrStdout(), rep, func(w io.Writer) { printNoLeader(w, rep) }); err != nil {
		return err
	}
	if rep.Leader != "" {
		// A leader exists but its status did not come through.
		return exitWith(ExitError, fmt.Errorf("the servers follow leader %s, but the cluster status did not come through: %w", rep.Leader, statusErr))
	}
	return exitWith(ExitError, fmt.Errorf("no leader: none of the %d servers that answered knows a leader (%d unreachable); a leader needs a majority of the voters up and reaching each other", answered, unreachable))
}

// printNoLeader is the table form of a noLeaderReport.
func printNoLeader(w io.Writer, rep noLeaderReport) {
	if rep.Leader == "" {
		fmt.Fprint(w, "leader: none (no leader)\n\n")
	} else {
		fmt.Fprintf(w, "leader: %s (its status did not come through)\n\n", rep.Leader)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tAPI ADDRESS\tROLE\tTERM\tLAST CONTACT\tLAST INDEX\tAPPLIED INDEX\tMEMBERS")
	for _, r := range rep.Servers {
		h := r.Health
		if h == nil {
			id := r.ID
			if id == "" {
				id = "?"
			}
			fmt.Fprintf(tw, "%s\t%s\tunreachable\t-\t-\t-\t-\t-\n", id, r.Addr)
			continue
		}
		contact := "never"
		if h.LastContactSeconds != nil {
			contact = (time.Duration(*h.LastContactSeconds*float64(time.Second)) / time.Millisecond * time.Millisecond).String() + " ago"
		}
		ids := make([]string, 0, len(h.Members))
		for _, m := range h.Members {
			ids = append(ids, m.ID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\n", h.ID, h.APIAddr, h.State, h.Term, contact, h.LastLogIndex, h.AppliedIndex, strings.Join(ids, ","))
	}
	tw.Flush()
	for _, r := range rep.Servers {
		if r.Health == nil {
			fmt.Fprintf(w, "%s: %s\n", r.Addr, r.Error)
		}
	}
	fmt.Fprintln(w, "(LAST CONTACT: when the server last heard from a leader, or stepped down as one)")
}

// hostPort strips the scheme the client put on an address.
func hostPort(addr string) string {
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		return rest
	}
	return addr
}

// defaultLeaderWait is how long a write waits for a leader by default.
const defaultLeaderWait = 10 * time.Second

// bindLeaderWait declares --leader-wait: how long the CLI's writes wait
// for the cluster to have a leader before they give up saying so, instead
// of retrying until their own timeout. DEPLOYCTL_LEADER_WAIT sets its
// default; a bad value is reported by checkLeaderWait.
func bindLeaderWait(pf *pflag.FlagSet, g *globals) {
	def := defaultLeaderWait
	if v := os.Getenv("DEPLOYCTL_LEADER_WAIT"); v != "" {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			g.leaderWaitErr = fmt.Errorf("DEPLOYCTL_LEADER_WAIT=%q: give a positive duration such as 10s", v)
		} else {
			def = d
		}
	}
	pf.DurationVar(&g.leaderWait, "leader-wait", def, "how long a write (apply, rollback, scale, rm, ...) waits for the cluster to have a leader before it gives up (env DEPLOYCTL_LEADER_WAIT)")
}

// checkLeaderWait refuses a bad --leader-wait or DEPLOYCTL_LEADER_WAIT.
func (g *globals) checkLeaderWait() error {
	if g.leaderWaitErr != nil {
		return g.leaderWaitErr
	}
	if g.leaderWait <= 0 {
		return fmt.Errorf("--leader-wait %s: give a positive duration such as 10s", g.leaderWait)
	}
	return nil
}
