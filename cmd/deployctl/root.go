package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
)

// globals are the flags every client command shares.
type globals struct {
	addr   string
	output string
	tls    tlsFiles
	c      *wire.Client
	// leaderWait bounds how long writes wait for a leader (diagnose.go).
	leaderWait    time.Duration
	leaderWaitErr error
	// plain: progress as plain lines even on a terminal (liveterm.go).
	plain bool
}

// client is the API client built from the global flags before any command
// runs (see PersistentPreRunE).
func (g *globals) client() *wire.Client { return g.c }

func (g *globals) buildClient() error {
	c, err := g.clientFor(splitList(strings.Split(g.addr, ",")))
	if err != nil {
		return err
	}
	g.c = c
	return nil
}

// clientFor is a client of the given servers with the global TLS flags.
func (g *globals) clientFor(addrs []string) (*wire.Client, error) {
	if err := g.checkLeaderWait(); err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	if !g.tls.set() {
		return wire.NewClient(addrs, nil).WithLeaderWait(g.leaderWait), nil
	}
	if err := g.tls.check(); err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	cfg, err := pki.ClientConfig(g.tls.CA, g.tls.Cert, g.tls.Key)
	if err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	return wire.NewTLSClient(addrs, cfg).WithLeaderWait(g.leaderWait), nil
}

func (g *globals) print(w io.Writer, v any, table func(io.Writer)) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table", "":
		table(w)
		return nil
	}
	return exitWith(ExitUsage, fmt.Errorf("-o %q: want table or json", g.output))
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "deployctl",
		Short: "Deploy containers by digest, hardened, health-gated, with automatic rollback",
		Long: `deployctl puts containers on hosts safely: every revision pins its image to a
digest, containers run with hardened options, rollouts go in batches gated by
health checks, and a failing release rolls back by itself.

Start a single-node dev server:   deployctl server --dev
Deploy a service:                 deployctl apply web.yaml
See 'deployctl help exit-codes' for what the exit codes mean.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defAddr := os.Getenv("DEPLOYCTL_ADDR")
	if defAddr == "" {
		defAddr = "127.0.0.1:7070"
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", defAddr, "server API address(es), comma-separated (env DEPLOYCTL_ADDR)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf := root.PersistentFlags()
	pf.StringVar(&g.tls.CA, "tls-ca", os.Getenv("DEPLOYCTL_TLS_CA"), "cluster CA certificate; with --tls-cert and --tls-key the CLI speaks https with mutual TLS (env DEPLOYCTL_TLS_CA)")
	pf.StringVar(&g.tls.Cert, "tls-cert", os.Getenv("DEPLOYCTL_TLS_CERT"), "client certificate (env DEPLOYCTL_TLS_CERT)")
	pf.StringVar(&g.tls.Key, "tls-key", os.Getenv("DEPLOYCTL_TLS_KEY"), "client key (env DEPLOYCTL_TLS_KEY)")
	bindLeaderWait(pf, g)
	pf.BoolVar(&g.plain, "plain", false, "print progress as plain lines, never the live view (also: NO_COLOR, TERM=dumb, stdout not a terminal)")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error { return g.buildClient() }
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return exitWith(ExitUsage, err) })

	root.AddCommand(
		newServerCmd(),
		newApplyCmd(g),
		newDiffCmd(g),
		newStatusCmd(g),
		newServicesCmd(g),
		newHistoryCmd(g),
		newPsCmd(g),
		newLogsCmd(g),
		newEventsCmd(g),
		newRollbackCmd(g),
		newScaleCmd(g),
		newPromoteCmd(g),
		newRemoveCmd(g),
		newClusterCmd(g),
		newHostCmd(g),
		newAgentCmd(g),
		newTLSCmd(),
		newPolicyCmd(g),
		newAuditCmd(g),
		newOutdatedCmd(g),
		newSecretCmd(g),
		newSnapshotCmd(g),
		newUICmd(g),
		newExitCodesTopic(),
	)
	addCompletions(root, g)
	return root
}
