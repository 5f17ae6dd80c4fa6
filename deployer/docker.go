package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// Errors of the Docker runtime. Engine errors that fit none of these are
// wrapped with the operation that failed.
var (
	// ErrEngineUnavailable means the Docker Engine could not be reached.
	ErrEngineUnavailable = errors.New("docker engine unavailable")
	// ErrPullFailed means the engine could not pull an image.
	ErrPullFailed = errors.New("image pull failed")
	// ErrNotManaged means a container or network exists but deployctl did
	// not create it, so it is left alone.
	ErrNotManaged = errors.New("not managed by deployctl")
	// ErrNotFound means the container or image does not exist.
	ErrNotFound = errors.New("not found")
)

// maxExecOutput bounds what Exec keeps of a command's output: enough for a
// health check's message, not a log.
const maxExecOutput = 4096

// DockerRuntime is the agent's view of the local Docker Engine. Every call
// takes a context; engine errors are mapped to this package's sentinels.
type DockerRuntime struct {
	client *client.Client
	// accounts caches ImageAccounts by image ID: an image's files never
	// change.
	accounts *accountsCache
	// netMu serialises EnsureServiceNetwork: one network created at a time.
	netMu sync.Mutex
}

// NewDockerRuntime connects as the docker CLI does: DOCKER_HOST and friends
// from the environment, API version negotiated with the engine (so an
// engine older than this client, like 20.10 with API 1.41, works). opts are
// applied after those.
func NewDockerRuntime(opts ...client.Opt) (*DockerRuntime, error) {
	all := append([]client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}, opts...)
	cli, err := client.NewClientWithOpts(all...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &DockerRuntime{client: cli, accounts: newAccountsCache()}, nil
}

// Close releases the client's connections.
func (r *DockerRuntime) Close() error {
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("close docker client: %w", err)
	}
	return nil
}

// Ping checks that the engine answers.
func (r *DockerRuntime) Ping(ctx context.Context) error {
	if _, err := r.client.Ping(ctx); err != nil {
		return engineError("ping", err)
	}
	return nil
}

// pullMessage is the part of the engine's pull progress stream that says
// whether the pull failed.
type pullMessage struct {
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// Pull makes ref (repository@sha256:..., ErrNotPinned otherwise) present.
// An image already present is not pulled again: a digest names exactly one
// image, so there is nothing newer to fetch.
func (r *DockerRuntime) Pull(ctx context.Context, ref string) error {
	if err := CheckPinned(ref); err != nil {
		return err
	}
	if _, err := r.client.ImageInspect(ctx, ref); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return engineError("inspect image "+ref, err)
	}
	stream, err := r.client.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		if client.IsErrConnectionFailed(err) {
			return engineError("pull "+ref, err)
		}
		return fmt.Errorf("%w: %s: %w", ErrPullFailed, ref, err)
	}
	defer stream.Close()
	// The engine reports pull errors inside the stream, with HTTP 200: the
	// stream must be read to its end to know whether the pull worked.
	decoder := json.NewDecoder(stream)
	for {
		var msg pullMessage
		if err := decoder.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%w: %s: reading progress: %w", ErrPullFailed, ref, err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return fmt.Errorf("%w: %s: %s", ErrPullFailed, ref, msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return fmt.Errorf("%w: %s: %s", ErrPullFailed, ref, msg.Error)
		}
	}
	return nil
}

// ImageUser is the User of the image's config ("" means root).
func (r *DockerRuntime) ImageUser(ctx context.Context, ref string) (string, error) {
	inspect, err := r.client.ImageInspect(ctx, ref)
	if err != nil {
		return "", engineError("inspect image "+ref, err)
	}
	if inspect.Config == nil {
		return "", nil
	}
	return inspect.Config.User, nil
}

// Create creates a container from options built by ContainerOptions. It
// refuses a config without LabelManaged=true: everything this runtime
// creates must be recognisable as deployctl's later.
func (r *DockerRuntime) Create(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig) (string, error) {
	if cfg == nil || cfg.Labels[LabelManaged] != "true" {
		return "", fmt.Errorf("create %s: config lacks %s=true", name, LabelManaged)
	}
	created, err := r.client.ContainerCreate(ctx, cfg, hostCfg, netCfg, nil, name)
	if err != nil {
		return "", engineError("create container "+name, err)
	}
	return created.ID, nil
}

// Start starts a created container.
func (r *DockerRuntime) Start(ctx context.Context, id string) error {
	if err := r.client.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return engineError("start container "+shortID(id), err)
	}
	return nil
}

// ListManaged lists every container, running or not, that deployctl created
// for hostID. Containers without the deployctl labels are never returned.
func (r *DockerRuntime) ListManaged(ctx context.Context, hostID string) ([]container.Summary, error) {
	args := filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelHost+"="+hostID),
	)
	list, err := r.client.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return nil, engineError("list containers", err)
	}
	// The engine filtered already; checking again costs nothing and keeps
	// a filter mistake from ever reaching someone else's container.
	managed := list[:0]
	for _, c := range list {
		if c.Labels[LabelManaged] == "true" && c.Labels[LabelHost] == hostID {
			managed = append(managed, c)
		}
	}
	return managed, nil
}

// Inspect returns the engine's full view of a container; ErrNotFound when it
// is gone.
func (r *DockerRuntime) Inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	inspect, err := r.client.ContainerInspect(ctx, id)
	if err != nil {
		return container.InspectResponse{}, engineError("inspect container "+shortID(id), err)
	}
	return inspect, nil
}

// StopAndRemove stops a deployctl container (SIGTERM, then SIGKILL after
// grace; grace <= 0 uses the container's own stop timeout) and removes it.
// A container that is already gone counts as removed; one without
// LabelManaged is refused with ErrNotManaged.
func (r *DockerRuntime) StopAndRemove(ctx context.Context, id string, grace time.Duration) error {
	inspect, err := r.client.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return engineError("inspect container "+shortID(id), err)
	}
	if inspect.Config == nil || inspect.Config.Labels[LabelManaged] != "true" {
		return fmt.Errorf("stop container %s: %w", shortID(id), ErrNotManaged)
	}
	var stopOpts container.StopOptions
	if grace > 0 {
		seconds := stopTimeoutSeconds(grace)
		stopOpts.Timeout = &seconds
	}
	if err := r.client.ContainerStop(ctx, id, stopOpts); err != nil && !cerrdefs.IsNotFound(err) {
		return engineError("stop container "+shortID(id), err)
	}
	err = r.client.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return engineError("remove container "+shortID(id), err)
	}
	return nil
}

// Exec runs cmd in a running container through the engine's exec API and
// returns its exit code and (bounded) combined output. A command that
// outlives timeout is abandoned with an error: the engine offers no way to
// kill an exec'd process, it ends with the container at the latest.
func (r *DockerRuntime) Exec(ctx context.Context, id string, cmd []string, timeout time.Duration) (int, string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	created, err := r.client.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, "", engineError("exec in "+shortID(id), err)
	}
	attached, err := r.client.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return 0, "", engineError("exec in "+shortID(id), err)
	}
	defer attached.Close()
	// The hijacked connection ignores ctx: close it when ctx ends so the
	// read below returns.
	stopClosing := context.AfterFunc(ctx, func() { attached.Close() })
	defer stopClosing()

	output := &cappedBuffer{limit: maxExecOutput}
	if _, err := stdcopy.StdCopy(output, output, attached.Reader); err != nil && ctx.Err() == nil {
		return 0, output.String(), fmt.Errorf("exec in %s: read output: %w", shortID(id), err)
	}
	if ctx.Err() != nil {
		return 0, output.String(), fmt.Errorf("exec %q in %s: %w", strings.Join(cmd, " "), shortID(id), ctx.Err())
	}
	// The stream ends when the process does, but the engine may record the
	// exit code a moment later.
	for {
		inspect, err := r.client.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return 0, output.String(), engineError("exec inspect in "+shortID(id), err)
		}
		if !inspect.Running {
			return inspect.ExitCode, output.String(), nil
		}
		select {
		case <-ctx.Done():
			return 0, output.String(), fmt.Errorf("exec %q in %s: %w", strings.Join(cmd, " "), shortID(id), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ContainerExit is one container process ending, as the engine saw it.
type ContainerExit struct {
	ContainerID string
	ExitCode    int
	OOMKilled   bool
}

// Reason is the exit in a report's words: "OOM killed" or "exited with
// code N".
func (e ContainerExit) Reason() string {
	if e.OOMKilled {
		return "OOM killed"
	}
	return fmt.Sprintf("exited with code %d", e.ExitCode)
}

// WatchExits sends every exit of a deployctl container of hostID to exits
// until ctx ends (then it returns nil) or the event stream breaks. The
// exit code is only known from the event: once the restart policy has
// restarted a process, inspect shows the new one.
func (r *DockerRuntime) WatchExits(ctx context.Context, hostID string, exits chan<- ContainerExit) error {
	args := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionOOM)),
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelHost+"="+hostID),
	)
	// Events reads the client's API version without the lock that
	// guards its negotiation: a request that negotiates first keeps it
	// from racing with the agent's first other request.
	if _, err := r.client.ServerVersion(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return engineError("read the engine's version", err)
	}
	messages, errs := r.client.Events(ctx, events.ListOptions{Filters: args})
	// The oom event comes before the die event of the same process.
	oomKilled := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			if ctx.Err() != nil {
				return nil
			}
			return engineError("watch container events", err)
		case msg := <-messages:
			if msg.Actor.Attributes[LabelManaged] != "true" || msg.Actor.Attributes[LabelHost] != hostID {
				continue
			}
			id := msg.Actor.ID
			switch msg.Action {
			case events.ActionOOM:
				oomKilled[id] = true
			case events.ActionDie:
				code, _ := strconv.Atoi(msg.Actor.Attributes["exitCode"])
				exit := ContainerExit{ContainerID: id, ExitCode: code, OOMKilled: oomKilled[id]}
				delete(oomKilled, id)
				select {
				case exits <- exit:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

// HealthWatcher is a Runtime that streams its containers' health changes:
// the agent then learns an exec check's engine verdict from the stream
// instead of inspecting every replica a few times per interval (48
// inspects a second at 60 replicas with a 5s interval, on an engine
// already busy running their checks).
type HealthWatcher interface {
	// WatchHealth sends the ID of every deployctl container of hostID
	// whose engine health status changed, until ctx ends (then nil) or the
	// stream breaks.
	WatchHealth(ctx context.Context, hostID string, changed chan<- string) error
}

// WatchHealth implements HealthWatcher with the engine's health_status
// events.
func (r *DockerRuntime) WatchHealth(ctx context.Context, hostID string, changed chan<- string) error {
	args := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionHealthStatus)),
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelHost+"="+hostID),
	)
	// As in WatchExits: negotiate the API version before Events reads it.
	if _, err := r.client.ServerVersion(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return engineError("read the engine's version", err)
	}
	messages, errs := r.client.Events(ctx, events.ListOptions{Filters: args})
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			if ctx.Err() != nil {
				return nil
			}
			return engineError("watch container health events", err)
		case msg := <-messages:
			if msg.Actor.Attributes[LabelManaged] != "true" || msg.Actor.Attributes[LabelHost] != hostID ||
				!strings.HasPrefix(string(msg.Action), string(events.ActionHealthStatus)) {
				continue
			}
			select {
			case changed <- msg.Actor.ID:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// ContainerIP is the container's address on networkName, "" if it has none
// (not running, or not attached).
func ContainerIP(inspect container.InspectResponse, networkName string) string {
	if inspect.NetworkSettings == nil {
		return ""
	}
	endpoint := inspect.NetworkSettings.Networks[networkName]
	if endpoint == nil {
		return ""
	}
	return endpoint.IPAddress
}

// ReplicaIP is the container's address on the network it was created on
// (HostConfig.NetworkMode): its service's network, or for a container of
// an older version the network all services shared. "" if it has none.
func ReplicaIP(inspect container.InspectResponse) string {
	if inspect.ContainerJSONBase == nil || inspect.HostConfig == nil {
		return ""
	}
	return ContainerIP(inspect, string(inspect.HostConfig.NetworkMode))
}

// engineError maps an engine error to this package's sentinels, naming op.
func engineError(op string, err error) error {
	switch {
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: %w: %w (check that the Docker Engine runs and that DOCKER_HOST points at it)", op, ErrEngineUnavailable, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %w", op, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// cappedBuffer keeps the first limit bytes written and drops the rest.
type cappedBuffer struct {
	limit int
	buf   []byte
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string { return string(b.buf) }
