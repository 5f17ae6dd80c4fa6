package state

import (
	"encoding/binary"
	"fmt"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// MaxEvents bounds the cluster's event ring: the oldest event goes when
// the 10,001st comes. At a few hundred bytes an event the ring costs a
// few MiB in every snapshot, and a leader change loses none of it.
const MaxEvents = 10000

// MaxEndedPerService bounds the replicas a service keeps after their
// records are removed (`deployctl ps -a`): the newest stay.
const MaxEndedPerService = 100

// Event types, as `deployctl events` shows them. Most are derived by the
// FSM from the commands it applies anyway (no raft entry of their own);
// EventLeaderElected and EventApplyRefused come from the leader through
// RecordEventsCmd.
const (
	EventRevisionStored   = "revision_stored"
	EventReplicaPlaced    = "replica_placed"
	EventReplicaStarted   = "replica_started"
	EventReplicaHealthy   = "replica_healthy"
	EventReplicaUnhealthy = "replica_unhealthy"
	EventReplicaFailed    = "replica_failed"
	EventReplicaStopped   = "replica_stopped"
	EventReplicaLost      = "replica_lost"
	EventRolloutSucceeded = "rollout_succeeded"
	EventRolloutPaused    = "rollout_paused"
	EventRolloutFailed    = "rollout_failed"
	EventRolledBack       = "rolled_back"
	EventServiceRemoved   = "service_removing"
	EventHostUp           = "host_up"
	EventHostDown         = "host_down"
	EventApplyRefused     = "apply_refused"
	EventLeaderElected    = "leader_elected"
)

// Event is one thing the cluster did or saw. Seq numbers every event the
// FSM recorded, from 1, without gaps: a follower of the stream asks for
// those after the last it has.
type Event struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Service  string    `json:"service,omitempty"`
	Revision int       `json:"revision,omitempty"`
	Replica  string    `json:"replica,omitempty"`
	Slot     *int      `json:"slot,omitempty"`
	Host     string    `json:"host,omitempty"`
	// Message says why or what: the probe's answer of an unhealthy
	// replica, the reason of a rollback, the refusal of an apply.
	Message string `json:"message,omitempty"`
}

// RecordEventsCmd appends events the log does not otherwise carry (a
// leader's election, an apply the policy refused), batched by the leader
// (FSM version 4). Their Seq is given by the FSM; their Time by the leader.
type RecordEventsCmd struct {
	Events []Event `json:"events"`
}

// ApplyRecordEvents applies a RecordEventsCmd at a raft index.
func (s *Store) ApplyRecordEvents(index uint64, c RecordEventsCmd) error {
	tx := s.begin(index)
	for _, e := range c.Events {
		if e.Type == "" {
			return fmt.Errorf("%w: an event needs a type", ErrBadRecord)
		}
		tx.event(e.Time, e)
	}
	tx.commit(s)
	return nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// event appends e to the ring with the next Seq and drops the oldest
// beyond MaxEvents. Seq numbers have no gap, so the oldest is known.
func (tx *txn) event(at time.Time, e Event) {
	tx.eventSeq++
	e.Seq = tx.eventSeq
	if e.Time.IsZero() {
		e.Time = at
	}
	tx.events.Insert(seqKey(e.Seq), &e)
	if e.Seq > MaxEvents {
		tx.events.Delete(seqKey(e.Seq - MaxEvents))
	}
}

// replicaEvent records an event about one replica.
func (tx *txn) replicaEvent(at time.Time, typ string, r *Replica, msg string) {
	slot := r.Slot
	tx.event(at, Event{Type: typ, Service: r.Service, Revision: r.Revision, Replica: r.ID, Slot: &slot, Host: r.Host, Message: msg})
}

// endReplica keeps a removed replica's last record for `ps -a`, under its
// service, newest last; the service keeps MaxEndedPerService of them.
func (tx *txn) endReplica(r *Replica) {
	prefix := []byte(r.Service + "\x00")
	key := fmt.Appendf(append(prefix[:len(prefix):len(prefix)], seqKey(tx.index)...), "\x00%s", r.ID)
	tx.ended.Insert(key, r)
	var keys [][]byte
	tx.ended.Root().WalkPrefix(prefix, func(k []byte, _ interface{}) bool {
		keys = append(keys, k)
		return false
	})
	for _, k := range keys[:max(0, len(keys)-MaxEndedPerService)] {
		tx.ended.Delete(k)
	}
}

// Events lists the recorded events with Seq > after, oldest first.
func (t *Tables) Events(after uint64) []Event {
	var out []Event
	it := t.events.Root().Iterator()
	it.SeekLowerBound(seqKey(after + 1))
	for _, v, ok := it.Next(); ok; _, v, ok = it.Next() {
		out = append(out, *v.(*Event))
	}
	return out
}

// EventSeq is the Seq of the last recorded event (0: none yet).
func (t *Tables) EventSeq() uint64 { return t.eventSeq }

// EndedReplicas lists the removed replicas a service keeps, oldest first.
func (t *Tables) EndedReplicas(svc string) []Replica {
	var out []Replica
	t.ended.Root().WalkPrefix([]byte(svc+"\x00"), func(_ []byte, v interface{}) bool {
		out = append(out, *v.(*Replica))
		return false
	})
	return out
}

// restoreEvents fills the rings from a snapshot.
func (tx *txn) restoreEvents(events []*Event, seq uint64, ended []*endedRecord) {
	e := iradix.New()
	tx.events, tx.ended = e.Txn(), e.Txn()
	for _, v := range events {
		tx.events.Insert(seqKey(v.Seq), v)
	}
	tx.eventSeq = seq
	for _, v := range ended {
		tx.ended.Insert(v.Key, v.Replica)
	}
}

// endedRecord is an ended replica in a snapshot, with its key.
type endedRecord struct {
	Key     []byte   `json:"key"`
	Replica *Replica `json:"replica"`
}
