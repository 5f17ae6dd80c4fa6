package state

import (
	"fmt"
	"slices"
	"time"
)

// ServiceRemoving is the state of a service whose replicas are being
// stopped after `deployctl rm`; it is purged once none is left.
const ServiceRemoving = "removing"

// requestTTL is how long an idempotency key is remembered. A client retries
// within seconds; an hour is far beyond any retry and keeps the table small.
const requestTTL = time.Hour

// ApplyRevisionCmd stores a new revision and starts a rollout to it. The
// leader stamps Now and resolves everything (digest, fingerprint) before the
// command reaches raft, so applying it is deterministic.
type ApplyRevisionCmd struct {
	Now            time.Time `json:"now"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	// ExpectCurrent guards the write: the service's Current revision the
	// leader saw when deciding (0 for a new service). A mismatch means
	// another write won and this one is refused with ErrConflict.
	ExpectCurrent int      `json:"expect_current"`
	Revision      Revision `json:"revision"`
	// PreviousOutcome is what the replaced revision becomes if it had not
	// finished (in_progress or paused): superseded for a new apply,
	// rolled_back for a rollback. A succeeded revision keeps its outcome
	// unless PreviousOutcome is rolled_back.
	PreviousOutcome string `json:"previous_outcome,omitempty"`
	PreviousMessage string `json:"previous_message,omitempty"`
}

// ApplyResult is the response to ApplyRevisionCmd.
type ApplyResult struct {
	Revision int    `json:"revision"`
	Index    uint64 `json:"index"`
	// Repeated is true when the idempotency key had been applied before.
	Repeated bool `json:"repeated,omitempty"`
}

// RevisionOutcome sets the final state of one revision.
type RevisionOutcome struct {
	Number  int    `json:"number"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// RolloutStepCmd commits one decision of the controller loop for a service:
// replicas to create (IDs and hosts stamped by the leader), to stop and to
// forget, and the new rollout and service state.
type RolloutStepCmd struct {
	Now     time.Time `json:"now"`
	Service string    `json:"service"`
	// ExpectCurrent and ExpectModifyIndex guard the step: it was decided on
	// exactly this version of the service record. A step whose outcome is
	// unknown after a lost leadership is then never applied twice.
	ExpectCurrent     int              `json:"expect_current"`
	ExpectModifyIndex uint64           `json:"expect_modify_index"`
	Create            []Replica        `json:"create,omitempty"`
	Stop              []string         `json:"stop,omitempty"`
	Remove            []string         `json:"remove,omitempty"`
	Rollout           *Rollout         `json:"rollout,omitempty"`
	ServiceState      string           `json:"service_state,omitempty"`
	LastGood          int              `json:"last_good,omitempty"`
	Outcome           *RevisionOutcome `json:"outcome,omitempty"`
	// Purge deletes the service and its history; allowed only while it is
	// being removed and once no replica is left.
	Purge bool `json:"purge,omitempty"`
	// Traffic replaces the figures of the service's current revision
	// (ExpectCurrent): the leader's in-memory sums, written with steps it
	// makes anyway and when the rollout ends. An older server ignores the
	// field and keeps no figures, which changes no decision: they are
	// shown, never judged (judging uses the leader's memory).
	Traffic *RevisionTraffic `json:"traffic,omitempty"`
}

// HostReportCmd records an agent's batch: the host is ready (a heartbeat)
// and its replicas' observed states.
type HostReportCmd struct {
	Now    time.Time  `json:"now"`
	Report HostReport `json:"report"`
}

// DeleteServiceCmd starts removing a service: every replica is asked to stop.
type DeleteServiceCmd struct {
	Now     time.Time `json:"now"`
	Service string    `json:"service"`
}

func (tx *txn) rememberRequest(key string, now time.Time, rev int) {
	if key == "" {
		return
	}
	cutoff := now.Add(-requestTTL).Unix()
	var stale [][]byte
	tx.requests.Root().Walk(func(k []byte, v interface{}) bool {
		if v.(*RequestResult).AtUnix < cutoff {
			stale = append(stale, k)
		}
		return false
	})
	for _, k := range stale {
		tx.requests.Delete(k)
	}
	tx.requests.Insert([]byte(key), &RequestResult{Key: key, Index: tx.index, Revision: rev, AtUnix: now.Unix()})
}

// ApplyRevision applies an ApplyRevisionCmd at a raft index.
func (s *Store) ApplyRevision(index uint64, c ApplyRevisionCmd) (ApplyResult, error) {
	if prev, ok := s.View().Request(c.IdempotencyKey); ok {
		return ApplyResult{Revision: prev.Revision, Index: prev.Index, Repeated: true}, nil
	}
	if c.Revision.Service == "" || c.Revision.Ref == "" || c.Revision.Fingerprint == "" {
		return ApplyResult{}, fmt.Errorf("%w: revision needs service, ref and fingerprint", ErrBadRecord)
	}
	tx := s.begin(index)
	svc, ok := tx.service(c.Revision.Service)
	if !ok {
		svc = &Service{Name: c.Revision.Service, NextRevision: 1, CreateIndex: index}
	}
	if svc.State == ServiceRemoving {
		return ApplyResult{}, fmt.Errorf("%w: %s", ErrRemoving, svc.Name)
	}
	if svc.Current != c.ExpectCurrent {
		return ApplyResult{}, fmt.Errorf("%w: service %s is at revision %d, not %d", ErrConflict, svc.Name, svc.Current, c.ExpectCurrent)
	}
	if prev, ok := tx.revision(svc.Name, svc.Current); ok {
		unfinished := prev.State == RevisionInProgress || prev.State == RevisionPaused
		if unfinished || c.PreviousOutcome == RevisionRolledBack {
			prev.State = c.PreviousOutcome
			if prev.State == "" {
				prev.State = RevisionSuperseded
			}
			if c.PreviousMessage != "" {
				prev.Message = c.PreviousMessage
			}
			if prev.FinishedAt.IsZero() {
				prev.FinishedAt = c.Now
			}
			tx.putRevision(prev)
			if prev.State == RevisionRolledBack {
				tx.event(c.Now, Event{Type: EventRolledBack, Service: svc.Name, Revision: prev.Number, Message: c.PreviousMessage})
			}
		}
	}
	rev := c.Revision
	rev.Number = svc.NextRevision
	rev.CreatedAt = c.Now
	rev.FinishedAt = time.Time{}
	rev.State = RevisionInProgress
	svc.NextRevision++
	tx.putRevision(&rev)

	if svc.VIP == "" && tx.addresses {
		vip, ok := tx.addressAllocator().take()
		if !ok {
			return ApplyResult{}, fmt.Errorf("%w; remove a service first", ErrNoAddress)
		}
		svc.VIP = vip
	}
	svc.Current = rev.Number
	svc.State = ServiceDeploying
	if rev.IsRollback() {
		svc.State = ServiceRollingBack
	}
	svc.Rollout = &Rollout{Revision: rev.Number, From: svc.LastGood, StartedAt: c.Now, LastProgressAt: c.Now, State: RolloutInProgress}
	tx.putService(svc)
	tx.event(c.Now, Event{Type: EventRevisionStored, Service: svc.Name, Revision: rev.Number, Message: fmt.Sprintf("%s: %s", rev.Cause, rev.Spec.Image)})
	tx.rememberRequest(c.IdempotencyKey, c.Now, rev.Number)
	tx.commit(s)
	return ApplyResult{Revision: rev.Number, Index: index}, nil
}

// ApplyRolloutStep applies a RolloutStepCmd at a raft index.
func (s *Store) ApplyRolloutStep(index uint64, c RolloutStepCmd) error {
	tx := s.begin(index)
	svc, ok := tx.service(c.Service)
	if !ok {
		return fmt.Errorf("%w: service %s", ErrNotFound, c.Service)
	}
	if svc.Current != c.ExpectCurrent || svc.ModifyIndex != c.ExpectModifyIndex {
		return fmt.Errorf("%w: service %s is at revision %d (index %d), step was decided at %d (index %d)",
			ErrConflict, svc.Name, svc.Current, svc.ModifyIndex, c.ExpectCurrent, c.ExpectModifyIndex)
	}
	for _, r := range c.Create {
		if r.ID == "" || r.Host == "" || r.Service != svc.Name {
			return fmt.Errorf("%w: replica needs an id, a host and service %s", ErrBadRecord, svc.Name)
		}
		if _, exists := tx.replica(r.ID); exists {
			return fmt.Errorf("%w: replica %s exists", ErrConflict, r.ID)
		}
		r := r
		r.CreatedAt = c.Now
		r.Desired = DesiredRunning
		r.Status = ReplicaStatus{State: ReplicaPending, UpdatedAt: c.Now, Since: c.Now}
		tx.putReplica(&r, true)
		tx.replicaEvent(c.Now, EventReplicaPlaced, &r, "on host "+r.Host)
	}
	for _, id := range c.Stop {
		r, ok := tx.replica(id)
		if !ok || r.Service != svc.Name || r.Desired == DesiredStopped {
			continue
		}
		r.Desired = DesiredStopped
		tx.putReplica(r, true)
	}
	for _, id := range c.Remove {
		if r, ok := tx.replica(id); ok && r.Service == svc.Name {
			tx.deleteReplica(id)
		}
	}
	if c.Outcome != nil {
		if rev, ok := tx.revision(svc.Name, c.Outcome.Number); ok {
			rev.State = c.Outcome.State
			rev.Message = c.Outcome.Message
			rev.FinishedAt = c.Now
			tx.putRevision(rev)
			if typ, ok := outcomeEvent(rev.State); ok {
				tx.event(c.Now, Event{Type: typ, Service: svc.Name, Revision: rev.Number, Message: rev.Message})
			}
		}
	}
	if c.Traffic != nil {
		if rev, ok := tx.revision(svc.Name, svc.Current); ok {
			t := *c.Traffic
			rev.Traffic = &t
			tx.putRevision(rev)
		}
	}
	if c.Rollout != nil {
		ro := *c.Rollout
		svc.Rollout = &ro
	}
	if c.ServiceState != "" {
		svc.State = c.ServiceState
	}
	if c.LastGood != 0 {
		svc.LastGood = c.LastGood
	}
	if c.Purge {
		if svc.State != ServiceRemoving || len(tx.serviceReplicaIDs(svc.Name)) > 0 {
			return fmt.Errorf("%w: service %s still has replicas", ErrConflict, svc.Name)
		}
		tx.services.Delete([]byte(svc.Name))
		tx.revisions.DeletePrefix([]byte(svc.Name + "\x00"))
		tx.ended.DeletePrefix([]byte(svc.Name + "\x00"))
	} else {
		tx.putService(svc)
	}
	tx.commit(s)
	return nil
}

// ApplyHostReport applies a HostReportCmd at a raft index.
func (s *Store) ApplyHostReport(index uint64, c HostReportCmd) error {
	if c.Report.Host == "" {
		return fmt.Errorf("%w: report without a host", ErrBadRecord)
	}
	tx := s.begin(index)
	var h Host
	if v, ok := tx.hosts.Get([]byte(c.Report.Host)); ok {
		h = *v.(*Host)
	} else {
		h = Host{ID: c.Report.Host, JoinedAt: c.Now}
	}
	if c.Report.Labels != nil {
		h.Labels = c.Report.Labels
	}
	if c.Report.Engine != nil {
		e := *c.Report.Engine
		h.Engine = &e
	}
	h.ProxyAddr = c.Report.ProxyAddr
	h.ProxyProblems = slices.Clone(c.Report.ProxyProblems)
	if h.State != HostReady {
		msg := "first report"
		if h.State == HostDown {
			msg = "reporting again after being down since " + h.DownSince.Format(time.RFC3339)
		}
		tx.event(c.Now, Event{Type: EventHostUp, Host: h.ID, Message: msg})
	}
	h.State = HostReady
	h.DownSince = time.Time{}
	h.SeenAt = c.Now
	h.ModifyIndex = index
	tx.hosts.Insert([]byte(h.ID), &h)
	for _, rep := range c.Report.Reports {
		r, ok := tx.replica(rep.ReplicaID)
		if !ok || r.Host != h.ID {
			continue // a report for a replica that is gone or moved: stale, ignored
		}
		wasHealthy := r.Status.State == ReplicaHealthy
		if typ, msg, ok := replicaChange(r.Status, rep); ok {
			tx.replicaEvent(c.Now, typ, r, msg)
		}
		if rep.State != r.Status.State {
			r.Status.Since = c.Now
		}
		if (rep.State == ReplicaFailed || rep.State == ReplicaUnhealthy) && rep.Message != "" {
			r.Status.LastError = rep.Message
		}
		r.Status.State = rep.State
		r.Status.ContainerID = rep.ContainerID
		r.Status.Message = rep.Message
		r.Status.UpdatedAt = c.Now
		switch {
		case rep.State != ReplicaHealthy:
			r.Status.HealthySince = time.Time{}
		case !wasHealthy:
			r.Status.HealthySince = c.Now
		}
		tx.putReplica(r, false)
	}
	tx.commit(s)
	return nil
}

// ApplyDeleteService applies a DeleteServiceCmd at a raft index.
func (s *Store) ApplyDeleteService(index uint64, c DeleteServiceCmd) error {
	tx := s.begin(index)
	svc, ok := tx.service(c.Service)
	if !ok {
		return fmt.Errorf("%w: service %s", ErrNotFound, c.Service)
	}
	if rev, ok := tx.revision(svc.Name, svc.Current); ok && (rev.State == RevisionInProgress || rev.State == RevisionPaused) {
		rev.State = RevisionSuperseded
		rev.Message = "service removed"
		rev.FinishedAt = c.Now
		tx.putRevision(rev)
	}
	svc.State = ServiceRemoving
	svc.Rollout = nil
	tx.event(c.Now, Event{Type: EventServiceRemoved, Service: svc.Name})
	for _, id := range tx.serviceReplicaIDs(svc.Name) {
		r, _ := tx.replica(id)
		if r.Desired != DesiredStopped {
			r.Desired = DesiredStopped
			tx.putReplica(r, true)
		}
	}
	tx.putService(svc)
	tx.commit(s)
	return nil
}

// RegisterServerCmd records (or updates) a raft server's addresses.
type RegisterServerCmd struct {
	Server ServerInfo `json:"server"`
}

// DeregisterServerCmd forgets a raft server that left the cluster.
type DeregisterServerCmd struct {
	ID string `json:"id"`
}

// ApplyRegisterServer applies a RegisterServerCmd at a raft index.
func (s *Store) ApplyRegisterServer(index uint64, c RegisterServerCmd) error {
	if c.Server.ID == "" || c.Server.APIAddr == "" {
		return fmt.Errorf("%w: a server needs an id and an API address", ErrBadRecord)
	}
	tx := s.begin(index)
	srv := c.Server
	srv.ModifyIndex = index
	tx.servers.Insert([]byte(srv.ID), &srv)
	tx.commit(s)
	return nil
}

// ApplyDeregisterServer applies a DeregisterServerCmd at a raft index.
func (s *Store) ApplyDeregisterServer(index uint64, c DeregisterServerCmd) error {
	tx := s.begin(index)
	tx.servers.Delete([]byte(c.ID))
	tx.commit(s)
	return nil
}

// SetHostStateCmd marks a host down (its agent stopped reporting for the
// TTL) or, with LoseReplicas, gives up on its replicas after the grace
// period: they become desired-stopped and "lost", so the controller places
// their slots elsewhere and the host, if it returns, removes them.
type SetHostStateCmd struct {
	Now   time.Time `json:"now"`
	Host  string    `json:"host"`
	State string    `json:"state"`
	// ExpectSeenAt guards against a heartbeat that arrived after the
	// leader decided: the host must not have been seen since.
	ExpectSeenAt time.Time `json:"expect_seen_at"`
	LoseReplicas bool      `json:"lose_replicas,omitempty"`
}

// ApplySetHostState applies a SetHostStateCmd at a raft index.
func (s *Store) ApplySetHostState(index uint64, c SetHostStateCmd) error {
	tx := s.begin(index)
	v, ok := tx.hosts.Get([]byte(c.Host))
	if !ok {
		return fmt.Errorf("%w: host %s", ErrNotFound, c.Host)
	}
	h := *v.(*Host)
	if !h.SeenAt.Equal(c.ExpectSeenAt) {
		return fmt.Errorf("%w: host %s reported since the decision", ErrConflict, c.Host)
	}
	if c.State == HostDown && h.State != HostDown {
		h.DownSince = c.Now
		tx.event(c.Now, Event{Type: EventHostDown, Host: h.ID, Message: "no report within the TTL"})
	}
	if c.State == HostReady {
		h.DownSince = time.Time{}
	}
	h.State = c.State
	h.ModifyIndex = index
	tx.hosts.Insert([]byte(h.ID), &h)
	if c.LoseReplicas && h.State == HostDown {
		// Collect first: putReplica writes to the tree being walked.
		var ids []string
		tx.byHost.Root().WalkPrefix([]byte(h.ID+"\x00"), func(k []byte, _ interface{}) bool {
			ids = append(ids, string(k[len(h.ID)+1:]))
			return false
		})
		for _, id := range ids {
			// Desired-running replicas are given up; so are desired-stopped
			// ones whose stop the host never confirmed: nobody will confirm
			// it, and a removal or a rollout waiting on it must go on.
			if r, ok := tx.replica(id); ok && replicaHeldByHost(*r) {
				r.Desired = DesiredStopped
				r.Status.State = ReplicaLost
				r.Status.Message = fmt.Sprintf("host %s down since %s", h.ID, h.DownSince.Format(time.RFC3339))
				r.Status.HealthySince = time.Time{}
				r.Status.UpdatedAt = c.Now
				r.Status.Since = c.Now
				tx.putReplica(r, true)
				tx.replicaEvent(c.Now, EventReplicaLost, r, r.Status.Message)
			}
		}
	}
	tx.commit(s)
	return nil
}

// SetHostAvailabilityCmd is an operator's `host drain` or `host activate`
// (FSM version 4): a drained host takes no new replica and the leader
// moves its replicas off. ForgetWhenDown marks the host of a server that
// left the cluster. Setting what is already set changes nothing.
type SetHostAvailabilityCmd struct {
	Now            time.Time `json:"now"`
	Host           string    `json:"host"`
	Availability   string    `json:"availability"`
	ForgetWhenDown bool      `json:"forget_when_down,omitempty"`
}

// ApplySetHostAvailability applies a SetHostAvailabilityCmd at a raft index.
func (s *Store) ApplySetHostAvailability(index uint64, c SetHostAvailabilityCmd) error {
	if c.Availability != HostActive && c.Availability != HostDrain {
		return fmt.Errorf("%w: host availability %q, want %s or %s", ErrBadRecord, c.Availability, HostActive, HostDrain)
	}
	tx := s.begin(index)
	v, ok := tx.hosts.Get([]byte(c.Host))
	if !ok {
		return fmt.Errorf("%w: host %s", ErrNotFound, c.Host)
	}
	h := *v.(*Host)
	availability := c.Availability
	if availability == HostActive {
		availability = "" // the record of a host never drained
	}
	if h.Availability == availability && h.ForgetWhenDown == c.ForgetWhenDown {
		return nil
	}
	if h.Availability != availability {
		h.AvailabilitySince = c.Now
	}
	h.Availability = availability
	h.ForgetWhenDown = c.ForgetWhenDown
	h.ModifyIndex = index
	tx.hosts.Insert([]byte(h.ID), &h)
	tx.commit(s)
	return nil
}

// RemoveHostCmd forgets a host (FSM version 4): `deployctl host rm`, or
// the leader once the host of a server that left is down and empty. It is
// refused (ErrConflict) unless the host is down and holds no replica (none
// desired running, none whose stop it has not confirmed): its replicas must
// have been replaced first. Records of its replicas that remain (stopped,
// lost) go with it.
type RemoveHostCmd struct {
	Host string `json:"host"`
}

// ApplyRemoveHost applies a RemoveHostCmd at a raft index.
func (s *Store) ApplyRemoveHost(index uint64, c RemoveHostCmd) error {
	tx := s.begin(index)
	v, ok := tx.hosts.Get([]byte(c.Host))
	if !ok {
		return fmt.Errorf("%w: host %s", ErrNotFound, c.Host)
	}
	h := v.(*Host)
	if h.State != HostDown {
		return fmt.Errorf("%w: host %s is %s, not down", ErrConflict, h.ID, h.State)
	}
	var ids []string
	held := 0
	tx.byHost.Root().WalkPrefix([]byte(h.ID+"\x00"), func(k []byte, v interface{}) bool {
		ids = append(ids, string(k[len(h.ID)+1:]))
		if replicaHeldByHost(*v.(*Replica)) {
			held++
		}
		return false
	})
	if held > 0 {
		return fmt.Errorf("%w: host %s still holds %d replicas", ErrConflict, h.ID, held)
	}
	for _, id := range ids {
		tx.deleteReplica(id)
	}
	tx.hosts.Delete([]byte(h.ID))
	// The host's assignment index stays and moves on: an agent that comes
	// back under this id (a new host record) never sees an index go back.
	tx.touchedHosts[h.ID] = true
	tx.commit(s)
	return nil
}

// replicaHeldByHost reports whether r may still hold a container on its
// host: desired running, or desired stopped without the host having
// confirmed the stop (stopped, failed, never started, or already lost).
func replicaHeldByHost(r Replica) bool {
	if r.Desired == DesiredRunning {
		return true
	}
	switch r.Status.State {
	case ReplicaStopped, ReplicaFailed, ReplicaPending, ReplicaLost, "":
		return false
	}
	return true
}

// HeldByHost is replicaHeldByHost for the controller: a host down past its
// grace period with such a replica gets SetHostStateCmd.LoseReplicas.
func HeldByHost(r Replica) bool { return replicaHeldByHost(r) }

// SetPolicyCmd stores the cluster policy. ExpectVersion guards it: the
// version the leader saw, so two concurrent sets cannot both win.
type SetPolicyCmd struct {
	Now           time.Time `json:"now"`
	ExpectVersion int       `json:"expect_version"`
	JSON          []byte    `json:"json"`
}

// ApplySetPolicy applies a SetPolicyCmd at a raft index and returns the new
// version.
func (s *Store) ApplySetPolicy(index uint64, c SetPolicyCmd) (int, error) {
	tx := s.begin(index)
	cur := 0
	if tx.policy != nil {
		cur = tx.policy.Version
	}
	if cur != c.ExpectVersion {
		return 0, fmt.Errorf("%w: policy is at version %d, not %d", ErrConflict, cur, c.ExpectVersion)
	}
	tx.policy = &PolicyRecord{Version: cur + 1, JSON: c.JSON, UpdatedAt: c.Now}
	tx.commit(s)
	return cur + 1, nil
}

// outcomeEvent names the event of a revision outcome a rollout step
// writes.
func outcomeEvent(outcome string) (string, bool) {
	switch outcome {
	case RevisionSucceeded:
		return EventRolloutSucceeded, true
	case RevisionPaused:
		return EventRolloutPaused, true
	case RevisionFailed:
		return EventRolloutFailed, true
	}
	return "", false
}

// replicaChange is the event an agent's report of a replica makes, if
// any: a change of state (or a container where there was none), never a
// report that repeats what is recorded (an agent's full resend after a
// restart).
func replicaChange(was ReplicaStatus, rep StatusReport) (typ, msg string, ok bool) {
	if rep.State == was.State && (rep.ContainerID == was.ContainerID || rep.ContainerID == "") {
		return "", "", false
	}
	switch rep.State {
	case ReplicaStarting:
		if rep.ContainerID == "" || rep.ContainerID == was.ContainerID {
			return "", "", false
		}
		return EventReplicaStarted, "container " + shortContainer(rep.ContainerID), true
	case ReplicaHealthy:
		return EventReplicaHealthy, rep.Message, true
	case ReplicaUnhealthy:
		return EventReplicaUnhealthy, rep.Message, true
	case ReplicaFailed:
		return EventReplicaFailed, rep.Message, true
	case ReplicaStopped:
		return EventReplicaStopped, rep.Message, true
	}
	return "", "", false
}

func shortContainer(id string) string { return id[:min(12, len(id))] }
