package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/specs"
)

// Exit codes of diff, kubectl diff's.
const (
	exitDiffNone    = ExitOK
	exitDiffChanges = 1
	exitDiffFailed  = ExitUsage
)

func newDiffCmd(g *globals) *cobra.Command {
	var scanReport string
	cmd := &cobra.Command{
		Use:   "diff FILE",
		Short: "Show what an apply of FILE would change: fields, digest, restarts (FILE - reads stdin)",
		Long: `diff sends the spec to the cluster as a dry run of apply: the same checks and
admission (policy, signature, scan gate), the tag resolved to its digest now,
and nothing stored. It prints each field that changes against the current
revision, the digest pinned now and the one the tag resolves to, and whether
the containers restart (their fingerprint changes) and how many.

Exit 0 when an apply would change nothing, 1 when it would change something,
2 when the spec is invalid or the diff cannot be made (kubectl diff's codes).
Guard the apply that follows with 'deployctl apply --if-revision N FILE'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, body, err := readApplyBody(args[0], cmd.InOrStdin(), scanReport)
			if err != nil {
				return exitWith(exitDiffFailed, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			out, err := g.client().Diff(ctx, body)
			if err != nil {
				return exitWith(exitDiffFailed, err)
			}
			for _, warning := range out.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", warning)
			}
			if err := g.print(cmd.OutOrStdout(), out, func(w io.Writer) { printDiff(w, out) }); err != nil {
				return err
			}
			if out.Unchanged {
				return nil
			}
			return exitWith(exitDiffChanges, nil)
		},
	}
	cmd.Flags().StringVar(&scanReport, "scan-report", "", "a Trivy JSON report of the image, for the policy's scan gate (as apply)")
	return cmd
}

// printDiff shows a DiffOutcome:
//
//	web: revision 3 -> a new revision
//	  digest: sha256:0bf6ac3488a9 -> sha256:1f374e6bb09f  (127.0.0.1:5000/web:1.4 moved; restarts)
//	  env.LOG_LEVEL: "info" -> "debug"  (restarts)
//	  replicas: 3 -> 5
//	containers: 3 replicas restart (new fingerprint), 2 start
func printDiff(w io.Writer, d wire.DiffOutcome) {
	digest := func(s string) string { return "sha256:" + short(trimAlgo(s)) }
	switch {
	case !d.Exists:
		fmt.Fprintf(w, "%s: new service: apply creates revision 1\n", d.Service)
		fmt.Fprintf(w, "  digest: %s  (%s resolves to it now)\n", digest(d.ResolvedDigest), d.Image)
	case d.Unchanged:
		fmt.Fprintf(w, "%s: no changes against revision %d (%s)\n", d.Service, d.Revision, digest(d.PinnedDigest))
		return
	default:
		fmt.Fprintf(w, "%s: revision %d -> a new revision\n", d.Service, d.Revision)
		if d.PinnedDigest == d.ResolvedDigest {
			fmt.Fprintf(w, "  digest: %s  (%s still resolves to it)\n", digest(d.PinnedDigest), d.Image)
		} else {
			fmt.Fprintf(w, "  digest: %s -> %s  (%s moved; restarts)\n", digest(d.PinnedDigest), digest(d.ResolvedDigest), d.Image)
		}
		for _, c := range d.Changes {
			note := ""
			if c.Restarts {
				note = "  (restarts)"
			}
			fmt.Fprintf(w, "  %s: %s -> %s%s\n", c.Field, orNone(c.Old), orNone(c.New), note)
		}
	}
	var parts []string
	switch {
	case d.Restart:
		parts = append(parts, fmt.Sprintf("%d %s restart (new fingerprint)", d.Restarts, replicasWord(d.Restarts)))
	case d.Exists:
		parts = append(parts, "none restart (same fingerprint)")
	}
	if d.Starts > 0 {
		parts = append(parts, fmt.Sprintf("%d start", d.Starts))
	}
	if d.Stops > 0 {
		parts = append(parts, fmt.Sprintf("%d stop", d.Stops))
	}
	fmt.Fprintf(w, "containers: %s\n", strings.Join(parts, ", "))
}

func orNone(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

func replicasWord(n int) string {
	if n == 1 {
		return "replica"
	}
	return "replicas"
}

// readApplyBody reads a spec file (- for stdin) with the files it names
// and a scan report, for apply and diff. The spec is parsed here first:
// the errors carry line numbers and no server round trip is needed to
// learn of a typo.
func readApplyBody(path string, stdin io.Reader, scanReport string) (*specs.Spec, wire.ApplyBody, error) {
	data, err := readSpecFile(path, stdin)
	if err != nil {
		return nil, wire.ApplyBody{}, err
	}
	spec, err := specs.Parse(data)
	if err != nil {
		return nil, wire.ApplyBody{}, fmt.Errorf("%s: %w", path, err)
	}
	body := wire.ApplyBody{SpecYAML: string(data)}
	if spec.Security.SeccompMode() == specs.SeccompModeFile {
		if body.SeccompProfile, err = readProfile(path, spec.Security.Seccomp); err != nil {
			return nil, wire.ApplyBody{}, err
		}
	}
	if scanReport != "" {
		if body.ScanReport, err = os.ReadFile(scanReport); err != nil {
			return nil, wire.ApplyBody{}, fmt.Errorf("--scan-report: %w", err)
		}
	}
	return spec, body, nil
}
