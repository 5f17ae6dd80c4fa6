package controller

import (
	"cmp"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// isRunning reports whether a replica's container runs, by its last report.
func isRunning(st string) bool {
	return st == state.ReplicaHealthy || st == state.ReplicaUnhealthy || st == state.ReplicaStarting
}

// serviceStatus builds the status view of one service from one state
// version and its policy's connections rule (connectionJudgeOf).
func serviceStatus(t *state.Tables, judge connectionJudge, svc state.Service) wire.ServiceStatus {
	st := serviceSummary(t, judge, svc)
	for _, r := range t.ServiceReplicas(svc.Name) {
		st.Instances = append(st.Instances, wire.InstanceView{
			ID: r.ID, Slot: r.Slot, Revision: r.Revision, Current: r.Fingerprint == st.fingerprint, Host: r.Host, Desired: r.Desired,
			State: r.Status.State, ContainerID: r.Status.ContainerID, Message: r.Status.Message, HealthySince: r.Status.HealthySince,
		})
	}
	return st.ServiceStatus
}

// summary is a service's status and the fingerprint of its current
// revision.
type summary struct {
	wire.ServiceStatus
	fingerprint string
}

// serviceSummary is a service's status with the replica counts and no
// Instances (an empty list): what the service list answers. At 100
// services of 1,000 replicas the list with every instance was 15 MB of
// JSON per call (issue 12).
func serviceSummary(t *state.Tables, judge connectionJudge, svc state.Service) summary {
	rev, _ := t.Revision(svc.Name, svc.Current)
	st := wire.ServiceStatus{
		Service: svc.Name, Revision: rev.Number, Image: rev.Spec.Image, Digest: rev.Digest, Ref: rev.Ref,
		State: svc.State, RevisionState: rev.State, Cause: rev.Cause, LastGood: svc.LastGood,
		Rollout: svc.Rollout, Instances: []wire.InstanceView{}, Index: t.Index(),
		Ingress: slices.Clone(rev.Spec.Ingress),
		Address: svc.VIP, Expose: slices.Clone(rev.Spec.Expose),
		Connections: connectionStatuses(t, judge, svc.Name, rev.Spec.ConnectsTo),
	}
	if svc.Rollout != nil {
		st.Message = svc.Rollout.Message
	}
	st.IngressProblems = ingressProblems(t, rev.Spec.Ingress)
	if svc.State != state.ServiceRemoving {
		st.Replicas.Desired = rev.Spec.Replicas
	}
	t.EachServiceReplica(svc.Name, func(r *state.Replica) {
		if isRunning(r.Status.State) && r.Status.ContainerID != "" {
			st.Replicas.Running++
		}
		if r.Fingerprint == rev.Fingerprint && r.Desired == state.DesiredRunning && r.Status.State == state.ReplicaHealthy {
			st.Replicas.Healthy++
		}
	})
	return summary{ServiceStatus: st, fingerprint: rev.Fingerprint}
}

// ingressProblems lists the ready hosts whose proxy could not open one of
// entries' listen ports, sorted by host and port.
func ingressProblems(t *state.Tables, entries []specs.Ingress) []wire.HostProxyProblem {
	if len(entries) == 0 {
		return nil
	}
	var out []wire.HostProxyProblem
	for _, h := range t.Hosts() {
		if h.State != state.HostReady {
			continue
		}
		for _, p := range h.ProxyProblems {
			if p.Listen != 0 && slices.ContainsFunc(entries, func(in specs.Ingress) bool { return in.Listen == p.Listen }) {
				out = append(out, wire.HostProxyProblem{Host: h.ID, ProxyProblem: p})
			}
		}
	}
	slices.SortFunc(out, func(a, b wire.HostProxyProblem) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), cmp.Compare(a.Listen, b.Listen))
	})
	return out
}

func history(t *state.Tables, svc state.Service, withSpecs bool) []wire.HistoryEntry {
	out := []wire.HistoryEntry{}
	for _, r := range t.Revisions(svc.Name) {
		var spec *specs.Spec
		if withSpecs {
			spec = r.Spec.Clone()
		}
		out = append(out, wire.HistoryEntry{
			Spec:     spec,
			Revision: r.Number, Image: r.Spec.Image, Replicas: r.Spec.Replicas, Digest: r.Digest, Ref: r.Ref, State: r.State, Cause: r.Cause,
			RollbackOf: r.RollbackOf, RollbackTo: r.RollbackTo, SignedBy: r.SignedBy, ScanWarnings: r.ScanWarnings, PolicyWarnings: r.PolicyWarnings,
			Message: r.Message, Current: r.Number == svc.Current, CreatedAt: r.CreatedAt, FinishedAt: r.FinishedAt,
			Traffic: r.Traffic,
		})
	}
	return out
}
