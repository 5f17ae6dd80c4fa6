package state

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/specs"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func mustApplyRevision(t *testing.T, s *Store, index uint64, c ApplyRevisionCmd) ApplyResult {
	t.Helper()
	res, err := s.ApplyRevision(index, c)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func rev(svc, digest string) Revision {
	return Revision{Service: svc, Spec: specs.Spec{Service: svc, Replicas: 1}, Digest: digest, Ref: "r@" + digest, Fingerprint: "fp" + digest}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestWatchHostWakesOnlyForItsAssignments(t *testing.T) {
	s := NewStore()
	mustApplyRevision(t, s, 1, ApplyRevisionCmd{Now: t0, Revision: rev("web", "sha256:a")})
	_, h1 := s.WatchHost("h1")
	_, h2 := s.WatchHost("h2")
	_, all := s.Watch()
	svc, _ := s.View().Service("web")
	if err := s.ApplyRolloutStep(2, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
		Create: []Replica{{ID: "r1", Service: "web", Revision: 1, Fingerprint: "fpsha256:a", Host: "h1"}}}); err != nil {
		t.Fatal(err)
	}
	if !closed(h1) || closed(h2) || !closed(all) {
		t.Fatalf("after assigning to h1: h1 woke=%v h2 woke=%v any woke=%v; want true false true", closed(h1), closed(h2), closed(all))
	}
	_, h1 = s.WatchHost("h1")
	if err := s.ApplyHostReport(3, HostReportCmd{Now: t0, Report: HostReport{Host: "h1", Reports: []StatusReport{{ReplicaID: "r1", State: ReplicaHealthy}}}}); err != nil {
		t.Fatal(err)
	}
	if closed(h1) {
		t.Fatal("a status report woke the host's long-poll: its assignments did not change")
	}
	if got := s.View().HostIndex("h1"); got != 2 {
		t.Fatalf("host index %d, want 2", got)
	}
}

func TestHealthySinceKeptWhileHealthy(t *testing.T) {
	s := NewStore()
	mustApplyRevision(t, s, 1, ApplyRevisionCmd{Now: t0, Revision: rev("web", "sha256:a")})
	svc, _ := s.View().Service("web")
	_ = s.ApplyRolloutStep(2, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
		Create: []Replica{{ID: "r1", Service: "web", Revision: 1, Fingerprint: "fpsha256:a", Host: "h1"}}})
	report := func(i uint64, at time.Time, st string) {
		if err := s.ApplyHostReport(i, HostReportCmd{Now: at, Report: HostReport{Host: "h1", Reports: []StatusReport{{ReplicaID: "r1", State: st}}}}); err != nil {
			t.Fatal(err)
		}
	}
	report(3, t0.Add(time.Second), ReplicaHealthy)
	report(4, t0.Add(5*time.Second), ReplicaHealthy)
	r, _ := s.View().Replica("r1")
	if !r.Status.HealthySince.Equal(t0.Add(time.Second)) {
		t.Fatalf("healthy since %v, want the first healthy report", r.Status.HealthySince)
	}
	report(5, t0.Add(6*time.Second), ReplicaUnhealthy)
	r, _ = s.View().Replica("r1")
	if !r.Status.HealthySince.IsZero() {
		t.Fatal("an unhealthy replica kept its healthy-since time")
	}
	// A report from a host the replica is not on is ignored.
	_ = s.ApplyHostReport(6, HostReportCmd{Now: t0, Report: HostReport{Host: "h2", Reports: []StatusReport{{ReplicaID: "r1", State: ReplicaHealthy}}}})
	if r, _ = s.View().Replica("r1"); r.Status.State != ReplicaUnhealthy {
		t.Fatal("a report from another host changed the replica")
	}
}

func TestRemoveThenPurge(t *testing.T) {
	s := NewStore()
	mustApplyRevision(t, s, 1, ApplyRevisionCmd{Now: t0, Revision: rev("web", "sha256:a")})
	svc, _ := s.View().Service("web")
	_ = s.ApplyRolloutStep(2, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
		Create: []Replica{{ID: "r1", Service: "web", Revision: 1, Fingerprint: "fpsha256:a", Host: "h1"}}})
	if err := s.ApplyDeleteService(3, DeleteServiceCmd{Now: t0, Service: "web"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.View().Replica("r1"); r.Desired != DesiredStopped {
		t.Fatal("rm did not ask the replica to stop")
	}
	if _, err := s.ApplyRevision(4, ApplyRevisionCmd{Now: t0, ExpectCurrent: 1, Revision: rev("web", "sha256:b")}); !errors.Is(err, ErrRemoving) {
		t.Fatalf("apply while removing: %v, want ErrRemoving", err)
	}
	svc, _ = s.View().Service("web")
	if err := s.ApplyRolloutStep(5, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex, Purge: true}); !errors.Is(err, ErrConflict) {
		t.Fatalf("purge with a replica left: %v, want ErrConflict", err)
	}
	if err := s.ApplyRolloutStep(6, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex, Remove: []string{"r1"}, Purge: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.View().Service("web"); ok || len(s.View().Revisions("web")) != 0 {
		t.Fatal("purge left the service or its history")
	}
}

// The service and host indexes hold the replica records themselves: every
// view of a replica shows its latest write, also after a snapshot restore.
func TestReplicaIndexesFollowWrites(t *testing.T) {
	s := NewStore()
	mustApplyRevision(t, s, 1, ApplyRevisionCmd{Now: t0, Revision: rev("web", "sha256:a")})
	svc, _ := s.View().Service("web")
	if err := s.ApplyRolloutStep(2, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: svc.ModifyIndex,
		Create: []Replica{{ID: "r2", Service: "web", Slot: 1, Revision: 1, Host: "h1"}, {ID: "r1", Service: "web", Slot: 0, Revision: 1, Host: "h1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyHostReport(3, HostReportCmd{Now: t0, Report: HostReport{Host: "h1", Reports: []StatusReport{{ReplicaID: "r2", State: ReplicaHealthy}}}}); err != nil {
		t.Fatal(err)
	}
	check := func(when string, view *Tables, wantIDs []string, wantR2 string) {
		t.Helper()
		views := map[string][]Replica{"service": view.ServiceReplicas("web"), "host": view.HostReplicas("h1")}
		var each []Replica
		view.EachHostReplica("h1", func(r Replica) { each = append(each, r) })
		views["each"] = each
		for name, got := range views {
			var ids []string
			for _, r := range got {
				ids = append(ids, r.ID)
				if r.ID == "r2" && r.Status.State != wantR2 {
					t.Errorf("%s: %s view shows r2 %q, want %q", when, name, r.Status.State, wantR2)
				}
			}
			if len(ids) != len(wantIDs) || (len(ids) > 0 && (ids[0] != wantIDs[0] || ids[len(ids)-1] != wantIDs[len(wantIDs)-1])) {
				t.Errorf("%s: %s view lists %v, want %v", when, name, ids, wantIDs)
			}
		}
	}
	check("after a report", s.View(), []string{"r1", "r2"}, ReplicaHealthy)

	restored := snapshotRestored(t, s)
	check("after a restore", restored.View(), []string{"r1", "r2"}, ReplicaHealthy)
	if err := restored.ApplyHostReport(4, HostReportCmd{Now: t0, Report: HostReport{Host: "h1", Reports: []StatusReport{{ReplicaID: "r2", State: ReplicaUnhealthy}}}}); err != nil {
		t.Fatal(err)
	}
	check("after a report on the restored store", restored.View(), []string{"r1", "r2"}, ReplicaUnhealthy)
}

// A host record mirrors the proxy address of its agent's latest report
// (an empty one clears it: the host stopped running a proxy), and a
// snapshot carries it.
func TestHostProxyAddrMirrorsReportsAndSurvivesSnapshot(t *testing.T) {
	s := NewStore()
	if err := s.ApplyHostReport(1, HostReportCmd{Now: t0, Report: HostReport{Host: "h1", ProxyAddr: "10.0.0.1:7946"}}); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.View().Host("h1"); h.ProxyAddr != "10.0.0.1:7946" {
		t.Fatalf("proxy addr %q after the first report, want 10.0.0.1:7946", h.ProxyAddr)
	}
	restored := snapshotRestored(t, s)
	if h, _ := restored.View().Host("h1"); h.ProxyAddr != "10.0.0.1:7946" {
		t.Fatalf("proxy addr %q after a snapshot and restore, want 10.0.0.1:7946", h.ProxyAddr)
	}
	if err := s.ApplyHostReport(2, HostReportCmd{Now: t0, Report: HostReport{Host: "h1"}}); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.View().Host("h1"); h.ProxyAddr != "" {
		t.Fatalf("proxy addr %q after a report without one, want it cleared", h.ProxyAddr)
	}
}

// A rollout step's figures go to the service's current revision, survive a
// snapshot, and leave every other revision alone; the step's canary state
// is the rollout's.
func TestRolloutStepKeepsTrafficWithTheCurrentRevision(t *testing.T) {
	s := NewStore()
	mustApplyRevision(t, s, 1, ApplyRevisionCmd{Now: t0, Revision: rev("web", "sha256:a")})
	mustApplyRevision(t, s, 2, ApplyRevisionCmd{Now: t0, ExpectCurrent: 1, Revision: rev("web", "sha256:b")})
	svc, _ := s.View().Service("web")
	figures := &RevisionTraffic{New: traffic.Summary{Requests: 212, Errors: 66, P50: 3 * time.Millisecond, P99: 800 * time.Millisecond},
		Old: &traffic.Summary{Requests: 1890, Errors: 2}, UpdatedAt: t0}
	ro := *svc.Rollout
	ro.Canary = &CanaryState{Slots: []int{0}, StartedAt: t0}
	if err := s.ApplyRolloutStep(3, RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 2, ExpectModifyIndex: svc.ModifyIndex,
		Traffic: figures, Rollout: &ro}); err != nil {
		t.Fatal(err)
	}
	restored := snapshotRestored(t, s)
	for _, view := range []*Tables{s.View(), restored.View()} {
		if r, _ := view.Revision("web", 2); r.Traffic == nil || *r.Traffic.Old != *figures.Old || r.Traffic.New != figures.New {
			t.Fatalf("revision 2 traffic = %+v, want %+v", r.Traffic, figures)
		}
		if r, _ := view.Revision("web", 1); r.Traffic != nil {
			t.Fatalf("revision 1 got figures %+v", r.Traffic)
		}
		if svc, _ := view.Service("web"); !svc.Rollout.Canary.Running() || svc.Rollout.Canary.Slots[0] != 0 {
			t.Fatalf("canary = %+v, want slot 0 running", svc.Rollout.Canary)
		}
	}
}

// snapshotRestored is a new store restored from a snapshot of s.
func snapshotRestored(t *testing.T, s *Store) *Store {
	t.Helper()
	var buf bytes.Buffer
	if _, err := s.View().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored := NewStore()
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	return restored
}
