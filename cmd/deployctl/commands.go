package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/internal/seccompprofile"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/specs"
)

// requestTimeout bounds one non-waiting API call.
const requestTimeout = 30 * time.Second

// clientErr turns an API error into an exit code.
func clientErr(err error) error {
	if errors.Is(err, controller.ErrInvalidSpec) {
		return exitWith(ExitUsage, err)
	}
	if errors.Is(err, controller.ErrRevisionConflict) {
		return exitWith(ExitConflict, err)
	}
	return exitWith(ExitError, err)
}

func newApplyCmd(g *globals) *cobra.Command {
	var noWait bool
	var timeout time.Duration
	var scanReport string
	var refresh, force bool
	var ifRevision int
	cmd := &cobra.Command{
		Use:   "apply FILE | apply --refresh SERVICE",
		Short: "Store a new revision of a service and wait for its rollout (FILE - reads stdin)",
		Long: `apply reads a service spec, checks it, resolves its image to a digest and
starts a rollout. It waits until every replica is healthy on the new revision
(exit 0), or the release fails and rolls back (exit 3) or pauses (exit 4).
On a terminal it redraws a live view of the rollout (slots, progress, last
events); with --plain, NO_COLOR, TERM=dumb or into a pipe it prints a line
per step. Ctrl-C stops waiting; the rollout goes on. See 'deployctl help
exit-codes'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if refresh && force {
				return exitWith(ExitUsage, errors.New("--force retries the spec of FILE; --refresh takes no spec: use one or the other"))
			}
			if refresh && cmd.Flags().Changed("if-revision") {
				return exitWith(ExitUsage, errors.New("--if-revision guards an apply of FILE; drop it with --refresh"))
			}
			if refresh {
				return refreshService(cmd, g, args[0], noWait, timeout)
			}
			spec, body, err := readApplyBody(args[0], cmd.InOrStdin(), scanReport)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			body.Force = force
			if cmd.Flags().Changed("if-revision") {
				if ifRevision < 0 {
					return exitWith(ExitUsage, fmt.Errorf("--if-revision %d: give the revision you expect to be current (0: the service must not exist yet)", ifRevision))
				}
				body.IfRevision = &ifRevision
			}
			return writeAndFollow(cmd, g, spec.Service, noWait, timeout,
				func(ctx context.Context) (wire.ApplyOutcome, error) { return g.client().ApplyWith(ctx, body) },
				func(out wire.ApplyOutcome) string {
					if out.Unchanged {
						return fmt.Sprintf("%s: unchanged, revision %d (%s)", out.Service, out.Revision, out.Digest)
					}
					return fmt.Sprintf("%s: revision %d stored, image %s pinned to %s", out.Service, out.Revision, spec.Image, out.Digest)
				})
		},
	}
	cmd.Flags().BoolVar(&noWait, "detach", false, "return once the revision is stored, without waiting")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "stop waiting after this long (exit 5; the rollout goes on)")
	cmd.Flags().StringVar(&scanReport, "scan-report", "", "a Trivy JSON report of the image, for the policy's scan gate")
	cmd.Flags().BoolVar(&refresh, "refresh", false, "re-resolve SERVICE's image tag and roll a newer digest out like any release")
	cmd.Flags().BoolVar(&force, "force", false, "retry a failed or paused revision: a new revision even when the spec is unchanged")
	cmd.Flags().IntVar(&ifRevision, "if-revision", 0, "store the revision only if the service's current revision is this one (0: it must not exist yet); otherwise exit 6 and change nothing")
	return cmd
}

// writeAndFollow makes one write that stores a revision (apply, rollback,
// scale): it sends it (Ctrl-C stops waiting for the answer), prints the
// server's warnings and the line stored returns for the answer, then
// follows the revision's rollout with apply's progress lines and exit
// codes, unless noWait.
func writeAndFollow(cmd *cobra.Command, g *globals, service string, noWait bool, timeout time.Duration,
	write func(context.Context) (wire.ApplyOutcome, error), stored func(wire.ApplyOutcome) string) error {
	ctx, stop := interruptContext(cmd.Context())
	defer stop()
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	out, err := write(callCtx)
	cancel()
	if err != nil {
		return clientErr(err)
	}
	for _, warning := range out.Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", warning)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintln(w, stored(out))
	if noWait {
		return nil
	}
	return followRevision(ctx, g.client(), service, out.Revision, timeout, g.rolloutView(ctx, w, service, out.Revision))
}

// refreshService is `apply --refresh SERVICE`.
func refreshService(cmd *cobra.Command, g *globals, service string, noWait bool, timeout time.Duration) error {
	ctx, stop := interruptContext(cmd.Context())
	defer stop()
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	out, err := g.client().Refresh(callCtx, service)
	cancel()
	if err != nil {
		return clientErr(err)
	}
	w := cmd.OutOrStdout()
	if out.Unchanged {
		fmt.Fprintf(w, "%s: up to date, revision %d (%s)\n", service, out.Revision, out.Digest)
		return nil
	}
	fmt.Fprintf(w, "%s: revision %d stored, tag now pinned to %s\n", service, out.Revision, out.Digest)
	if noWait {
		return nil
	}
	return followRevision(ctx, g.client(), service, out.Revision, timeout, g.rolloutView(ctx, w, service, out.Revision))
}

func newOutdatedCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "outdated",
		Short: "List services whose image tag now resolves to a newer digest than the one pinned",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*requestTimeout)
			defer cancel()
			rep, err := g.client().Outdated(ctx)
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), rep, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SERVICE\tREVISION\tIMAGE\tPINNED\tLATEST")
				for _, o := range rep.Services {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", o.Service, o.Revision, o.Image, short(trimAlgo(o.Pinned)), short(trimAlgo(o.Latest)))
				}
				tw.Flush()
				printOutdatedSecrets(w, rep)
				for _, p := range rep.Problems {
					fmt.Fprintln(w, "could not check:", p)
				}
				if len(rep.Services) > 0 {
					fmt.Fprintln(w, "\nroll a newer digest out with: deployctl apply --refresh SERVICE")
				}
			})
		},
	}
}

// readProfile reads the seccomp profile a spec names, relative to the
// spec file (to the working directory for stdin), and checks it here so
// that a broken file is reported before anything is sent.
func readProfile(specPath, profile string) ([]byte, error) {
	path := profile
	if !filepath.IsAbs(path) && specPath != "-" {
		path = filepath.Join(filepath.Dir(specPath), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("security.seccomp: %w", err)
	}
	if err := seccompprofile.Validate(data); err != nil {
		return nil, fmt.Errorf("security.seccomp: %s: %w", path, err)
	}
	return data, nil
}

func readSpecFile(path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read spec: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("spec %s is over 1 MiB", path)
	}
	return data, nil
}

func newStatusCmd(g *globals) *cobra.Command {
	var watch bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status SERVICE",
		Short: "Show a service's revision, digest, state and replicas (-w: follow its rollout)",
		Long: `status shows a service's current revision, digest, state and replicas.
With -w (--watch) it follows the current revision's rollout until it ends,
with apply's live view on a terminal (plain lines otherwise, or with
--plain), and exits as apply does: 0 done, 3 rolled back, 4 paused or
failed, 5 stopped waiting. A service at rest shows once and exits 0.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if watch && g.output == "json" {
				return exitWith(ExitUsage, errors.New("-w follows a rollout on screen; -o json prints one status: use one or the other"))
			}
			ctx := cmd.Context()
			if watch {
				var stop func()
				ctx, stop = interruptContext(ctx)
				defer stop()
			}
			callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
			st, err := g.client().Status(callCtx, args[0], 0, 0)
			cancel()
			if err != nil {
				return clientErr(err)
			}
			if !watch {
				return g.print(cmd.OutOrStdout(), st, func(w io.Writer) { printStatus(w, st) })
			}
			w := cmd.OutOrStdout()
			obs := g.rolloutView(ctx, w, args[0], st.Revision)
			if _, ok := obs.(*plainObserver); ok {
				printStatus(w, st)
				fmt.Fprintln(w)
			}
			return followRevision(ctx, g.client(), args[0], st.Revision, timeout, obs)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the current rollout until it ends (live view on a terminal)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "with -w: stop waiting after this long (exit 5; the rollout goes on)")
	return cmd
}

func printStatus(w io.Writer, st wire.ServiceStatus) {
	fmt.Fprintf(w, "service:   %s\n", st.Service)
	fmt.Fprintf(w, "state:     %s\n", st.State)
	fmt.Fprintf(w, "revision:  %d (%s, %s)\n", st.Revision, st.RevisionState, st.Cause)
	fmt.Fprintf(w, "image:     %s\n", st.Image)
	fmt.Fprintf(w, "digest:    %s\n", st.Digest)
	fmt.Fprintf(w, "replicas:  %d desired, %d running, %d healthy\n", st.Replicas.Desired, st.Replicas.Running, st.Replicas.Healthy)
	if st.Message != "" {
		fmt.Fprintf(w, "message:   %s\n", st.Message)
	}
	printTraffic(w, st)
	for _, in := range st.Ingress {
		fmt.Fprintf(w, "ingress:   %s\n", ingressLine(in))
	}
	for _, p := range st.IngressProblems {
		fmt.Fprintf(w, "warning:   host %s cannot listen on %s (%s): its proxy keeps trying; free the port or change listen\n", p.Host, p.Addr, p.Error)
	}
	switch {
	case st.Address != "":
		fmt.Fprintf(w, "address:   %s\n", st.Address)
	case len(st.Expose) > 0 || len(st.Connections) > 0:
		fmt.Fprintf(w, "address:   none yet (assigned once every server runs this version)\n")
	}
	if len(st.Expose) > 0 {
		fmt.Fprintf(w, "expose:    %s\n", exposeList(st.Expose))
	}
	for _, c := range st.Connections {
		fmt.Fprintf(w, "connects:  %s\n", connectionLine(c))
	}
	if len(st.Instances) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tREPLICA\tREVISION\tHOST\tDESIRED\tSTATE\tCONTAINER\tMESSAGE")
	for _, in := range st.Instances {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", in.Slot, short(in.ID), in.Revision, in.Host, in.Desired, in.State, short(in.ContainerID), in.Message)
	}
	tw.Flush()
}

// ingressLine shows one ingress entry: "http :80 host=a.example.com
// path=/api -> 8080", "tcp :5432 -> 5432".
func ingressLine(in specs.Ingress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s :%d", in.Protocol, in.Listen)
	if in.Host != "" {
		fmt.Fprintf(&b, " host=%s", in.Host)
	}
	if in.Path != "" {
		fmt.Fprintf(&b, " path=%s", in.Path)
	}
	fmt.Fprintf(&b, " -> %d", in.Port)
	return b.String()
}

// exposeList shows exposed ports: "5432/tcp, 8080/http".
func exposeList(e []specs.Expose) string {
	parts := make([]string, len(e))
	for i, x := range e {
		parts[i] = fmt.Sprintf("%d/%s", x.Port, x.Protocol)
	}
	return strings.Join(parts, ", ")
}

// connectionLine shows one declared connection: "db:5432 -> 198.18.0.3
// 5432/tcp", "api -> 198.18.0.2 8080/http, 9090/http", or, unresolved,
// "auth  UNRESOLVED: no such service: ...".
func connectionLine(c wire.ConnectionStatus) string {
	name := c.Service
	if c.Port != 0 {
		name = fmt.Sprintf("%s:%d", c.Service, c.Port)
	}
	if !c.Resolved {
		return fmt.Sprintf("%s  UNRESOLVED: %s", name, c.Reason)
	}
	return fmt.Sprintf("%s -> %s %s", name, c.Address, exposeList(c.Ports))
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func newServicesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "services",
		Short: "List services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			list, err := g.client().Services(ctx)
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), list, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SERVICE\tREVISION\tSTATE\tREPLICAS\tIMAGE")
				for _, s := range list {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%s\n", s.Service, s.Revision, s.State, s.Replicas.Healthy, s.Replicas.Desired, s.Image)
				}
				tw.Flush()
			})
		},
	}
}

func newHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history SERVICE",
		Short: "List every revision of a service: digest, cause, outcome, when",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			list, err := g.client().History(ctx, args[0])
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), list, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "REVISION\tSTATE\tDIGEST\tCAUSE\tCREATED\tTRAFFIC\tMESSAGE")
				for _, h := range list {
					mark := ""
					if h.Current {
						mark = " *"
					}
					fmt.Fprintf(tw, "%d%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Revision, mark, h.State, short(trimAlgo(h.Digest)), h.Cause,
						h.CreatedAt.Local().Format(time.DateTime), historyTraffic(h.Traffic), h.Message)
				}
				tw.Flush()
			})
		},
	}
}

func trimAlgo(d string) string {
	if len(d) > 7 && d[:7] == "sha256:" {
		return d[7:]
	}
	return d
}

func newRollbackCmd(g *globals) *cobra.Command {
	var to int
	var noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Roll a service back to its last good revision (or --to N) and wait",
		Long: `rollback stores a new revision that restores the latest earlier revision
that succeeded with a different digest (or revision N with --to N), and waits
for it: exit 0 once healthy, 4 if the rollback itself fails (it is never
rolled back in turn: a human decides).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 0 {
				return exitWith(ExitUsage, fmt.Errorf("--to %d: a revision number is positive", to))
			}
			return writeAndFollow(cmd, g, args[0], noWait, timeout,
				func(ctx context.Context) (wire.ApplyOutcome, error) { return g.client().Rollback(ctx, args[0], to) },
				func(out wire.ApplyOutcome) string {
					return fmt.Sprintf("%s: revision %d stored, restoring %s", out.Service, out.Revision, out.Digest)
				})
		},
	}
	cmd.Flags().IntVar(&to, "to", 0, "revision to restore (default: the last good one with a different digest)")
	cmd.Flags().BoolVar(&noWait, "detach", false, "return once the rollback is stored, without waiting")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "stop waiting after this long (exit 5; the rollback goes on)")
	return cmd
}

func newScaleCmd(g *globals) *cobra.Command {
	var noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "scale SERVICE N",
		Short: "Run N replicas of a service (a new revision of its current spec) and wait",
		Long: `scale stores a new revision that is the service's current spec with N
replicas, pinned to the same digest (the tag is not resolved again), and waits
for it like apply: exit 0 once it is healthy on N replicas. Running replicas
are kept: only the difference starts or stops. N equal to the current count
stores nothing. 0 stops every replica and keeps the service. 'deployctl
history' shows the revision; 'deployctl rollback SERVICE --to REV' restores
an earlier count.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				return exitWith(ExitUsage, fmt.Errorf("replicas: %q is not a replica count; give 0 or more", args[1]))
			}
			return writeAndFollow(cmd, g, args[0], noWait, timeout,
				func(ctx context.Context) (wire.ApplyOutcome, error) { return g.client().Scale(ctx, args[0], n) },
				func(out wire.ApplyOutcome) string {
					if out.Unchanged {
						return fmt.Sprintf("%s: unchanged, revision %d already has %d replicas (%s)", out.Service, out.Revision, n, out.Digest)
					}
					return fmt.Sprintf("%s: revision %d stored, scaling to %d replicas of %s", out.Service, out.Revision, n, out.Digest)
				})
		},
	}
	cmd.Flags().BoolVar(&noWait, "detach", false, "return once the revision is stored, without waiting")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "stop waiting after this long (exit 5; the rollout goes on)")
	return cmd
}

func newRemoveCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "rm SERVICE",
		Aliases: []string{"remove"},
		Short:   "Remove a service and its containers, and wait until they are gone",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptContext(cmd.Context())
			defer stop()
			callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
			err := g.client().Remove(callCtx, args[0])
			cancel()
			if err != nil {
				return clientErr(err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: removing\n", args[0])
			return waitForRemoval(ctx, g.client(), w, args[0], timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "stop waiting after this long (exit 5; removal goes on)")
	return cmd
}

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster membership and health"}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the leader, the servers and the hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			st, err := g.client().Cluster(ctx)
			if err != nil {
				return diagnoseCluster(ctx, cmd, g, err)
			}
			return g.print(cmd.OutOrStdout(), st, func(w io.Writer) {
				fmt.Fprintf(w, "leader: %s\n\n", st.Leader)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tVOTER\tHEALTHY\tCERTIFICATE")
				for _, n := range st.Nodes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.Address, n.Role, strconv.FormatBool(n.Voter), strconv.FormatBool(n.Healthy), n.Identity)
				}
				fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
				fmt.Fprintln(tw, "HOST\tSTATE\tAVAILABILITY\tREPLICAS\tLABELS\tUSERNS\tPROXY\tCERTIFICATE")
				for _, h := range st.Hosts {
					userns := "unknown"
					if h.Engine != nil {
						userns = strconv.FormatBool(h.Engine.Userns)
					}
					cert := h.Identity
					if cert == "" {
						cert = "-"
					}
					proxy := h.ProxyAddr
					if proxy == "" {
						proxy = "-"
					}
					avail := h.Availability
					if avail == "" {
						avail = "active"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%s\t%s\t%s\n", h.ID, h.State, avail, h.Replicas, h.Labels, userns, proxy, cert)
				}
				tw.Flush()
				for _, n := range st.Nodes {
					if n.Secrets != "" {
						fmt.Fprintf(w, "server %s secrets: %s\n", n.ID, n.Secrets)
					}
				}
				for _, h := range st.Hosts {
					for _, p := range h.ProxyProblems {
						what := fmt.Sprintf("ingress port %d", p.Listen)
						if p.Listen == 0 {
							what = "the hop listener (--proxy-addr)"
						}
						fmt.Fprintf(w, "warning: host %s: %s cannot listen on %s: %s\n", h.ID, what, p.Addr, p.Error)
					}
				}
			})
		},
	})
	cmd.AddCommand(newClusterMembershipCmds(g)...)
	cmd.AddCommand(newUnlockCmd(g))
	return cmd
}
