package signature

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// VulnPredicateType is the in-toto predicate type of cosign's
// vulnerability scan record, what `cosign attest --type vuln` writes.
const VulnPredicateType = "https://cosign.sigstore.dev/attestation/vuln/v1"

// The cosign v2 attestation tag layout (".att").
const (
	dsseEnvelopeMediaType = "application/vnd.dsse.envelope.v1+json"
	// attestationPredicateAnnotation is the layer annotation in which
	// cosign v2 repeats the statement's predicate type.
	attestationPredicateAnnotation = "predicateType"
	// certificateAnnotation marks a keyless (Fulcio) signature.
	certificateAnnotation = "dev.sigstore.cosign/certificate"
)

// maxAttestationBlobBytes bounds one attestation object. A Trivy report of
// a large image runs to several MiB, and base64 in the DSSE envelope adds a
// third; signatures' 4 MiB would refuse real reports.
const maxAttestationBlobBytes = 32 << 20

// Attestation is a verified cosign vulnerability attestation for a pinned
// digest.
type Attestation struct {
	// Result is the predicate's scanner.result as raw JSON; for Trivy it
	// is the Trivy JSON report.
	Result []byte
	// ScannerURI and ScannerVersion are the predicate's scanner.uri and
	// scanner.version, e.g. "pkg:github/aquasecurity/trivy@0.50.0".
	ScannerURI, ScannerVersion string
	// ScanFinishedOn is metadata.scanFinishedOn; zero when the record has
	// none.
	ScanFinishedOn time.Time
	// KeyName is the Name of the key that verified the attestation.
	KeyName string
	// Format is FormatCosignV2 (".att" tag) or FormatBundleV3 (referrer).
	Format string
	// Ref is "repository@digest" of the manifest holding the attestation.
	Ref string
	// Rule is the Match pattern of the trust rule whose keys were used;
	// empty when the keys passed to VulnAttestation were used.
	Rule string
}

// VulnAttestation finds the cosign vulnerability attestations (predicate
// type VulnPredicateType) of repository@digest, in cosign v2's
// "sha256-<hex>.att" tag and among the digest's sigstore bundle referrers,
// and returns the one with the latest scanFinishedOn among those that a
// key verifies and whose in-toto subject is digest.
//
// The keys are those of the first trust rule matching repository; keys is
// used only when no rule matches, so the trust policy cannot be widened
// from the call site (Attestation.Rule says which applied). With neither,
// the error is ErrNoKeys. Failures wrap ErrNoAttestation, ErrUntrustedKey,
// ErrBadSignature (altered, malformed, or a verified record without a scan
// result), ErrDigestMismatch, ErrBadKey, ErrBadRule, ErrBadReference or
// ErrRegistry.
func (v *Verifier) VulnAttestation(ctx context.Context, repository, digest string, keys []Key) (Attestation, error) {
	repo, err := parseRepository(repository)
	if err != nil {
		return Attestation{}, err
	}
	want, err := v1.NewHash(digest)
	if err != nil {
		return Attestation{}, fmt.Errorf("%w: digest %q: %v", ErrBadReference, digest, err)
	}
	image := repo.Digest(want.String()).String()
	trusted, trust, rule, err := attestationKeys(v.Rules, repo, image, keys)
	if err != nil {
		return Attestation{}, err
	}
	j := newJudge(image, trust, trusted, vulnEvidence(image, tagFor(repo, want, ".att"), trust, trusted, rule != ""))
	opts := slices.Concat(v.Options, []remote.Option{remote.WithContext(ctx)})

	// Both layouts are always read: the latest scan wins, wherever it is.
	var best *Attestation
	visit := func(c candidate) {
		var rec vulnRecord
		if c.notWanted == "" && c.broken == nil && c.claim == nil {
			rec, c.claim = parseVulnRecord(c.statement)
		}
		key, ok := j.accept(c)
		if !ok {
			return
		}
		// Ties keep the first found: the ".att" tag, then listing order.
		if best == nil || rec.finishedOn.After(best.ScanFinishedOn) {
			best = &Attestation{
				Result:         rec.result,
				ScannerURI:     rec.scannerURI,
				ScannerVersion: rec.scannerVersion,
				ScanFinishedOn: rec.finishedOn,
				KeyName:        key.name,
				Format:         c.format,
				Ref:            c.ref,
				Rule:           rule,
			}
		}
	}
	q := statementQuery{predicateType: VulnPredicateType, maxBlobBytes: maxAttestationBlobBytes}
	if err := eachCosignV2Attestation(repo, want, opts, q, visit); err != nil {
		return Attestation{}, err
	}
	if err := eachBundle(repo, want, opts, q, visit); err != nil {
		return Attestation{}, err
	}
	if best == nil {
		return Attestation{}, j.failure()
	}
	return *best, nil
}

// attestationKeys picks the keys an attestation must be verified with:
// the first matching rule's, else the caller's. It returns them, their
// description for messages and the matching rule's pattern ("" for the
// caller's keys).
func attestationKeys(rules []TrustRule, repo name.Repository, image string, given []Key) ([]trustedKey, string, string, error) {
	rule, matched, err := matchRule(rules, repo)
	if err != nil {
		return nil, "", "", err
	}
	if matched {
		keys, err := parseRuleKeys(rule)
		if err != nil {
			return nil, "", "", err
		}
		return keys, ruleTrust(rule, keys), rule.Match, nil
	}
	if len(given) == 0 {
		return nil, "", "", fmt.Errorf("%w: no trust rule covers %s and no attestation keys were given: pass the public key whose private half signs the scan attestations (cosign attest --key), or add a trust rule for the repository",
			ErrNoKeys, image)
	}
	keys, err := parseKeys("attestation keys", given)
	if err != nil {
		return nil, "", "", err
	}
	return keys, fmt.Sprintf("the attestation keys given (%s)", keyNames(keys, ", ")), "", nil
}

// vulnEvidence words VulnAttestation's messages.
func vulnEvidence(image, attTag, trust string, keys []trustedKey, fromRule bool) evidence {
	command := fmt.Sprintf("`trivy image --format cosign-vuln --output vuln.json %s` then `cosign attest --key <private key of %s> --type vuln --predicate vuln.json %s`",
		image, keyNames(keys, " or "), image)
	addKey := "add its public key to the policy's trust list"
	if !fromRule {
		addKey = "pass its public key with the attestation keys"
	}
	return evidence{
		noun:    "attestation",
		absent:  ErrNoAttestation,
		missing: "cosign vulnerability attestation",
		tag:     attTag,
		skipped: "signature(s) or attestation(s) of other predicate types",
		need:    fmt.Sprintf("signed by a key of %s: make one with %s", trust, command),
		command: command,
		addKey:  addKey,
	}
}

// eachCosignV2Attestation reads the manifest at tag "sha256-<hex>.att" and
// passes each DSSE envelope layer to visit, decoded for q. cosign appends a
// layer per `cosign attest`, so one tag can hold several attestations.
func eachCosignV2Attestation(repo name.Repository, want v1.Hash, opts []remote.Option, q statementQuery, visit func(candidate)) error {
	tag := repo.Tag(want.Algorithm + "-" + want.Hex + ".att")
	desc, err := remote.Get(tag, opts...)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: reading %s: %v", ErrRegistry, tag, err)
	}
	ref := repo.Digest(desc.Digest.String()).String()
	if !desc.MediaType.IsImage() {
		visit(candidate{format: FormatCosignV2, ref: ref, broken: fmt.Errorf("tag %s holds %s, not an image manifest", tag, desc.MediaType)})
		return nil
	}
	manifest, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		visit(candidate{format: FormatCosignV2, ref: ref, broken: fmt.Errorf("manifest: %w", err)})
		return nil
	}
	visited := 0
	for _, layer := range manifest.Layers {
		if layer.MediaType != dsseEnvelopeMediaType {
			continue // not an attestation layer; cosign writes nothing else here
		}
		if visited == maxCandidates {
			break
		}
		visited++
		c, err := envelopeLayerCandidate(repo, ref, layer, want, opts, q)
		if err != nil {
			return err
		}
		visit(c)
	}
	return nil
}

// envelopeLayerCandidate decodes one ".att" layer. The error is a registry
// failure; a malformed layer is a broken candidate.
func envelopeLayerCandidate(repo name.Repository, ref string, layer v1.Descriptor, want v1.Hash, opts []remote.Option, q statementQuery) (candidate, error) {
	c := candidate{format: FormatCosignV2, ref: ref}
	// Skipping on the unsigned label is safe (it can only lead to
	// rejection) and saves fetching SBOMs.
	if pt, ok := layer.Annotations[attestationPredicateAnnotation]; ok && pt != q.predicateType {
		c.notWanted = fmt.Sprintf("in-toto predicate %q", pt)
		return c, nil
	}
	raw, err := fetchBlob(repo, layer, q.maxBlobBytes, opts)
	if errors.Is(err, errTooLarge) {
		c.broken = err
		return c, nil
	}
	if err != nil {
		return candidate{}, err
	}
	var env dsseEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		c.broken = fmt.Errorf("layer %s is not a DSSE envelope: %w", layer.Digest, err)
		return c, nil
	}
	c.keyless = layer.Annotations[certificateAnnotation] != ""
	decodeEnvelope(&c, &env, want, q.predicateType)
	return c, nil
}

// vulnRecord is what VulnAttestation reports from a cosign vulnerability
// scan record.
type vulnRecord struct {
	result                     []byte
	scannerURI, scannerVersion string
	finishedOn                 time.Time
}

// vulnStatement is the part of a vulnerability attestation's statement
// that is read. invocation, scanner.db and scanStartedOn are not.
type vulnStatement struct {
	Predicate *struct {
		Scanner struct {
			URI     string          `json:"uri"`
			Version string          `json:"version"`
			Result  json.RawMessage `json:"result"`
		} `json:"scanner"`
		Metadata struct {
			ScanFinishedOn time.Time `json:"scanFinishedOn"`
		} `json:"metadata"`
	} `json:"predicate"`
}

// parseVulnRecord reads a statement's vulnerability predicate. Like
// statementClaim, its verdict means something only once a key verifies
// the envelope.
func parseVulnRecord(statement []byte) (vulnRecord, *claimProblem) {
	var st vulnStatement
	if err := json.Unmarshal(statement, &st); err != nil {
		return vulnRecord{}, &claimProblem{what: fmt.Sprintf("its predicate is not a cosign vulnerability scan record: %v", err)}
	}
	if st.Predicate == nil {
		return vulnRecord{}, &claimProblem{what: "its statement has no predicate"}
	}
	p := st.Predicate
	// `cosign attest --type vuln` decodes the predicate file as a scan
	// record and drops what it does not know, so a plain Trivy report
	// given as the predicate is attested as an empty record.
	if r := bytes.TrimSpace(p.Scanner.Result); len(r) == 0 || bytes.Equal(r, []byte("null")) {
		return vulnRecord{}, &claimProblem{what: "its predicate has no scanner.result: the --predicate file given to `cosign attest --type vuln` must be a cosign vulnerability scan record (`trivy image --format cosign-vuln`), not a plain Trivy report"}
	}
	return vulnRecord{
		result:         p.Scanner.Result,
		scannerURI:     p.Scanner.URI,
		scannerVersion: p.Scanner.Version,
		finishedOn:     p.Metadata.ScanFinishedOn,
	}, nil
}
