package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// serverConfig is the server's configuration after viper merged flags,
// DEPLOYCTL_* variables, the config file and defaults (in that order).
type serverConfig struct {
	Dev          bool
	NodeID       string
	DataDir      string
	HTTPAddr     string
	RaftAddr     string
	HostID       string
	Labels       map[string]string
	Network      string
	RegistryAddr string
	NoAgent      bool
	LogLevel     string
}

func newServerCmd() *cobra.Command {
	v := viper.New()
	var configFile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a server: raft, the API, and the agent for the local Docker Engine",
		Long: `server runs a deployctl server. With --dev it is a single node that keeps its
data under --data-dir (a temporary directory removed at exit when none is
given), serves the API on --http-addr without TLS, and runs the host agent
for the local Docker Engine (DOCKER_HOST is honoured).

Every flag can also be set as DEPLOYCTL_<FLAG> (dashes become underscores,
e.g. DEPLOYCTL_HTTP_ADDR) or as a key in the --config file (YAML, TOML or
JSON, keys named like the flags). Precedence: flag > env > file > default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadServerConfig(v, configFile)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServer(ctx, cfg, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "config file (env DEPLOYCTL_CONFIG)")
	f.Bool("dev", false, "single-node development mode: no TLS, bootstraps itself")
	f.String("node-id", "", "raft node id (default: the host name)")
	f.String("data-dir", "", "where raft keeps its log and snapshots (--dev: a temp dir if empty)")
	f.String("http-addr", "127.0.0.1:7070", "API listen address")
	f.String("raft-addr", "127.0.0.1:7071", "raft listen address")
	f.String("host-id", "", "this host's identity for placement (default: the node id)")
	f.StringToString("label", nil, "host labels, e.g. --label zone=a (repeatable)")
	f.String("network", "deployctl", "the user-defined bridge network containers join")
	f.String("registry-addr", "", "--dev only: also serve an image registry on this loopback address (e.g. 127.0.0.1:5000)")
	f.Bool("no-agent", false, "do not run the host agent for the local Docker Engine")
	f.String("log-level", "info", "trace, debug, info, warn or error")
	_ = v.BindPFlags(f)
	return cmd
}

func loadServerConfig(v *viper.Viper, configFile string) (serverConfig, error) {
	v.SetEnvPrefix("DEPLOYCTL")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if configFile == "" {
		configFile = os.Getenv("DEPLOYCTL_CONFIG")
	}
	if configFile != "" {
		v.SetConfigFile(configFile)
		if err := v.ReadInConfig(); err != nil {
			return serverConfig{}, fmt.Errorf("config file %s: %w", configFile, err)
		}
	}
	cfg := serverConfig{
		Dev: v.GetBool("dev"), NodeID: v.GetString("node-id"), DataDir: v.GetString("data-dir"),
		HTTPAddr: v.GetString("http-addr"), RaftAddr: v.GetString("raft-addr"), HostID: v.GetString("host-id"),
		Labels: v.GetStringMapString("label"), Network: v.GetString("network"), RegistryAddr: v.GetString("registry-addr"),
		NoAgent: v.GetBool("no-agent"), LogLevel: v.GetString("log-level"),
	}
	if cfg.NodeID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "node1"
		}
		cfg.NodeID = host
	}
	if cfg.HostID == "" {
		cfg.HostID = cfg.NodeID
	}
	if !cfg.Dev {
		return cfg, errors.New("only --dev (a single node) is available in this build: the three-server cluster with mutual TLS is not built yet, and a server never runs without TLS outside --dev")
	}
	if cfg.RegistryAddr != "" {
		host, _, err := net.SplitHostPort(cfg.RegistryAddr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return cfg, fmt.Errorf("--registry-addr %q: the embedded dev registry listens on loopback only, e.g. 127.0.0.1:5000", cfg.RegistryAddr)
		}
	}
	if hclog.LevelFromString(cfg.LogLevel) == hclog.NoLevel {
		return cfg, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", cfg.LogLevel)
	}
	return cfg, nil
}

// runServer runs one server until ctx ends, then stops in order: the API,
// the agent (its containers keep running), the controller, raft.
func runServer(ctx context.Context, cfg serverConfig, logOut io.Writer) error {
	log := hclog.New(&hclog.LoggerOptions{Name: "deployctl", Level: hclog.LevelFromString(cfg.LogLevel), Output: logOut})

	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "deployctl-dev-")
		if err != nil {
			return fmt.Errorf("create a temporary data dir: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
		log.Info("dev mode: data in a temporary directory, removed at exit", "dir", dir)
	}

	if cfg.RegistryAddr != "" {
		reg, err := devimage.StartRegistry(cfg.RegistryAddr, log.Named("registry"))
		if err != nil {
			return fmt.Errorf("start the dev registry: %w", err)
		}
		defer reg.Close()
		log.Info("dev registry serving", "addr", reg.Addr())
	}

	store := state.NewStore()
	node, err := raftstore.Open(raftstore.Config{
		NodeID: cfg.NodeID, DataDir: cfg.DataDir, BindAddr: cfg.RaftAddr, Bootstrap: true,
		FSM: raftstore.NewFSM(store), Logger: log.Named("raft"),
	})
	if err != nil {
		return fmt.Errorf("open raft: %w", err)
	}
	defer node.Close()

	ctrl, err := controller.New(controller.Config{
		Raft: node, Store: store, Resolver: controller.RegistryResolver{}, Logger: log,
	})
	if err != nil {
		return err
	}
	api := controller.NewAPI(ctrl, func(ctx context.Context) ([]controller.NodeInfo, error) {
		return nodeInfos(ctx, node)
	})

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server stopped", "error", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		_ = ctrl.Run(runCtx)
	}()
	log.Info("API listening", "addr", ln.Addr().String(), "node", cfg.NodeID)

	if _, err := node.WaitForLeader(ctx); err != nil {
		cancel()
		_ = srv.Close()
		wg.Wait()
		return fmt.Errorf("waiting for a raft leader: %w", err)
	}

	if !cfg.NoAgent {
		agent, err := newLocalAgent(cfg, ln.Addr().String(), log)
		if err != nil {
			cancel()
			_ = srv.Close()
			wg.Wait()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := agent.Run(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("agent stopped", "error", err)
			}
		}()
	}

	<-runCtx.Done()
	log.Info("shutting down")
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shutCancel()
	_ = srv.Shutdown(shutCtx)
	cancel()
	wg.Wait()
	return nil
}

func newLocalAgent(cfg serverConfig, apiAddr string, log hclog.Logger) (*deployer.Agent, error) {
	rt, err := deployer.NewDockerRuntime()
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	// Fail at start, with the fix, rather than deploy to an engine that is
	// not there: every rollout would only time out.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Ping(ctx); err != nil {
		return nil, fmt.Errorf("the host agent cannot reach the Docker Engine: %w (start Docker, point DOCKER_HOST at it, or run the server with --no-agent)", err)
	}
	return deployer.NewAgent(deployer.AgentConfig{
		HostID: cfg.HostID, Labels: cfg.Labels, Network: cfg.Network,
		Controller: controller.NewClient([]string{apiAddr}, nil), Runtime: rt, Logger: log.Named("agent"),
	})
}

func nodeInfos(ctx context.Context, node *raftstore.Node) ([]controller.NodeInfo, error) {
	servers, err := node.Servers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]controller.NodeInfo, 0, len(servers))
	for _, s := range servers {
		role := "follower"
		if s.Leader {
			role = "leader"
		}
		// This node answers, so it is healthy; peers' health comes from
		// their heartbeats once the cluster mode exists.
		out = append(out, controller.NodeInfo{ID: s.ID, Address: s.Address, Role: role, Voter: s.Voter, Healthy: s.ID == node.ID()})
	}
	return out, nil
}
