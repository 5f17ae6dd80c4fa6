package signature

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The sigstore bundle layout (BUNDLE_SPEC.md in sigstore/cosign).
const (
	bundleMediaType     = "application/vnd.dev.sigstore.bundle.v0.3+json"
	bundleMediaTypeAlt  = "application/vnd.dev.sigstore.bundle+json;version=0.3"
	emptyConfigType     = "application/vnd.oci.empty.v1+json"
	inTotoPayloadType   = "application/vnd.in-toto+json"
	cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
	// bundlePredicateAnnotation is the manifest annotation in which cosign
	// repeats a bundle's predicate type.
	bundlePredicateAnnotation = "dev.sigstore.bundle.predicateType"
)

// inTotoStatementTypes are the statement versions whose subject layout is
// understood here.
var inTotoStatementTypes = []string{"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"}

func isBundleMediaType(mt string) bool {
	return mt == bundleMediaType || mt == bundleMediaTypeAlt
}

// sigstoreBundle is the part of a v0.3 bundle that key-based verification
// reads. Transparency-log entries and timestamps are not read at all.
type sigstoreBundle struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		PublicKey *struct {
			Hint string `json:"hint"`
		} `json:"publicKey"`
		Certificate          json.RawMessage `json:"certificate"`
		X509CertificateChain json.RawMessage `json:"x509CertificateChain"`
	} `json:"verificationMaterial"`
	DSSEEnvelope     *dsseEnvelope   `json:"dsseEnvelope"`
	MessageSignature json.RawMessage `json:"messageSignature"`
}

type dsseEnvelope struct {
	Payload     string `json:"payload"`
	PayloadType string `json:"payloadType"`
	Signatures  []struct {
		Sig   string `json:"sig"`
		KeyID string `json:"keyid"`
	} `json:"signatures"`
}

type inTotoStatement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string `json:"predicateType"`
}

// statementQuery says which in-toto statements a search is after and how
// large the objects holding them may be.
type statementQuery struct {
	predicateType string
	maxBlobBytes  int64
}

// bundleCandidates lists the OCI referrers of the pinned digest and decodes
// each sigstore bundle among them as an image signature candidate.
func bundleCandidates(repo name.Repository, want v1.Hash, opts []remote.Option) ([]candidate, error) {
	var found []candidate
	q := statementQuery{predicateType: cosignSignPredicate, maxBlobBytes: maxSignatureBlobBytes}
	err := eachBundle(repo, want, opts, q, func(c candidate) { found = append(found, c) })
	return found, err
}

// eachBundle lists the OCI referrers of the pinned digest — through the
// referrers API or, where the registry lacks it, the "sha256-<hex>"
// fallback tag (remote.Referrers does both) — and passes each sigstore
// bundle among them to visit, decoded for q, one at a time so that only
// one large attestation is held in memory.
func eachBundle(repo name.Repository, want v1.Hash, opts []remote.Option, q statementQuery, visit func(candidate)) error {
	subject := repo.Digest(want.String())
	index, err := remote.Referrers(subject, opts...)
	if err != nil {
		return fmt.Errorf("%w: listing referrers of %s: %v", ErrRegistry, subject, err)
	}
	listing, err := index.IndexManifest()
	if err != nil {
		return fmt.Errorf("%w: referrers of %s: %v", ErrRegistry, subject, err)
	}
	visited := 0
	for _, d := range listing.Manifests {
		if !mayBeBundle(d) {
			continue
		}
		if visited == maxCandidates {
			break
		}
		c, ok, err := referrerCandidate(repo, d, want, opts, q)
		if err != nil {
			return err
		}
		if ok {
			visited++
			visit(c)
		}
	}
	return nil
}

// mayBeBundle filters the referrers listing without fetching. Registries
// fill artifactType from the manifest's artifactType or, some of them
// (go-containerregistry's own), from its config media type, which for a
// bundle is the empty descriptor; an unset type is fetched to be sure.
func mayBeBundle(d v1.Descriptor) bool {
	if !d.MediaType.IsImage() {
		return false
	}
	return isBundleMediaType(d.ArtifactType) || d.ArtifactType == "" || d.ArtifactType == emptyConfigType
}

// referrerCandidate fetches one referrer manifest and, if it holds a
// sigstore bundle, decodes it. ok is false for referrers that are not
// bundles (or no longer exist). The manifest's subject is not checked: the
// referrer listing is only discovery, and the signed statement is what
// binds the signature to the digest.
func referrerCandidate(repo name.Repository, d v1.Descriptor, want v1.Hash, opts []remote.Option, q statementQuery) (candidate, bool, error) {
	ref := repo.Digest(d.Digest.String())
	desc, err := remote.Get(ref, opts...)
	if isNotFound(err) {
		return candidate{}, false, nil // a stale fallback-tag entry
	}
	if err != nil {
		return candidate{}, false, fmt.Errorf("%w: referrer %s: %v", ErrRegistry, ref, err)
	}
	c := candidate{format: FormatBundleV3, ref: ref.String()}
	manifest, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return candidate{}, false, nil // not an image manifest, so not a bundle
	}
	layer := slices.IndexFunc(manifest.Layers, func(l v1.Descriptor) bool { return isBundleMediaType(string(l.MediaType)) })
	if layer < 0 {
		if isBundleMediaType(manifest.ArtifactType) {
			c.broken = errors.New("bundle artifact has no bundle layer")
			return c, true, nil
		}
		return candidate{}, false, nil
	}
	// cosign labels the manifest with the statement's predicate type. A
	// label naming another type saves fetching the bundle (an SBOM can be
	// megabytes); skipping on it is safe, as it can only lead to rejection.
	if pt, ok := manifest.Annotations[bundlePredicateAnnotation]; ok && pt != q.predicateType {
		c.notWanted = fmt.Sprintf("in-toto predicate %q", pt)
		return c, true, nil
	}
	raw, err := fetchBlob(repo, manifest.Layers[layer], q.maxBlobBytes, opts)
	if errors.Is(err, errTooLarge) {
		c.broken = err
		return c, true, nil
	}
	if err != nil {
		return candidate{}, false, err
	}
	decodeBundle(&c, raw, want, q.predicateType)
	return c, true, nil
}

// decodeBundle fills c from a bundle's JSON: the key hints, then the DSSE
// envelope it carries.
func decodeBundle(c *candidate, raw []byte, want v1.Hash, predicateType string) {
	var b sigstoreBundle
	if err := json.Unmarshal(raw, &b); err != nil {
		c.broken = fmt.Errorf("bundle is not JSON: %w", err)
		return
	}
	if !isBundleMediaType(b.MediaType) {
		c.broken = fmt.Errorf("bundle media type %q is not %q", b.MediaType, bundleMediaType)
		return
	}
	if b.DSSEEnvelope == nil {
		if len(b.MessageSignature) > 0 {
			c.broken = errors.New("bundle holds a message signature; cosign signs images with a DSSE envelope, which is the only form supported")
		} else {
			c.broken = errors.New("bundle has no dsseEnvelope")
		}
		return
	}
	if b.VerificationMaterial.PublicKey != nil {
		c.hints = append(c.hints, b.VerificationMaterial.PublicKey.Hint)
	}
	c.keyless = len(b.VerificationMaterial.Certificate) > 0 || len(b.VerificationMaterial.X509CertificateChain) > 0
	decodeEnvelope(c, b.DSSEEnvelope, want, predicateType)
}

// decodeEnvelope fills c from a DSSE envelope, as a bundle carries it or as
// cosign v2 stores it in an ".att" layer: the pre-authentication encoding
// as the signed bytes, the signatures and their key ids, the statement, and
// what the statement claims about the pinned digest. A statement of another
// predicate type is marked notWanted.
func decodeEnvelope(c *candidate, env *dsseEnvelope, want v1.Hash, predicateType string) {
	payload, err := decodeBase64(env.Payload)
	if err != nil {
		c.broken = fmt.Errorf("DSSE payload is not base64: %w", err)
		return
	}
	if len(env.Signatures) == 0 {
		c.broken = errors.New("DSSE envelope has no signatures")
		return
	}
	for i, s := range env.Signatures {
		sig, err := decodeBase64(s.Sig)
		if err != nil {
			c.broken = fmt.Errorf("DSSE signature %d is not base64: %w", i+1, err)
			return
		}
		c.sigs = append(c.sigs, sig)
		c.hints = append(c.hints, s.KeyID)
	}

	var st inTotoStatement
	if err := json.Unmarshal(payload, &st); err != nil {
		c.broken = fmt.Errorf("DSSE payload is not an in-toto statement: %w", err)
		return
	}
	// Skipping on unverified bytes is safe: it can only lead to rejection.
	if st.PredicateType != predicateType {
		c.notWanted = fmt.Sprintf("in-toto predicate %q", st.PredicateType)
		return
	}
	c.signed = pae(env.PayloadType, payload)
	c.statement = payload
	c.claim = statementClaim(env.PayloadType, st, want)
}

// statementClaim checks what a verified DSSE envelope says. payloadType is
// covered by the signature through the pre-authentication encoding.
func statementClaim(payloadType string, st inTotoStatement, want v1.Hash) *claimProblem {
	if payloadType != inTotoPayloadType {
		return &claimProblem{what: fmt.Sprintf("its payload type is %q, not %q", payloadType, inTotoPayloadType)}
	}
	if !slices.Contains(inTotoStatementTypes, st.Type) {
		return &claimProblem{what: fmt.Sprintf("its statement type %q is not one of %s", st.Type, strings.Join(inTotoStatementTypes, ", "))}
	}
	var subjects []string
	for _, s := range st.Subject {
		got, ok := s.Digest[want.Algorithm]
		if !ok {
			continue
		}
		if strings.EqualFold(got, want.Hex) {
			return nil
		}
		subjects = append(subjects, want.Algorithm+":"+got)
	}
	if len(subjects) == 0 {
		return &claimProblem{otherDigest: true, what: fmt.Sprintf("its statement names no %s subject digest", want.Algorithm)}
	}
	return &claimProblem{otherDigest: true, what: fmt.Sprintf("it was made for %s, not this digest", strings.Join(subjects, ", "))}
}

// pae is DSSE v1's pre-authentication encoding, the bytes a DSSE signature
// covers: "DSSEv1" SP len(type) SP type SP len(body) SP body, lengths in
// ASCII decimal.
func pae(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}
