// Package state holds the records that the controller keeps in raft and the
// store the FSM applies commands to. Records are plain data: every time and ID
// in them was stamped by the leader before the command reached raft, so that
// applying the same log on any node gives the same state.
package state

import (
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/specs"
)

// Service states, as `deployctl status` shows them.
const (
	ServiceDeploying   = "deploying"    // a rollout to Current is in progress
	ServiceRunning     = "running"      // Current succeeded and is what runs
	ServiceRollingBack = "rolling_back" // a rollback rollout is in progress
	ServicePaused      = "paused"       // a rollout failed with failure_action: pause
	ServiceFailed      = "failed"       // a rollback failed, or a first release failed: a human decides
)

// Revision outcomes, as `deployctl history` shows them.
const (
	RevisionInProgress = "in_progress"
	RevisionSucceeded  = "succeeded"
	RevisionFailed     = "failed"
	RevisionRolledBack = "rolled_back"
	RevisionSuperseded = "superseded"
	RevisionPaused     = "paused"
)

// Rollout states.
const (
	RolloutInProgress = "in_progress"
	RolloutSucceeded  = "succeeded"
	RolloutFailed     = "failed"
	RolloutPaused     = "paused"
)

// Replica desired states.
const (
	DesiredRunning = "running"
	DesiredStopped = "stopped"
)

// Replica observed states, reported by the agent of the replica's host.
const (
	ReplicaPending   = "pending"   // assigned, the agent has not acted yet
	ReplicaStarting  = "starting"  // pulling, creating or started but not yet probed healthy
	ReplicaHealthy   = "healthy"   // passed a probe and has not failed `retries` since
	ReplicaUnhealthy = "unhealthy" // failed `retries` probes in a row after start_period: counts as failed
	ReplicaFailed    = "failed"    // could not pull, create or start, or the container exited
	ReplicaStopped   = "stopped"   // the container is gone after a stop the controller asked for
	ReplicaLost      = "lost"      // its host is down past the grace period; replaced elsewhere
)

// Revision is one immutable version of a service: its spec with the image
// pinned to a digest. Rollbacks are revisions too, copying an earlier one.
type Revision struct {
	Service string     `json:"service"`
	Number  int        `json:"revision"`
	Spec    specs.Spec `json:"spec"`
	// Digest is the manifest digest the tag resolved to at apply time.
	Digest string `json:"digest"`
	// Ref is what hosts pull and run: repository@digest, never a tag.
	Ref string `json:"ref"`
	// Fingerprint is a hash of everything that shapes a container (Ref and the
	// spec minus the image text and update settings). Two revisions with the
	// same fingerprint run identical containers, so a rollback adopts the
	// replicas that still run the old one instead of replacing them.
	Fingerprint string `json:"fingerprint"`
	Cause       string `json:"cause"`
	// SignedBy names the trust key that verified the image's signature, and
	// SignatureFormat its layout; empty when the policy requires none.
	SignedBy        string `json:"signed_by,omitempty"`
	SignatureFormat string `json:"signature_format,omitempty"`
	// ScanWarnings are the scan gate's findings in warn mode.
	ScanWarnings []string `json:"scan_warnings,omitempty"`
	// PolicyWarnings are the weakened hardening defaults the policy warns
	// about (policy.Warnings), one sentence each.
	PolicyWarnings []string `json:"policy_warnings,omitempty"`
	// Secrets pins the version of every secret the spec names, as Digest
	// pins the image (issue 13; part of Fingerprint). A rollback copies
	// them with the spec.
	Secrets []SecretPin `json:"secrets,omitempty"`
	// RollbackOf and RollbackTo are set on rollback revisions only.
	RollbackOf int       `json:"rollback_of,omitempty"`
	RollbackTo int       `json:"rollback_to,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
	State      string    `json:"state"`
	Message    string    `json:"message,omitempty"`
	// Traffic is how the revision did during its rollout: what the
	// proxies sent to its replicas and, beside it, to the service's other
	// replicas (issue 15). Written by rollout steps (RolloutStepCmd.Traffic)
	// while the rollout runs and when it ends; nil when no figures came.
	Traffic *RevisionTraffic `json:"traffic,omitempty"`
}

// RevisionTraffic is what the proxies sent during a revision's rollout,
// as the leader summed it in memory since its rollout began (or since the
// leader took over: figures do not survive an election).
type RevisionTraffic struct {
	// New is the revision's own replicas: those its rollout started.
	New traffic.Summary `json:"new"`
	// Old is the service's other replicas meanwhile (nil: none served),
	// for comparison.
	Old       *traffic.Summary `json:"old,omitempty"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// IsRollback reports whether this revision restores an earlier one.
func (r *Revision) IsRollback() bool { return r.RollbackTo != 0 }

// Rollout is the progress of replacing the running replicas with those of one
// revision. It lives in raft so that a new leader continues it exactly.
type Rollout struct {
	Revision int `json:"revision"`
	// From is the last good revision when the rollout began (0 for a first
	// release): where an automatic rollback goes.
	From           int       `json:"from"`
	StartedAt      time.Time `json:"started_at"`
	LastProgressAt time.Time `json:"last_progress_at"`
	// BatchDoneAt is when the last batch finished; the next waits update.delay.
	BatchDoneAt time.Time `json:"batch_done_at,omitempty"`
	State       string    `json:"state"`
	// Failures counts new replicas of this rollout that failed.
	Failures int    `json:"failures"`
	Message  string `json:"message,omitempty"`
	// InPlace lists the slots this rollout replaces stop-first although
	// update.order is start-first: no host had room for a replacement
	// beside the old replica, and none would come (see controller/rollout).
	InPlace []InPlaceSlot `json:"in_place,omitempty"`
	// Canary is the canary of this rollout (update.canary), from the
	// start of its batch on; nil before, and for rollouts without one.
	Canary *CanaryState `json:"canary,omitempty"`
}

// CanaryState is a rollout's canary: its batch gets update.canary.weight
// of the service's requests until it ends. Its duration counts from the
// moment every replica of the batch is healthy, which the replica records
// tell, so only the decisions a human or time made are kept here.
type CanaryState struct {
	// Slots are the canary's batch: the rollout's first batch.
	Slots     []int     `json:"slots,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Promoted: `deployctl promote` asked to end the canary now.
	Promoted bool `json:"promoted,omitempty"`
	// EndedAt is when the canary ended (its duration passed with enough
	// evidence, or it was promoted); zero while it runs.
	EndedAt time.Time `json:"ended_at,omitzero"`
	// Ended says why, e.g. "promoted" or "30s passed; 212 requests, 0.5 %
	// errors, p99 120ms".
	Ended string `json:"ended,omitempty"`
}

// Running reports whether the canary still holds the rollout.
func (c *CanaryState) Running() bool { return c != nil && c.EndedAt.IsZero() }

// InPlaceSlot is one slot of a start-first rollout replaced stop-first on
// the host its old replica held, and why.
type InPlaceSlot struct {
	Slot int    `json:"slot"`
	Host string `json:"host"`
	// Cause names the room the old replica held, e.g. "max_per_host 1" or
	// "host port 0.0.0.0:80/tcp".
	Cause string `json:"cause"`
}

// Service is the head record of a service.
type Service struct {
	Name string `json:"service"`
	// Current is the revision the service converges to now.
	Current int `json:"current"`
	// LastGood is the latest revision that succeeded, 0 if none.
	LastGood int      `json:"last_good"`
	State    string   `json:"state"`
	Rollout  *Rollout `json:"rollout,omitempty"`
	// NextRevision is the number the next revision gets; numbers are never reused.
	NextRevision int `json:"next_revision"`
	// VIP is the service's address in ServiceAddressRange, assigned by the
	// FSM (see addresses.go); "" until service addresses are on.
	VIP         string `json:"vip,omitempty"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Replica is one container's slot assignment on one host.
type Replica struct {
	ID          string        `json:"id"`
	Service     string        `json:"service"`
	Slot        int           `json:"slot"`
	Revision    int           `json:"revision"`
	Fingerprint string        `json:"fingerprint"`
	Host        string        `json:"host"`
	Desired     string        `json:"desired"`
	CreatedAt   time.Time     `json:"created_at"`
	Status      ReplicaStatus `json:"status"`
	ModifyIndex uint64        `json:"modify_index"`
}

// ReplicaStatus is what the host agent last reported. Times are stamped by
// the leader when the report is committed, not by the agent's clock.
type ReplicaStatus struct {
	State        string    `json:"state"`
	ContainerID  string    `json:"container_id,omitempty"`
	Message      string    `json:"message,omitempty"`
	HealthySince time.Time `json:"healthy_since,omitempty"`
	UpdatedAt    time.Time `json:"updated_at,omitempty"`
	// Since is when State last changed (the leader's time of the report
	// that changed it); zero in records written before it was kept.
	Since time.Time `json:"since,omitzero"`
	// LastError is the message of the last failed or unhealthy report
	// (an exit code, a probe's answer), kept when the replica is stopped.
	LastError string `json:"last_error,omitempty"`
}

// EngineFeatures is what a host's Docker Engine enforces, as its agent
// read it from the engine's security options.
type EngineFeatures struct {
	Userns   bool `json:"userns"`
	AppArmor bool `json:"apparmor"`
	SELinux  bool `json:"selinux"`
	Seccomp  bool `json:"seccomp"`
	Rootless bool `json:"rootless"`
	// Version is the engine's release, as `docker info` says it ("" from
	// agents before it was reported).
	Version string `json:"version,omitempty"`
}

// Host is a machine with an agent and a Docker Engine.
type Host struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
	// Engine is nil until the agent has read its engine.
	Engine   *EngineFeatures `json:"engine,omitempty"`
	State    string          `json:"state"` // "ready" or "down"
	JoinedAt time.Time       `json:"joined_at"`
	// SeenAt is the leader's time of the last heartbeat that reached raft.
	SeenAt time.Time `json:"seen_at"`
	// DownSince is when the leader marked the host down (zero while ready).
	DownSince time.Time `json:"down_since,omitzero"`
	// ProxyAddr is where the host's ingress proxy listens for traffic
	// other hosts' proxies send it, as its agent last reported ("" when
	// it runs none).
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// ProxyProblems are the proxy's listeners that would not open, as its
	// agent last reported them (none when all are open).
	ProxyProblems []ProxyProblem `json:"proxy_problems,omitempty"`
	// Availability is what the operator said of the host (`deployctl host
	// drain|activate`, SetHostAvailabilityCmd): "" or HostActive takes
	// replicas, HostDrain takes none and its replicas move off. Written
	// only by a command behind the FSM version gate (version 4).
	Availability string `json:"availability,omitempty"`
	// AvailabilitySince is when Availability last changed.
	AvailabilitySince time.Time `json:"availability_since,omitzero"`
	// ForgetWhenDown: the server of this host left the cluster; the
	// leader removes the host (RemoveHostCmd) once it is down and holds
	// no replica.
	ForgetWhenDown bool   `json:"forget_when_down,omitempty"`
	ModifyIndex    uint64 `json:"modify_index"`
}

// Draining reports whether the operator drained the host.
func (h Host) Draining() bool { return h.Availability == HostDrain }

// ProxyProblem is a listener a host's proxy could not open: an ingress
// port (Listen) or the hop listener (Listen 0), the address it tried and
// the error (e.g. another process holds the port). The proxy keeps trying;
// the problem goes with the next report after it opens.
type ProxyProblem struct {
	Listen int    `json:"listen,omitempty"`
	Addr   string `json:"addr"`
	Error  string `json:"error"`
}

// Host states.
const (
	HostReady = "ready"
	HostDown  = "down"
)

// Host availabilities (Host.Availability).
const (
	HostActive = "active"
	HostDrain  = "drain"
)

// Assignment is one replica a host agent must run (or stop), with the
// revision that says how. Agents receive these; they never see tags.
type Assignment struct {
	Replica  Replica  `json:"replica"`
	Revision Revision `json:"revision"`
}

// AssignmentSet is a host's whole assignment list at a raft index. An agent
// long-polls for a set with Index greater than the one it holds.
type AssignmentSet struct {
	Host        string       `json:"host"`
	Index       uint64       `json:"index"`
	Assignments []Assignment `json:"assignments"`
}

// StatusReport is what an agent observed of one replica. Agents send only
// changes (and a full set after a restart), batched per host.
type StatusReport struct {
	ReplicaID   string `json:"replica_id"`
	State       string `json:"state"`
	ContainerID string `json:"container_id,omitempty"`
	Message     string `json:"message,omitempty"`
}

// HostReport is one batch from an agent: its identity (a heartbeat) and the
// replica changes since its last report.
type HostReport struct {
	Host string `json:"host"`
	// AssignmentIndex is the Index of the assignment set the agent acts
	// on. Any server answers assignments (issue 12), and a follower may
	// apply an entry before the leader's state machine does: the leader
	// judges the report once its state holds that index, so that a report
	// of a replica it has not applied yet is not dropped as foreign. 0 from
	// agents before it: judged at once.
	AssignmentIndex uint64            `json:"assignment_index,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Engine          *EngineFeatures   `json:"engine,omitempty"`
	Reports         []StatusReport    `json:"reports,omitempty"`
	// ProxyAddr is the host's advertised proxy address; every report
	// carries it ("" when the host runs no proxy) and the host record
	// mirrors it.
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// ProxyProblems are the proxy's listeners that would not open now;
	// every report carries the whole list.
	ProxyProblems []ProxyProblem `json:"proxy_problems,omitempty"`
}

// ServerInfo is one raft server's addresses, so that any server can forward
// a request to the leader's API and the CLI can be told where it is.
type ServerInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// Version is the FSM version the server runs (raftstore.FSMVersion):
	// the leader writes a command type only when every server knows it.
	// 0 is a server that registered before versions were recorded: 1.
	Version int `json:"version,omitempty"`
	// SecretsKeyID is the id of the server's key-encryption key (never
	// the key); "" when it reported none.
	SecretsKeyID string `json:"secrets_key_id,omitempty"`
	// Sealed: the server runs with --autolock and has not been given the
	// key yet (it serves no secret). Shown by cluster status only.
	Sealed      bool   `json:"sealed,omitempty"`
	ModifyIndex uint64 `json:"modify_index"`
}

// PolicyRecord is the cluster policy as the controller stored it: opaque
// JSON here (the policy package owns its shape), with its version.
type PolicyRecord struct {
	Version   int       `json:"version"`
	JSON      []byte    `json:"json"`
	UpdatedAt time.Time `json:"updated_at"`
}
