package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/deployer"
	"github.com/deployctl/deployctl/deployer/firewall"
	"github.com/deployctl/deployctl/deployer/names"
	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// serverConfig is the server's configuration after viper merged flags,
// DEPLOYCTL_* variables, the config file and defaults (in that order).
type serverConfig struct {
	Dev             bool
	DevListenAny    bool
	NodeID          string
	DataDir         string
	HTTPAddr        string
	HTTPAdvertise   string
	RaftAddr        string
	RaftAdvertise   string
	BootstrapExpect int
	Join            []string
	HostID          string
	Labels          map[string]string
	Network         string
	// SubnetPool is where the agent's service networks take their /26
	// subnets.
	SubnetPool   netip.Prefix
	RegistryAddr string
	// InsecureRegistries may be spoken to over plain HTTP by the
	// controller (resolving tags, signatures); loopback always may.
	InsecureRegistries []string
	NoAgent            bool
	LogLevel           string
	TLS                tlsFiles
	HostTTL            time.Duration
	HostDownGrace      time.Duration
	AuditInterval      time.Duration
	// IngressAddr is the IP the services' ingress ports listen on;
	// ProxyAddr where this host's proxy takes other hosts' traffic.
	IngressAddr string
	ProxyAddr   string
	// SecretsKeyFile holds the key-encryption key of secrets (default
	// DATA/secrets.key, made at first start).
	SecretsKeyFile string
	// Autolock: no key file; sealed until `deployctl cluster unlock`.
	Autolock bool
	// PprofAddr serves net/http/pprof there ("": off); loopback only.
	PprofAddr string
	// SecretsDir is where the agent mounts each replica's secrets tmpfs.
	SecretsDir string
	// Sources says where each key's value came from (flag, variable,
	// file and line, default), for errors found after loading.
	Sources map[string]string
	// SnapshotInterval and SnapshotThreshold: raft snapshots the state
	// this often when anything was applied since the last snapshot (0:
	// never on a schedule), and once the log grew by this many entries.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	// MetricsAddr also serves /metrics there, plain HTTP ("": only on
	// the API listener).
	MetricsAddr string
	// Raft holds the raft timeouts (--raft-*-timeout).
	Raft raftTimeouts
}

// tlsFiles names a CA, a certificate and its key.
type tlsFiles struct{ CA, Cert, Key string }

// forwardIdleConns is how many idle connections a follower keeps to the
// leader for forwarded requests.
const forwardIdleConns = 256

func (f tlsFiles) set() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

func (f tlsFiles) check() error {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return errors.New("--tls-ca, --tls-cert and --tls-key go together (make them with `deployctl tls init`)")
	}
	return nil
}

func newServerCmd() *cobra.Command {
	var v *serverSettings
	var configFile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a server: raft, the API, and the agent for the local Docker Engine",
		Long: `server runs a deployctl server: a raft voter, the API, and (unless
--no-agent) the host agent for the local Docker Engine (DOCKER_HOST is
honoured).

With --dev it is a single node without TLS that keeps its data under
--data-dir (a temporary directory removed at exit when none is given).

Otherwise it is a member of a cluster and needs mutual TLS (--tls-ca,
--tls-cert, --tls-key; see 'deployctl tls init'). The same command works at
first boot, after a restart and when a wiped node comes back:

  deployctl server --node-id n1 --data-dir /var/lib/deployctl \
    --http-addr 10.0.0.1:7070 --raft-addr 10.0.0.1:7071 \
    --bootstrap-expect 3 --join 10.0.0.2:7070,10.0.0.3:7070 \
    --tls-ca ca.pem --tls-cert n1.pem --tls-key n1-key.pem

A node that holds raft state never bootstraps; a fresh one joins through
--join, or, when none of the expected servers holds state, the one with the
lowest node id among --bootstrap-expect of them bootstraps them all.

Every flag can also be set as DEPLOYCTL_<FLAG> (dashes become underscores,
e.g. DEPLOYCTL_HTTP_ADDR) or as a key in the --config file (YAML, TOML or
JSON, keys named like the flags). Precedence: flag > env > file > default.
The TLS files are the exception: DEPLOYCTL_SERVER_TLS_CA, _CERT and _KEY;
DEPLOYCTL_TLS_* configure the CLI and are ignored here. An unknown key in
the file is refused.`,
		Args: cobra.NoArgs,
		// The CLI's client (DEPLOYCTL_TLS_*) is not the server's business.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
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
	cmd.Flags().StringVar(&configFile, "config", "", "config file (env DEPLOYCTL_CONFIG)")
	v = bindServerFlags(cmd.Flags())
	return cmd
}

// bindServerFlags declares the server's flags and binds them to a viper
// instance, which adds DEPLOYCTL_* variables and the config file.
func bindServerFlags(f *pflag.FlagSet) *serverSettings {
	v := viper.New()
	f.Bool("dev", false, "single-node development mode: no TLS, bootstraps itself")
	f.Bool("dev-listen-any", false, "--dev only: allow non-loopback --http-addr, --raft-addr and --registry-addr; anyone who can reach them controls the node (unauthenticated API and raft, root on this host through privileged containers)")
	f.String("node-id", "", "raft node id (default: the host name)")
	f.String("data-dir", "", "where raft keeps its log and snapshots (--dev: a temp dir if empty)")
	f.String("http-addr", "127.0.0.1:7070", "API listen address")
	f.String("http-advertise", "", "API address other servers and agents use (default: --http-addr)")
	f.String("raft-addr", "127.0.0.1:7071", "raft listen address")
	f.String("raft-advertise", "", "raft address peers dial (default: --raft-addr)")
	f.Int("bootstrap-expect", 0, "number of servers of a new cluster (3 or 5; 1 for a single TLS server)")
	f.StringSlice("join", nil, "API addresses of other servers, comma-separated")
	f.String("host-id", "", "this host's identity for placement (default: the node id)")
	f.StringToString("label", nil, "host labels, e.g. --label zone=a (repeatable)")
	bindNetworkFlags(f)
	f.String("registry-addr", "", "--dev only: also serve an image registry on this loopback address (e.g. 127.0.0.1:5000)")
	f.StringSlice("insecure-registry", nil, "a registry (host:port, as in image references) the controller may reach over plain HTTP (repeatable); loopback registries always may, every other one needs TLS")
	f.Bool("no-agent", false, "do not run the host agent for the local Docker Engine")
	f.String("log-level", "info", "trace, debug, info, warn or error")
	f.String("tls-ca", "", "cluster CA certificate (PEM)")
	f.String("tls-cert", "", "this node's certificate (PEM)")
	f.String("tls-key", "", "this node's key (PEM)")
	f.Duration("host-ttl", controller.DefaultHostTTL, "mark a host down when its agent has not reported for this long")
	f.Duration("host-down-grace", controller.DefaultHostDownGrace, "place a down host's replicas elsewhere after this long")
	f.Duration("audit-interval", deployer.DefaultAuditInterval, "how often the agent audits its containers (CIS section 5 and drift)")
	bindIngressFlags(f)
	bindSecretsFlags(f)
	f.Duration("snapshot-interval", defaultSnapshotInterval, "take a raft snapshot this often when the state changed since the last one, so the data dir holds a recent one (0: only by --snapshot-threshold)")
	f.Uint64("snapshot-threshold", defaultSnapshotThreshold, "take a raft snapshot once the log grew by this many entries (checked every 2 minutes)")
	bindMetricsFlag(f)
	bindRaftTimeoutFlags(f)
	f.String("pprof-addr", "", "serve Go's profiler (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060 (default: off); no authentication, so loopback only")
	_ = v.BindPFlags(f)
	s := &serverSettings{v: v, flags: f}
	s.bindEnvs()
	return s
}

// loadServerConfig merges the flags, variables, config file and defaults
// and checks the result. Every error names where the values at fault came
// from (configError).
func loadServerConfig(s *serverSettings, configFile string) (serverConfig, error) {
	if configFile == "" {
		configFile = os.Getenv("DEPLOYCTL_CONFIG")
	}
	if configFile != "" {
		if err := s.readFile(configFile); err != nil {
			return serverConfig{}, err
		}
	}
	cfg, keys, err := checkServerConfig(s.v)
	cfg.Sources = s.sources()
	return cfg, configError(cfg.Sources, err, keys...)
}

// checkServerConfig reads the merged settings; on error it also returns
// the keys whose values are at fault.
func checkServerConfig(v *viper.Viper) (serverConfig, []string, error) {
	cfg := serverConfig{
		Dev: v.GetBool("dev"), DevListenAny: v.GetBool("dev-listen-any"), NodeID: v.GetString("node-id"), DataDir: v.GetString("data-dir"),
		HTTPAddr: v.GetString("http-addr"), HTTPAdvertise: v.GetString("http-advertise"),
		RaftAddr: v.GetString("raft-addr"), RaftAdvertise: v.GetString("raft-advertise"),
		BootstrapExpect: v.GetInt("bootstrap-expect"), Join: splitList(v.GetStringSlice("join")),
		HostID: v.GetString("host-id"), Labels: v.GetStringMapString("label"), Network: v.GetString("network"),
		RegistryAddr: v.GetString("registry-addr"), InsecureRegistries: splitList(v.GetStringSlice("insecure-registry")), NoAgent: v.GetBool("no-agent"), LogLevel: v.GetString("log-level"),
		TLS:     tlsFiles{CA: v.GetString("tls-ca"), Cert: v.GetString("tls-cert"), Key: v.GetString("tls-key")},
		HostTTL: v.GetDuration("host-ttl"), HostDownGrace: v.GetDuration("host-down-grace"),
		AuditInterval: v.GetDuration("audit-interval"),
		IngressAddr:   v.GetString("ingress-addr"), ProxyAddr: v.GetString("proxy-addr"),
		SecretsKeyFile: v.GetString("secrets-key-file"), SecretsDir: v.GetString("secrets-dir"),
		SnapshotInterval: v.GetDuration("snapshot-interval"), SnapshotThreshold: v.GetUint64("snapshot-threshold"),
		Autolock: v.GetBool("autolock"), MetricsAddr: v.GetString("metrics-addr"), PprofAddr: v.GetString("pprof-addr"),
		Raft: readRaftTimeouts(v),
	}
	if keys, err := cfg.Raft.check(); err != nil {
		return cfg, keys, err
	}
	if err := checkPprofAddr(cfg.PprofAddr); err != nil {
		return cfg, []string{"pprof-addr"}, err
	}
	if err := checkSnapshotSettings(cfg); err != nil {
		return cfg, []string{"snapshot-interval", "snapshot-threshold"}, err
	}
	if cfg.Autolock && cfg.SecretsKeyFile != "" {
		return cfg, []string{"autolock", "secrets-key-file"}, errors.New("--autolock keeps the key-encryption key in memory only: drop --secrets-key-file (the operator gives the key with `deployctl cluster unlock`)")
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
	if cfg.HTTPAdvertise == "" {
		cfg.HTTPAdvertise = cfg.HTTPAddr
	}
	for _, r := range cfg.InsecureRegistries {
		if err := controller.ValidateInsecureRegistry(r); err != nil {
			return cfg, []string{"insecure-registry"}, fmt.Errorf("--insecure-registry: %w", err)
		}
	}
	if err := checkMetricsAddr(cfg.MetricsAddr); err != nil {
		return cfg, []string{"metrics-addr"}, err
	}
	if hclog.LevelFromString(cfg.LogLevel) == hclog.NoLevel {
		return cfg, []string{"log-level"}, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", cfg.LogLevel)
	}
	pool, err := parseSubnetPool(v.GetString("subnet-pool"))
	if err != nil {
		return cfg, []string{"subnet-pool"}, err
	}
	cfg.SubnetPool = pool
	if err := checkIngressAddrs(&cfg.IngressAddr, cfg.ProxyAddr, cfg.Dev && !cfg.DevListenAny); err != nil {
		return cfg, []string{"ingress-addr", "proxy-addr"}, err
	}
	if cfg.Dev {
		if cfg.BootstrapExpect > 1 || len(cfg.Join) > 0 {
			return cfg, []string{"dev", "bootstrap-expect", "join"}, errors.New("--dev is a single node: drop --bootstrap-expect and --join, or drop --dev and use TLS")
		}
		if keys, err := checkDevListen(cfg); err != nil {
			return cfg, keys, err
		}
		return cfg, nil, nil
	}
	if cfg.DevListenAny {
		return cfg, []string{"dev-listen-any"}, errors.New("--dev-listen-any is for --dev only: a TLS server listens where it is told")
	}
	if !cfg.TLS.set() {
		return cfg, nil, errors.New("a server outside --dev needs mutual TLS: pass --tls-ca, --tls-cert and --tls-key, or set DEPLOYCTL_SERVER_TLS_CA, _CERT and _KEY, or tls-ca, tls-cert and tls-key in --config (DEPLOYCTL_TLS_* are the CLI's); make them with `deployctl tls init`, or use --dev for a single-node sandbox")
	}
	if err := cfg.TLS.check(); err != nil {
		return cfg, []string{"tls-ca", "tls-cert", "tls-key"}, err
	}
	if cfg.RegistryAddr != "" {
		return cfg, []string{"registry-addr"}, errors.New("--registry-addr is for --dev only")
	}
	if cfg.DataDir == "" {
		return cfg, nil, errors.New("--data-dir is required outside --dev: raft keeps the cluster's state there")
	}
	if cfg.BootstrapExpect < 0 || (cfg.BootstrapExpect == 0 && len(cfg.Join) == 0) {
		return cfg, []string{"bootstrap-expect", "join"}, errors.New("say how the cluster forms: --bootstrap-expect N (with --join listing the other servers' API addresses), or --join to add this server to an existing cluster")
	}
	if cfg.BootstrapExpect > 1 && len(cfg.Join) == 0 {
		// Without --join it cannot see the other servers: it would wait
		// for them forever (issue 17: a "joins:" typo did just that).
		return cfg, []string{"bootstrap-expect", "join"}, fmt.Errorf("--bootstrap-expect %d needs --join listing the other servers' API addresses (e.g. --join 10.0.0.2:7070,10.0.0.3:7070): without it this server never sees them; for a single server use --bootstrap-expect 1", cfg.BootstrapExpect)
	}
	if err := pki.ValidateNodeName(cfg.NodeID); err != nil {
		return cfg, []string{"node-id"}, fmt.Errorf("--node-id: %w", err)
	}
	// The server's local agent reports with the server's certificate, which
	// speaks for the host named like the node and no other.
	if !cfg.NoAgent && cfg.HostID != cfg.NodeID {
		return cfg, []string{"host-id", "node-id"}, fmt.Errorf("--host-id %q: a server's local agent reports as host %q, the name in its certificate; drop --host-id, or run the server with --no-agent and a separate 'deployctl agent' with an agent certificate for %q (deployctl tls add-node %s --role agent)",
			cfg.HostID, cfg.NodeID, cfg.HostID, cfg.HostID)
	}
	return cfg, nil, nil
}

// checkDevListen refuses a --dev server listening beyond loopback: its API
// and raft have no TLS and no authentication, so whoever reaches them can
// run privileged containers on this host. --dev-listen-any says the
// operator means it (a lab VM, a container with its own network).
func checkDevListen(cfg serverConfig) ([]string, error) {
	for _, a := range []struct{ flag, addr, example string }{
		{"--http-addr", cfg.HTTPAddr, "127.0.0.1:7070"},
		{"--raft-addr", cfg.RaftAddr, "127.0.0.1:7071"},
		{"--registry-addr", cfg.RegistryAddr, "127.0.0.1:5000"},
	} {
		keys := []string{strings.TrimPrefix(a.flag, "--")}
		if a.addr == "" && a.flag == "--registry-addr" {
			continue
		}
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			return keys, fmt.Errorf("%s %q: want host:port, e.g. %s: %w", a.flag, a.addr, a.example, err)
		}
		if isLoopbackHost(host) || cfg.DevListenAny {
			continue
		}
		return keys, fmt.Errorf("%s %q: --dev serves without TLS or authentication, so it listens on loopback only (e.g. %s); "+
			"pass --dev-listen-any if every machine that can reach this address may control this host, or drop --dev and use TLS", a.flag, a.addr, a.example)
	}
	return nil, nil
}

// isLoopbackHost reports whether a listen host is localhost or a loopback
// IP. An empty host or 0.0.0.0/:: means every interface, and any other
// name may resolve anywhere: neither is loopback.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// serverTLS holds the TLS configurations of a cluster server.
type serverTLS struct {
	api, peer, client *tls.Config
}

// loadServerTLS builds the API, raft and client configurations on the
// node's certificate. The certificate must name the addresses the server
// advertises (other servers dial and verify its API address): one that
// does not is refused at start, and on reload it is refused, logged, and
// the old one kept (issue 17: a rotation without the node's address made
// it unreachable). Node certificates authenticate as clients too: the
// server forwards to the leader and its agent reports with this identity.
func loadServerTLS(cfg serverConfig, log hclog.Logger) (*serverTLS, error) {
	f := cfg.TLS
	covers := advertisedHosts(cfg)
	onReload := func(err error) {
		if err != nil {
			log.Error("refused the new certificate files; still serving the previous certificate", "cert", f.Cert, "error", err)
			return
		}
		log.Info("certificate reloaded", "cert", f.Cert)
	}
	c, err := pki.ServerNodeConfigs(f.CA, f.Cert, f.Key, pki.MustCover(covers...), pki.OnReload(onReload))
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	return &serverTLS{api: c.API, peer: c.Peer, client: c.Client}, nil
}

// advertisedHosts are the hosts of the API and raft addresses the server
// advertises (the listen addresses when no advertise address is given).
func advertisedHosts(cfg serverConfig) []string {
	var hosts []string
	for _, a := range []string{cfg.HTTPAdvertise, cfg.RaftAdvertise} {
		if host, _, err := net.SplitHostPort(a); err == nil {
			hosts = append(hosts, host)
		}
	}
	if cfg.RaftAdvertise == "" {
		if host, _, err := net.SplitHostPort(cfg.RaftAddr); err == nil {
			hosts = append(hosts, host)
		}
	}
	return hosts
}

// runServer runs one server until ctx ends, then stops in order: leadership
// is handed over, then the API, the agent (its containers keep running),
// the controller, raft.
func runServer(ctx context.Context, cfg serverConfig, logOut io.Writer) error {
	log := hclog.New(&hclog.LoggerOptions{Name: "deployctl", Level: hclog.LevelFromString(cfg.LogLevel), Output: logOut})

	var tlsCfg *serverTLS
	if !cfg.Dev {
		var err error
		tlsKeys := []string{"tls-ca", "tls-cert", "tls-key"}
		if tlsCfg, err = loadServerTLS(cfg, log); err != nil {
			return configError(cfg.Sources, err, tlsKeys...)
		}
		// The certificate is the node's identity: joining, raft and the
		// local agent all act as the node it names.
		id, err := pki.IdentityOfFile(cfg.TLS.Cert)
		if err != nil {
			return configError(cfg.Sources, fmt.Errorf("--tls-cert: %w", err), "tls-cert")
		}
		if id.Role != pki.RoleServer || id.Name != cfg.NodeID {
			return configError(cfg.Sources, fmt.Errorf("--tls-cert %s is the certificate of %s, not of server %s: pass %s.pem, or issue it (deployctl tls add-node %s --role server)",
				cfg.TLS.Cert, id, cfg.NodeID, cfg.NodeID, cfg.NodeID), "tls-cert", "node-id")
		}
	}

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
	reg := newRegistry()
	raftMetrics, err := raftstore.NewMetrics(reg)
	if err != nil {
		return err
	}
	rcfg := raftstore.Config{
		NodeID: cfg.NodeID, DataDir: cfg.DataDir, BindAddr: cfg.RaftAddr, AdvertiseAddr: cfg.RaftAdvertise,
		Bootstrap: cfg.Dev || cfg.BootstrapExpect == 1, FSM: raftstore.NewFSM(store, raftstore.WithMetrics(raftMetrics)), Logger: log.Named("raft"),
		SnapshotSchedule: cfg.SnapshotInterval, SnapshotThreshold: cfg.SnapshotThreshold,
		Metrics:          raftMetrics,
		HeartbeatTimeout: cfg.Raft.Heartbeat, ElectionTimeout: cfg.Raft.Election,
		LeaderLeaseTimeout: cfg.Raft.LeaderLease, CommitTimeout: cfg.Raft.Commit,
	}
	if tlsCfg != nil {
		rcfg.TLS = tlsCfg.peer
	}
	node, err := raftstore.Open(rcfg)
	if err != nil {
		return configError(cfg.Sources, fmt.Errorf("open raft: %w", err), "raft-addr", "data-dir")
	}
	defer node.Close()

	secretsKey, secretsKeyFile, err := loadServerKey(cfg, log)
	if err != nil {
		return configError(cfg.Sources, err, "secrets-key-file")
	}
	registries := controller.RegistryAccess{Insecure: cfg.InsecureRegistries}
	now, err := testClock(ctx, log)
	if err != nil {
		return err
	}
	// The leader judges the first key an --autolock server is given
	// (ClaimKey); the API client exists only once the listener does.
	var claim func(ctx context.Context, keyID string) error
	ctrlMetrics, err := controller.NewMetrics(reg, store)
	if err != nil {
		return err
	}
	ctrl, err := controller.New(controller.Config{
		ClaimKey:   func(ctx context.Context, keyID string) error { return claim(ctx, keyID) },
		CompactLog: node.Compact,
		Now:        now, Metrics: ctrlMetrics,
		Raft: node, Store: store, Resolver: controller.RegistryResolver{Access: registries}, Logger: log,
		RegistryOptions: []remote.Option{remote.WithTransport(registries.Transport(nil))},
		HostTTL:         cfg.HostTTL, HostDownGrace: cfg.HostDownGrace,
		// This version's agents serve ingress ports (deployer/ingress.go).
		ServeIngress: true,
		SecretsKey:   secretsKey, SecretsKeyFile: secretsKeyFile, Autolock: cfg.Autolock,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return configError(cfg.Sources, fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err), "http-addr")
	}
	if cfg.HTTPAdvertise == cfg.HTTPAddr {
		cfg.HTTPAdvertise = ln.Addr().String()
	}
	self := state.ServerInfo{ID: cfg.NodeID, RaftAddr: node.Addr(), APIAddr: cfg.HTTPAdvertise}
	joinReq := func() wire.JoinRequest { return joinRequest(self, ctrl.SecretsKeyID(), ctrl.Sealed()) }
	apiCfg := controller.APIConfig{Controller: ctrl, Membership: membership{node}, Self: self, Health: node, Metrics: metricsHandler(reg)}
	var client *wire.Client
	if tlsCfg != nil {
		apiCfg.Scheme = "https"
		// Followers forward many requests at once under load; with the
		// default 2 idle connections per host, the rest were closed and
		// each forward paid a new TLS handshake (40% of every server's CPU
		// in the 1,000-host run, issue 12).
		apiCfg.Forward = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg.client,
			MaxIdleConnsPerHost: forwardIdleConns, IdleConnTimeout: 90 * time.Second}}
		client = wire.NewTLSClient([]string{self.APIAddr}, tlsCfg.client)
		// Logs are read from agents' hop listeners (issue 10).
		if apiCfg.AgentTLS, err = pki.ProxyConfig(cfg.TLS.CA, cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return fmt.Errorf("the certificate cannot read agents' logs: %w", err)
		}
	} else {
		client = wire.NewClient([]string{self.APIAddr}, nil)
	}
	claim = func(ctx context.Context, keyID string) error {
		req := joinRequest(self, keyID, false)
		req.Unlocking = true
		return client.Join(ctx, req)
	}
	srv := &http.Server{Handler: controller.NewAPI(apiCfg).Handler(), ReadHeaderTimeout: 10 * time.Second}
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg.api
		ln = tls.NewListener(ln, tlsCfg.api)
	}

	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			ln.Close()
			return configError(cfg.Sources, err, "pprof-addr")
		}
		defer stopPprof()
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.MetricsAddr != "" {
		stopMetrics, err := serveMetrics(runCtx, cfg.MetricsAddr, reg, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
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
	// A new leader's controller starts at once, not at its next tick: an
	// election changes nothing the state store announces (found by
	// BenchmarkLeaderFailover: up to 1 s of "not ready" after elections).
	leaderCh := node.LeaderCh()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case _, ok := <-leaderCh:
				if !ok {
					return
				}
				ctrl.Wake()
			case <-runCtx.Done():
				return
			}
		}
	}()
	log.Info("API listening", "addr", self.APIAddr, "node", cfg.NodeID, "raft", self.RaftAddr, "tls", tlsCfg != nil)

	// --dev too: a single node registers its FSM version like any
	// server, or the leader's version gate would hold every command of a
	// newer version (service addresses) forever.
	wg.Add(2)
	go func() {
		defer wg.Done()
		formCluster(runCtx, cfg, node, self, joinReq, client, tlsCfg, log.Named("cluster"))
	}()
	go func() {
		defer wg.Done()
		registerKeyChanges(runCtx, ctrl, joinReq, client, log.Named("cluster"))
	}()

	if !cfg.NoAgent {
		agentMetrics, err := deployer.NewMetrics(reg)
		if err != nil {
			cancel()
			_ = srv.Close()
			wg.Wait()
			return err
		}
		agent, err := newLocalAgent(cfg, client, log, agentMetrics)
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
	if node.IsLeader() && !cfg.Dev {
		// Hand leadership over first: the cluster elects no one in the
		// gap, and in-flight writes move to the new leader.
		tctx, tcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := node.TransferLeadership(tctx); err != nil {
			log.Warn("leadership transfer failed; the others will elect after the timeout", "error", err)
		} else {
			log.Info("leadership handed over")
		}
		tcancel()
	}
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shutCancel()
	_ = srv.Shutdown(shutCtx)
	cancel()
	wg.Wait()
	return nil
}

// membership adapts the raft node to what the API needs.
type membership struct{ n *raftstore.Node }

func (m membership) Servers(ctx context.Context) ([]controller.RaftServer, error) {
	servers, err := m.n.Servers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]controller.RaftServer, 0, len(servers))
	for _, s := range servers {
		out = append(out, controller.RaftServer{ID: s.ID, Address: s.Address, Voter: s.Voter, Leader: s.Leader})
	}
	return out, nil
}
func (m membership) AddVoter(ctx context.Context, id, addr string) error {
	return m.n.AddVoter(ctx, id, addr)
}
func (m membership) RemoveServer(ctx context.Context, id string) error {
	return m.n.RemoveServer(ctx, id)
}
func (m membership) TransferLeadership(ctx context.Context) error {
	return m.n.TransferLeadership(ctx)
}
func (m membership) HadState() bool { return m.n.HadState() }

func newLocalAgent(cfg serverConfig, client *wire.Client, log hclog.Logger, metrics *deployer.Metrics) (*deployer.Agent, error) {
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
	ingress := &deployer.IngressConfig{Source: client, TLSSource: client, ListenIP: cfg.IngressAddr, ProxyAddr: cfg.ProxyAddr}
	if cfg.ProxyAddr != "" && cfg.TLS.set() {
		hop, err := pki.ProxyConfig(cfg.TLS.CA, cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("--proxy-addr: the hop listener needs a certificate with server and client authentication: %w", err)
		}
		ingress.ServerTLS, ingress.ClientTLS = hop, hop
	}
	if cfg.ProxyAddr == "" && !cfg.Dev {
		log.Warn("no --proxy-addr: other hosts' proxies cannot reach this host's replicas, which serve only this host's ingress ports")
	}
	// Service connections (issue 9): names on each service network's
	// gateway, relayed to the host's resolvers, and the packet filter.
	resolv, err := names.ReadResolvConf("/etc/resolv.conf")
	if err != nil {
		log.Warn("cannot read /etc/resolv.conf: names other than declared services will not resolve in containers", "error", err)
	}
	ingress.Networks, ingress.Names = rt, names.NewServer(resolv, log.Named("names"))
	if os.Geteuid() == 0 {
		filter, err := firewall.New(deployer.FirewallID(cfg.HostID))
		if err != nil {
			return nil, fmt.Errorf("packet filter: %w", err)
		}
		ingress.Filter = filter
	} else {
		log.Warn("not running as root: the service networks' packet rules cannot be set, so containers can reach every port of this host and service connections do not work")
	}
	return deployer.NewAgent(deployer.AgentConfig{
		HostID: cfg.HostID, Labels: cfg.Labels, Network: cfg.Network, SubnetPool: cfg.SubnetPool, AuditInterval: cfg.AuditInterval,
		Controller: client, Runtime: rt, Logger: log.Named("agent"), Ingress: ingress, SecretsDir: cfg.SecretsDir, Metrics: metrics,
	})
}

// bindNetworkFlags declares the service networks' flags, shared by server
// and agent.
func bindNetworkFlags(f *pflag.FlagSet) {
	f.String("network", deployer.DefaultNetwork, "prefix of this host's service networks: each service gets its own bridge, <network>-<service>; every host on one Docker Engine needs its own")
	f.String("subnet-pool", deployer.DefaultSubnetPool, "IPv4 prefix (/8 to /24) the service networks take their /26 subnets from; keep it clear of the host's networks (Docker's default pools are never used)")
}

// parseSubnetPool reads --subnet-pool.
func parseSubnetPool(s string) (netip.Prefix, error) {
	pool, err := deployer.ParseSubnetPool(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("--subnet-pool: %w", err)
	}
	return pool, nil
}

// bindIngressFlags declares the proxy's flags, shared by server and agent.
func bindIngressFlags(f *pflag.FlagSet) {
	f.String("ingress-addr", "", "IP the services' ingress ports listen on (default 0.0.0.0; 127.0.0.1 under --dev)")
	f.String("proxy-addr", "", "HOST:PORT where this host's proxy accepts traffic from other hosts' proxies (mutual TLS with the cluster's certificates), advertised to the servers as it is: give an address the other hosts reach")
}

// checkIngressAddrs fills the ingress IP's default and checks both
// addresses; loopbackOnly (--dev) keeps them on loopback.
func checkIngressAddrs(ingressIP *string, proxyAddr string, loopbackOnly bool) error {
	if *ingressIP == "" {
		*ingressIP = "0.0.0.0"
		if loopbackOnly {
			*ingressIP = "127.0.0.1"
		}
	}
	ip := net.ParseIP(*ingressIP)
	if ip == nil {
		return fmt.Errorf("--ingress-addr %q: want an IP address such as 0.0.0.0 or 10.0.0.5", *ingressIP)
	}
	if loopbackOnly && !ip.IsLoopback() {
		return fmt.Errorf("--ingress-addr %s: --dev listens on loopback only; use 127.0.0.1, or add --dev-listen-any", *ingressIP)
	}
	if proxyAddr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(proxyAddr)
	if err != nil || port == "" || port == "0" {
		return fmt.Errorf("--proxy-addr %q: want HOST:PORT with a fixed port, e.g. 10.0.0.5:7073 (it is advertised to other hosts)", proxyAddr)
	}
	if hostIP := net.ParseIP(host); hostIP == nil || hostIP.IsUnspecified() {
		return fmt.Errorf("--proxy-addr %q: give the IP other hosts reach this one at, not a name or 0.0.0.0 (it is advertised as it is)", proxyAddr)
	} else if loopbackOnly && !hostIP.IsLoopback() {
		return fmt.Errorf("--proxy-addr %s: --dev listens on loopback only (plain HTTP, no TLS); use 127.0.0.1:PORT, or add --dev-listen-any", proxyAddr)
	}
	return nil
}
