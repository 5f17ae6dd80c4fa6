package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ErrNotWorkloadImage: an image reference does not carry a workload value.
var ErrNotWorkloadImage = errors.New("not a chaos workload image reference")

// baseTag is the one tag the image is really pushed under.
const baseTag = "base"

// valueTagPrefix starts the tag that carries a write's value: w<value>.
const valueTagPrefix = "w"

// TagRegistry is go-containerregistry's in-memory registry serving one
// small image under every tag of one repository: a manifest request for
// any tag is answered with the image pushed as "base". The workload writes
// a unique value into each spec's image tag, so every write resolves, the
// value travels in the revision's image reference, and a status read gives
// it back without any change to the API.
type TagRegistry struct {
	repo   string
	addr   string
	digest string
	srv    *http.Server
	served chan error

	closeOnce sync.Once
	closeErr  error
}

// StartTagRegistry pushes a small random image as repo:base and serves the
// registry on ln (wrap ln with TLS where clients need https). It takes
// ownership of ln.
func StartTagRegistry(ctx context.Context, ln net.Listener, repo string) (*TagRegistry, error) {
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	manifests := "/v2/" + repo + "/manifests/"
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if ref, ok := strings.CutPrefix(req.URL.Path, manifests); ok && !strings.Contains(ref, ":") &&
			(req.Method == http.MethodGet || req.Method == http.MethodHead) {
			req = req.Clone(req.Context())
			req.URL.Path = manifests + baseTag
		}
		inner.ServeHTTP(w, req)
	})
	img, err := random.Image(512, 1)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("make the workload image: %w", err)
	}
	if err := pushOverLoopback(ctx, handler, repo+":"+baseTag, img); err != nil {
		ln.Close()
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("workload image digest: %w", err)
	}
	r := &TagRegistry{
		repo: repo, addr: ln.Addr().String(), digest: digest.String(),
		srv:    &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)},
		served: make(chan error, 1),
	}
	go func() { r.served <- r.srv.Serve(ln) }()
	return r, nil
}

// Image is the reference a write of value puts in its spec.
func (r *TagRegistry) Image(value int) string {
	return fmt.Sprintf("%s/%s:%s%d", r.addr, r.repo, valueTagPrefix, value)
}

// Digest is the digest every tag resolves to.
func (r *TagRegistry) Digest() string { return r.digest }

// Addr is the registry's host:port.
func (r *TagRegistry) Addr() string { return r.addr }

// Close stops serving. Calling it again returns the first call's result.
func (r *TagRegistry) Close() error {
	r.closeOnce.Do(func() {
		if err := r.srv.Close(); err != nil {
			r.closeErr = fmt.Errorf("close the workload registry: %w", err)
			return
		}
		if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.closeErr = fmt.Errorf("workload registry: %w", err)
		}
	})
	return r.closeErr
}

// ValueOfImage returns the value a workload image reference carries.
func ValueOfImage(image string) (int, error) {
	i := strings.LastIndex(image, ":"+valueTagPrefix)
	if i < 0 || strings.Contains(image[i:], "/") {
		return 0, fmt.Errorf("%w: %q", ErrNotWorkloadImage, image)
	}
	v, err := strconv.Atoi(image[i+1+len(valueTagPrefix):])
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%w: %q", ErrNotWorkloadImage, image)
	}
	return v, nil
}

// pushOverLoopback pushes img to the registry handler through a listener
// of its own on 127.0.0.1, closed again when done: the registry's real
// listener may speak TLS with a certificate this process does not trust.
func pushOverLoopback(ctx context.Context, handler http.Handler, repoTag string, img v1.Image) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen to push the workload image: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	ref, err := name.ParseReference(ln.Addr().String()+"/"+repoTag, name.Insecure)
	if err != nil {
		return fmt.Errorf("workload image reference: %w", err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push the workload image: %w", err)
	}
	return nil
}
