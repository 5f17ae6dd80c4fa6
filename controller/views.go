package controller

import (
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// ReplicaCounts summarises a service's replicas.
type ReplicaCounts struct {
	// Desired is the current revision's replica count.
	Desired int `json:"desired"`
	// Running counts containers that run (any revision), as agents report.
	Running int `json:"running"`
	// Healthy counts replicas of the current revision that pass their probe.
	Healthy int `json:"healthy"`
}

// InstanceView is one replica as the API shows it.
type InstanceView struct {
	ID           string    `json:"id"`
	Slot         int       `json:"slot"`
	Revision     int       `json:"revision"`
	Current      bool      `json:"current"` // runs what the current revision asks for
	Host         string    `json:"host"`
	Desired      string    `json:"desired"`
	State        string    `json:"state"`
	ContainerID  string    `json:"container_id,omitempty"`
	Message      string    `json:"message,omitempty"`
	HealthySince time.Time `json:"healthy_since,omitzero"`
}

// ServiceStatus is `deployctl status SVC -o json`.
type ServiceStatus struct {
	Service       string         `json:"service"`
	Revision      int            `json:"revision"`
	Image         string         `json:"image"`
	Digest        string         `json:"digest"`
	Ref           string         `json:"ref"`
	State         string         `json:"state"`
	RevisionState string         `json:"revision_state"`
	Cause         string         `json:"cause"`
	LastGood      int            `json:"last_good"`
	Message       string         `json:"message,omitempty"`
	Replicas      ReplicaCounts  `json:"replicas"`
	Rollout       *state.Rollout `json:"rollout,omitempty"`
	Instances     []InstanceView `json:"instances"`
	// Index is the state index this answer reflects; pass it back as
	// ?index= to wait for the next change.
	Index uint64 `json:"index"`
}

// HistoryEntry is one revision in `deployctl history SVC -o json`.
type HistoryEntry struct {
	Revision   int    `json:"revision"`
	Image      string `json:"image"`
	Digest     string `json:"digest"`
	Ref        string `json:"ref"`
	State      string `json:"state"`
	Cause      string `json:"cause"`
	RollbackOf int    `json:"rollback_of,omitempty"`
	RollbackTo int    `json:"rollback_to,omitempty"`
	SignedBy   string `json:"signed_by,omitempty"`
	// ScanWarnings are the scan gate's findings when it only warns.
	ScanWarnings []string  `json:"scan_warnings,omitempty"`
	Message      string    `json:"message,omitempty"`
	Current      bool      `json:"current"`
	CreatedAt    time.Time `json:"created_at"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`

	// PolicyWarnings are the weakened hardening defaults the policy warns
	// about.
	PolicyWarnings []string `json:"policy_warnings,omitempty"`
}

// isRunning reports whether a replica's container runs, by its last report.
func isRunning(st string) bool {
	return st == state.ReplicaHealthy || st == state.ReplicaUnhealthy || st == state.ReplicaStarting
}

// serviceStatus builds the status view of one service from one state version.
func serviceStatus(t *state.Tables, svc state.Service) ServiceStatus {
	rev, _ := t.Revision(svc.Name, svc.Current)
	st := ServiceStatus{
		Service: svc.Name, Revision: rev.Number, Image: rev.Spec.Image, Digest: rev.Digest, Ref: rev.Ref,
		State: svc.State, RevisionState: rev.State, Cause: rev.Cause, LastGood: svc.LastGood,
		Rollout: svc.Rollout, Instances: []InstanceView{}, Index: t.Index(),
	}
	if svc.Rollout != nil {
		st.Message = svc.Rollout.Message
	}
	if svc.State != state.ServiceRemoving {
		st.Replicas.Desired = rev.Spec.Replicas
	}
	for _, r := range t.ServiceReplicas(svc.Name) {
		current := r.Fingerprint == rev.Fingerprint
		if isRunning(r.Status.State) && r.Status.ContainerID != "" {
			st.Replicas.Running++
		}
		if current && r.Desired == state.DesiredRunning && r.Status.State == state.ReplicaHealthy {
			st.Replicas.Healthy++
		}
		st.Instances = append(st.Instances, InstanceView{
			ID: r.ID, Slot: r.Slot, Revision: r.Revision, Current: current, Host: r.Host, Desired: r.Desired,
			State: r.Status.State, ContainerID: r.Status.ContainerID, Message: r.Status.Message, HealthySince: r.Status.HealthySince,
		})
	}
	return st
}

func history(t *state.Tables, svc state.Service) []HistoryEntry {
	out := []HistoryEntry{}
	for _, r := range t.Revisions(svc.Name) {
		out = append(out, HistoryEntry{
			Revision: r.Number, Image: r.Spec.Image, Digest: r.Digest, Ref: r.Ref, State: r.State, Cause: r.Cause,
			RollbackOf: r.RollbackOf, RollbackTo: r.RollbackTo, SignedBy: r.SignedBy, ScanWarnings: r.ScanWarnings, PolicyWarnings: r.PolicyWarnings,
			Message: r.Message, Current: r.Number == svc.Current, CreatedAt: r.CreatedAt, FinishedAt: r.FinishedAt,
		})
	}
	return out
}
