// Package devimage builds container images from Go main packages and serves
// them from an in-process registry, without docker build and without any
// external registry. The tests of the deployer and the demo use it: an image
// here is one static binary at /app on an empty base, pushed to a
// go-containerregistry registry on a loopback port that the Docker Engine
// pulls from without TLS (127.0.0.0/8 is an insecure registry by default).
package devimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/hashicorp/go-hclog"
)

// Errors at the package border.
var (
	// ErrBuild means the go toolchain could not compile the package.
	ErrBuild = errors.New("go build failed")
	// ErrPush means the registry refused or could not receive the image.
	ErrPush = errors.New("image push failed")
)

// DefaultUser is the image user when GoImageOptions.User is empty: a
// numeric non-root uid/gid, so no /etc/passwd is needed in the image.
const DefaultUser = "10001:10001"

// BinaryPath is where the compiled program lives in the image.
const BinaryPath = "/app"

// layerMTime is the mtime (Unix seconds, 2000-01-01) of every file in the
// layer: a fixed time keeps the layer, and so the image digest, the same for
// the same binary.
const layerMTime = 946684800

// GoImageOptions say what to compile and how the image runs it.
type GoImageOptions struct {
	// PackageDir is the directory of a main package inside a Go module.
	PackageDir string
	// Env is the image's environment, "KEY=value" entries.
	Env []string
	// User defaults to DefaultUser.
	User string
	// Labels become the image config's labels.
	Labels map[string]string
	// ExposedPorts are documentation in the image config, e.g. "8080/tcp".
	ExposedPorts []string
	// GoBuildCache is the GOCACHE of the compile; empty keeps the go
	// command's own, which already makes a repeated build cheap.
	GoBuildCache string
}

// BuildGoImage compiles opts.PackageDir statically for linux and assembles a
// one-layer image FROM scratch: /app (0755) and an empty /tmp (1777), with
// entrypoint /app. Docker is not involved.
func BuildGoImage(ctx context.Context, opts GoImageOptions) (v1.Image, error) {
	if opts.PackageDir == "" {
		return nil, fmt.Errorf("%w: no package directory given", ErrBuild)
	}
	binary, err := compile(ctx, opts.PackageDir, opts.GoBuildCache)
	if err != nil {
		return nil, err
	}
	layer, err := binaryLayer(binary)
	if err != nil {
		return nil, fmt.Errorf("assemble layer: %w", err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	configFile, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	configFile = configFile.DeepCopy()
	configFile.OS = "linux"
	configFile.Architecture = runtime.GOARCH
	configFile.Config.Entrypoint = []string{BinaryPath}
	configFile.Config.User = opts.User
	if configFile.Config.User == "" {
		configFile.Config.User = DefaultUser
	}
	configFile.Config.Env = append([]string(nil), opts.Env...)
	if len(opts.Labels) > 0 {
		configFile.Config.Labels = make(map[string]string, len(opts.Labels))
		for k, v := range opts.Labels {
			configFile.Config.Labels[k] = v
		}
	}
	if len(opts.ExposedPorts) > 0 {
		configFile.Config.ExposedPorts = make(map[string]struct{}, len(opts.ExposedPorts))
		for _, port := range opts.ExposedPorts {
			configFile.Config.ExposedPorts[port] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, configFile)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// WithEnv returns img with env appended to its environment. The config, and
// so the digest, differ: this is how the demo makes a "broken v2" from the
// same binary (WEBAPP_BROKEN=1) without a second compile.
func WithEnv(img v1.Image, env ...string) (v1.Image, error) {
	configFile, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	configFile = configFile.DeepCopy()
	configFile.Config.Env = append(configFile.Config.Env, env...)
	variant, err := mutate.ConfigFile(img, configFile)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return variant, nil
}

// WithUser returns img with its config's User set to user (the
// Dockerfile's USER): "" for the engine's default, a uid, a name, with an
// optional ":group". Tests use it for images whose user is root in
// disguise ("00", a name /etc/passwd maps to 0).
func WithUser(img v1.Image, user string) (v1.Image, error) {
	configFile, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	configFile = configFile.DeepCopy()
	configFile.Config.User = user
	variant, err := mutate.ConfigFile(img, configFile)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return variant, nil
}

// File is one entry of a layer WithFiles adds: a regular file with Content
// (mode 0644 when Mode is 0), or a symbolic link to Link.
type File struct {
	Content []byte
	Mode    int64
	Link    string
}

// WithFiles returns img with one more layer holding files, by absolute
// path (like "/etc/passwd"); parent directories are created 0755. The
// layer is deterministic, like the binary's.
func WithFiles(img v1.Image, files map[string]File) (v1.Image, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		if !strings.HasPrefix(p, "/") || p == "/" {
			return nil, fmt.Errorf("file %q: want an absolute path", p)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var entries []layerEntry
	dirs := map[string]bool{}
	for _, p := range paths {
		name := strings.TrimPrefix(path.Clean(p), "/")
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if !dirs[dir] {
				dirs[dir] = true
				entries = append(entries, layerEntry{header: tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}})
			}
		}
		f := files[p]
		switch {
		case f.Link != "":
			entries = append(entries, layerEntry{header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: f.Link, Mode: 0o777}})
		default:
			mode := f.Mode
			if mode == 0 {
				mode = 0o644
			}
			entries = append(entries, layerEntry{header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(f.Content))}, content: f.Content})
		}
	}
	// Directories first, each before what it holds.
	sort.SliceStable(entries, func(i, j int) bool {
		di, dj := entries[i].header.Typeflag == tar.TypeDir, entries[j].header.Typeflag == tar.TypeDir
		if di && dj {
			return entries[i].header.Name < entries[j].header.Name
		}
		return di && !dj
	})
	layer, err := tarLayer(entries)
	if err != nil {
		return nil, fmt.Errorf("assemble layer: %w", err)
	}
	variant, err := mutate.Append(img, mutate.Addendum{Layer: layer})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	return variant, nil
}

// compile builds the main package in dir and returns the binary's bytes.
func compile(ctx context.Context, dir, goCache string) ([]byte, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("%w: go command not found: %w", ErrBuild, err)
	}
	outDir, err := os.MkdirTemp("", "devimage-build-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	defer os.RemoveAll(outDir)
	outFile := filepath.Join(outDir, "app")

	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags", "-s -w", "-o", outFile, ".")
	cmd.Dir = dir
	// The engine's architecture is taken to be this machine's: the images
	// are for a local Docker Engine.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if goCache != "" {
		cmd.Env = append(cmd.Env, "GOCACHE="+goCache)
	}
	if output, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w: %s", ErrBuild, dir, err, strings.TrimSpace(string(output)))
	}
	binary, err := os.ReadFile(outFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	return binary, nil
}

// binaryLayer is a gzip layer holding /app and /tmp. /tmp exists so that a
// read-only root file system still has a mount point for the tmpfs.
func binaryLayer(binary []byte) (v1.Layer, error) {
	return tarLayer([]layerEntry{
		{header: tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}},
		{header: tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(BinaryPath, "/"), Mode: 0o755, Size: int64(len(binary))}, content: binary},
	})
}

// layerEntry is one tar entry of a layer.
type layerEntry struct {
	header  tar.Header
	content []byte
}

// tarLayer is a gzip layer of entries, each with the fixed mtime.
func tarLayer(entries []layerEntry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, entry := range entries {
		header := entry.header
		header.ModTime = time.Unix(layerMTime, 0)
		header.Format = tar.FormatPAX
		if err := tw.WriteHeader(&header); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", header.Name, err)
		}
		if _, err := tw.Write(entry.content); err != nil {
			return nil, fmt.Errorf("tar %s: %w", header.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	tarBytes := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	})
}

// Registry is go-containerregistry's in-memory registry on a real listener.
type Registry struct {
	listener  net.Listener
	server    *http.Server
	served    chan error
	closeOnce sync.Once
	closeErr  error
}

// StartRegistry serves a fresh, empty registry on addr ("127.0.0.1:0" picks
// a free port). The Docker Engine treats 127.0.0.0/8 as insecure registries,
// so it pulls from here over plain HTTP. Requests are logged at debug level.
func StartRegistry(addr string, logger hclog.Logger) (*Registry, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry listen on %s: %w", addr, err)
	}
	requestLog := logger.Named("registry").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})
	r := &Registry{
		listener: listener,
		server: &http.Server{
			Handler:           registry.New(registry.Logger(requestLog)),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          log.New(requestLog.Writer(), "", 0),
		},
		served: make(chan error, 1),
	}
	go func() { r.served <- r.server.Serve(listener) }()
	return r, nil
}

// Addr is host:port of the registry, the first part of image references.
func (r *Registry) Addr() string { return r.listener.Addr().String() }

// Close stops serving at once and forgets every image. Calling it again
// returns the first call's result.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		if err := r.server.Close(); err != nil {
			r.closeErr = fmt.Errorf("close registry: %w", err)
			return
		}
		if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.closeErr = fmt.Errorf("registry serve: %w", err)
		}
	})
	return r.closeErr
}

// Push writes img to ref (e.g. "127.0.0.1:5000/webapp:v1") over plain HTTP
// and returns the manifest digest ("sha256:..."), which pins it.
func Push(ctx context.Context, ref string, img v1.Image) (digest string, err error) {
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("%w: parse %q: %w", ErrPush, ref, err)
	}
	if err := remote.Write(parsed, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrPush, ref, err)
	}
	hash, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("%w: digest of %s: %w", ErrPush, ref, err)
	}
	return hash.String(), nil
}

// PinnedRef is repository@digest for a reference pushed with Push: the
// repository part of ref (tag dropped) joined with digest.
func PinnedRef(ref, digest string) (string, error) {
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", ref, err)
	}
	return parsed.Context().Name() + "@" + digest, nil
}
