package deployer

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/deployctl/deployctl/internal/enginetest"
)

// TestServiceNetworkCreateRace: several agents on one engine (each its own
// DockerRuntime, so the in-process lock does not serialise them) ensure
// the same service network at the same moment, over and over. Every call
// succeeds, all get the same network, and exactly one exists afterwards
// (issue 17: three agents made three networks of one name and then failed
// with "network ... is ambiguous").
func TestServiceNetworkCreateRace(t *testing.T) {
	const agents, rounds = 6, 8
	ctx := context.Background()
	raw, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	if _, err := raw.Ping(ctx); err != nil {
		enginetest.Unavailable(t, err)
	}
	runID := mustRunID(t)
	t.Cleanup(func() { cleanupDocker(t, raw, runID) })
	runtimes := make([]*DockerRuntime, agents)
	for i := range runtimes {
		rt, err := NewDockerRuntime()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rt.Close() })
		runtimes[i] = rt
	}
	host := "race-" + runID
	plan := NetworkPlan{Prefix: "dr-" + runID, Pool: netip.MustParsePrefix(DefaultSubnetPool), Labels: map[string]string{labelTest: runID}}

	for round := range rounds {
		service := fmt.Sprintf("svc%d", round)
		got := make([]ServiceNetwork, agents)
		errs := make([]error, agents)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, rt := range runtimes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[i], errs[i] = rt.EnsureServiceNetwork(ctx, host, service, plan)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: agent %d: %v", round, i, err)
			}
		}
		list, err := raw.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", labelTest+"="+runID), filters.Arg("label", LabelService+"="+service))})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 {
			t.Errorf("round %d: %d networks of service %s on the engine, want 1", round, len(list), service)
			continue
		}
		for i, sn := range got {
			if errs[i] == nil && sn.ID != list[0].ID {
				t.Errorf("round %d: agent %d got network %s, the engine has %s", round, i, sn.ID, list[0].ID)
			}
		}
		// And again, now that it exists: found, not created.
		again, err := runtimes[round%agents].EnsureServiceNetwork(ctx, host, service, plan)
		if err != nil || again.ID != list[0].ID {
			t.Errorf("round %d: ensure again = %+v, %v; want %s", round, again, err, list[0].ID)
		}
	}
}
