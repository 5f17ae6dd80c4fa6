package state

import (
	"encoding/json"
	"fmt"
	"io"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// snapshotFormat is bumped when the encoding changes incompatibly.
const snapshotFormat = 1

type snapshotDoc struct {
	Format    int               `json:"format"`
	Index     uint64            `json:"index"`
	Services  []*Service        `json:"services"`
	Revisions []*Revision       `json:"revisions"`
	Replicas  []*Replica        `json:"replicas"`
	Hosts     []*Host           `json:"hosts"`
	HostIndex map[string]uint64 `json:"host_index"`
	Requests  []*RequestResult  `json:"requests"`
	Servers   []*ServerInfo     `json:"servers"`
	Policy    *PolicyRecord     `json:"policy,omitempty"`
	// Addresses: the FSM assigns service addresses (absent from snapshots
	// taken before AssignAddressesCmd was applied).
	Addresses bool `json:"addresses,omitempty"`
	// Secrets hold sealed values only (absent before FSM version 3).
	Secrets []*Secret `json:"secrets,omitempty"`
	// SecretsKeyID is the cluster's key-encryption key id once a
	// rotation recorded it (absent before FSM version 4).
	SecretsKeyID string `json:"secrets_key_id,omitempty"`
	// Events, EventSeq and Ended are the event ring and the removed
	// replicas kept for `ps -a` (absent from older snapshots: none).
	Events   []*Event       `json:"events,omitempty"`
	EventSeq uint64         `json:"event_seq,omitempty"`
	Ended    []*endedRecord `json:"ended,omitempty"`
}

func collect[T any](tree *iradix.Tree) []*T {
	out := []*T{}
	tree.Root().Walk(func(_ []byte, v interface{}) bool {
		out = append(out, v.(*T))
		return false
	})
	return out
}

// WriteTo encodes this version of the state. It reads only immutable
// trees, so raft can persist a snapshot while writes go on.
func (t *Tables) WriteTo(w io.Writer) (int64, error) {
	doc := snapshotDoc{
		Format: snapshotFormat, Index: t.index,
		Services: collect[Service](t.services), Revisions: collect[Revision](t.revisions),
		Replicas: collect[Replica](t.replicas), Hosts: collect[Host](t.hosts),
		HostIndex: map[string]uint64{}, Requests: collect[RequestResult](t.requests),
		Servers: collect[ServerInfo](t.servers), Policy: t.policy, Addresses: t.addresses,
		Secrets: collect[Secret](t.secrets), SecretsKeyID: t.secretsKeyID, Events: collect[Event](t.events), EventSeq: t.eventSeq,
	}
	t.ended.Root().Walk(func(k []byte, v interface{}) bool {
		doc.Ended = append(doc.Ended, &endedRecord{Key: k, Replica: v.(*Replica)})
		return false
	})
	t.hostIndex.Root().Walk(func(k []byte, v interface{}) bool {
		doc.HostIndex[string(k)] = v.(uint64)
		return false
	})
	cw := &countingWriter{w: w}
	if err := json.NewEncoder(cw).Encode(&doc); err != nil {
		return cw.n, fmt.Errorf("encode state snapshot: %w", err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the whole state with a snapshot written by WriteTo.
func (s *Store) Restore(r io.Reader) error {
	var doc snapshotDoc
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return fmt.Errorf("decode state snapshot: %w", err)
	}
	if doc.Format != snapshotFormat {
		return fmt.Errorf("%w: snapshot format %d, this build reads %d", ErrBadRecord, doc.Format, snapshotFormat)
	}
	tx := s.begin(doc.Index)
	e := emptyTables()
	tx.services, tx.revisions, tx.replicas = e.services.Txn(), e.revisions.Txn(), e.replicas.Txn()
	tx.bySvc, tx.byHost, tx.hosts = e.bySvc.Txn(), e.byHost.Txn(), e.hosts.Txn()
	tx.hostIndex, tx.requests, tx.servers = e.hostIndex.Txn(), e.requests.Txn(), e.servers.Txn()
	tx.secrets = e.secrets.Txn()
	tx.restoreEvents(doc.Events, doc.EventSeq, doc.Ended)
	for _, v := range doc.Secrets {
		tx.secrets.Insert([]byte(v.Name), v)
	}
	for _, v := range doc.Services {
		tx.services.Insert([]byte(v.Name), v)
	}
	for _, v := range doc.Revisions {
		tx.putRevision(v)
	}
	for _, v := range doc.Replicas {
		tx.replicas.Insert([]byte(v.ID), v)
		tx.bySvc.Insert(pairKey(v.Service, v.ID), v)
		tx.byHost.Insert(pairKey(v.Host, v.ID), v)
	}
	for _, v := range doc.Hosts {
		tx.hosts.Insert([]byte(v.ID), v)
	}
	for _, v := range doc.Requests {
		tx.requests.Insert([]byte(v.Key), v)
	}
	tx.policy = doc.Policy
	tx.addresses = doc.Addresses
	tx.secretsKeyID = doc.SecretsKeyID
	for _, v := range doc.Servers {
		tx.servers.Insert([]byte(v.ID), v)
	}
	for h, i := range doc.HostIndex {
		tx.hostIndex.Insert([]byte(h), i)
	}
	tx.commit(s)
	// Every host's long-poll wakes: its view may have changed wholesale.
	s.mu.Lock()
	for h, ch := range s.hostWatch {
		close(ch)
		delete(s.hostWatch, h)
	}
	s.mu.Unlock()
	return nil
}
