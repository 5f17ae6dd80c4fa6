// Package dockerclean removes the Docker objects that deployctl created for
// a demo or a test run, and nothing else: containers by the host-id label
// its agent put on them, networks by name and the io.deployctl.managed
// label, images by a repo digest naming the run's own registry address.
package dockerclean

import (
	"context"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// HostObjects force-removes the containers labelled io.deployctl.host=hostID
// and every deployctl-managed network named netName (agents racing on one
// engine can create two of the same name, so all matches go, by ID).
func HostObjects(ctx context.Context, cli *client.Client, hostID, netName string) {
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "io.deployctl.host="+hostID))})
	if err == nil {
		for _, c := range list {
			_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	}
	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", netName), filters.Arg("label", "io.deployctl.managed=true"))})
	if err == nil {
		for _, nw := range nets {
			if nw.Name == netName {
				_ = cli.NetworkRemove(ctx, nw.ID)
			}
		}
	}
}

// RegistryImages removes the images the engine pulled from a registry,
// recognised by a repo digest naming its address.
func RegistryImages(ctx context.Context, cli *client.Client, regAddr string) {
	list, err := cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return
	}
	for _, im := range list {
		for _, rd := range im.RepoDigests {
			if strings.HasPrefix(rd, regAddr+"/") {
				_, _ = cli.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true})
				break
			}
		}
	}
}
