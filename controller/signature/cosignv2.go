package signature

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// The cosign tag layout (SIGNATURE_SPEC.md in sigstore/cosign).
const (
	simpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	signatureAnnotation    = "dev.cosignproject.cosign/signature"
	simpleSigningType      = "cosign container image signature"
)

// Bounds on what a registry can make us read. Signatures and bundles are a
// few KiB; anything far larger is not one.
const (
	maxSignatureBlobBytes = 4 << 20
	maxCandidates         = 128
)

// simpleSigning is the part of a simple-signing payload that is checked.
// critical.identity.docker-reference is deliberately ignored, as cosign
// ignores it: the digest is what binds the signature to the image, and
// the same image is legitimately reachable under several names.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// cosignV2Candidates reads the manifest at tag "sha256-<hex>.sig": each
// simple-signing layer is one candidate. No tag means no candidates.
func cosignV2Candidates(repo name.Repository, want v1.Hash, opts []remote.Option) ([]candidate, error) {
	tag := repo.Tag(want.Algorithm + "-" + want.Hex + ".sig")
	desc, err := remote.Get(tag, opts...)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrRegistry, tag, err)
	}
	ref := repo.Digest(desc.Digest.String()).String()
	if !desc.MediaType.IsImage() {
		return []candidate{{format: FormatCosignV2, ref: ref, broken: fmt.Errorf("tag %s holds %s, not an image manifest", tag, desc.MediaType)}}, nil
	}
	manifest, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return []candidate{{format: FormatCosignV2, ref: ref, broken: fmt.Errorf("manifest: %w", err)}}, nil
	}

	var found []candidate
	for _, layer := range manifest.Layers {
		if layer.MediaType != simpleSigningMediaType {
			continue // not a signature layer; cosign writes nothing else here
		}
		if len(found) == maxCandidates {
			break
		}
		c, err := simpleSigningCandidate(repo, ref, layer, want, opts)
		if err != nil {
			return nil, err
		}
		found = append(found, c)
	}
	return found, nil
}

// simpleSigningCandidate decodes one signature layer. The error is a
// registry failure; a malformed layer is a broken candidate.
func simpleSigningCandidate(repo name.Repository, ref string, layer v1.Descriptor, want v1.Hash, opts []remote.Option) (candidate, error) {
	c := candidate{format: FormatCosignV2, ref: ref}
	encoded := layer.Annotations[signatureAnnotation]
	if encoded == "" {
		c.broken = fmt.Errorf("layer %s has no %s annotation", layer.Digest, signatureAnnotation)
		return c, nil
	}
	sig, err := decodeBase64(encoded)
	if err != nil {
		c.broken = fmt.Errorf("layer %s: signature is not base64: %w", layer.Digest, err)
		return c, nil
	}
	payload, err := fetchBlob(repo, layer, maxSignatureBlobBytes, opts)
	if errors.Is(err, errTooLarge) {
		c.broken = err
		return c, nil
	}
	if err != nil {
		return candidate{}, err
	}
	c.signed, c.sigs = payload, [][]byte{sig}
	c.claim = simpleSigningClaim(payload, want)
	return c, nil
}

// simpleSigningClaim checks what a verified simple-signing payload says.
func simpleSigningClaim(payload []byte, want v1.Hash) *claimProblem {
	var p simpleSigning
	if err := json.Unmarshal(payload, &p); err != nil {
		return &claimProblem{what: fmt.Sprintf("its payload is not simple-signing JSON: %v", err)}
	}
	if p.Critical.Type != simpleSigningType {
		return &claimProblem{what: fmt.Sprintf("its payload type is %q, not %q", p.Critical.Type, simpleSigningType)}
	}
	if got := p.Critical.Image.DockerManifestDigest; got != want.String() {
		return &claimProblem{otherDigest: true, what: fmt.Sprintf("it was made for %s, not this digest", quoteEmpty(got))}
	}
	return nil
}

func quoteEmpty(s string) string {
	if s == "" {
		return "an empty digest"
	}
	return s
}

// errTooLarge marks a blob refused for its size: a verdict about the
// signature object, not a registry failure.
var errTooLarge = errors.New("blob too large")

// fetchBlob reads a layer's blob, verified against its digest by
// go-containerregistry, refusing anything larger than limit: more than what
// is looked for can be.
func fetchBlob(repo name.Repository, layer v1.Descriptor, limit int64, opts []remote.Option) ([]byte, error) {
	if layer.Size > limit {
		return nil, fmt.Errorf("%w: layer %s has %d bytes (at most %d are read)", errTooLarge, layer.Digest, layer.Size, limit)
	}
	ref := repo.Digest(layer.Digest.String())
	l, err := remote.Layer(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %v", ErrRegistry, ref, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %v", ErrRegistry, ref, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %v", ErrRegistry, ref, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: blob %s exceeds %d bytes", errTooLarge, ref, limit)
	}
	return b, nil
}

// isNotFound reports a registry 404: the object does not exist, which is
// an answer, unlike every other error.
func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
