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

	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
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
//
// joinReq gives the registration as it is now (the key id changes when an
// --autolock server is unlocked).
func formCluster(ctx context.Context, cfg serverConfig, node *raftstore.Node, self state.ServerInfo, joinReq func() wire.JoinRequest, own *wire.Client, tls *serverTLS, log hclog.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastWaitLog time.Time
	for {
		req := joinReq()
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
			if joined, failures := joinAny(ctx, cfg.Join, req, tls); joined {
				log.Info("join request accepted; waiting for the leader to replicate")
			} else if cfg.BootstrapExpect > 1 {
				maybeBootstrap(ctx, cfg, node, self, tls, log)
			} else if time.Since(lastWaitLog) >= 10*time.Second {
				// Say what is polled and what each answered, or an operator
				// cannot tell a typo from a peer that is down.
				lastWaitLog = time.Now()
				log.Info("waiting to join: no server took this one in", "polling", strings.Join(cfg.Join, ","), "answers", strings.Join(failures, "; "))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// joinRequest is how this server registers: its addresses, FSM version
// and key-encryption key as it is now (its id, or sealed).
func joinRequest(self state.ServerInfo, keyID string, sealed bool) wire.JoinRequest {
	return wire.JoinRequest{ID: self.ID, RaftAddr: self.RaftAddr, APIAddr: self.APIAddr, Version: raftstore.FSMVersion,
		SecretsKeyID: keyID, Sealed: sealed}
}

func peerClient(addr string, tls *serverTLS) *wire.Client {
	if tls == nil {
		return wire.NewClient([]string{addr}, nil)
	}
	return wire.NewTLSClient([]string{addr}, tls.client)
}

// joinAny asks each address in turn to take this server in; when none
// does, failures says what each answered.
func joinAny(ctx context.Context, addrs []string, req wire.JoinRequest, tls *serverTLS) (bool, []string) {
	var failures []string
	for _, a := range addrs {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := peerClient(a, tls).Join(cctx, req)
		cancel()
		if err == nil {
			return true, nil
		}
		failures = append(failures, fmt.Sprintf("%s: %v", a, err))
	}
	return false, failures
}

func maybeBootstrap(ctx context.Context, cfg serverConfig, node *raftstore.Node, self state.ServerInfo, tls *serverTLS, log hclog.Logger) {
	seen := map[string]raftstore.Server{self.ID: {ID: self.ID, Address: self.RaftAddr}}
	var unanswered []string
	for _, a := range cfg.Join {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		p, err := peerClient(a, tls).Peer(cctx)
		cancel()
		if err != nil {
			unanswered = append(unanswered, fmt.Sprintf("%s: %v", a, err))
			continue
		}
		if p.HadState || p.Leader != "" {
			return // a cluster exists: join it, never make another
		}
		seen[p.ID] = raftstore.Server{ID: p.ID, Address: p.RaftAddr}
	}
	if len(seen) < cfg.BootstrapExpect {
		log.Info("waiting for servers before bootstrapping", "seen", len(seen), "expect", cfg.BootstrapExpect,
			"polling", strings.Join(cfg.Join, ","), "unanswered", strings.Join(unanswered, "; "))
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
	var hostID, logLevel string
	var labels map[string]string
	var hollowFlags hollowOptions
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a host agent alone, for a host that is not a server",
		Long: `agent runs the host agent for the local Docker Engine against the servers
given by --servers (any of them; requests reach the leader). Agents are not
raft members: they long-poll their assignments and report in batches.

With --hollow N it runs N simulated hosts instead (scale tests, no Docker
Engine): PREFIX-0001 .. PREFIX-N, each polling, reporting and heartbeating
over its own TLS identity; see internal/hollow/DESIGN.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			servers = splitList(servers)
			if len(servers) == 0 {
				return exitWith(ExitUsage, fmt.Errorf("--servers: give the API addresses of the servers"))
			}
			if hollowFlags.count != 0 || cmd.Flags().Changed("tls-dir") {
				return runHollow(cmd, g, servers, labels, logLevel, hollowFlags)
			}
			// With TLS the certificate names the host the agent may speak
			// for: it is the default host id, and another one is refused
			// here rather than by every request.
			if g.tls.Cert != "" {
				id, err := pki.IdentityOfFile(g.tls.Cert)
				if err != nil {
					return exitWith(ExitUsage, fmt.Errorf("--tls-cert: %w", err))
				}
				if id.Role != pki.RoleAgent && id.Role != pki.RoleServer {
					return exitWith(ExitUsage, fmt.Errorf("--tls-cert %s has role %s; an agent needs the agent certificate of its host (deployctl tls add-node HOST --role agent)", g.tls.Cert, id))
				}
				if hostID == "" {
					hostID = id.Name
				}
				if hostID != id.Name {
					return exitWith(ExitUsage, fmt.Errorf("--host-id %q: the certificate %s speaks for host %q only; use --host-id %s or issue a certificate for %s (deployctl tls add-node %s --role agent)",
						hostID, g.tls.Cert, id.Name, id.Name, hostID, hostID))
				}
			}
			if hostID == "" {
				h, err := os.Hostname()
				if err != nil {
					return exitWith(ExitUsage, fmt.Errorf("--host-id: required (the host name is unknown: %v)", err))
				}
				hostID = h
			}
			// The global --tls-* flags give the agent its identity: the
			// agent certificate of its host (role agent/HOST).
			g.addr = strings.Join(servers, ",")
			if err := g.buildClient(); err != nil {
				return err
			}
			client := g.client()
			log := hclog.New(&hclog.LoggerOptions{Name: "deployctl", Level: hclog.LevelFromString(logLevel), Output: cmd.ErrOrStderr()})
			// flag > DEPLOYCTL_* variable > default, as for the server.
			ingressAddr, proxyAddr := flagOrEnv(cmd, "ingress-addr"), flagOrEnv(cmd, "proxy-addr")
			if err := checkIngressAddrs(&ingressAddr, proxyAddr, false); err != nil {
				return exitWith(ExitUsage, err)
			}
			pool, err := parseSubnetPool(flagOrEnv(cmd, "subnet-pool"))
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			metricsAddr := flagOrEnv(cmd, "metrics-addr")
			if err := checkMetricsAddr(metricsAddr); err != nil {
				return exitWith(ExitUsage, err)
			}
			cfg := serverConfig{HostID: hostID, Labels: labels, Network: flagOrEnv(cmd, "network"), SubnetPool: pool,
				TLS: g.tls, IngressAddr: ingressAddr, ProxyAddr: proxyAddr, SecretsDir: flagOrEnv(cmd, "secrets-dir")}
			// The agent has no API listener: its metrics are on
			// --metrics-addr only.
			reg := newRegistry()
			metrics, err := deployer.NewMetrics(reg)
			if err != nil {
				return exitWith(ExitError, err)
			}
			agent, err := newLocalAgent(cfg, client, log, metrics)
			if err != nil {
				return exitWith(ExitError, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if metricsAddr != "" {
				stopMetrics, err := serveMetrics(ctx, metricsAddr, reg, log)
				if err != nil {
					return exitWith(ExitError, err)
				}
				defer stopMetrics()
			}
			return agent.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&servers, "servers", nil, "API addresses of the servers, comma-separated")
	f.StringVar(&hostID, "host-id", "", "this host's identity (default: the name in --tls-cert, else the host name)")
	f.StringToStringVar(&labels, "label", nil, "host labels, e.g. --label zone=a (repeatable)")
	bindNetworkFlags(f)
	f.StringVar(&logLevel, "log-level", "info", "trace, debug, info, warn or error")
	bindIngressFlags(f)
	bindAgentSecretsFlags(f)
	bindMetricsFlag(f)
	bindHollowFlags(f, &hollowFlags)
	return cmd
}

// flagOrEnv is a string flag's value when it was given, else its
// DEPLOYCTL_* variable (dashes as underscores), else the flag's default.
func flagOrEnv(cmd *cobra.Command, name string) string {
	f := cmd.Flags().Lookup(name)
	if f.Changed {
		return f.Value.String()
	}
	if v, ok := os.LookupEnv("DEPLOYCTL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); ok {
		return v
	}
	return f.Value.String()
}

// Compile-time checks: the controller client is what the agent needs.
var (
	_ deployer.Controller    = (*wire.Client)(nil)
	_ deployer.IngressSource = (*wire.Client)(nil)
	_ deployer.SecretSource  = (*wire.Client)(nil)
)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Make the cluster's certificates",
		// Making certificates needs no client: DEPLOYCTL_TLS_* may name
		// files that do not exist yet.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil }}
	var dir string
	var nodes, agents, hosts []string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write a new cluster CA, a certificate per server node and agent host, and one for the CLI",
		Long: `init writes into --dir: ca.pem and ca-key.pem (keep the key offline once
the certificates are made), NODE.pem and NODE-key.pem for each --nodes entry
(role server; names: the node name, localhost, 127.0.0.1, ::1 and every
--hosts entry), HOST.pem and HOST-key.pem for each --agents entry (role
agent: client only, for an agent-only host of that host id), and client.pem /
client-key.pem for the CLI (role operator). ECDSA P-256, TLS 1.3.

The role is in each certificate (a deployctl://role/... URI) and checked on
every request: an agent certificate can only fetch and report for its own
host; only server certificates speak raft and join; the operator certificate
runs the API.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			nodes, agents, hosts = splitList(nodes), splitList(agents), splitList(hosts)
			if dir == "" || len(nodes) == 0 {
				return exitWith(ExitUsage, fmt.Errorf("--dir and --nodes are required"))
			}
			res, err := pki.Init(pki.InitOptions{Dir: dir, Nodes: nodes, Agents: agents, Hosts: hosts})
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
	initCmd.Flags().StringSliceVar(&nodes, "nodes", nil, "server node names, comma-separated")
	initCmd.Flags().StringSliceVar(&agents, "agents", nil, "agent-only host ids, comma-separated")
	initCmd.Flags().StringSliceVar(&hosts, "hosts", nil, "extra IP addresses or DNS names for every node certificate")

	var addDir, addRole string
	var addHosts, removeHosts []string
	addCmd := &cobra.Command{
		Use:   "add-node NAME --role server|agent",
		Short: "Issue a certificate for a new (or rotated) server node or agent host with the CA in --dir",
		Long: `add-node writes NAME.pem and NAME-key.pem into --dir, signed by the CA there
(ca.pem, ca-key.pem). --role is required:

  server  a raft member: serves the API and raft, joins as node NAME, and
          its local agent reports as host NAME
  agent   an agent-only host: client only, may fetch assignments, report
          and send audits for host NAME and nothing else (run
          'deployctl agent --host-id NAME')

Run again for an existing name to rotate its certificate (or to re-issue one
made before roles existed): servers re-read certificate files when they
change. A server certificate keeps the node's names: those given to 'tls
init --hosts' and earlier --hosts (recorded in nodes.json) and those on its
current certificate in --dir. --hosts adds names, --remove-host takes one
off. A server refuses a certificate that does not name its advertised
addresses and keeps the old one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if addDir == "" {
				return exitWith(ExitUsage, fmt.Errorf("--dir is required: the directory holding ca.pem and ca-key.pem"))
			}
			var res pki.Result
			var err error
			switch addRole {
			case string(pki.RoleServer):
				res, err = pki.IssueNodeHosts(addDir, args[0], pki.HostChange{Add: splitList(addHosts), Remove: splitList(removeHosts)})
			case string(pki.RoleAgent):
				if len(addHosts) > 0 || len(removeHosts) > 0 {
					return exitWith(ExitUsage, fmt.Errorf("--hosts: an agent certificate serves nothing, so it has no host names; drop --hosts or use --role server"))
				}
				res, err = pki.IssueAgent(addDir, args[0])
			case "":
				return exitWith(ExitUsage, fmt.Errorf("--role is required: server (a raft member that serves the API) or agent (an agent-only host, which may only report for host %s)", args[0]))
			default:
				return exitWith(ExitUsage, fmt.Errorf("--role %q: want server or agent (the CLI's operator certificate is made by 'tls init' and 'tls client')", addRole))
			}
			if err != nil {
				return exitWith(ExitError, err)
			}
			for _, f := range res.Files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			if len(res.Names) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s.pem is valid for: %s\n", args[0], strings.Join(res.Names, ", "))
			}
			return nil
		},
	}
	addCmd.Flags().StringVar(&addDir, "dir", "", "directory holding the CA (from tls init)")
	addCmd.Flags().StringVar(&addRole, "role", "", "server or agent (required)")
	addCmd.Flags().StringSliceVar(&addHosts, "hosts", nil, "server only: IP addresses or DNS names to add to the node's names (its current ones are kept)")
	addCmd.Flags().StringSliceVar(&removeHosts, "remove-host", nil, "server only: an IP address or DNS name to take off the node's names (repeatable)")

	var clientDir string
	clientCmd := &cobra.Command{
		Use:   "client",
		Short: "Issue a new operator certificate for the CLI (client.pem) with the CA in --dir",
		Long: `client writes client.pem and client-key.pem (role operator) into --dir, signed
by the CA there, replacing the old pair: how the CLI's certificate is rotated,
or re-issued when it was made before roles existed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if clientDir == "" {
				return exitWith(ExitUsage, fmt.Errorf("--dir is required: the directory holding ca.pem and ca-key.pem"))
			}
			res, err := pki.IssueClient(clientDir)
			if err != nil {
				return exitWith(ExitError, err)
			}
			for _, f := range res.Files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			return nil
		},
	}
	clientCmd.Flags().StringVar(&clientDir, "dir", "", "directory holding the CA (from tls init)")
	cmd.AddCommand(initCmd, addCmd, clientCmd)
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
