package deployer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/deployctl/deployctl/internal/wire"
)

// DefaultSecretsDir is where the agent mounts one tmpfs per replica that
// uses secrets (AgentConfig.SecretsDir), under a directory per host.
const DefaultSecretsDir = "/run/deployctl/secrets"

// ErrSecrets: a replica's secret files could not be fetched or prepared;
// the replica fails with the reason (never with a value).
var ErrSecrets = errors.New("secret files")

// SecretSource gives the agent a replica's secret files; the controller's
// client (wire.Client) implements it. Only the agent of the replica's host
// gets an answer (GET /v1/agent/secrets).
type SecretSource interface {
	AgentSecrets(ctx context.Context, host, replica string) (wire.AgentSecrets, error)
}

// secretFiles keeps replicas' secrets in memory: each replica that uses
// secrets gets its own tmpfs (DIR/HOST/REPLICA, mode 0700, noexec,
// nosuid, nodev), the agent writes each value there as a file with the
// owner and mode the spec asks for, and the container gets each file as a
// read-only bind mount at its target. Nothing touches the host's disk;
// `docker inspect` shows the mount's source path, never the value. The
// tmpfs is unmounted once no container of the replica is left.
type secretFiles struct {
	dir string // DIR/HOST
}

func newSecretFiles(base, host string) secretFiles {
	if base == "" {
		base = DefaultSecretsDir
	}
	return secretFiles{dir: filepath.Join(base, host)}
}

func (s secretFiles) replicaDir(id string) string { return filepath.Join(s.dir, id) }

// containerIDs parses a numeric "uid:gid" (what ContainerOptions sets as
// the container's User).
func containerIDs(user string) (uid, gid int, err error) {
	u, g, _ := strings.Cut(user, ":")
	if uid, err = strconv.Atoi(u); err != nil {
		return 0, 0, fmt.Errorf("%w: container user %q is not numeric", ErrSecrets, user)
	}
	gid = uid
	if g != "" {
		if gid, err = strconv.Atoi(g); err != nil {
			return 0, 0, fmt.Errorf("%w: container group %q is not numeric", ErrSecrets, user)
		}
	}
	return uid, gid, nil
}

// tmpfsSize is a replica's tmpfs size: its values, a page per file for
// rounding, and a little room.
func tmpfsSize(secrets []wire.AgentSecret) int {
	size := 64 << 10
	for _, s := range secrets {
		size += len(s.Value) + 4096
	}
	return size
}

// prepare mounts the replica's tmpfs, writes its files and returns the
// container's mounts. user is the container's numeric "uid:gid": a file
// whose entry names no uid or gid is owned by it.
func (s secretFiles) prepare(replicaID, user string, secrets []wire.AgentSecret) ([]mount.Mount, error) {
	uid, gid, err := containerIDs(user)
	if err != nil {
		return nil, err
	}
	dir := s.replicaDir(replicaID)
	// A tmpfs left by an earlier try (a vanished container recreated)
	// goes first: its files may be of another version.
	if err := s.remove(replicaID); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSecrets, err)
	}
	if err := mountTmpfs(dir, tmpfsSize(secrets)); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("%w: mount a tmpfs at %s (the agent needs root): %w", ErrSecrets, dir, err)
	}
	mounts := make([]mount.Mount, 0, len(secrets))
	for i, sec := range secrets {
		file := filepath.Join(dir, fmt.Sprintf("%d-%s", i, sec.Name))
		fuid, fgid := uid, gid
		if sec.UID != nil {
			fuid = *sec.UID
		}
		if sec.GID != nil {
			fgid = *sec.GID
		}
		if err := writeSecretFile(file, sec.Value, os.FileMode(sec.Mode), fuid, fgid); err != nil {
			_ = s.remove(replicaID)
			return nil, fmt.Errorf("%w: secret %s: %w", ErrSecrets, sec.Name, err)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: file, Target: sec.Target, ReadOnly: true})
	}
	return mounts, nil
}

func writeSecretFile(path string, value []byte, mode os.FileMode, uid, gid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(value)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return err
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return err
	}
	return os.Chmod(path, mode.Perm())
}

// remove unmounts a replica's tmpfs (its values are gone with it) and
// removes the mount point. A replica without one is no error.
func (s secretFiles) remove(replicaID string) error {
	dir := s.replicaDir(replicaID)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unmountTmpfs(dir); err != nil {
		return fmt.Errorf("%w: unmount %s: %w", ErrSecrets, dir, err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrSecrets, err)
	}
	return nil
}

// replicas lists the replicas that have a tmpfs here.
func (s secretFiles) replicas() []string {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// secretSource is the agent's SecretSource: AgentConfig.Secrets, else the
// controller client when it is one.
func (l *reconcileLoop) secretSource() (SecretSource, bool) {
	if l.cfg.Secrets != nil {
		return l.cfg.Secrets, true
	}
	src, ok := l.cfg.Controller.(SecretSource)
	return src, ok
}

// secretMounts fetches the replica's secret files (from the controller,
// over the cluster's TLS) and prepares them for a container running as
// cfg.User. Values stay in this function's memory and the tmpfs.
func (l *reconcileLoop) secretMounts(ctx context.Context, replicaID string, cfg *container.Config) ([]mount.Mount, error) {
	src, ok := l.secretSource()
	if !ok {
		return nil, fmt.Errorf("%w: this agent has no way to fetch secrets", ErrSecrets)
	}
	got, err := src.AgentSecrets(ctx, l.cfg.HostID, replicaID)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch: %w", ErrSecrets, err)
	}
	defer func() {
		for _, s := range got.Secrets {
			clear(s.Value)
		}
	}()
	return l.secretFiles.prepare(replicaID, cfg.User, got.Secrets)
}

// sweepSecrets unmounts the tmpfs of every replica that has no container
// left and is not being started: stopped, removed, failed or moved.
func (l *reconcileLoop) sweepSecrets(containers []container.Summary) {
	have := map[string]bool{}
	for _, c := range containers {
		have[c.Labels[LabelReplica]] = true
	}
	for _, id := range l.secretFiles.replicas() {
		if rep := l.replicas[id]; have[id] || (rep != nil && rep.busy) {
			continue
		}
		if err := l.secretFiles.remove(id); err != nil {
			l.log.Warn("cannot remove a replica's secrets tmpfs", "replica", id, "error", err)
		}
	}
}
