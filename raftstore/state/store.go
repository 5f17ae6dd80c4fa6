package state

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// Sentinel errors of the state store. The controller translates them into
// API errors; the FSM returns them as command responses.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("conflict: state changed since the write was decided")
	ErrRemoving  = errors.New("service is being removed")
	ErrBadRecord = errors.New("invalid record")
)

// Tables is one immutable version of the whole state. Reading it needs no
// lock and a snapshot is a pointer copy: every write builds a new Tables
// that shares all untouched nodes with the old one (immutable radix trees).
type Tables struct {
	index     uint64
	services  *iradix.Tree  // name -> *Service
	revisions *iradix.Tree  // name \x00 %010d -> *Revision
	replicas  *iradix.Tree  // id -> *Replica
	bySvc     *iradix.Tree  // service \x00 id -> *Replica (the record in replicas)
	byHost    *iradix.Tree  // host \x00 id -> *Replica (the record in replicas)
	hosts     *iradix.Tree  // id -> *Host
	hostIndex *iradix.Tree  // host -> uint64: last index that changed its assignments
	requests  *iradix.Tree  // idempotency key -> *RequestResult
	servers   *iradix.Tree  // raft server id -> *ServerInfo
	policy    *PolicyRecord // nil until a policy is set
	addresses bool          // the FSM assigns service addresses (AssignAddressesCmd)
	secrets   *iradix.Tree  // name -> *Secret (sealed values only; secrets.go)
	// secretsKeyID is the id of the cluster's key-encryption key, set by
	// RotateSecretsKeyCmd ("" until the first rotation; see SecretsKeyID).
	secretsKeyID string
	events       *iradix.Tree // seq (8 bytes, big endian) -> *Event; the last MaxEvents (events.go)
	eventSeq     uint64       // Seq of the last event recorded
	ended        *iradix.Tree // service \x00 index \x00 id -> *Replica: removed replicas kept for `ps -a`
}

// RequestResult remembers the outcome of a write that carried an
// idempotency key, so a client retrying after a lost leadership gets the
// same answer instead of a second write.
type RequestResult struct {
	Key      string `json:"key"`
	Index    uint64 `json:"index"`
	Revision int    `json:"revision"`
	AtUnix   int64  `json:"at_unix"`
}

func emptyTables() *Tables {
	t := iradix.New()
	return &Tables{services: t, revisions: t, replicas: t, bySvc: t, byHost: t, hosts: t, hostIndex: t, requests: t, servers: t, secrets: t, events: t, ended: t}
}

func revKey(svc string, n int) []byte { return fmt.Appendf(nil, "%s\x00%010d", svc, n) }
func pairKey(a, b string) []byte      { return []byte(a + "\x00" + b) }

// Index is the raft index of the last write in this version.
func (t *Tables) Index() uint64 { return t.index }

// Service returns a copy of the named service.
func (t *Tables) Service(name string) (Service, bool) {
	v, ok := t.services.Get([]byte(name))
	if !ok {
		return Service{}, false
	}
	s := *v.(*Service)
	if s.Rollout != nil {
		r := *s.Rollout
		s.Rollout = &r
	}
	return s, true
}

// Services lists all services by name.
func (t *Tables) Services() []Service {
	var out []Service
	t.services.Root().Walk(func(k []byte, v interface{}) bool {
		s, _ := t.Service(string(k))
		out = append(out, s)
		return false
	})
	return out
}

// Revision returns one revision of a service.
func (t *Tables) Revision(svc string, n int) (Revision, bool) {
	v, ok := t.revisions.Get(revKey(svc, n))
	if !ok {
		return Revision{}, false
	}
	return *v.(*Revision), true
}

// Revisions lists a service's revisions, oldest first.
func (t *Tables) Revisions(svc string) []Revision {
	var out []Revision
	t.revisions.Root().WalkPrefix([]byte(svc+"\x00"), func(k []byte, v interface{}) bool {
		out = append(out, *v.(*Revision))
		return false
	})
	return out
}

// Replica returns one replica by ID.
func (t *Tables) Replica(id string) (Replica, bool) {
	v, ok := t.replicas.Get([]byte(id))
	if !ok {
		return Replica{}, false
	}
	return *v.(*Replica), true
}

// replicasUnder lists the replicas of an index prefix. The index holds the
// same immutable records as the replicas table (putReplica writes both), so
// a walk needs no second lookup: at 100,000 replicas that lookup was a
// third of a controller pass.
func (t *Tables) replicasUnder(tree *iradix.Tree, prefix string) []Replica {
	var out []Replica
	tree.Root().WalkPrefix([]byte(prefix+"\x00"), func(_ []byte, v interface{}) bool {
		out = append(out, *v.(*Replica))
		return false
	})
	slices.SortFunc(out, func(a, b Replica) int {
		return cmp.Or(cmp.Compare(a.Slot, b.Slot), strings.Compare(a.ID, b.ID))
	})
	return out
}

// EachHostReplica calls fn with a copy of each replica assigned to host, in
// ID order, without building a list: the controller sums every host's
// load on each pass.
func (t *Tables) EachHostReplica(host string, fn func(Replica)) {
	t.byHost.Root().WalkPrefix([]byte(host+"\x00"), func(_ []byte, v interface{}) bool {
		fn(*v.(*Replica))
		return false
	})
}

// EachServiceReplica calls fn with each of a service's replica records,
// in ID order, without copying or sorting them: the service list counts
// them on every call (fn must not change the record).
func (t *Tables) EachServiceReplica(svc string, fn func(*Replica)) {
	t.bySvc.Root().WalkPrefix([]byte(svc+"\x00"), func(_ []byte, v interface{}) bool {
		fn(v.(*Replica))
		return false
	})
}

// ServiceReplicas lists a service's replicas by slot.
func (t *Tables) ServiceReplicas(svc string) []Replica { return t.replicasUnder(t.bySvc, svc) }

// HostReplicas lists the replicas assigned to a host.
func (t *Tables) HostReplicas(host string) []Replica { return t.replicasUnder(t.byHost, host) }

// Host returns one host.
func (t *Tables) Host(id string) (Host, bool) {
	v, ok := t.hosts.Get([]byte(id))
	if !ok {
		return Host{}, false
	}
	return *v.(*Host), true
}

// Hosts lists all hosts by ID.
func (t *Tables) Hosts() []Host {
	var out []Host
	t.hosts.Root().Walk(func(k []byte, v interface{}) bool {
		out = append(out, *v.(*Host))
		return false
	})
	return out
}

// HostIndex is the index of the last write that changed a host's
// assignments; agents long-poll on it.
func (t *Tables) HostIndex(host string) uint64 {
	v, ok := t.hostIndex.Get([]byte(host))
	if !ok {
		return 0
	}
	return v.(uint64)
}

// Assignments builds a host's assignment set.
func (t *Tables) Assignments(host string) AssignmentSet {
	set := AssignmentSet{Host: host, Index: t.HostIndex(host), Assignments: []Assignment{}}
	for _, r := range t.HostReplicas(host) {
		rev, ok := t.Revision(r.Service, r.Revision)
		if !ok {
			continue
		}
		set.Assignments = append(set.Assignments, Assignment{Replica: r, Revision: rev})
	}
	return set
}

// Server returns one raft server's addresses.
func (t *Tables) Server(id string) (ServerInfo, bool) {
	v, ok := t.servers.Get([]byte(id))
	if !ok {
		return ServerInfo{}, false
	}
	return *v.(*ServerInfo), true
}

// Servers lists the registered raft servers by ID.
func (t *Tables) Servers() []ServerInfo {
	var out []ServerInfo
	t.servers.Root().Walk(func(_ []byte, v interface{}) bool {
		out = append(out, *v.(*ServerInfo))
		return false
	})
	return out
}

// Policy returns the stored cluster policy, if one was set.
func (t *Tables) Policy() (PolicyRecord, bool) {
	if t.policy == nil {
		return PolicyRecord{}, false
	}
	return *t.policy, true
}

// Request returns the remembered result of an idempotent write.
func (t *Tables) Request(key string) (RequestResult, bool) {
	if key == "" {
		return RequestResult{}, false
	}
	v, ok := t.requests.Get([]byte(key))
	if !ok {
		return RequestResult{}, false
	}
	return *v.(*RequestResult), true
}

// Store is the state the FSM applies commands to. Writes are serialised by
// raft (one Apply at a time); readers take the current *Tables without a lock.
type Store struct {
	mu      sync.Mutex
	current *Tables
	// changed is closed and replaced on every write: waiters for "anything
	// after index N" (the CLI watching a rollout) select on it.
	changed chan struct{}
	// hostWatch holds one channel per host that a long-poll waits on; it is
	// closed only when that host's assignments change, so 1,000 idle agents
	// are not woken by every status report.
	hostWatch map[string]chan struct{}
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{current: emptyTables(), changed: make(chan struct{}), hostWatch: map[string]chan struct{}{}}
}

// View returns the current immutable version of the state.
func (s *Store) View() *Tables {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// Watch returns the current state and a channel closed at the next write.
func (s *Store) Watch() (*Tables, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, s.changed
}

// WatchHost returns the current state and a channel closed when the host's
// assignments next change.
func (s *Store) WatchHost(host string) (*Tables, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.hostWatch[host]
	if !ok {
		ch = make(chan struct{})
		s.hostWatch[host] = ch
	}
	return s.current, ch
}

// replace installs a new version and wakes the waiters it concerns.
func (s *Store) replace(t *Tables, touchedHosts map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = t
	close(s.changed)
	s.changed = make(chan struct{})
	for h := range touchedHosts {
		if ch, ok := s.hostWatch[h]; ok {
			close(ch)
			delete(s.hostWatch, h)
		}
	}
}

// txn is one write in progress: a mutable copy-on-write view of Tables.
type txn struct {
	index                                uint64
	services, revisions, replicas, bySvc *iradix.Txn
	byHost, hosts, hostIndex, requests   *iradix.Txn
	servers                              *iradix.Txn
	policy                               *PolicyRecord
	addresses                            bool
	secrets                              *iradix.Txn
	secretsKeyID                         string
	events, ended                        *iradix.Txn
	eventSeq                             uint64
	touchedHosts                         map[string]bool
}

func (s *Store) begin(index uint64) *txn {
	t := s.View()
	return &txn{
		index:    index,
		services: t.services.Txn(), revisions: t.revisions.Txn(), replicas: t.replicas.Txn(),
		bySvc: t.bySvc.Txn(), byHost: t.byHost.Txn(), hosts: t.hosts.Txn(),
		hostIndex: t.hostIndex.Txn(), requests: t.requests.Txn(), servers: t.servers.Txn(),
		policy:       t.policy,
		addresses:    t.addresses,
		secrets:      t.secrets.Txn(),
		secretsKeyID: t.secretsKeyID,
		events:       t.events.Txn(), ended: t.ended.Txn(), eventSeq: t.eventSeq,
		touchedHosts: map[string]bool{},
	}
}

func (tx *txn) commit(s *Store) {
	for h := range tx.touchedHosts {
		tx.hostIndex.Insert([]byte(h), tx.index)
	}
	s.replace(&Tables{
		index:    tx.index,
		services: tx.services.CommitOnly(), revisions: tx.revisions.CommitOnly(), replicas: tx.replicas.CommitOnly(),
		bySvc: tx.bySvc.CommitOnly(), byHost: tx.byHost.CommitOnly(), hosts: tx.hosts.CommitOnly(),
		hostIndex: tx.hostIndex.CommitOnly(), requests: tx.requests.CommitOnly(), servers: tx.servers.CommitOnly(),
		policy: tx.policy, addresses: tx.addresses, secrets: tx.secrets.CommitOnly(), secretsKeyID: tx.secretsKeyID,
		events: tx.events.CommitOnly(), eventSeq: tx.eventSeq, ended: tx.ended.CommitOnly(),
	}, tx.touchedHosts)
}

func (tx *txn) service(name string) (*Service, bool) {
	v, ok := tx.services.Get([]byte(name))
	if !ok {
		return nil, false
	}
	s := *v.(*Service)
	if s.Rollout != nil {
		r := *s.Rollout
		s.Rollout = &r
	}
	return &s, true
}

func (tx *txn) putService(s *Service) {
	s.ModifyIndex = tx.index
	tx.services.Insert([]byte(s.Name), s)
}

func (tx *txn) revision(svc string, n int) (*Revision, bool) {
	v, ok := tx.revisions.Get(revKey(svc, n))
	if !ok {
		return nil, false
	}
	r := *v.(*Revision)
	return &r, true
}

func (tx *txn) putRevision(r *Revision) { tx.revisions.Insert(revKey(r.Service, r.Number), r) }

func (tx *txn) replica(id string) (*Replica, bool) {
	v, ok := tx.replicas.Get([]byte(id))
	if !ok {
		return nil, false
	}
	r := *v.(*Replica)
	return &r, true
}

// putReplica stores a replica; touchHost marks its host's assignments as
// changed (desired state or revision changed, not a status report).
func (tx *txn) putReplica(r *Replica, touchHost bool) {
	r.ModifyIndex = tx.index
	tx.replicas.Insert([]byte(r.ID), r)
	tx.bySvc.Insert(pairKey(r.Service, r.ID), r)
	tx.byHost.Insert(pairKey(r.Host, r.ID), r)
	if touchHost {
		tx.touchedHosts[r.Host] = true
	}
}

func (tx *txn) deleteReplica(id string) {
	r, ok := tx.replica(id)
	if !ok {
		return
	}
	tx.endReplica(r)
	tx.replicas.Delete([]byte(id))
	tx.bySvc.Delete(pairKey(r.Service, id))
	tx.byHost.Delete(pairKey(r.Host, id))
	tx.touchedHosts[r.Host] = true
}

func (tx *txn) serviceReplicaIDs(svc string) []string {
	var ids []string
	tx.bySvc.Root().WalkPrefix([]byte(svc+"\x00"), func(k []byte, _ interface{}) bool {
		ids = append(ids, strings.TrimPrefix(string(k), svc+"\x00"))
		return false
	})
	return ids
}
