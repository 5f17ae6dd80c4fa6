package state

import (
	"errors"
	"fmt"
)

// ErrDeltaBase means an AssignmentDelta cannot be applied to the set the
// agent holds: it was computed from another index, or it names a replica
// that is neither in it nor in the held set. The agent asks for the whole
// set again (base 0).
var ErrDeltaBase = errors.New("assignment delta does not apply to the held set")

// AssignmentDelta is the compact answer to an agent's long-poll (issue 12):
// a host with 100 replicas of 100 services used to receive its whole list,
// each entry with its revision's whole spec, every time one of them was
// placed or stopped: 5,050 assignments per host to deploy 100 services,
// the leader's largest cost at 1,000 hosts. A delta carries each revision
// once, only the replicas written after Base, and the IDs of all the
// host's replicas (so the agent drops the ones that are gone).
type AssignmentDelta struct {
	Host  string `json:"host"`
	Index uint64 `json:"index"`
	// Base is the index of the set the delta applies to; 0 means Replicas
	// is the whole set.
	Base uint64 `json:"base"`
	// Revisions are the revisions Replicas run, each once, with only the
	// fields a host uses (hostRevision).
	Revisions []Revision `json:"revisions"`
	// Replicas are the host's replicas written (ModifyIndex) after Base.
	Replicas []Replica `json:"replicas"`
	// IDs are all the host's replicas, in the order of a whole set.
	IDs []string `json:"ids"`
}

// hostRevision is the part of a revision that shapes a host's containers;
// history (state, cause, times, warnings, traffic) stays on the servers.
func hostRevision(r Revision) Revision {
	return Revision{Service: r.Service, Number: r.Number, Spec: r.Spec, Digest: r.Digest, Ref: r.Ref,
		Fingerprint: r.Fingerprint, Secrets: r.Secrets}
}

// AssignmentDelta answers an agent that holds host's set at index base
// (0: it holds none). A base past this version's index (a state restored
// from an older backup) gets the whole set.
func (t *Tables) AssignmentDelta(host string, base uint64) AssignmentDelta {
	if base > t.index {
		base = 0
	}
	d := AssignmentDelta{Host: host, Index: t.HostIndex(host), Base: base, Revisions: []Revision{}, Replicas: []Replica{}, IDs: []string{}}
	seen := map[string]bool{}
	for _, r := range t.HostReplicas(host) {
		rev, ok := t.Revision(r.Service, r.Revision)
		if !ok {
			continue // as in Assignments: a replica without its revision is not sent
		}
		d.IDs = append(d.IDs, r.ID)
		if base != 0 && r.ModifyIndex <= base {
			continue
		}
		d.Replicas = append(d.Replicas, r)
		if k := string(revKey(r.Service, r.Revision)); !seen[k] {
			seen[k] = true
			d.Revisions = append(d.Revisions, hostRevision(rev))
		}
	}
	return d
}

// Apply returns the whole set the delta describes, given the set the agent
// holds (ignored when d.Base is 0). A replica written at or before Base is
// unchanged since the held set was read (that set was read at an index of
// at least Base), so the held copy stands for it.
func (d AssignmentDelta) Apply(held AssignmentSet) (AssignmentSet, error) {
	if d.Base != 0 && held.Index != d.Base {
		return AssignmentSet{}, fmt.Errorf("%w: the delta is from index %d, the held set is at %d", ErrDeltaBase, d.Base, held.Index)
	}
	revs := make(map[string]Revision, len(d.Revisions))
	for _, r := range d.Revisions {
		revs[string(revKey(r.Service, r.Number))] = r
	}
	changed := make(map[string]Replica, len(d.Replicas))
	for _, r := range d.Replicas {
		changed[r.ID] = r
	}
	var old map[string]Assignment
	if d.Base != 0 {
		old = make(map[string]Assignment, len(held.Assignments))
		for _, a := range held.Assignments {
			old[a.Replica.ID] = a
		}
	}
	out := AssignmentSet{Host: d.Host, Index: d.Index, Assignments: make([]Assignment, 0, len(d.IDs))}
	for _, id := range d.IDs {
		if r, ok := changed[id]; ok {
			rev, ok := revs[string(revKey(r.Service, r.Revision))]
			if !ok {
				if a, had := old[id]; had && a.Revision.Service == r.Service && a.Revision.Number == r.Revision {
					rev = a.Revision
				} else {
					return AssignmentSet{}, fmt.Errorf("%w: replica %s runs revision %d of %s, which the delta does not carry", ErrDeltaBase, id, r.Revision, r.Service)
				}
			}
			out.Assignments = append(out.Assignments, Assignment{Replica: r, Revision: rev})
			continue
		}
		a, ok := old[id]
		if !ok {
			return AssignmentSet{}, fmt.Errorf("%w: replica %s is neither in the delta nor in the held set", ErrDeltaBase, id)
		}
		out.Assignments = append(out.Assignments, a)
	}
	return out, nil
}
