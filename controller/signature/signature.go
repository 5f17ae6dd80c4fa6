// Package signature checks, before a revision is stored, that its pinned
// image digest carries a cosign signature made with a key the trust policy
// lists, and reads the verified cosign vulnerability attestation (a Trivy
// report) of a pinned digest for the scan gate. Verification is key-based
// and offline apart from the registry: no transparency log, no certificate
// authority. See DESIGN.md for the formats and exactly what is checked.
package signature

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/deployctl/deployctl/internal/registryhost"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Format names, as recorded in Result.Format and Attestation.Format.
const (
	// FormatCosignV2 is cosign v2's tag layout: "sha256-<hex>.sig" holding
	// simple-signing payloads, "sha256-<hex>.att" holding DSSE envelopes.
	FormatCosignV2 = "cosign-v2"
	// FormatBundleV3 is a sigstore bundle (DSSE over an in-toto statement)
	// attached as an OCI referrer, as cosign v3 writes signatures and
	// attestations.
	FormatBundleV3 = "sigstore-bundle-v3"
)

// Errors at the package border. Every error Verify and VulnAttestation
// return wraps exactly one of them.
var (
	// ErrUnsigned means a trust rule matches the image but no signature
	// was found for its digest.
	ErrUnsigned = errors.New("image is not signed")
	// ErrBadSignature means a signature or attestation claims to come
	// from a listed key but does not verify, or a verified payload is not
	// what was looked for (a cosign image signature, a vulnerability scan
	// record with a result), or the object is malformed.
	ErrBadSignature = errors.New("image signature or attestation is invalid")
	// ErrDigestMismatch means a listed key signed a payload for another
	// digest: a signature or attestation copied from another image.
	ErrDigestMismatch = errors.New("image signature or attestation is for another digest")
	// ErrUntrustedKey means signatures (or attestations) exist but none
	// verifies with any of the keys that apply.
	ErrUntrustedKey = errors.New("image signature or attestation is not from a trusted key")
	// ErrBadKey means a key of the trust policy is not a usable PEM public
	// key.
	ErrBadKey = errors.New("trust key is not a usable public key")
	// ErrBadRule means a trust rule cannot be applied: a malformed match
	// pattern or a rule without keys.
	ErrBadRule = errors.New("trust rule is invalid")
	// ErrBadReference means the repository or digest passed to Verify or
	// VulnAttestation is not well formed: a caller bug, not a verdict.
	ErrBadReference = errors.New("invalid image reference")
	// ErrRegistry means the registry could not be read, so no verdict was
	// reached; retrying may help.
	ErrRegistry = errors.New("cannot read signatures or attestations from registry")
	// ErrNoAttestation means no vulnerability attestation was found for
	// the digest (other attestations and signatures do not count).
	ErrNoAttestation = errors.New("image has no vulnerability attestation")
	// ErrNoKeys means no trust rule covers the image and the caller gave
	// no keys, so no attestation could be verified: a configuration error,
	// reported before any registry access.
	ErrNoKeys = errors.New("no keys to verify the attestation with")
)

// TrustRule requires images whose repository matches Match to be signed by
// one of Keys.
type TrustRule struct {
	// Match is a glob on "registry/repository", for example
	// "registry.example.com/team/**". The pattern and the image are both
	// compared in canonical form (see match.go and
	// registryhost.Canonical): registry case, a trailing dot, the default
	// port 443, loopback spellings and Docker Hub's names and implicit
	// "library/" do not matter. "*", "?" and "[...]" match within one path
	// segment; "**", a whole segment, matches zero or more segments:
	// "team/*" matches "team/web" but not "team/web/api", "team/**" both.
	// The first segment is always the registry.
	Match string
	// Keys are the public keys any one of which may sign.
	Keys []Key
}

// Key is one trusted public key.
type Key struct {
	// Name identifies the key in messages and in Result.KeyName, e.g. the
	// file name the CLI read it from.
	Name string
	// PEM is the key as "cosign generate-key-pair" writes cosign.pub.
	PEM []byte
}

// Verifier checks images against a trust policy. Rules are tried in order
// and the first rule that matches an image decides its keys. A Verifier is
// safe for concurrent use as long as its fields are not modified.
type Verifier struct {
	Rules []TrustRule
	// RequireMatch refuses an image that no rule covers (ErrUnsigned)
	// instead of letting it through unchecked: every image must then be
	// signed as some rule says.
	RequireMatch bool
	// Options are passed to every registry call (transport, auth).
	Options []remote.Option
}

// Result is the outcome of a successful Verify.
type Result struct {
	// Required is true when a trust rule matched the image (or none did
	// and RequireMatch is set); false means the policy does not cover it
	// and nothing was checked.
	Required bool
	// KeyName is the Name of the key that verified the signature.
	KeyName string
	// Format is FormatCosignV2 or FormatBundleV3.
	Format string
	// SignatureRef is "repository@digest" of the manifest holding the
	// accepted signature.
	SignatureRef string
}

// Verify checks that repository@digest is signed as the first matching
// trust rule requires. repository is "registry/path" without tag or
// digest (e.g. "127.0.0.1:5000/team/web"), digest is "sha256:<hex>".
// With no matching rule it returns Result{Required: false}, or with
// RequireMatch an ErrUnsigned refusal, and touches no network. When a
// rule matches, the returned Result has Required set even if err is not
// nil.
func (v *Verifier) Verify(ctx context.Context, repository, digest string) (Result, error) {
	repo, err := parseRepository(repository)
	if err != nil {
		return Result{}, err
	}
	want, err := v1.NewHash(digest)
	if err != nil {
		return Result{}, fmt.Errorf("%w: digest %q: %v", ErrBadReference, digest, err)
	}
	rule, matched, err := matchRule(v.Rules, repo)
	switch {
	case err != nil:
		return Result{}, err
	case !matched && v.RequireMatch:
		return Result{Required: true}, unmatchedError(v.Rules, repo, want)
	case !matched:
		return Result{}, nil
	}
	required := Result{Required: true}
	keys, err := parseRuleKeys(rule)
	if err != nil {
		return required, err
	}

	image := repo.Digest(want.String()).String()
	trust := ruleTrust(rule, keys)
	j := newJudge(image, trust, keys, signatureEvidence(image, tagFor(repo, want, ".sig"), trust, keys))
	opts := slices.Concat(v.Options, []remote.Option{remote.WithContext(ctx)})

	// The tag layout is one request away; look there first and only list
	// referrers when it does not settle the question.
	found, err := cosignV2Candidates(repo, want, opts)
	if err != nil {
		return required, err
	}
	if res, ok := j.consider(found); ok {
		return res, nil
	}
	found, err = bundleCandidates(repo, want, opts)
	if err != nil {
		return required, err
	}
	if res, ok := j.consider(found); ok {
		return res, nil
	}
	return required, j.failure()
}

// Validate checks the whole policy without touching the network: every
// pattern is well formed, every rule has keys and every key parses. Verify
// checks only what it uses; Validate is for rejecting a bad policy up front.
func (v *Verifier) Validate() error {
	var problems []error
	for i, rule := range v.Rules {
		if err := validateRule(i, rule); err != nil {
			problems = append(problems, err)
			continue
		}
		if _, err := parseRuleKeys(rule); err != nil {
			problems = append(problems, err)
		}
	}
	return errors.Join(problems...)
}

// tagFor is where cosign's tag layout keeps objects of the given suffix
// (".sig", ".att") for digest.
func tagFor(repo name.Repository, digest v1.Hash, suffix string) string {
	return repo.Tag(digest.Algorithm + "-" + digest.Hex + suffix).String()
}

// parseRepository parses "registry/path". Registries on this machine are
// spoken to over plain HTTP, as the Docker Engine does by default;
// go-containerregistry alone would do so only for exactly 127.0.0.1 and
// localhost.
func parseRepository(repository string) (name.Repository, error) {
	repo, err := name.NewRepository(repository)
	if err != nil {
		return name.Repository{}, fmt.Errorf("%w: repository %q (want registry/path without tag or digest): %v", ErrBadReference, repository, err)
	}
	if registryhost.IsLoopback(repo.RegistryStr()) {
		if repo, err = name.NewRepository(repository, name.Insecure); err != nil {
			return name.Repository{}, fmt.Errorf("%w: repository %q: %v", ErrBadReference, repository, err)
		}
	}
	return repo, nil
}

// unmatchedError refuses an image no rule covers when every image must be
// signed. It shows the canonical name the rules were held against, since
// that is what a new rule must match.
func unmatchedError(rules []TrustRule, repo name.Repository, digest v1.Hash) error {
	canonical, _ := registryhost.CanonicalRepository(repo.Name())
	patterns := make([]string, len(rules))
	for i, r := range rules {
		patterns[i] = strconv.Quote(r.Match)
	}
	covered := "there are no trust rules"
	if len(patterns) > 0 {
		covered = "no trust rule (" + strings.Join(patterns, ", ") + ") matches it"
	}
	registry, _, _ := strings.Cut(canonical, "/")
	return fmt.Errorf("%w: %s: every image must be signed (the policy's require_signatures), but %s, read as %s; add a trust rule that covers it, like {match: %q, keys: [...]}, with the keys that sign it, or deploy an image a rule covers",
		ErrUnsigned, repo.Digest(digest.String()).String(), covered, canonical, registry+"/**")
}

// matchRule returns the first rule matching repo. Every rule is validated
// first: a malformed rule earlier in the list might have been meant to
// match, so skipping it would silently weaken the policy. The repository
// and the patterns are compared in canonical form.
func matchRule(rules []TrustRule, repo name.Repository) (TrustRule, bool, error) {
	patterns := make([]pattern, len(rules))
	for i, rule := range rules {
		if err := validateRule(i, rule); err != nil {
			return TrustRule{}, false, err
		}
		patterns[i], _ = compileMatch(rule.Match)
	}
	canonical, err := registryhost.CanonicalRepository(repo.Name())
	if err != nil {
		return TrustRule{}, false, fmt.Errorf("%w: %v", ErrBadReference, err)
	}
	for i, rule := range rules {
		if patterns[i].matches(canonical) {
			return rule, true, nil
		}
	}
	return TrustRule{}, false, nil
}

// ValidateMatch checks a trust rule's Match pattern alone; the error wraps
// ErrBadRule and says how to write it.
func ValidateMatch(match string) error {
	if _, err := compileMatch(match); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRule, err)
	}
	return nil
}

func validateRule(index int, rule TrustRule) error {
	if _, err := compileMatch(rule.Match); err != nil {
		return fmt.Errorf("%w: rule %d: %v", ErrBadRule, index+1, err)
	}
	if len(rule.Keys) == 0 {
		return fmt.Errorf("%w: rule %d (match %q) lists no keys, so no image could ever satisfy it; add a key to its trust list", ErrBadRule, index+1, rule.Match)
	}
	return nil
}
