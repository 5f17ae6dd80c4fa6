package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
)

// newSecretCmd is `deployctl secret create|ls|inspect|rm` (issue 13).
func newSecretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Secrets: values services receive as in-memory files (encrypted in raft)",
		Long: `A secret is a named value (a password, a token, a key) that services list
under secrets: in their spec and receive as a file in memory, by default
/run/secrets/NAME, mode 0400, owned by the container's user. Values are
encrypted in raft; no answer of the API but the agents' shows them.
A second create of a name adds a version; versions never change. See
docs/secrets.md.`,
	}
	var file string
	create := &cobra.Command{
		Use:   "create NAME [-f FILE | -]",
		Short: "Store a new version of a secret, read from FILE or stdin (-); at most 500 KiB",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src := file
			if len(args) == 2 {
				if src != "" || args[1] != "-" {
					return exitWith(ExitUsage, fmt.Errorf("give the value as -f FILE or - (stdin), once"))
				}
				src = "-"
			}
			if src == "" {
				return exitWith(ExitUsage, fmt.Errorf("no value: give -f FILE or - (stdin); a value is never taken from the command line"))
			}
			value, err := readSecretValue(src, cmd.InOrStdin())
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			out, err := g.client().CreateSecret(ctx, args[0], value)
			clear(value)
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				fmt.Fprintf(w, "secret %s: version %d stored (%d bytes)\n", out.Name, out.Version, out.Size)
			})
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "read the value from FILE (- for stdin)")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List secrets: latest version, versions, created",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			list, err := g.client().Secrets(ctx)
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), list, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tLATEST\tVERSIONS\tUPDATED")
				for _, s := range list {
					updated := ""
					if n := len(s.Versions); n > 0 {
						updated = s.Versions[n-1].CreatedAt.Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", s.Name, s.Latest, len(s.Versions), updated)
				}
				tw.Flush()
			})
		},
	}

	inspect := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a secret's versions and which revisions use them (never the value)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			info, err := g.client().Secret(ctx, args[0])
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) { printSecret(w, info) })
		},
	}

	var version int
	rm := &cobra.Command{
		Use:   "rm NAME [--version N]",
		Short: "Remove a secret (or one version); refused while a revision that runs or a rollback could return to uses it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version < 0 {
				return exitWith(ExitUsage, fmt.Errorf("--version %d: versions count from 1", version))
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			if err := g.client().RemoveSecret(ctx, args[0], version); err != nil {
				return clientErr(err)
			}
			if version != 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "secret %s: version %d removed\n", args[0], version)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "secret %s removed\n", args[0])
			}
			return nil
		},
	}
	rm.Flags().IntVar(&version, "version", 0, "remove only this version")
	cmd.AddCommand(create, ls, inspect, rm, newSecretKeyCmd(), newRotateKeyCmd(g))
	return cmd
}

// readSecretValue reads a value from a file or stdin ("-"), at most one
// byte over the limit so the server's 413 says how large is too large.
func readSecretValue(src string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return nil, fmt.Errorf("read secret value: %w", err)
		}
		defer f.Close()
		r = f
	}
	value, err := io.ReadAll(io.LimitReader(r, wire.MaxSecretSize+1))
	if err != nil {
		return nil, fmt.Errorf("read secret value: %w", err)
	}
	if len(value) > wire.MaxSecretSize {
		return nil, fmt.Errorf("secret value over %d bytes: a secret holds at most 500 KiB", wire.MaxSecretSize)
	}
	return value, nil
}

func printSecret(w io.Writer, info wire.SecretInfo) {
	fmt.Fprintf(w, "secret %s, latest version %d\n", info.Name, info.Latest)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tCREATED\tSIZE")
	for _, v := range info.Versions {
		fmt.Fprintf(tw, "%d\t%s\t%d\n", v.Version, v.CreatedAt.Local().Format(time.DateTime), v.Size)
	}
	tw.Flush()
	if len(info.Uses) == 0 {
		fmt.Fprintln(w, "used by no revision")
		return
	}
	fmt.Fprintln(w, "used by:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tREVISION\tVERSION\tKEEPS IT")
	for _, u := range info.Uses {
		holds := u.Holds
		if holds == "" {
			holds = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", u.Service, u.Revision, u.Version, holds)
	}
	tw.Flush()
}

// printOutdatedSecrets adds to `deployctl outdated` the services whose
// secrets have a newer version than the one pinned.
func printOutdatedSecrets(w io.Writer, rep wire.OutdatedReport) {
	for _, o := range rep.Services {
		for _, s := range o.Secrets {
			fmt.Fprintf(w, "%s: secret %s version %d pinned, %d is the latest\n", o.Service, s.Name, s.Pinned, s.Latest)
		}
	}
}

// bindSecretsFlags declares the server's secrets flags.
func bindSecretsFlags(f *pflag.FlagSet) {
	f.String("secrets-key-file", "", "the key-encryption key of secrets, readable by root only (default: DATA-DIR/secrets.key, made at first start); every server of a cluster needs the same file (docs/secrets.md)")
	f.Bool("autolock", false, "keep the key-encryption key in memory only: the server starts sealed (serves no secret) until the operator runs `deployctl cluster unlock` for it (docs/secrets.md)")
	bindAgentSecretsFlags(f)
}

// bindAgentSecretsFlags declares the agent's secrets flag, shared by
// server and agent.
func bindAgentSecretsFlags(f *pflag.FlagSet) {
	f.String("secrets-dir", deployer.DefaultSecretsDir, "where the agent mounts one tmpfs per replica that uses secrets")
}

// loadSecretsKey reads the key-encryption key at path, making it at the
// first start of a data dir. A server of a cluster that joins must be
// given the cluster's file (the operator copies it, as the certificates).
func loadSecretsKey(path string, log hclog.Logger) (*secretbox.Key, error) {
	key, created, err := secretbox.LoadOrCreateKeyFile(path, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("--secrets-key-file: %w", err)
	}
	if created {
		log.Info("secrets: made a new key-encryption key; copy this file to every other server of the cluster", "file", path, "key_id", key.ID())
	} else {
		log.Info("secrets: key-encryption key loaded", "file", path, "key_id", key.ID())
	}
	return key, nil
}

// printSpecFindings adds the audit's findings about specs (env names that
// look like secrets) to `deployctl audit`.
func printSpecFindings(w io.Writer, findings []wire.SpecFinding) {
	if len(findings) == 0 {
		return
	}
	fmt.Fprintln(w, "\nspecs:")
	for _, f := range findings {
		fmt.Fprintf(w, "  %s/%d %s: warn: %s\n    fix: %s\n", f.Service, f.Revision, f.Field, f.Message, f.Fix)
	}
}
