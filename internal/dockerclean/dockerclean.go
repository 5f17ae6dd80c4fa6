// Package dockerclean removes the Docker objects that deployctl created for
// a demo or a test run, and nothing else: containers by the host-id label
// its agent put on them, networks by that label or by name, each with the
// io.deployctl.managed label, images by a repo digest naming the run's own
// registry address.
package dockerclean

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// HostObjects force-removes the containers labelled io.deployctl.host=hostID,
// then the service networks the host's agent made (io.deployctl.managed=true
// and io.deployctl.host=hostID) and every deployctl-managed network named
// netName, the one network of older versions (agents racing on one engine
// could create two of the same name, so all matches go, by ID).
//
// Containers are listed twice, a moment apart: an agent killed while its
// create request was in flight leaves a container the engine finishes
// creating after the agent is gone, and the first list may not see it yet.
func HostObjects(ctx context.Context, cli *client.Client, hostID, netName string) {
	for pass := range 2 {
		if pass > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "io.deployctl.host="+hostID))})
		if err == nil {
			for _, c := range list {
				_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			}
		}
	}
	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "io.deployctl.managed=true"))})
	if err == nil {
		for _, nw := range nets {
			mine := nw.Labels["io.deployctl.host"] == hostID
			shared := nw.Name == netName && nw.Labels["io.deployctl.service"] == ""
			if nw.Labels["io.deployctl.managed"] == "true" && (mine || shared) {
				_ = cli.NetworkRemove(ctx, nw.ID)
			}
		}
	}
}

// RegistryImages removes the images the engine pulled from a registry,
// recognised by a repo digest naming its address.
func RegistryImages(ctx context.Context, cli *client.Client, regAddr string) {
	_ = Images(ctx, cli, "", "", regAddr)
}

// Labelled force-removes the containers and networks labelled key=value,
// and the images labelled so or pulled from one of registries (by a repo
// digest naming its address). It returns every error it met, so that a
// test can fail on a cleanup that left something behind.
func Labelled(ctx context.Context, cli *client.Client, key, value string, registries ...string) []error {
	var errs []error
	byLabel := filters.NewArgs(filters.Arg("label", key+"="+value))
	containers, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: byLabel})
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	for _, c := range containers {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID, err))
		}
	}
	networks, err := cli.NetworkList(ctx, network.ListOptions{Filters: byLabel})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	}
	for _, n := range networks {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	return append(errs, Images(ctx, cli, key, value, registries...)...)
}

// Images force-removes the images labelled key=value (when value is not
// empty) or pulled from one of registries.
func Images(ctx context.Context, cli *client.Client, key, value string, registries ...string) []error {
	images, err := cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return []error{fmt.Errorf("list images: %w", err)}
	}
	var errs []error
	for _, img := range images {
		if value != "" && img.Labels[key] == value {
			if _, err := cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
				errs = append(errs, fmt.Errorf("remove image %s: %w", img.ID, err))
			}
			continue
		}
		// Pulled from one of our registries: remove our references only.
		// The same content pulled by another test from its own registry
		// has the same image ID, and removing by ID would delete it under
		// that test (a replica then fails with "No such image").
		for _, ref := range pulledRefs(img, registries) {
			if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
			}
		}
	}
	return errs
}

// pulledRefs is the image's tags and digests that name one of registries.
func pulledRefs(img image.Summary, registries []string) []string {
	var refs []string
	for _, ref := range append(slices.Clone(img.RepoTags), img.RepoDigests...) {
		for _, reg := range registries {
			if strings.HasPrefix(ref, reg+"/") {
				refs = append(refs, ref)
				break
			}
		}
	}
	return refs
}
