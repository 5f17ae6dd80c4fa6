package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// TestServiceListCountsWithoutInstances: the list answers each service's
// replica counts, as the status of the service does, and no instances
// (issue 12: at 100,000 replicas every list call carried all of them).
func TestServiceListCountsWithoutInstances(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	c := wire.NewClient([]string{n.api.URL}, nil)
	ctx := context.Background()
	if err := n.ctrl.Report(ctx, state.HostReport{Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, []byte(fmt.Sprintf("service: web\nimage: %s\nreplicas: 2\nupdate: { parallelism: 2 }\n", ref))); err != nil {
		t.Fatal(err)
	}
	var st wire.ServiceStatus
	deadline := time.Now().Add(10 * time.Second)
	for len(st.Instances) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("replicas not placed: %+v", st)
		}
		var err error
		if st, err = c.Status(ctx, "web", st.Index, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var reports []state.StatusReport
	for _, in := range st.Instances {
		reports = append(reports, state.StatusReport{ReplicaID: in.ID, State: state.ReplicaHealthy, ContainerID: "c-" + in.ID})
	}
	if err := n.ctrl.Report(ctx, state.HostReport{Host: "h1", Reports: reports}); err != nil {
		t.Fatal(err)
	}
	list, err := c.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Replicas.Desired != 2 || list[0].Replicas.Healthy != 2 || list[0].Replicas.Running != 2 || len(list[0].Instances) != 0 {
		t.Fatalf("service list: %+v; want web with 2 desired, 2 running, 2 healthy and no instances", list)
	}
	if st, err = c.Status(ctx, "web", 0, 0); err != nil || len(st.Instances) != 2 || st.Replicas.Healthy != 2 {
		t.Fatalf("status of web: %+v, %v; want its 2 instances", st, err)
	}
}
