package deployer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// LabelAccounts marks the container ImageAccounts creates, never starts and
// removes: it is not a replica, so it carries no LabelManaged.
const LabelAccounts = "io.deployctl.accounts"

// maxSymlinks bounds how many symbolic links ImageAccounts follows for one
// file, as the kernel bounds a path lookup.
const maxSymlinks = 40

// accountsCache keeps what ImageAccounts read, by image ID.
type accountsCache struct {
	mu     sync.Mutex
	byID   map[string]ImageAccounts
	maxLen int
}

func newAccountsCache() *accountsCache {
	return &accountsCache{byID: map[string]ImageAccounts{}, maxLen: 256}
}

func (c *accountsCache) get(id string) (ImageAccounts, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	acc, ok := c.byID[id]
	return acc, ok
}

func (c *accountsCache) put(id string, acc ImageAccounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byID) >= c.maxLen {
		// Images come and go with revisions; dropping everything now and
		// then is simpler than an LRU and costs one read per image.
		clear(c.byID)
	}
	c.byID[id] = acc
}

// ImageAccounts reads the /etc/passwd and /etc/group of a local image
// (pulled already) without running anything: it creates a container that
// is never started (no network, entrypoint a path that need not exist),
// copies the two files out as the engine would open them, following
// symbolic links inside the image, and removes the container. A missing
// file is nil. The result is cached by image ID. The container carries
// the host label but not the managed one: reconciliation never sees it,
// and a cleanup by host label (tests) removes one left by a killed agent.
func (r *DockerRuntime) ImageAccounts(ctx context.Context, ref, hostID string) (ImageAccounts, error) {
	inspect, err := r.client.ImageInspect(ctx, ref)
	if err != nil {
		return ImageAccounts{}, engineError("inspect image "+ref, err)
	}
	if acc, ok := r.accounts.get(inspect.ID); ok {
		return acc, nil
	}
	created, err := r.client.ContainerCreate(ctx,
		&container.Config{
			Image:           inspect.ID,
			Entrypoint:      []string{"/deployctl-never-started"},
			Cmd:             []string{},
			Labels:          map[string]string{LabelAccounts: "true", LabelHost: hostID},
			NetworkDisabled: true,
		},
		&container.HostConfig{NetworkMode: network.NetworkNone},
		nil, nil, "")
	if err != nil {
		return ImageAccounts{}, engineError("create a container to read the accounts of "+ref, err)
	}
	defer func() {
		// Removed even when ctx is done: the container must not stay.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = r.client.ContainerRemove(rmCtx, created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}()
	var acc ImageAccounts
	if acc.Passwd, err = r.readContainerFile(ctx, created.ID, "/etc/passwd"); err != nil {
		return ImageAccounts{}, fmt.Errorf("image %s: %w", ref, err)
	}
	if acc.Group, err = r.readContainerFile(ctx, created.ID, "/etc/group"); err != nil {
		return ImageAccounts{}, fmt.Errorf("image %s: %w", ref, err)
	}
	r.accounts.put(inspect.ID, acc)
	return acc, nil
}

// errNotRegular is a path that is neither a file nor a link to one.
var errNotRegular = errors.New("not a regular file")

// readContainerFile returns the content of the file at p in a container's
// file system, following symbolic links (relative to their directory, or
// absolute within the container); nil when it does not exist.
func (r *DockerRuntime) readContainerFile(ctx context.Context, id, p string) ([]byte, error) {
	for range maxSymlinks {
		body, _, err := r.client.CopyFromContainer(ctx, id, p)
		if cerrdefs.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, engineError("read "+p, err)
		}
		content, link, err := firstTarFile(body, MaxAccountsFileSize)
		_ = body.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if link == "" {
			return content, nil
		}
		if !path.IsAbs(link) {
			link = path.Join(path.Dir(p), link)
		}
		p = path.Clean(link)
	}
	return nil, fmt.Errorf("read %s: more than %d symbolic links", p, maxSymlinks)
}

// firstTarFile reads the first entry of a tar stream: its content when it
// is a regular file of at most limit bytes, or its target when it is a
// symbolic link.
func firstTarFile(r io.Reader, limit int64) (content []byte, link string, err error) {
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil {
		return nil, "", fmt.Errorf("archive from the engine: %w", err)
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		return nil, hdr.Linkname, nil
	case tar.TypeReg:
	default:
		return nil, "", fmt.Errorf("%w (tar type %q)", errNotRegular, hdr.Typeflag)
	}
	if hdr.Size > limit {
		return nil, "", fmt.Errorf("%d bytes, more than the %d deployctl reads", hdr.Size, limit)
	}
	content, err = io.ReadAll(io.LimitReader(tr, limit))
	if err != nil {
		return nil, "", fmt.Errorf("archive from the engine: %w", err)
	}
	if content == nil {
		content = []byte{}
	}
	return content, "", nil
}
