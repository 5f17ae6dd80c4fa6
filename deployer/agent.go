// Package deployer is the host agent: it long-polls the controller for the
// replicas its host must run, makes the local Docker Engine match (pull by
// digest, create with hardened options, start, probe, stop, remove) and
// reports what it observes. See DESIGN.md.
package deployer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/hashicorp/go-hclog"
)

// Agent defaults.
const (
	DefaultResyncInterval    = 2 * time.Second
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultAssignmentWait    = 30 * time.Second
	// DefaultNetwork starts the name of every service network:
	// deployctl-<service> (ServiceNetworkName).
	DefaultNetwork = "deployctl"

	// Backoff for a controller or engine that does not answer.
	minRetryDelay = 100 * time.Millisecond
	maxRetryDelay = 5 * time.Second
	// reportTimeout bounds one report call so a hung controller cannot hold
	// reports back forever; the batch is retried.
	reportTimeout = 10 * time.Second
)

// ErrInvalidConfig means NewAgent was given an unusable AgentConfig.
var ErrInvalidConfig = errors.New("invalid agent config")

// Controller is what the agent needs from the controller. The controller's
// HTTP client implements it.
type Controller interface {
	// Assignments blocks until the host's assignment set has an index >
	// afterIndex, or wait elapses (then returns the current set).
	Assignments(ctx context.Context, host string, afterIndex uint64, wait time.Duration) (state.AssignmentSet, error)
	// Report sends one batch: heartbeat + replica state changes.
	Report(ctx context.Context, r state.HostReport) error
	// ReportTraffic sends what the host's proxy sent to each of its
	// replicas since the previous report (issue 15).
	ReportTraffic(ctx context.Context, r wire.TrafficReport) error
}

// Runtime is what the agent needs from the container engine; DockerRuntime
// implements it.
type Runtime interface {
	Execer
	// EnsureServiceNetwork returns (creating it if needed) the bridge
	// network of a service on host; see DockerRuntime.EnsureServiceNetwork.
	EnsureServiceNetwork(ctx context.Context, host, service string, plan NetworkPlan) (ServiceNetwork, error)
	// ServiceNetworks lists the service networks the agent made for host.
	ServiceNetworks(ctx context.Context, host string) ([]ServiceNetwork, error)
	// RemoveNetwork removes a network the agent made for host (service ""
	// for the shared network of older versions); ErrNetworkInUse while
	// containers are attached.
	RemoveNetwork(ctx context.Context, nameOrID, host, service string) error
	// Networks lists every network on the engine, for the audit.
	Networks(ctx context.Context) ([]audit.Network, error)
	Pull(ctx context.Context, ref string) error
	ImageUser(ctx context.Context, ref string) (string, error)
	// ImageAccounts reads an image's /etc/passwd and /etc/group; hostID
	// labels the short-lived container it may create, so a run cleaned up
	// by host (tests, an operator) removes one left by a killed agent.
	ImageAccounts(ctx context.Context, ref, hostID string) (ImageAccounts, error)
	Create(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig) (string, error)
	Start(ctx context.Context, id string) error
	ListManaged(ctx context.Context, hostID string) ([]container.Summary, error)
	Inspect(ctx context.Context, id string) (container.InspectResponse, error)
	StopAndRemove(ctx context.Context, id string, grace time.Duration) error
	WatchExits(ctx context.Context, hostID string, exits chan<- ContainerExit) error
	EngineInfo(ctx context.Context) (EngineInfo, error)
}

// AgentConfig configures an Agent. Zero durations take the defaults.
type AgentConfig struct {
	HostID string
	// Labels describe the host to the controller (placement constraints).
	Labels map[string]string
	// Network starts the names of the host's service networks (one
	// bridge per service: <Network>-<service>; DefaultNetwork). Every host
	// on one Docker Engine needs its own. Older versions ran every replica
	// on one network of this name: the agent recreates those on their
	// service's network and then removes it.
	Network string
	// SubnetPool is where service networks take their /26 subnets
	// (DefaultSubnetPool when zero): an IPv4 prefix from /8 to /24.
	SubnetPool netip.Prefix
	// NetworkLabels are added to every network the agent creates.
	NetworkLabels map[string]string
	// ContainerLabels are added to every container the agent creates; the
	// io.deployctl.* labels cannot be overridden.
	ContainerLabels map[string]string
	// Secrets gives replicas their secret files (nil: the Controller,
	// when it implements SecretSource); SecretsDir is where each such
	// replica's tmpfs is mounted (DefaultSecretsDir). See secrets.go.
	Secrets           SecretSource
	SecretsDir        string
	Controller        Controller
	Runtime           Runtime
	Logger            hclog.Logger
	ResyncInterval    time.Duration
	HeartbeatInterval time.Duration
	// AuditInterval is how often running replicas are audited (CIS section
	// 5 and drift) when the controller takes audits. Default 15s.
	AuditInterval  time.Duration
	AssignmentWait time.Duration
	// Ingress runs the host's proxy (nil: none); see IngressConfig.
	Ingress *IngressConfig
	// TrafficInterval is how often the proxy's traffic figures are sent
	// to the controller (DefaultTrafficInterval).
	TrafficInterval time.Duration
	// Metrics counts failed probes and exports the proxy's counters
	// (NewMetrics); nil: none.
	Metrics *Metrics
}

// Agent reconciles one host's Docker Engine with its assignments.
type Agent struct {
	cfg AgentConfig
	log hclog.Logger
}

// NewAgent checks cfg and fills its defaults.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.HostID == "" {
		return nil, fmt.Errorf("%w: HostID is empty", ErrInvalidConfig)
	}
	if cfg.Controller == nil {
		return nil, fmt.Errorf("%w: no Controller", ErrInvalidConfig)
	}
	if cfg.Runtime == nil {
		return nil, fmt.Errorf("%w: no Runtime", ErrInvalidConfig)
	}
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
	}
	if err := checkNetwork(cfg.Network); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if !cfg.SubnetPool.IsValid() {
		cfg.SubnetPool = netip.MustParsePrefix(DefaultSubnetPool)
	}
	if err := CheckSubnetPool(cfg.SubnetPool); err != nil {
		return nil, fmt.Errorf("%w: subnet pool: %w", ErrInvalidConfig, err)
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.AuditInterval <= 0 {
		cfg.AuditInterval = DefaultAuditInterval
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.AssignmentWait <= 0 {
		cfg.AssignmentWait = DefaultAssignmentWait
	}
	if cfg.TrafficInterval <= 0 {
		cfg.TrafficInterval = DefaultTrafficInterval
	}
	if cfg.Ingress != nil && cfg.Ingress.Source == nil {
		return nil, fmt.Errorf("%w: Ingress without a Source", ErrInvalidConfig)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Agent{cfg: cfg, log: logger.Named("agent").With("host", cfg.HostID)}, nil
}

// Run reconciles until ctx is cancelled and then returns nil once every
// goroutine it started has ended. One Run at a time per Agent; each Run
// starts with no records, like an agent process that was restarted. Containers keep running when it returns:
// an agent or controller that goes away stops no replica, and the next Run
// adopts them.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	box := newOutbox()
	loop := &reconcileLoop{
		cfg:         a.cfg,
		log:         a.log,
		rt:          a.cfg.Runtime,
		outbox:      box,
		events:      make(chan event, maxDrain),
		replicas:    map[string]*replica{},
		removing:    map[string]bool{},
		netRemoving: map[string]bool{},
		netRetryAt:  map[string]time.Time{},
		exits:       map[string]ContainerExit{},
		procRoot:    hostProcRoot,
		secretFiles: newSecretFiles(a.cfg.SecretsDir, a.cfg.HostID),
	}
	sets := make(chan state.AssignmentSet)
	exits := make(chan ContainerExit)

	var workers sync.WaitGroup
	if a.cfg.Ingress != nil {
		loop.ingress = newIngressRunner(*a.cfg.Ingress, a.cfg.HostID, a.log)
		if lr, ok := a.cfg.Runtime.(LogReader); ok {
			loop.ingress.logs = &logsHandler{host: a.cfg.HostID, rt: lr, tls: a.cfg.Ingress.ServerTLS != nil, log: a.log}
		}
		a.cfg.Metrics.followProxy(loop.ingress.table)
		workers.Go(func() { loop.ingress.run(ctx) })
		shipper := &trafficShipper{host: a.cfg.HostID, ctrl: a.cfg.Controller, take: loop.ingress.table.TakeTraffic,
			interval: a.cfg.TrafficInterval, log: a.log}
		workers.Go(func() { shipper.run(ctx) })
	}
	workers.Add(3)
	go func() {
		defer workers.Done()
		a.pollAssignments(ctx, sets)
	}()
	go func() {
		defer workers.Done()
		a.watchExits(ctx, exits)
	}()
	go func() {
		defer workers.Done()
		a.sendReports(ctx, box, loop.ingress)
	}()

	// An engine that streams health changes spares the exec probers their
	// polling (HealthWatcher); nil blocks forever in the loop's select.
	var health chan string
	if hw, ok := a.cfg.Runtime.(HealthWatcher); ok {
		health = make(chan string, maxDrain)
		loop.healthStream = true
		workers.Go(func() { a.watchHealth(ctx, hw, health) })
	}

	loop.run(ctx, sets, exits, health)
	cancel()
	workers.Wait()
	return nil
}

// pollAssignments long-polls the controller and hands every set with a new
// index to out. Errors are retried with backoff, never fatal.
func (a *Agent) pollAssignments(ctx context.Context, out chan<- state.AssignmentSet) {
	var index uint64
	first := true
	retry := newBackoff()
	for ctx.Err() == nil {
		set, err := a.cfg.Controller.Assignments(ctx, a.cfg.HostID, index, a.cfg.AssignmentWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			delay := retry.nextAfter(err)
			a.log.Warn("cannot get assignments from the controller; retrying", "error", err, "retry_in", delay)
			if !sleepCtx(ctx, delay) {
				return
			}
			continue
		}
		retry.reset()
		if !first && set.Index <= index {
			// The wait elapsed without news; the resync covers drift. The
			// pause keeps a controller that answers at once from spinning us.
			if !sleepCtx(ctx, minRetryDelay) {
				return
			}
			continue
		}
		first = false
		index = set.Index
		select {
		case out <- set:
		case <-ctx.Done():
			return
		}
	}
}

// watchExits follows the engine's container exits so a crash is seen at
// once and with its exit code. A broken stream is reopened with backoff;
// the resync finds what was missed meanwhile.
func (a *Agent) watchExits(ctx context.Context, out chan<- ContainerExit) {
	retry := newBackoff()
	for ctx.Err() == nil {
		opened := time.Now()
		err := a.cfg.Runtime.WatchExits(ctx, a.cfg.HostID, out)
		if ctx.Err() != nil {
			return
		}
		if time.Since(opened) > maxRetryDelay {
			retry.reset()
		}
		delay := retry.next()
		a.log.Debug("container event stream ended; reopening", "error", err, "retry_in", delay)
		if !sleepCtx(ctx, delay) {
			return
		}
	}
}

// watchHealth follows the engine's health changes of this host's
// containers, reopening a broken stream with backoff like watchExits (the
// exec probers' slow poll covers what was missed meanwhile).
func (a *Agent) watchHealth(ctx context.Context, hw HealthWatcher, out chan<- string) {
	retry := newBackoff()
	for ctx.Err() == nil {
		opened := time.Now()
		err := hw.WatchHealth(ctx, a.cfg.HostID, out)
		if ctx.Err() != nil {
			return
		}
		if time.Since(opened) > maxRetryDelay {
			retry.reset()
		}
		delay := retry.next()
		a.log.Debug("container health event stream ended; reopening", "error", err, "retry_in", delay)
		if !sleepCtx(ctx, delay) {
			return
		}
	}
}

// sendReports sends queued replica changes as soon as they are queued, and a
// heartbeat every HeartbeatInterval even without changes. A failed batch
// goes back to the outbox (newer changes win) and is retried with backoff.
func (a *Agent) sendReports(ctx context.Context, box *outbox, ingress *ingressRunner) {
	heartbeat := time.NewTicker(a.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	retry := newBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-box.wake:
		case <-heartbeat.C:
		}
		batch := box.take()
		callCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		report := state.HostReport{Host: a.cfg.HostID, AssignmentIndex: box.assignmentIndex(), Labels: a.cfg.Labels, Reports: batch, Engine: box.engineFeatures()}
		if a.cfg.Ingress != nil {
			report.ProxyAddr = a.cfg.Ingress.ProxyAddr
			report.ProxyProblems = ingress.problems()
		}
		err := a.cfg.Controller.Report(callCtx, report)
		cancel()
		if err == nil {
			retry.reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		box.putBack(batch)
		delay := retry.nextAfter(err)
		a.log.Warn("cannot report to the controller; retrying", "error", err, "changes", len(batch), "retry_in", delay)
		if !sleepCtx(ctx, delay) {
			return
		}
		box.poke()
	}
}
