package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller/rollout"
	"github.com/deployctl/deployctl/raftstore/state"
)

// mustSteadyCluster builds, straight in a state store (no raft, no
// Docker: this is a cost benchmark of the controller's reads), a cluster of
// hosts hosts running services services of perService replicas each,
// spread round-robin, every rollout done and every replica healthy.
func mustSteadyCluster(b *testing.B, hosts, services, perService int) *state.Store {
	b.Helper()
	store := state.NewStore()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var index uint64
	next := func() uint64 { index++; return index }
	reports := make([][]state.StatusReport, hosts)
	for s := range services {
		name := fmt.Sprintf("svc-%04d", s)
		spec := specFor("127.0.0.1:1/x:v1")
		spec.Service, spec.Replicas = name, perService
		if _, err := store.ApplyRevision(next(), state.ApplyRevisionCmd{Now: now, Revision: state.Revision{Service: name, Spec: *spec, Ref: "r@sha256:a", Fingerprint: "f"}}); err != nil {
			b.Fatal(err)
		}
		svc, _ := store.View().Service(name)
		step := state.RolloutStepCmd{Now: now, Service: name, ExpectCurrent: svc.Current, ExpectModifyIndex: svc.ModifyIndex,
			Rollout:      &state.Rollout{Revision: 1, StartedAt: now, LastProgressAt: now, State: state.RolloutSucceeded},
			ServiceState: state.ServiceRunning, LastGood: 1, Outcome: &state.RevisionOutcome{Number: 1, State: state.RevisionSucceeded}}
		for slot := range perService {
			id := fmt.Sprintf("%s-%04d", name, slot)
			h := (s*perService + slot) % hosts
			step.Create = append(step.Create, state.Replica{ID: id, Service: name, Slot: slot, Revision: 1, Fingerprint: "f",
				Host: fmt.Sprintf("host-%04d", h), Desired: state.DesiredRunning})
			reports[h] = append(reports[h], state.StatusReport{ReplicaID: id, State: state.ReplicaHealthy, ContainerID: "c-" + id})
		}
		if err := store.ApplyRolloutStep(next(), step); err != nil {
			b.Fatal(err)
		}
	}
	for h := range hosts {
		report := state.HostReport{Host: fmt.Sprintf("host-%04d", h), Reports: reports[h]}
		if err := store.ApplyHostReport(next(), state.HostReportCmd{Now: now, Report: report}); err != nil {
			b.Fatal(err)
		}
	}
	return store
}

// controllerPassReads is what one leader pass reads and decides for every
// service (reconcileAll without the raft writes, which a steady cluster does
// not make): the cluster load for placement, then per service its replicas
// and the rollout decision. It returns the number of actions decided.
func controllerPassReads(view *state.Tables, now time.Time) int {
	newClusterLoad(view)
	actions := 0
	for _, svc := range view.Services() {
		target, _ := view.Revision(svc.Name, svc.Current)
		d := rollout.Decide(rollout.Input{Now: now, Service: svc, Target: target, Replicas: view.ServiceReplicas(svc.Name)})
		actions += len(d.Start) + len(d.Stop) + len(d.Remove)
	}
	return actions
}

// BenchmarkControllerPass measures one leader pass over a steady cluster
// of 1,000 hosts and 100,000 replicas (1,000 services of 100), the scale
// the design aims at. The leader runs a pass on every change and at least
// every few seconds, so this bounds how fast it reacts under that load.
func BenchmarkControllerPass(b *testing.B) {
	for _, size := range []struct{ hosts, services, perService int }{{10, 10, 10}, {100, 100, 100}, {1000, 1000, 100}} {
		b.Run(fmt.Sprintf("hosts=%d/replicas=%d", size.hosts, size.services*size.perService), func(b *testing.B) {
			store := mustSteadyCluster(b, size.hosts, size.services, size.perService)
			view := store.View()
			now := time.Date(2026, 1, 1, 13, 0, 0, 0, time.UTC)
			if n := len(view.Hosts()); n != size.hosts {
				b.Fatalf("%d hosts, want %d", n, size.hosts)
			}
			if actions := controllerPassReads(view, now); actions != 0 {
				b.Fatalf("a steady cluster decided %d actions, want none", actions)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				controllerPassReads(view, now)
			}
		})
	}
}
