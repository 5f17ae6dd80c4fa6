package dockerclean

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/enginetest"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// HostObjects removes the networks a host's agent made (its service
// networks and the shared one of older versions) and leaves every other
// network, deployctl's for another host included.
func TestHostObjectsRemovesTheHostsNetworksOnly(t *testing.T) {
	enginetest.Require(t)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	run := "t" + hex.EncodeToString(b)
	const labelTest = "io.deployctl.test"
	t.Cleanup(func() {
		for _, err := range Labelled(context.Background(), cli, labelTest, run) {
			t.Errorf("cleanup: %v", err)
		}
	})
	host, prefix := "host-"+run, "dc-clean-"+run
	create := func(name string, labels map[string]string) {
		t.Helper()
		labels[labelTest] = run
		// No subnet given: the test's few networks come from the
		// engine's default pools, like any foreign network would.
		if _, err := cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: labels}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	managed := "io.deployctl.managed"
	create(prefix+"-web", map[string]string{managed: "true", "io.deployctl.host": host, "io.deployctl.service": "web"})
	create(prefix+"-api", map[string]string{managed: "true", "io.deployctl.host": host, "io.deployctl.service": "api"})
	create(prefix, map[string]string{managed: "true"}) // the shared network of older versions
	create(prefix+"-other-web", map[string]string{managed: "true", "io.deployctl.host": "other-" + run, "io.deployctl.service": "web"})
	create(prefix+"-foreign", map[string]string{"io.deployctl.host": host}) // not deployctl's

	HostObjects(ctx, cli, host, prefix)

	left, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelTest+"="+run))})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, n := range left {
		names[n.Name] = true
	}
	if len(names) != 2 || !names[prefix+"-other-web"] || !names[prefix+"-foreign"] {
		t.Errorf("networks left: %v; want only another host's and the foreign one", names)
	}
}
