package controller

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deployctl/deployctl/internal/wire"
)

// ErrImageUnresolvable means the image reference could not be turned into a
// digest: the registry is down, the repository or tag does not exist, or
// the registry refused us.
var ErrImageUnresolvable = wire.ErrImageUnresolvable

// PinnedImage is an image reference resolved at apply time.
type PinnedImage struct {
	// Repository is the repository as written, without tag or digest.
	Repository string
	// Digest is the manifest (or index) digest, "sha256:...".
	Digest string
	// Ref is Repository@Digest: what hosts pull and run.
	Ref string
}

// RegistryResolver resolves tags to digests with a HEAD request to the
// registry (go-containerregistry's remote.Head): it does not download the
// image. Registries on loopback addresses, and those Access lists as
// insecure, are spoken to over plain HTTP, as the Docker Engine does by
// default; every other registry needs TLS (see RegistryAccess). Errors say
// what failed in a few words and never carry the registry's answer.
type RegistryResolver struct {
	// Keychain supplies registry credentials; nil means anonymous plus the
	// Docker config file (authn.DefaultKeychain).
	Keychain authn.Keychain
	// Access lists the registries allowed plain HTTP besides loopback.
	Access RegistryAccess
	// Transport is the HTTP transport under Access's rules; nil means a
	// clone of http.DefaultTransport. Tests use it to see the requests.
	Transport http.RoundTripper
}

// Resolve pins image to a digest. A reference that already carries a
// digest is checked to exist in its registry.
func (r RegistryResolver) Resolve(ctx context.Context, image string) (PinnedImage, error) {
	opts := []name.Option{name.WeakValidation}
	probe, err := name.ParseReference(image, opts...)
	if err != nil {
		return PinnedImage{}, fmt.Errorf("%w: %q is not an image reference: %v", ErrImageUnresolvable, image, err)
	}
	registry := probe.Context().RegistryStr()
	if r.Access.PlainHTTPAllowed(registry) {
		opts = append(opts, name.Insecure)
		if probe, err = name.ParseReference(image, opts...); err != nil {
			return PinnedImage{}, fmt.Errorf("%w: %q: %v", ErrImageUnresolvable, image, err)
		}
	}
	kc := r.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	desc, err := remote.Head(probe, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(r.Access.Transport(r.Transport)))
	if err != nil {
		return PinnedImage{}, fmt.Errorf("%w: %s: %s (check the name and tag, and that registry %s is reachable from the controller)",
			ErrImageUnresolvable, image, registryProblem(err), registry)
	}
	repo := probe.Context().Name()
	return PinnedImage{Repository: repo, Digest: desc.Digest.String(), Ref: repo + "@" + desc.Digest.String()}, nil
}
