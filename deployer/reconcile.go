package deployer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/go-hclog"
)

// replica is the agent's record of one assigned replica. Only the loop
// goroutine touches it.
type replica struct {
	assignment state.Assignment
	// containerID is the container that runs this replica, "" if none.
	containerID  string
	ip           string
	restartCount int
	// state is the observed state last queued for the controller, "" while
	// an adopted container waits for its first probe verdict.
	state   string
	message string
	// busy is set while an engine operation for this replica runs.
	busy        bool
	stopProbing context.CancelFunc
	// reportedContainer is the container ID of the last queued report.
	reportedContainer string
	// healthPoke wakes the exec prober when the engine reports a health
	// change of the container (nil for other checks).
	healthPoke chan struct{}
}

// event is what goroutines started by the loop send back to it.
type event interface{ isEvent() }

type startDone struct {
	replicaID    string
	containerID  string
	ip           string
	restartCount int
	startedAt    time.Time
	err          error
}

type stopDone struct {
	replicaID   string
	containerID string
	err         error
}

// removeDone ends the removal of a failed, stale or orphaned container.
type removeDone struct {
	replicaID   string // "" for an orphan
	containerID string
	err         error
}

type verdict struct {
	replicaID   string
	containerID string
	state       string
	message     string
}

// networkRemoved ends the removal of a network: a service network, or
// with service "" the shared network of older versions.
type networkRemoved struct {
	name    string
	service string
	err     error
}

func (startDone) isEvent()      {}
func (stopDone) isEvent()       {}
func (removeDone) isEvent()     {}
func (verdict) isEvent()        {}
func (networkRemoved) isEvent() {}

// reconcileLoop owns all of the agent's mutable state for one Run.
type reconcileLoop struct {
	cfg    AgentConfig
	log    hclog.Logger
	rt     Runtime
	outbox *outbox
	events chan event
	// secretFiles holds replicas' secrets in tmpfs mounts (secrets.go).
	secretFiles secretFiles

	set      *state.AssignmentSet
	replicas map[string]*replica
	removing map[string]bool // container IDs being removed
	// exits are the last exits the engine reported, by container ID.
	exits map[string]ContainerExit
	// engineKnown is set once engine holds what the engine supports
	// (AppArmor, userns...), read once per Run: run options depend on it.
	engineKnown bool
	engine      EngineInfo
	// netRemoving holds the networks (by name) whose removal runs; a
	// replica of such a service starts once it is done.
	netRemoving map[string]bool
	// collectDue is set by the resync tick: the next reconcile also
	// removes networks no container needs any more.
	collectDue bool
	// netRetryAt is when to try again to remove a network whose removal
	// failed (containers still attached, most often).
	netRetryAt map[string]time.Time
	// legacyGone is set once the shared network of older versions
	// (AgentConfig.Network itself) is removed, absent or not ours.
	legacyGone bool
	// lastAudit is when the last audit started; auditing is set while one
	// runs (its task clears it).
	lastAudit time.Time
	auditing  atomic.Bool
	// healthStream is set when the runtime streams health changes
	// (HealthWatcher): the exec probers then poll the engine rarely.
	healthStream bool
	// fullCheck is set while a reconcile inspects every container (see
	// checkContainer); fullCheckAt is when the next one is due.
	fullCheck   bool
	fullCheckAt time.Time
	// engineDown remembers an outage so it is logged as an error once, not
	// at every resync.
	engineDown bool
	tasks      sync.WaitGroup
	// procRoot is the host's /proc, where the audit reads the ids a
	// container's process runs with.
	procRoot string
	// ingress is the host's proxy, nil without one: the loop tells it
	// which local replicas are healthy and drains a replica before it
	// stops its container.
	ingress *ingressRunner
}

// hostProcRoot is the host's proc file system; the agent runs on the host.
const hostProcRoot = "/proc"

// networkRetry is how long the agent waits before it tries again to
// remove a network that still held containers (someone else's, or
// another host's on a shared engine) or whose removal failed.
const networkRetry = 30 * time.Second

// fullCheckInterval is how often a reconcile inspects every container,
// also those the listing shows running as before (checkContainer).
const fullCheckInterval = 20 * time.Second

func (l *reconcileLoop) run(ctx context.Context, sets <-chan state.AssignmentSet, exits <-chan ContainerExit, health <-chan string) {
	resync := time.NewTicker(l.cfg.ResyncInterval)
	defer resync.Stop()
	defer l.tasks.Wait()
	defer l.stopAllProbers()
	for {
		dirty := false
		select {
		case <-ctx.Done():
			return
		case set := <-sets:
			l.log.Debug("new assignment set", "index", set.Index, "assignments", len(set.Assignments))
			l.set = &set
			l.outbox.setIndex(set.Index)
			dirty = true
		case <-resync.C:
			dirty = l.set != nil
			l.collectDue = true
			l.auditDue(ctx, time.Now())
		case ev := <-l.events:
			dirty = l.handle(ctx, ev)
		case exit := <-exits:
			l.handleExit(exit)
			dirty = true
		case id := <-health:
			l.healthChanged(id)
		}
		// Whatever else is ready joins this reconcile: ten starts of a
		// batch that end together cost one listing, not ten.
		dirty = l.drainReady(ctx, exits) || dirty
		if dirty && l.set != nil {
			start := time.Now()
			l.reconcile(ctx)
			l.log.Trace("reconciled", "took", time.Since(start), "replicas", len(l.replicas))
		}
		l.publishLocal()
		l.outbox.poke()
	}
}

// maxDrain bounds how many ready events one loop iteration takes before
// it reconciles.
const maxDrain = 256

// drainReady handles the task events and exits that are ready now, without
// waiting, and reports whether any of them asks for a reconcile.
func (l *reconcileLoop) drainReady(ctx context.Context, exits <-chan ContainerExit) bool {
	dirty := false
	for range maxDrain {
		select {
		case ev := <-l.events:
			dirty = l.handle(ctx, ev) || dirty
		case exit := <-exits:
			l.handleExit(exit)
			dirty = true
		default:
			return dirty
		}
	}
	return dirty
}

// go runs fn as a task of this loop; its event is delivered unless the loop
// is shutting down.
func (l *reconcileLoop) goTask(ctx context.Context, fn func() event) {
	l.tasks.Add(1)
	go func() {
		defer l.tasks.Done()
		ev := fn()
		select {
		case l.events <- ev:
		case <-ctx.Done():
		}
	}()
}

// reconcile compares the assignment set with the engine's containers and
// starts whatever operations close the gap.
func (l *reconcileLoop) reconcile(ctx context.Context) {
	if !l.engineKnown {
		info, err := l.rt.EngineInfo(ctx)
		if err != nil {
			l.engineError("cannot read the engine's security options", err)
			return
		}
		l.engine = info
		l.outbox.setEngine(info)
		l.engineKnown = true
	}
	containers, err := l.rt.ListManaged(ctx, l.cfg.HostID)
	if err != nil {
		l.engineError("cannot list containers", err)
		return
	}
	if l.engineDown {
		l.log.Info("docker engine reachable again")
		l.engineDown = false
	}

	if now := time.Now(); !now.Before(l.fullCheckAt) {
		l.fullCheck, l.fullCheckAt = true, now.Add(fullCheckInterval)
		defer func() { l.fullCheck = false }()
	}

	assigned := make(map[string]state.Assignment, len(l.set.Assignments))
	for _, as := range l.set.Assignments {
		assigned[as.Replica.ID] = as
	}
	listed := make(map[string]bool, len(containers))
	for _, c := range containers {
		listed[c.ID] = true
	}
	for id := range l.exits {
		if !listed[id] {
			delete(l.exits, id)
		}
	}
	byReplica := map[string][]container.Summary{}
	for _, c := range containers {
		id := c.Labels[LabelReplica]
		if _, ok := assigned[id]; !ok {
			l.removeContainer(ctx, "", c.ID, "orphan: its replica is not assigned to this host")
			continue
		}
		byReplica[id] = append(byReplica[id], c)
	}

	ids := make([]string, 0, len(assigned))
	for id := range assigned {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rep := l.replicas[id]
		if rep == nil {
			rep = &replica{}
			l.replicas[id] = rep
		}
		rep.assignment = assigned[id]
		if rep.busy {
			continue
		}
		current := l.pickContainer(ctx, rep, byReplica[id])
		if rep.assignment.Replica.Desired == state.DesiredStopped {
			l.reconcileStopped(ctx, id, rep, current)
		} else {
			l.reconcileRunning(ctx, id, rep, current)
		}
	}
	for id, rep := range l.replicas {
		if _, ok := assigned[id]; !ok {
			rep.cancelProbing()
			delete(l.replicas, id)
		}
	}
	if l.collectDue {
		l.collectDue = false
		l.collectNetworks(ctx, containers)
	}
	l.sweepSecrets(containers)
}

// networkPlan is how this host's service networks are named and where
// their subnets come from.
func (l *reconcileLoop) networkPlan() NetworkPlan {
	return NetworkPlan{Prefix: l.cfg.Network, Pool: l.cfg.SubnetPool, Labels: l.cfg.NetworkLabels}
}

// networkFor is the network a container of as belongs on, as its
// HostConfig.NetworkMode reads: its service's network on this host, or
// the network mode its spec asks for (host, none).
func (l *reconcileLoop) networkFor(as state.Assignment) string {
	if over, err := OverridesFor(as.Revision.Spec); err == nil && over.NetworkMode != "" {
		return over.NetworkMode
	}
	return ServiceNetworkName(l.cfg.Network, as.Replica.Service)
}

// collectNetworks removes the service networks of this host that no
// container is attached to and no starting replica is about to use, and
// the network all services shared in older versions once none of this
// host's containers is on it. RemoveNetwork itself leaves a network that
// still holds a container (someone else's too) and anything deployctl
// did not create. The removals run as tasks.
func (l *reconcileLoop) collectNetworks(ctx context.Context, containers []container.Summary) {
	inUse := map[string]bool{}
	for _, c := range containers {
		inUse[c.HostConfig.NetworkMode] = true
		if c.NetworkSettings != nil {
			for name := range c.NetworkSettings.Networks {
				inUse[name] = true
			}
		}
	}
	for _, rep := range l.replicas {
		if rep.busy || rep.containerID != "" {
			inUse[ServiceNetworkName(l.cfg.Network, rep.assignment.Replica.Service)] = true
		}
	}
	networks, err := l.rt.ServiceNetworks(ctx, l.cfg.HostID)
	if err != nil {
		l.engineError("cannot list the service networks", err)
		return
	}
	now := time.Now()
	due := func(name string) bool {
		return !inUse[name] && !l.netRemoving[name] && !now.Before(l.netRetryAt[name])
	}
	for _, n := range networks {
		if due(n.Name) {
			l.removeNetwork(ctx, n.Name, n.ID, n.Service)
		}
	}
	if legacy := l.cfg.Network; !l.legacyGone && due(legacy) {
		l.removeNetwork(ctx, legacy, legacy, "")
	}
}

// removeNetwork removes network name (nameOrID) of service ("" for the
// shared network of older versions) in a task.
func (l *reconcileLoop) removeNetwork(ctx context.Context, name, nameOrID, service string) {
	l.netRemoving[name] = true
	l.goTask(ctx, func() event {
		return networkRemoved{name: name, service: service, err: l.rt.RemoveNetwork(ctx, nameOrID, l.cfg.HostID, service)}
	})
}

// pickContainer chooses the container of a replica when the engine has
// several (only after a crash between create and record); the others are
// removed.
func (l *reconcileLoop) pickContainer(ctx context.Context, rep *replica, candidates []container.Summary) *container.Summary {
	if len(candidates) == 0 {
		return nil
	}
	keep := 0
	for i, c := range candidates {
		if c.ID == rep.containerID {
			keep = i
			break
		}
		if c.State == container.StateRunning && candidates[keep].State != container.StateRunning {
			keep = i
		}
	}
	for i, c := range candidates {
		if i != keep {
			l.removeContainer(ctx, "", c.ID, "duplicate container of the replica")
		}
	}
	return &candidates[keep]
}

func (l *reconcileLoop) reconcileStopped(ctx context.Context, id string, rep *replica, current *container.Summary) {
	rep.cancelProbing()
	if current == nil {
		rep.containerID = ""
		l.setState(id, rep, state.ReplicaStopped, "")
		return
	}
	if l.removing[current.ID] {
		return
	}
	rep.busy = true
	containerID := current.ID
	grace := rep.assignment.Revision.Spec.StopGracePeriod
	service := rep.assignment.Replica.Service
	l.log.Info("stopping replica", "replica", id, "container", shortID(containerID), "grace", grace)
	l.goTask(ctx, func() event {
		begin := time.Now()
		err := l.rt.StopAndRemove(ctx, containerID, l.drainFirst(ctx, service, id, grace))
		l.log.Debug("replica stop and removal done", "replica", id, "took", time.Since(begin), "error", err)
		return stopDone{replicaID: id, containerID: containerID, err: err}
	})
}

// drainFirst takes a replica out of the proxy's pools and waits for its
// in-flight requests, bounded by grace, before the caller stops its
// container; it returns what is left of grace for the stop (at least a
// second, so the process still gets SIGTERM before SIGKILL). Without a
// proxy it returns grace. Runs in a task goroutine.
func (l *reconcileLoop) drainFirst(ctx context.Context, service, replicaID string, grace time.Duration) time.Duration {
	if l.ingress == nil || replicaID == "" {
		return grace
	}
	bound := grace
	if bound <= 0 {
		bound = orphanDrain
	}
	start := time.Now()
	drainCtx, cancel := context.WithTimeout(ctx, bound)
	l.ingress.drain(drainCtx, service, replicaID)
	cancel()
	if grace <= 0 {
		return grace
	}
	return max(grace-time.Since(start), time.Second)
}

// publishLocal tells the proxy which local replicas serve ingress ports
// or exposed ports (other services' connections), and which of them may
// get requests: healthy by the agent's own probe,
// desired running, not being stopped, and whose process has not exited.
func (l *reconcileLoop) publishLocal() {
	if l.ingress == nil {
		return
	}
	var out []localTarget
	for id, rep := range l.replicas {
		spec := rep.assignment.Revision.Spec
		if len(spec.Ingress)+len(spec.Expose) == 0 || rep.containerID == "" || rep.ip == "" {
			continue
		}
		ports := make([]int, 0, len(spec.Ingress)+len(spec.Expose))
		for _, in := range spec.Ingress {
			if !slices.Contains(ports, in.Port) {
				ports = append(ports, in.Port)
			}
		}
		for _, e := range spec.Expose {
			if !slices.Contains(ports, e.Port) {
				ports = append(ports, e.Port)
			}
		}
		slices.Sort(ports)
		_, exited := l.exits[rep.containerID]
		healthy := rep.state == state.ReplicaHealthy && !rep.busy && !exited &&
			rep.assignment.Replica.Desired != state.DesiredStopped && !l.removing[rep.containerID]
		out = append(out, localTarget{service: rep.assignment.Replica.Service, replica: id, container: rep.containerID, ip: rep.ip, ports: ports, healthy: healthy})
	}
	slices.SortFunc(out, func(a, b localTarget) int { return strings.Compare(a.replica, b.replica) })
	l.ingress.setLocal(out)
}

func (l *reconcileLoop) reconcileRunning(ctx context.Context, id string, rep *replica, current *container.Summary) {
	as := rep.assignment
	switch {
	case current != nil && l.removing[current.ID]:
		return
	case current != nil && current.Labels[LabelFingerprint] != as.Revision.Fingerprint:
		// The replica now means a different container: replace it.
		l.removeContainer(ctx, id, current.ID, "its fingerprint differs from the assigned revision")
		rep.cancelProbing()
		rep.containerID = ""
	case current != nil && current.HostConfig.NetworkMode != "" && current.HostConfig.NetworkMode != l.networkFor(as):
		// Made by an older version on the network every service shared
		// (or before --network changed): replaced like a container of
		// another revision, so isolation holds after an upgrade. One at
		// a time per service: the others keep serving meanwhile.
		if l.replacing(as.Replica.Service, id) {
			l.checkContainer(ctx, id, rep, current)
			return
		}
		l.removeContainer(ctx, id, current.ID, fmt.Sprintf("it runs on network %s, not on its service's own network %s; recreating it there",
			current.HostConfig.NetworkMode, l.networkFor(as)))
		rep.cancelProbing()
		rep.containerID = ""
	case current != nil:
		l.checkContainer(ctx, id, rep, current)
	case rep.state == state.ReplicaFailed:
		// Failed stays failed: the controller decides about a replacement.
	case rep.containerID != "":
		l.log.Warn("container was removed outside deployctl; recreating it", "replica", id, "container", shortID(rep.containerID))
		rep.cancelProbing()
		rep.containerID = ""
		l.startReplica(ctx, id, rep, "container was removed outside deployctl; recreating")
	case rep.state == "" && as.Replica.Status.State == state.ReplicaFailed:
		// Known failed before this agent started: do not resurrect it.
		l.setState(id, rep, state.ReplicaFailed, as.Replica.Status.Message)
	default:
		l.startReplica(ctx, id, rep, "pulling image")
	}
}

// replacing reports whether a replica of service other than except is on
// its way to a new container on this host: starting, or its old container
// removed and the new one not started yet.
func (l *reconcileLoop) replacing(service, except string) bool {
	for id, rep := range l.replicas {
		if id == except || rep.assignment.Replica.Service != service || rep.assignment.Replica.Desired == state.DesiredStopped {
			continue
		}
		if rep.busy || rep.state == state.ReplicaStarting ||
			(rep.containerID == "" && rep.state != state.ReplicaFailed && rep.state != state.ReplicaStopped) {
			return true
		}
	}
	return false
}

// checkContainer adopts a container the agent does not know yet, and fails
// one that stopped running or was restarted by the engine.
//
// A container the agent already runs, that the listing shows running and
// whose exit the engine did not report is not inspected (the listing says
// all an inspect would here, but for a restart count the die event
// announces), except in the full check every fullCheckInterval that
// catches what a broken event stream missed: at 60 containers the
// inspects of every reconcile took seconds, and every health verdict
// waited for them.
func (l *reconcileLoop) checkContainer(ctx context.Context, id string, rep *replica, current *container.Summary) {
	containerID := current.ID
	if _, exited := l.exits[containerID]; !l.fullCheck && !exited && rep.containerID == containerID &&
		current.State == container.StateRunning && rep.ip != "" {
		return
	}
	inspect, err := l.rt.Inspect(ctx, containerID)
	if errors.Is(err, ErrNotFound) {
		return // removed since the listing; the next resync sees it gone
	}
	if err != nil {
		l.engineError("cannot inspect container", err)
		return
	}
	if inspect.ContainerJSONBase == nil || inspect.State == nil {
		l.log.Warn("engine returned a container without state", "container", shortID(containerID))
		return
	}
	if inspect.State.Status == container.StateRemoving {
		// Someone else is removing it; once it is gone the replica is
		// recreated as one removed behind the agent's back.
		return
	}
	adopting := rep.containerID != containerID
	if adopting && inspect.State.Status == container.StateCreated {
		// Created but never started (an agent stopped between the two):
		// nothing ran, so it is replaced rather than reported failed.
		l.removeContainer(ctx, id, containerID, "created but never started")
		return
	}
	if adopting {
		rep.cancelProbing()
		rep.containerID = containerID
		rep.restartCount = inspect.RestartCount
		rep.state = ""
	}
	lastExit, exited := l.exits[containerID]
	if reason := notRunningReason(inspect, rep.restartCount, lastExit, exited); reason != "" {
		l.log.Warn("replica failed", "replica", id, "container", shortID(containerID), "reason", reason)
		rep.cancelProbing()
		l.setState(id, rep, state.ReplicaFailed, reason)
		l.removeContainer(ctx, id, containerID, "failed: "+reason)
		return
	}
	switch {
	case adopting:
		l.log.Info("adopting running container", "replica", id, "container", shortID(containerID))
		rep.ip = ReplicaIP(inspect)
		l.beginProbing(ctx, id, rep, parseEngineTime(inspect.State.StartedAt))
	case rep.ip == "" && ReplicaIP(inspect) != "":
		// The inspect right after start failed: probe now that the
		// address is known.
		rep.ip = ReplicaIP(inspect)
		l.beginProbing(ctx, id, rep, parseEngineTime(inspect.State.StartedAt))
	}
}

// notRunningReason says why a container no longer counts as running, "" if
// it does: not running, or restarted by the engine since the agent started
// or adopted it (a crash the restart policy papered over). The exit event,
// when there was one, gives the code that inspect forgets on a restart.
func notRunningReason(inspect container.InspectResponse, knownRestarts int, exit ContainerExit, exited bool) string {
	if inspect.ContainerJSONBase == nil || inspect.State == nil {
		return "container has no state"
	}
	st := inspect.State
	if !exited {
		exit = ContainerExit{ExitCode: st.ExitCode, OOMKilled: st.OOMKilled}
	}
	exit.OOMKilled = exit.OOMKilled || st.OOMKilled
	switch {
	case st.Restarting:
		return exit.Reason() + " (the engine is restarting it)"
	case !st.Running && st.Error != "" && !exit.OOMKilled:
		return st.Error
	case !st.Running:
		return exit.Reason()
	case inspect.RestartCount > knownRestarts && exited:
		return exit.Reason() + fmt.Sprintf(" and was restarted by the engine (restart count %d)", inspect.RestartCount)
	case inspect.RestartCount > knownRestarts:
		return fmt.Sprintf("exited and was restarted by the engine (restart count %d)", inspect.RestartCount)
	}
	return ""
}

func (l *reconcileLoop) startReplica(ctx context.Context, id string, rep *replica, message string) {
	if l.netRemoving[ServiceNetworkName(l.cfg.Network, rep.assignment.Replica.Service)] {
		// The service had no container here a moment ago and its
		// network is being removed: the reconcile after the removal
		// starts the replica, on a new network.
		return
	}
	rep.busy = true
	l.setState(id, rep, state.ReplicaStarting, message)
	as := rep.assignment
	l.log.Info("starting replica", "replica", id, "ref", as.Revision.Ref)
	engine := l.engine
	l.goTask(ctx, func() event {
		return l.createAndStart(ctx, as, engine)
	})
}

// createAndStart pulls, creates and starts the container of as. It runs in
// a task goroutine and touches no loop state.
func (l *reconcileLoop) createAndStart(ctx context.Context, as state.Assignment, engine EngineInfo) startDone {
	begin := time.Now()
	done := startDone{replicaID: as.Replica.ID}
	ref := as.Revision.Ref
	if err := l.rt.Pull(ctx, ref); err != nil {
		done.err = err
		return done
	}
	user, err := l.rt.ImageUser(ctx, ref)
	if err != nil {
		done.err = err
		return done
	}
	accounts, err := l.rt.ImageAccounts(ctx, ref, l.cfg.HostID)
	if err != nil {
		done.err = err
		return done
	}
	overrides, err := OverridesFor(as.Revision.Spec)
	if err != nil {
		done.err = err
		return done
	}
	netName := ServiceNetworkName(l.cfg.Network, as.Replica.Service)
	opts := []Option{WithEngine(engine), WithOverrides(overrides), WithImageAccounts(accounts)}
	cfg, hostCfg, netCfg, err := ContainerOptions(as, l.cfg.HostID, netName, user, opts...)
	if err != nil {
		done.err = err
		return done
	}
	if overrides.NetworkMode == "" {
		// Only now, so that a refused replica (root, unpinned...) makes
		// no network.
		network, err := l.rt.EnsureServiceNetwork(ctx, l.cfg.HostID, as.Replica.Service, l.networkPlan())
		if err != nil {
			done.err = fmt.Errorf("prepare the network of service %s: %w", as.Replica.Service, err)
			return done
		}
		// No container runs on a bridge the packet filter does not
		// cover yet: it could reach every port of the host meanwhile.
		if err := l.ingress.filtered(ctx, network.Bridge); err != nil {
			done.err = fmt.Errorf("filter the network of service %s: %w", as.Replica.Service, err)
			return done
		}
		if cfg, hostCfg, netCfg, err = ContainerOptions(as, l.cfg.HostID, network.Name, user, append(opts, WithDNS(network.Gateway))...); err != nil {
			done.err = err
			return done
		}
	}
	for k, v := range l.cfg.ContainerLabels {
		if _, reserved := cfg.Labels[k]; !reserved {
			cfg.Labels[k] = v
		}
	}
	if len(as.Revision.Spec.Secrets) > 0 {
		mounts, err := l.secretMounts(ctx, as.Replica.ID, cfg)
		if err != nil {
			done.err = err
			return done
		}
		hostCfg.Mounts = append(hostCfg.Mounts, mounts...)
	}
	createAt := time.Now()
	containerID, err := l.rt.Create(ctx, ContainerName(as), cfg, hostCfg, netCfg)
	if err != nil {
		done.err = err
		return done
	}
	startAt := time.Now()
	// Where a replica's start goes (issue 12): preparing (pull check,
	// image user and accounts, network), the engine's create, its start.
	defer func() {
		l.log.Debug("replica created and started", "replica", as.Replica.ID, "prepare", createAt.Sub(begin),
			"create", startAt.Sub(createAt), "start", time.Since(startAt), "error", done.err)
	}()
	if err := l.rt.Start(ctx, containerID); err != nil {
		// Do not leave a created-but-dead container behind.
		if rmErr := l.rt.StopAndRemove(ctx, containerID, 0); rmErr != nil {
			l.log.Warn("cannot remove container that failed to start", "container", shortID(containerID), "error", rmErr)
		}
		done.err = err
		return done
	}
	inspect, err := l.rt.Inspect(ctx, containerID)
	if err != nil {
		// Started; the resync will inspect it again.
		done.containerID = containerID
		done.startedAt = time.Now()
		return done
	}
	done.containerID = containerID
	done.ip = ReplicaIP(inspect)
	done.startedAt = time.Now()
	if inspect.ContainerJSONBase != nil {
		done.restartCount = inspect.RestartCount
		if inspect.State != nil {
			done.startedAt = parseEngineTime(inspect.State.StartedAt)
		}
	}
	return done
}

// handle applies an event and reports whether a reconcile should follow.
func (l *reconcileLoop) handle(ctx context.Context, ev event) bool {
	switch ev := ev.(type) {
	case startDone:
		rep := l.replicas[ev.replicaID]
		if rep == nil {
			// Unassigned while starting: the next reconcile sees an orphan.
			return true
		}
		rep.busy = false
		if errors.Is(ev.err, ErrEngineUnavailable) {
			// Not the replica's fault: it stays starting and the next
			// resync tries again.
			l.engineError("cannot start replica", ev.err)
			l.setState(ev.replicaID, rep, state.ReplicaStarting, "waiting for the docker engine")
			return false
		}
		if ev.err != nil {
			l.log.Warn("replica failed to start", "replica", ev.replicaID, "error", ev.err)
			l.setState(ev.replicaID, rep, state.ReplicaFailed, ev.err.Error())
			return true
		}
		rep.containerID = ev.containerID
		rep.ip = ev.ip
		rep.restartCount = ev.restartCount
		l.setState(ev.replicaID, rep, state.ReplicaStarting, "")
		l.beginProbing(ctx, ev.replicaID, rep, ev.startedAt)
		return true
	case stopDone:
		rep := l.replicas[ev.replicaID]
		if rep == nil {
			return true
		}
		rep.busy = false
		if ev.err != nil {
			l.log.Warn("cannot stop replica; retrying", "replica", ev.replicaID, "error", ev.err)
			return false
		}
		rep.containerID = ""
		l.log.Info("replica stopped", "replica", ev.replicaID, "container", shortID(ev.containerID))
		l.setStateContainer(ev.replicaID, rep, state.ReplicaStopped, "", ev.containerID)
		return false
	case removeDone:
		delete(l.removing, ev.containerID)
		if ev.err != nil {
			l.log.Warn("cannot remove container; retrying", "container", shortID(ev.containerID), "error", ev.err)
		}
		if rep := l.replicas[ev.replicaID]; rep != nil && rep.containerID == ev.containerID {
			rep.containerID = ""
		}
		return false
	case networkRemoved:
		l.networkRemoved(ev)
		// A replica whose start waited for the removal starts now.
		return true
	case verdict:
		rep := l.replicas[ev.replicaID]
		if rep == nil || rep.containerID != ev.containerID || rep.busy {
			return false // from a prober whose container is gone
		}
		if rep.state == state.ReplicaFailed || rep.state == state.ReplicaStopped {
			return false
		}
		l.log.Info("replica health", "replica", ev.replicaID, "state", ev.state, "message", ev.message)
		l.setState(ev.replicaID, rep, ev.state, ev.message)
		return false
	}
	return false
}

// networkRemoved records how a network's removal ended.
func (l *reconcileLoop) networkRemoved(ev networkRemoved) {
	delete(l.netRemoving, ev.name)
	delete(l.netRetryAt, ev.name)
	legacy := ev.service == ""
	switch {
	case ev.err == nil && legacy:
		l.legacyGone = true
		l.log.Debug("the shared network of older versions is gone", "network", ev.name)
		return
	case ev.err == nil:
		l.log.Info("removed the network of a service that has no container here any more", "network", ev.name, "service", ev.service)
		return
	case errors.Is(ev.err, ErrNotManaged) && legacy:
		// Not ours to remove (someone else's network of that name).
		l.legacyGone = true
		l.log.Debug("leaving a network deployctl did not make as the shared one", "network", ev.name, "error", ev.err)
		return
	case errors.Is(ev.err, ErrNetworkInUse):
		l.log.Debug("network still in use; leaving it for now", "network", ev.name, "error", ev.err, "retry_in", networkRetry)
	case errors.Is(ev.err, ErrNotManaged):
		l.log.Warn("not removing a network deployctl did not make for this host", "network", ev.name, "error", ev.err)
	default:
		l.engineError("cannot remove network "+ev.name, ev.err)
	}
	l.netRetryAt[ev.name] = time.Now().Add(networkRetry)
}

// healthChanged wakes the exec prober of the replica that runs container
// id, which reads the engine's new verdict at once.
func (l *reconcileLoop) healthChanged(id string) {
	for _, rep := range l.replicas {
		if rep.containerID == id && rep.healthPoke != nil {
			select {
			case rep.healthPoke <- struct{}{}:
			default:
			}
			return
		}
	}
}

// handleExit remembers how a container process ended; the reconcile that
// follows at once decides what it means. A `docker rm -f` also kills the
// process first, so an exit alone does not say the replica failed.
func (l *reconcileLoop) handleExit(exit ContainerExit) {
	l.exits[exit.ContainerID] = exit
}

// beginProbing starts the prober of a running replica, or declares it
// healthy at once when the spec has no check.
func (l *reconcileLoop) beginProbing(ctx context.Context, id string, rep *replica, startedAt time.Time) {
	check := rep.assignment.Revision.Spec.Healthcheck
	if check.Kind() == "none" {
		l.setState(id, rep, state.ReplicaHealthy, "")
		return
	}
	rep.cancelProbing()
	// The prober lives until its replica's container changes or Run ends.
	proberCtx, cancel := context.WithCancel(ctx)
	rep.stopProbing = cancel
	target := ProbeTarget{ContainerID: rep.containerID, IP: rep.ip}
	containerID := rep.containerID
	var poke chan struct{}
	if check.Kind() == "exec" && l.healthStream {
		poke = make(chan struct{}, 1)
	}
	rep.healthPoke = poke
	// Read here: the loop replaces rep.assignment while the prober runs.
	failed := l.cfg.Metrics.probeFailed(rep.assignment.Revision.Service, check.Kind())
	l.tasks.Add(1)
	go func() {
		defer l.tasks.Done()
		emit := func(st, message string) {
			select {
			case l.events <- verdict{replicaID: id, containerID: containerID, state: st, message: message}:
			case <-proberCtx.Done():
			}
		}
		if check.Kind() == "exec" {
			runExecProber(proberCtx, l.rt, check, target, startedAt, emit, failed, poke)
			return
		}
		runProber(proberCtx, l.rt, check, target, startedAt, emit, failed)
	}()
}

// setState queues a report when the replica's observed state or message
// changed; the container ID goes with it.
func (l *reconcileLoop) setState(id string, rep *replica, st, message string) {
	l.setStateContainer(id, rep, st, message, rep.containerID)
}

func (l *reconcileLoop) setStateContainer(id string, rep *replica, st, message, containerID string) {
	if rep.state == st && rep.message == message && rep.reportedContainer == containerID {
		return
	}
	rep.state, rep.message, rep.reportedContainer = st, message, containerID
	l.outbox.put(state.StatusReport{ReplicaID: id, State: st, ContainerID: containerID, Message: message})
}

// removeContainer stops and removes a container the replica no longer
// uses, once: repeated resyncs while it runs do not start it again.
func (l *reconcileLoop) removeContainer(ctx context.Context, replicaID, containerID, why string) {
	if l.removing[containerID] {
		return
	}
	l.removing[containerID] = true
	l.log.Info("removing container", "container", shortID(containerID), "replica", replicaID, "why", why)
	service := ""
	if rep := l.replicas[replicaID]; rep != nil {
		service = rep.assignment.Replica.Service
	}
	l.goTask(ctx, func() event {
		if service != "" {
			l.drainFirst(ctx, service, replicaID, 0)
		}
		err := l.rt.StopAndRemove(ctx, containerID, 0)
		return removeDone{replicaID: replicaID, containerID: containerID, err: err}
	})
}

// engineError logs an engine problem; an unreachable engine is logged as an
// error once per outage, with what to check.
func (l *reconcileLoop) engineError(what string, err error) {
	if errors.Is(err, context.Canceled) {
		return // the agent is stopping
	}
	if !errors.Is(err, ErrEngineUnavailable) {
		l.log.Error(what, "error", err)
		return
	}
	if !l.engineDown {
		l.engineDown = true
		l.log.Error(what+"; retrying at every resync", "error", err, "resync", l.cfg.ResyncInterval)
		return
	}
	l.log.Debug(what, "error", err)
}

func (l *reconcileLoop) stopAllProbers() {
	for _, rep := range l.replicas {
		rep.cancelProbing()
	}
}

func (r *replica) cancelProbing() {
	if r.stopProbing != nil {
		r.stopProbing()
		r.stopProbing = nil
	}
	r.healthPoke = nil
}

// parseEngineTime reads the engine's RFC 3339 timestamps; an unreadable one
// counts as now, which only delays when probe failures start to count.
func parseEngineTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() || t.Year() < 2000 {
		return time.Now()
	}
	return t
}
