package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/wire"
)

func newAuditCmd(g *globals) *cobra.Command {
	var strict, all bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check every running container against CIS Docker Benchmark section 5, and for drift",
		Long: `audit shows, for every container the cluster runs, each CIS Docker Benchmark
section 5 check (id, title, pass/warn/info, the Engine API field read) and
drift: where the running container differs from what its revision asks.
Agents audit their containers every 15 s; the leader keeps the latest
audit of each host. --strict exits 1 when anything warns or drifted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			rep, err := g.client().AuditReport(ctx)
			if err != nil {
				return clientErr(err)
			}
			if err := g.print(cmd.OutOrStdout(), rep, func(w io.Writer) { printAudit(w, rep, all) }); err != nil {
				return err
			}
			if strict && rep.Warnings > 0 {
				return exitWith(ExitError, fmt.Errorf("%d warnings (--strict)", rep.Warnings))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 when any check warns or any container drifted")
	cmd.Flags().BoolVar(&all, "all", false, "list passing checks too")
	return cmd
}

func printAudit(w io.Writer, rep wire.AuditReport, all bool) {
	containers := 0
	for _, h := range rep.Hosts {
		containers += len(h.Containers)
	}
	fmt.Fprintf(w, "%s: %d hosts, %d containers, %d warnings\n", rep.Benchmark, len(rep.Hosts), containers, rep.Warnings)
	for _, h := range rep.Hosts {
		fmt.Fprintf(w, "host %s: userns-remap %v, AppArmor %v, SELinux %v, seccomp %v (audited %s)\n",
			h.Host, h.Engine.Userns, h.Engine.AppArmor, h.Engine.SELinux, h.Engine.Seccomp, h.ReceivedAt.Local().Format(time.TimeOnly))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nHOST\tCONTAINER\tSERVICE\tCHECK\tSTATUS\tFIELD\tVALUE")
	for _, h := range rep.Hosts {
		for _, c := range h.Containers {
			for _, r := range c.Results {
				if r.Status == audit.StatusPass && !all {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s/%d\t%s %s\t%s\t%s\t%s\n", h.Host, short(c.ContainerID), c.Service, c.Revision, r.ID, r.Title, r.Status, r.Field, r.Value)
			}
			for _, d := range c.Drift {
				fmt.Fprintf(tw, "%s\t%s\t%s/%d\tdrift\twarn\t%s\twant %s, got %s\n", h.Host, short(c.ContainerID), c.Service, c.Revision, d.Field, d.Want, d.Got)
			}
		}
	}
	tw.Flush()
	printSpecFindings(w, rep.Specs)
}
