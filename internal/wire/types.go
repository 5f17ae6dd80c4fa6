package wire

import (
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// The request and response bodies of the /v1/ API, shared by the server
// (package controller) and the Client.

// PeerInfo is what a server says of itself to servers forming a cluster.
type PeerInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// HadState: the server held raft state when it started, so it belongs
	// to a cluster already and no one may bootstrap a new one with it.
	HadState bool   `json:"had_state"`
	Leader   string `json:"leader"`
}

// JoinRequest asks the cluster to take a server as a voter.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// Version is the FSM version the server runs (raftstore.FSMVersion),
	// for the leader's version gate; 0 from servers that predate it.
	Version int `json:"version,omitempty"`
	// SecretsKeyID is the id of the server's key-encryption key
	// (secretbox.Key.ID, not the key): secrets are created only while
	// every server reports the same one.
	SecretsKeyID string `json:"secrets_key_id,omitempty"`
	// Sealed: the server runs with --autolock and holds no key yet.
	Sealed bool `json:"sealed,omitempty"`
	// Unlocking: SecretsKeyID is a key just given to the server by
	// `cluster unlock` before any secret exists; the leader refuses it
	// (wrong_key) when the other servers hold another, judging on its
	// own up-to-date state rather than the server's.
	Unlocking bool `json:"unlocking,omitempty"`
}

// RemoveRequest asks the cluster to drop a server.
type RemoveRequest struct {
	ID string `json:"id"`
}

// OutdatedService is a service whose tag now resolves to another digest.
type OutdatedService struct {
	Service  string `json:"service"`
	Revision int    `json:"revision"`
	Image    string `json:"image"`
	Pinned   string `json:"pinned"`
	Latest   string `json:"latest"`
	// Secrets are the secrets with a newer version than the one pinned
	// (entries without version:, which follow the latest).
	Secrets []OutdatedSecret `json:"secrets,omitempty"`
}

// OutdatedReport is `deployctl outdated -o json`.
type OutdatedReport struct {
	Services []OutdatedService `json:"services"`
	Problems []string          `json:"problems,omitempty"`
}

// NodeInfo is one raft server in `cluster status`.
type NodeInfo struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	APIAddr string `json:"api_addr,omitempty"`
	Role    string `json:"role"` // leader, follower
	Voter   bool   `json:"voter"`
	Healthy bool   `json:"healthy"`
	// Identity is the certificate role a member holds: always server/ID,
	// because raft accepts only server certificates (pki.PeerConfig) and
	// join only the server certificate named like the joining node.
	Identity string `json:"identity"`
	// Secrets is what the server said of its key-encryption key when it
	// last registered: "sealed" (--autolock, not unlocked), "key ID", or
	// "key ID, but the cluster's is ID2: ..." when it cannot open the
	// cluster's secrets.
	Secrets string `json:"secrets,omitempty"`
}

// HostInfo is one host in `cluster status`.
type HostInfo struct {
	ID       string            `json:"id"`
	Labels   map[string]string `json:"labels,omitempty"`
	State    string            `json:"state"`
	Replicas int               `json:"replicas"`
	SeenAt   time.Time         `json:"seen_at"`
	// Engine is what the host's Docker Engine enforces (userns-remap,
	// AppArmor...), as its agent reported it.
	Engine *state.EngineFeatures `json:"engine,omitempty"`
	// Identity is the certificate the host's agent last reported with to
	// this leader ("agent/h1", "server/n1"; "dev (no TLS)" under --dev;
	// empty until its first report since this leader was elected).
	Identity string `json:"identity,omitempty"`
	// ProxyAddr is the host's advertised ingress proxy address, as its
	// agent last reported it ("" when it runs none).
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// ProxyProblems are the proxy's listeners that would not open.
	ProxyProblems []state.ProxyProblem `json:"proxy_problems,omitempty"`
	// Availability is active or drain (`deployctl host drain`).
	Availability string `json:"availability,omitempty"`
}

// HostView is one host as `deployctl host ls` shows it, and the answer of
// `host drain` and `host activate` (issue 17).
type HostView struct {
	ID string `json:"id"`
	// State is ready or down (the agent's heartbeat); Availability is
	// active or drain (the operator's word), since AvailabilitySince.
	State             string            `json:"state"`
	Availability      string            `json:"availability"`
	AvailabilitySince time.Time         `json:"availability_since,omitzero"`
	Labels            map[string]string `json:"labels,omitempty"`
	SeenAt            time.Time         `json:"seen_at"`
	DownSince         time.Time         `json:"down_since,omitzero"`
	// Replicas counts the replicas desired running on the host.
	Replicas int `json:"replicas"`
	// Waiting says, per service, why replicas are still on a draining
	// host: moving, waiting for a rollout to end, or unable to move (no
	// other host can take them; the reason says what would help).
	Waiting []string `json:"waiting,omitempty"`
	// Left: the host's server left the cluster; the host is forgotten once
	// it is down and holds no replica.
	Left bool `json:"left,omitempty"`
}

// ClusterStatus is `deployctl cluster status -o json`.
type ClusterStatus struct {
	NodeID string     `json:"node_id"`
	Leader string     `json:"leader"`
	Nodes  []NodeInfo `json:"nodes"`
	Hosts  []HostInfo `json:"hosts"`
	Index  uint64     `json:"index"`
}

// ApplyBody is the JSON form of POST /v1/services: the spec's YAML with
// what the CLI read from files it names (a seccomp profile) and a scan
// report. A plain YAML body is the spec alone.
type ApplyBody struct {
	SpecYAML       string `json:"spec_yaml"`
	SeccompProfile []byte `json:"seccomp_profile,omitempty"`
	ScanReport     []byte `json:"scan_report,omitempty"`
	// Force (`apply --force`) stores a new revision even when the spec is
	// the current one's, to retry a failed or paused revision as it is.
	Force bool `json:"force,omitempty"`
	// IfRevision stores the revision only while the service's current
	// revision is this one (0: the service must not exist yet); else 409
	// revision_conflict and nothing is stored. Ignored by a diff.
	IfRevision *int `json:"if_revision,omitempty"`
}

// DiffOutcome is the answer to POST /v1/services/diff: what an apply of
// the spec would change against the service's current revision, without
// storing anything.
type DiffOutcome struct {
	Service string `json:"service"`
	// Exists: the service has a current revision (Revision); otherwise
	// the apply would create it.
	Exists   bool `json:"exists"`
	Revision int  `json:"revision,omitempty"`
	// Unchanged: the apply would store no revision.
	Unchanged bool `json:"unchanged"`
	// Changes are the spec's fields that differ, one per leaf field.
	Changes []FieldChange `json:"changes,omitempty"`
	// Image is the spec's image; PinnedDigest the current revision's
	// digest, ResolvedDigest what the image resolves to now.
	Image          string `json:"image"`
	PinnedDigest   string `json:"pinned_digest,omitempty"`
	ResolvedDigest string `json:"resolved_digest"`
	// Restart: the new revision's containers differ (its fingerprint), so
	// Restarts running replicas are replaced; Starts and Stops are the
	// replicas the count adds or removes.
	Restart  bool `json:"restart"`
	Restarts int  `json:"restarts"`
	Starts   int  `json:"starts"`
	Stops    int  `json:"stops"`
	// Warnings are those the apply would answer with.
	Warnings []string `json:"warnings,omitempty"`
}

// FieldChange is one field of a spec that an apply changes. Old or New is
// empty when the field is absent on that side; values are shown as in JSON
// (strings quoted), durations as "10s".
type FieldChange struct {
	Field string `json:"field"`
	Old   string `json:"old,omitempty"`
	New   string `json:"new,omitempty"`
	// Restarts: the field shapes the containers (part of the
	// fingerprint); the others change how a rollout runs or how traffic
	// reaches the replicas.
	Restarts bool `json:"restarts"`
}

// RollbackBody is the body of POST /v1/services/{name}/rollback.
type RollbackBody struct {
	To int `json:"to,omitempty"`
}

// ScaleBody is the body of POST /v1/services/{name}/scale. Replicas is
// required: a pointer, so that a body without it is refused rather than
// read as "scale to 0", which would stop every replica.
type ScaleBody struct {
	Replicas *int `json:"replicas"`
}

// ApplyOutcome is the answer to an apply.
type ApplyOutcome struct {
	Service   string `json:"service"`
	Revision  int    `json:"revision"`
	Digest    string `json:"digest"`
	Ref       string `json:"ref"`
	Unchanged bool   `json:"unchanged"`
	// Warnings are what the policy and the scan gate warn about: the
	// revision is stored (or unchanged) all the same.
	Warnings []string `json:"warnings,omitempty"`
}

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
	// Ingress is the current revision's ingress entries.
	Ingress []specs.Ingress `json:"ingress,omitempty"`
	// IngressProblems are the ready hosts whose proxy could not open one
	// of those entries' listen ports (another process holds it): requests
	// to that port on that host reach nothing.
	IngressProblems []HostProxyProblem `json:"ingress_problems,omitempty"`
	// Address is the service's address (its VIP in 198.18.0.0/15), which
	// the services connecting to it reach it at; "" until service
	// addresses are on (every server runs FSM version 2).
	Address string `json:"address,omitempty"`
	// Expose is the current revision's exposed ports.
	Expose []specs.Expose `json:"expose,omitempty"`
	// Connections are the current revision's declared connections
	// (connects_to), each with whether it resolves now.
	Connections []ConnectionStatus `json:"connections,omitempty"`
	// Traffic is how the current revision does on traffic (issue 15):
	// live while its rollout runs, as stored with it afterwards.
	Traffic *TrafficStatus `json:"traffic,omitempty"`
	// Index is the state index this answer reflects; pass it back as
	// ?index= to wait for the next change.
	Index uint64 `json:"index"`
}

// ConnectionStatus is one declared connection (connects_to) of a service
// and whether it resolves now: the target exists (and is not being
// removed), exposes the port (for a bare name: some port), the policy's
// connections rule allows it, and the target has an address.
type ConnectionStatus struct {
	Service string `json:"service"`
	// Port is the declared port; 0 means every port Service exposes.
	Port     int  `json:"port,omitempty"`
	Resolved bool `json:"resolved"`
	// Reason says why it does not resolve (no such service, port not
	// exposed, denied by policy, no address yet) and what would fix it.
	Reason string `json:"reason,omitempty"`
	// Address is the target's address and Ports the target ports the
	// connection reaches, with their protocols (resolved only).
	Address string         `json:"address,omitempty"`
	Ports   []specs.Expose `json:"ports,omitempty"`
}

// TrafficStatus is what the proxies sent during a revision's rollout:
// to its own replicas (New) and to the service's others (Old), as the
// leader sums them in memory (Live, counting since Since: an election
// starts the count again) or, once the rollout ended, as stored with the
// revision.
type TrafficStatus struct {
	Revision int              `json:"revision"`
	New      traffic.Summary  `json:"new"`
	Old      *traffic.Summary `json:"old,omitempty"`
	Live     bool             `json:"live,omitempty"`
	Since    time.Time        `json:"since,omitzero"`
	// RollbackOn are the thresholds the revision is judged by (nil: not
	// judged, e.g. a rollback).
	RollbackOn *specs.RollbackOn `json:"rollback_on,omitempty"`
	// Waiting says what a judged rollout still lacks, e.g. "waiting for
	// traffic: 12 of 50 requests".
	Waiting string `json:"waiting,omitempty"`
}

// HistoryEntry is one revision in `deployctl history SVC -o json`.
type HistoryEntry struct {
	Revision int    `json:"revision"`
	Image    string `json:"image"`
	// Replicas is the revision's replica count: what a scale changed.
	Replicas   int    `json:"replicas"`
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
	// Traffic is how the revision did during its rollout (requests,
	// errors, p50/p99 of its replicas and of the others), as stored.
	Traffic *state.RevisionTraffic `json:"traffic,omitempty"`
	// Spec is the revision's whole spec, only when asked for
	// (GET .../history?spec=1): the dashboard's diff of two revisions.
	Spec *specs.Spec `json:"spec,omitempty"`
}

// HostAuditRecord is a host's latest audit, as the leader received it.
type HostAuditRecord struct {
	audit.HostAudit
	ReceivedAt time.Time `json:"received_at"`
}

// AuditReport is `deployctl audit -o json`.
type AuditReport struct {
	Benchmark string            `json:"benchmark"`
	Hosts     []HostAuditRecord `json:"hosts"`
	Warnings  int               `json:"warnings"`
	// Specs are findings about services' current specs (issue 13: env
	// names that look like secrets); each counts as a warning.
	Specs []SpecFinding `json:"specs,omitempty"`
}

// HostProxyProblem is a listener a host's proxy could not open.
type HostProxyProblem struct {
	Host string `json:"host"`
	state.ProxyProblem
}

// IngressRoute is one ingress entry of a service's current revision.
type IngressRoute struct {
	Service  string `json:"service"`
	Listen   int    `json:"listen"`
	Protocol string `json:"protocol"` // "http" or "tcp"
	Host     string `json:"host,omitempty"`
	Path     string `json:"path,omitempty"`
	Port     int    `json:"port"` // container port
	// TLS: the proxies terminate TLS on the listen port with this
	// certificate and key (values fetched apart, never in this table).
	TLS IngressTLSRef `json:"tls,omitzero"`
}

// IngressBackend is one replica that may receive traffic: desired running,
// reported healthy, on a ready host, of a service with ingress entries or
// exposed ports.
type IngressBackend struct {
	Service   string `json:"service"`
	Replica   string `json:"replica"`
	Host      string `json:"host"`
	ProxyAddr string `json:"proxy_addr,omitempty"` // the host's advertised proxy address
	// Ports are the container ports of its revision's ingress entries and
	// exposed ports, sorted, each once.
	Ports []int `json:"ports"`
	// Canary marks a replica of a canary's first batch (update.canary):
	// while its service is listed in IngressTable.Canaries, proxies send
	// the canary's weight of the service's requests to these replicas and
	// the rest to the others.
	Canary bool `json:"canary,omitempty"`
}

// CanarySplit is a service under a canary: every proxy sends Weight
// (0 < Weight < 1) of the service's requests and connections to its
// healthy Canary backends and the rest to its other healthy backends.
// With no healthy backend on one side, the other side takes everything.
type CanarySplit struct {
	Service string  `json:"service"`
	Weight  float64 `json:"weight"`
}

// TrafficReport is what one host's proxy sent to each replica since its
// previous report (deltas, by replica ID; a replica with nothing is not
// listed). POST /v1/agent/traffic, about once a second while there is
// traffic; the leader sums the figures per revision in memory.
type TrafficReport struct {
	Host     string                     `json:"host"`
	Replicas map[string]traffic.Figures `json:"replicas"`
}

// ServiceAddress is a service's address (VIP), the one its callers reach
// it at.
type ServiceAddress struct {
	Service string `json:"service"`
	VIP     string `json:"vip"`
}

// ServiceConnection is one resolved path between services: From's
// replicas may reach To's Port at VIP:Port, through their host's proxy,
// which balances over To's healthy backends (Backends) by Protocol.
// A connection to a bare name is one ServiceConnection per port To's
// current revision exposes. Connections that do not resolve (no such
// service, port not exposed, denied by policy, no address yet) are not
// listed: the caller's DNS does not know the name, and nothing listens.
type ServiceConnection struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"` // "http" (per request) or "tcp" (per connection): To's expose entry
	VIP      string `json:"vip"`      // To's address
}

// IngressTable is the cluster's traffic view at Index.
// GET /v1/agent/ingress?index=N&wait=D answers it once Index > N (or when
// the wait ends). Index is the raft index of the state version in which
// the content last changed: writes that change no route, backend, address
// or connection (heartbeats, reports of replicas that stay unhealthy)
// leave it alone.
type IngressTable struct {
	Index    uint64           `json:"index"`
	Routes   []IngressRoute   `json:"routes"`
	Backends []IngressBackend `json:"backends"`
	// Services are the addresses of every service that has one, by name.
	Services []ServiceAddress `json:"services"`
	// Connections are every service's resolved connections, sorted by
	// From, To and Port.
	Connections []ServiceConnection `json:"connections"`
	// Canaries are the services whose requests are split by weight now,
	// sorted by service.
	Canaries []CanarySplit `json:"canaries,omitempty"`
}

// RaftHealth is one server's own view of raft, GET /v1/cluster/raft:
// answered by that server itself, with or without a leader, so that
// `cluster status` can say what each server reports when there is none.
type RaftHealth struct {
	ID       string `json:"id"`
	APIAddr  string `json:"api_addr"`
	RaftAddr string `json:"raft_addr"`
	// State is follower, candidate, leader or shutdown.
	State string `json:"state"`
	Term  uint64 `json:"term"`
	// Leader is the leader this server follows, "" when it knows none.
	Leader       string `json:"leader"`
	LastLogIndex uint64 `json:"last_log_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// LastContactSeconds is how long ago it last heard from a leader; nil
	// when it never did since it started.
	LastContactSeconds *float64 `json:"last_contact_seconds"`
	// Members are the servers of its raft configuration, with the API
	// addresses it knows for them.
	Members []Member `json:"members"`
}

// Member is one server of a raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
}
