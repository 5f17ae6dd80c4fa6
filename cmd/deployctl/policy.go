package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/controller/policy"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "The cluster policy every apply is checked against",
		Long: `The cluster policy decides which exceptions to the hardened defaults a spec
may ask for (privileged, extra capabilities, host namespaces, root, volumes,
privileged ports, unconfined seccomp/AppArmor), which registries are allowed,
and which images must carry a cosign signature from which keys. With no
policy set, every exception is denied. See controller/policy/DESIGN.md.`,
	}
	set := &cobra.Command{
		Use:   "set FILE",
		Short: "Store a policy (YAML); trust keys are read from their files, relative to FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return exitWith(ExitUsage, fmt.Errorf("read policy: %w", err))
			}
			p, err := policy.Parse(data)
			if err != nil {
				return exitWith(ExitUsage, fmt.Errorf("%s: %w", args[0], err))
			}
			if err := loadTrustKeys(p, filepath.Dir(args[0])); err != nil {
				return exitWith(ExitUsage, err)
			}
			if err := p.Validate(); err != nil {
				return exitWith(ExitUsage, fmt.Errorf("%s: %w", args[0], err))
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			cur, err := g.client().Policy(ctx)
			if err != nil {
				return clientErr(err)
			}
			p.Version = cur.Version
			v, err := g.client().SetPolicy(ctx, p)
			if err != nil {
				return clientErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy version %d stored\n", v)
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get",
		Short: "Show the cluster policy (the default when none was set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			p, err := g.client().Policy(ctx)
			if err != nil {
				return clientErr(err)
			}
			return g.print(cmd.OutOrStdout(), p, func(w io.Writer) {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				_ = enc.Encode(p)
			})
		},
	}
	cmd.AddCommand(set, get)
	return cmd
}

// loadTrustKeys reads every trust key file, relative to dir, into the
// policy: the servers store the PEM, never a path on the operator's disk.
func loadTrustKeys(p *policy.Policy, dir string) error {
	for i := range p.Trust {
		e := &p.Trust[i]
		e.KeysPEM = nil
		for _, k := range e.Keys {
			path := k
			if !filepath.IsAbs(path) {
				path = filepath.Join(dir, path)
			}
			pem, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("trust[%d].keys: %w", i, err)
			}
			e.KeysPEM = append(e.KeysPEM, pem)
		}
	}
	return nil
}
