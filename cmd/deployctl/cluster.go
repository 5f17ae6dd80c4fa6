package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// formCluster brings a server into its cluster and keeps its addresses
// registered, until it is registered or ctx ends:
//   - once a leader is known, it asks it (through its own API, which
//     forwards) to take it as a voter and record its addresses: both are
//     idempotent, so this is also what a restarted or wiped server does;
//   - a server without raft state and without a leader asks the --join
//     servers to take it in;
//   - with --bootstrap-expect N, when none of the servers it can see holds
//     state or knows a leader and it sees N of them, the one with the
//     lowest node id bootstraps the N. A node that holds state never
//     bootstraps (raftstore refuses), so two clusters never form from
//     servers that already belong to one.
func formCluster(ctx context.Context, cfg serverConfig, node *raftstore.Node, self state.ServerInfo, own *controller.Client, tls *serverTLS, log hclog.Logger) {
	req := controller.JoinRequest{ID: self.ID, RaftAddr: self.RaftAddr, APIAddr: self.APIAddr, Version: raftstore.FSMVersion}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if leader, _ := node.Leader(); leader != "" {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := own.Join(cctx, req)
			cancel()
			if err == nil {
				log.Info("member of the cluster", "leader", leader)
				return
			}
			log.Debug("registering with the leader", "error", err)
		} else if !node.HadState() {
			if joinAny(ctx, cfg.Join, req, tls) {
				log.Info("join request accepted; waiting for the leader to replicate")
			} else if cfg.BootstrapExpect > 1 {
				maybeBootstrap(ctx, cfg, node, self, tls, log)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func peerClient(addr string, tls *serverTLS) *controller.Client {
	if tls == nil {
		return controller.NewClient([]string{addr}, nil)
	}
	return controller.NewTLSClient([]string{addr}, tls.client)
}

func joinAny(ctx context.Context, addrs []string, req controller.JoinRequest, tls *serverTLS) bool {
	for _, a := range addrs {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := peerClient(a, tls).Join(cctx, req)
		cancel()
		if err == nil {
			return true
		}
	}
	return false
}

func maybeBootstrap(ctx context.Context, cfg serverConfig, node *raftstore.Node, self state.ServerInfo, tls *serverTLS, log hclog.Logger) {
	seen := map[string]raftstore.Server{self.ID: {ID: self.ID, Address: self.RaftAddr}}
	for _, a := range cfg.Join {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		p, err := peerClient(a, tls).Peer(cctx)
		cancel()
		if err != nil {
			continue
		}
		if p.HadState || p.Leader != "" {
			return // a cluster exists: join it, never make another
		}
		seen[p.ID] = raftstore.Server{ID: p.ID, Address: p.RaftAddr}
	}
	if len(seen) < cfg.BootstrapExpect {
		log.Info("waiting for servers before bootstrapping", "seen", len(seen), "expect", cfg.BootstrapExpect)
		return
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	ids = ids[:cfg.BootstrapExpect]
	if ids[0] != self.ID {
		return // the lowest id bootstraps; the others wait for its leader
	}
	servers := make([]raftstore.Server, 0, len(ids))
	for _, id := range ids {
		servers = append(servers, seen[id])
	}
	if err := node.BootstrapServers(servers); err != nil {
		log.Warn("bootstrap refused", "error", err)
		return
	}
	log.Info("bootstrapped the cluster", "servers", strings.Join(ids, ","))
}

func newAgentCmd(g *globals) *cobra.Command {
	var servers []string
	var hostID, network, logLevel string
	var labels map[string]string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a host agent alone, for a host that is not a server",
		Long: `agent runs the host agent for the local Docker Engine against the servers
given by --servers (any of them; requests reach the leader). Agents are not
raft members: they long-poll their assignments and report in batches.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			servers = splitList(servers)
			if len(servers) == 0 {
				return exitWith(ExitUsage, fmt.Errorf("--servers: give the API addresses of the servers"))
			}
			if hostID == "" {
				h, err := os.Hostname()
				if err != nil {
					return exitWith(ExitUsage, fmt.Errorf("--host-id: required (the host name is unknown: %v)", err))
				}
				hostID = h
			}
			// The global --tls-* flags give the agent its identity: a node
			// or client certificate of the cluster CA.
			g.addr = strings.Join(servers, ",")
			if err := g.buildClient(); err != nil {
				return err
			}
			client := g.client()
			log := hclog.New(&hclog.LoggerOptions{Name: "deployctl", Level: hclog.LevelFromString(logLevel), Output: cmd.ErrOrStderr()})
			cfg := serverConfig{HostID: hostID, Labels: labels, Network: network}
			agent, err := newLocalAgent(cfg, client, log)
			if err != nil {
				return exitWith(ExitError, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return agent.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&servers, "servers", nil, "API addresses of the servers, comma-separated")
	f.StringVar(&hostID, "host-id", "", "this host's identity (default: the host name)")
	f.StringToStringVar(&labels, "label", nil, "host labels, e.g. --label zone=a (repeatable)")
	f.StringVar(&network, "network", "deployctl", "the user-defined bridge network containers join")
	f.StringVar(&logLevel, "log-level", "info", "trace, debug, info, warn or error")
	return cmd
}

// Compile-time check: the controller client is what the agent needs.
var _ deployer.Controller = (*controller.Client)(nil)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Make the cluster's certificates"}
	var dir string
	var nodes, hosts []string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write a new cluster CA, a certificate per node and one for the CLI",
		Long: `init writes into --dir: ca.pem and ca-key.pem (keep the key offline once
the certificates are made), NODE.pem and NODE-key.pem for each --nodes entry
(names: the node name, localhost, 127.0.0.1, ::1 and every --hosts entry),
and client.pem / client-key.pem for the CLI. ECDSA P-256, TLS 1.3.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			nodes, hosts = splitList(nodes), splitList(hosts)
			if dir == "" || len(nodes) == 0 {
				return exitWith(ExitUsage, fmt.Errorf("--dir and --nodes are required"))
			}
			res, err := pki.Init(pki.InitOptions{Dir: dir, Nodes: nodes, Hosts: hosts})
			if err != nil {
				return exitWith(ExitError, err)
			}
			for _, f := range res.Files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to write the files to")
	initCmd.Flags().StringSliceVar(&nodes, "nodes", nil, "node names, comma-separated")
	initCmd.Flags().StringSliceVar(&hosts, "hosts", nil, "extra IP addresses or DNS names for every node certificate")

	var addDir string
	var addHosts []string
	addCmd := &cobra.Command{
		Use:   "add-node NODE",
		Short: "Issue a certificate for a new (or rotated) node with the CA in --dir",
		Long: `add-node writes NODE.pem and NODE-key.pem into --dir, signed by the CA there
(ca.pem, ca-key.pem), for a server added to the cluster or an agent-only host.
Run again for an existing node to rotate its certificate: servers re-read
certificate files when they change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if addDir == "" {
				return exitWith(ExitUsage, fmt.Errorf("--dir is required: the directory holding ca.pem and ca-key.pem"))
			}
			res, err := pki.IssueNode(addDir, args[0], splitList(addHosts))
			if err != nil {
				return exitWith(ExitError, err)
			}
			for _, f := range res.Files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			return nil
		},
	}
	addCmd.Flags().StringVar(&addDir, "dir", "", "directory holding the CA (from tls init)")
	addCmd.Flags().StringSliceVar(&addHosts, "hosts", nil, "extra IP addresses or DNS names for the certificate")
	cmd.AddCommand(initCmd, addCmd)
	return cmd
}

func newClusterMembershipCmds(g *globals) []*cobra.Command {
	leave := &cobra.Command{
		Use:   "leave",
		Short: "Remove the server at --addr from the cluster (stop it afterwards)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			c := g.client()
			p, err := c.Peer(ctx)
			if err != nil {
				return clientErr(err)
			}
			if err := c.RemoveServer(ctx, p.ID); err != nil {
				return clientErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s left the cluster; stop it now\n", p.ID)
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove NODE",
		Short: "Remove a server from the cluster (one that is gone for good)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			c := g.client()
			if err := c.RemoveServer(ctx, args[0]); err != nil {
				return clientErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s removed\n", args[0])
			return nil
		},
	}
	return []*cobra.Command{leave, remove}
}
