package deployer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/docker/docker/api/types/container"
)

// DefaultAuditInterval is how often an agent audits its containers.
const DefaultAuditInterval = 15 * time.Second

// AuditSink takes an agent's audits; the controller's client is one. An
// agent whose controller is not one does not audit.
type AuditSink interface {
	Audit(ctx context.Context, a audit.HostAudit) error
}

// auditTarget is one running replica to audit, copied out of the loop.
type auditTarget struct {
	containerID string
	assignment  state.Assignment
}

// auditDue starts an audit of the running replicas when one is due and
// none is running. It runs on the loop goroutine; the audit itself runs as
// a task and touches no loop state.
func (l *reconcileLoop) auditDue(ctx context.Context, now time.Time) {
	sink, ok := l.cfg.Controller.(AuditSink)
	if !ok || l.auditing.Load() || now.Sub(l.lastAudit) < l.cfg.AuditInterval || !l.engine.Reported {
		return
	}
	var targets []auditTarget
	for _, rep := range l.replicas {
		if rep.containerID != "" && rep.assignment.Replica.Desired == state.DesiredRunning {
			targets = append(targets, auditTarget{containerID: rep.containerID, assignment: rep.assignment})
		}
	}
	l.lastAudit = now
	l.auditing.Store(true)
	engine := l.engine
	l.tasks.Add(1)
	go func() {
		defer l.tasks.Done()
		defer l.auditing.Store(false)
		report := l.audit(ctx, targets, engine)
		callCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		defer cancel()
		if err := sink.Audit(callCtx, report); err != nil && ctx.Err() == nil {
			l.log.Debug("cannot send the audit; the next one retries", "error", err)
		}
	}()
}

// audit inspects each target and holds it against CIS section 5 and
// against the run options its revision asks for (drift).
func (l *reconcileLoop) audit(ctx context.Context, targets []auditTarget, engine EngineInfo) audit.HostAudit {
	report := audit.HostAudit{Host: l.cfg.HostID, Benchmark: audit.Benchmark, Engine: engine, Containers: []audit.ContainerAudit{}}
	// The engine's networks, for what each container is attached to; nil
	// (no network drift this round) when they cannot be listed.
	var networks map[string]audit.Network
	if list, err := l.rt.Networks(ctx); err == nil {
		networks = make(map[string]audit.Network, len(list))
		for _, n := range list {
			networks[n.Name] = n
		}
	}
	for _, t := range targets {
		inspect, err := l.rt.Inspect(ctx, t.containerID)
		if err != nil {
			continue // gone since: the next resync deals with it
		}
		as := t.assignment
		c := audit.ContainerAudit{ContainerID: t.containerID, ReplicaID: as.Replica.ID, Service: as.Replica.Service,
			Revision: as.Replica.Revision, Results: audit.Checks(inspect, engine)}
		ids, idsErr := readProcessIDs(l.procRoot, inspect)
		c.Results = append(c.Results, audit.RunningUser(ids, idsErr))
		user, err := l.rt.ImageUser(ctx, as.Revision.Ref)
		accounts, aerr := l.rt.ImageAccounts(ctx, as.Revision.Ref, l.cfg.HostID)
		overrides, oerr := OverridesFor(as.Revision.Spec)
		if err == nil && aerr == nil && oerr == nil {
			netName := ServiceNetworkName(l.cfg.Network, as.Replica.Service)
			if want, wantHost, _, err := ContainerOptions(as, l.cfg.HostID, netName, user, WithEngine(engine), WithOverrides(overrides), WithImageAccounts(accounts)); err == nil {
				c.Drift = audit.DetectDrift(inspect, want, wantHost)
				if idsErr == nil {
					c.Drift = append(c.Drift, audit.UserDrift(want.User, ids)...)
				}
				if networks != nil {
					c.Drift = append(c.Drift, audit.NetworkDrift(inspect, as.Replica.Service, string(wantHost.NetworkMode), networks)...)
				}
			}
		}
		report.Containers = append(report.Containers, c)
	}
	return report
}

// readProcessIDs reads the ids of a container's main process from the
// host's /proc (procRoot): its status and, for userns-remap, its uid and
// gid maps. The agent runs on the host, so no exec into the container is
// needed, and what is read is what the kernel enforces.
func readProcessIDs(procRoot string, inspect container.InspectResponse) (audit.ProcessIDs, error) {
	if inspect.ContainerJSONBase == nil || inspect.State == nil || !inspect.State.Running || inspect.State.Pid <= 0 {
		return audit.ProcessIDs{}, errors.New("the container is not running")
	}
	dir := filepath.Join(procRoot, strconv.Itoa(inspect.State.Pid))
	var files [3][]byte
	for i, name := range []string{"status", "uid_map", "gid_map"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !(i > 0 && errors.Is(err, os.ErrNotExist)) {
			return audit.ProcessIDs{}, fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
		}
		files[i] = data
	}
	return audit.ParseProcessIDs(files[0], files[1], files[2])
}
