package signature

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// candidate is one signature found in the registry, decoded but not yet
// trusted. Exactly one of broken, notSignature or signed/sigs is set.
type candidate struct {
	format string
	// ref is the manifest that holds the signature, "repository@digest".
	ref string
	// signed is exactly the bytes the signature covers.
	signed []byte
	// sigs are the raw signatures over signed; any one may verify.
	sigs [][]byte
	// hints are unauthenticated key identifiers the signer wrote; they
	// only choose between ErrBadSignature and ErrUntrustedKey.
	hints []string
	// claim is what is wrong with the signed content for the pinned
	// digest, nil when it vouches for it. It is computed from unverified
	// bytes and means something only once a key verifies the signature.
	claim *claimProblem
	// keyless is set for bundles signed with a Fulcio certificate rather
	// than a key: they can never verify here, and the message says so.
	keyless bool
	// broken says why the object could not be decoded as a signature.
	broken error
	// notSignature says why the object is skipped: something signed, but
	// not an image signature (an in-toto attestation of another type).
	notSignature string
}

// failure ranks: when several signatures fail, the most specific failure
// is reported, since it is the one that tells the operator what happened.
const (
	rankUntrusted = iota + 1
	rankBad
	rankMismatch
)

// claimProblem is why verified content does not vouch for the pinned
// digest.
type claimProblem struct {
	// otherDigest is set when the content is an image signature for
	// another digest (ErrDigestMismatch); otherwise it is not a cosign
	// image signature at all (ErrBadSignature).
	otherDigest bool
	what        string
}

type verdict struct {
	sentinel error
	rank     int
	detail   string
}

// judge weighs candidates for one image against one rule's keys.
type judge struct {
	image  string // repository@digest, as operators would type it
	sigTag string // where the tag layout would put signatures
	rule   TrustRule
	keys   []trustedKey

	examined int
	skipped  []string
	worst    *verdict
}

func newJudge(repo name.Repository, want v1.Hash, rule TrustRule, keys []trustedKey) *judge {
	return &judge{
		image:  repo.Digest(want.String()).String(),
		sigTag: repo.Tag(want.Algorithm + "-" + want.Hex + ".sig").String(),
		rule:   rule,
		keys:   keys,
	}
}

// consider returns the first candidate a key verifies and that vouches for
// the pinned digest; otherwise it records why each one failed.
func (j *judge) consider(found []candidate) (Result, bool) {
	for _, c := range found {
		if c.notSignature != "" {
			j.skipped = append(j.skipped, fmt.Sprintf("%s (%s)", c.ref, c.notSignature))
			continue
		}
		j.examined++
		if c.broken != nil {
			j.record(ErrBadSignature, rankBad, fmt.Sprintf("signature object %s is malformed: %v", c.ref, c.broken))
			continue
		}
		key, ok := j.verifyingKey(c)
		switch {
		case ok && c.claim == nil:
			return Result{Required: true, KeyName: key.name, Format: c.format, SignatureRef: c.ref}, true
		case ok && c.claim.otherDigest:
			j.record(ErrDigestMismatch, rankMismatch, fmt.Sprintf("signature %s verifies with key %s but %s", c.ref, key.name, c.claim.what))
		case ok:
			j.record(ErrBadSignature, rankBad, fmt.Sprintf("signature %s verifies with key %s but %s", c.ref, key.name, c.claim.what))
		default:
			if named, ok := j.hintedKey(c); ok {
				j.record(ErrBadSignature, rankBad, fmt.Sprintf("signature %s names key %s but does not verify with it: the payload or the signature was altered after signing", c.ref, named.name))
				continue
			}
			detail := fmt.Sprintf("signature %s does not verify with any listed key: it was made with another key, or its payload was altered after signing", c.ref)
			if c.keyless {
				detail += " (it is a keyless, certificate-based signature, which is not supported: sign with --key)"
			}
			j.record(ErrUntrustedKey, rankUntrusted, detail)
		}
	}
	return Result{}, false
}

func (j *judge) verifyingKey(c candidate) (trustedKey, bool) {
	for _, k := range j.keys {
		for _, sig := range c.sigs {
			if verifySignature(k.pub, c.signed, sig) {
				return k, true
			}
		}
	}
	return trustedKey{}, false
}

func (j *judge) hintedKey(c candidate) (trustedKey, bool) {
	for _, k := range j.keys {
		for _, h := range c.hints {
			if h != "" && slices.Contains(k.hints, h) {
				return k, true
			}
		}
	}
	return trustedKey{}, false
}

func (j *judge) record(sentinel error, rank int, detail string) {
	if j.worst == nil || rank > j.worst.rank {
		j.worst = &verdict{sentinel: sentinel, rank: rank, detail: detail}
	}
}

func (j *judge) keyNames() string {
	names := make([]string, len(j.keys))
	for i, k := range j.keys {
		names[i] = k.name
	}
	return strings.Join(names, ", ")
}

func (j *judge) signCommand() string {
	names := make([]string, len(j.keys))
	for i, k := range j.keys {
		names[i] = k.name
	}
	return fmt.Sprintf("`cosign sign --key <private key of %s> %s`", strings.Join(names, " or "), j.image)
}

// failure is the error for an image no candidate vouched for. It names
// the image, the rule and the fix.
func (j *judge) failure() error {
	rule := fmt.Sprintf("trust rule %q (keys: %s)", j.rule.Match, j.keyNames())
	if j.worst == nil {
		ignored := ""
		if len(j.skipped) > 0 {
			ignored = fmt.Sprintf("; ignored %d attestation(s) that are not image signatures: %s", len(j.skipped), strings.Join(j.skipped, ", "))
		}
		return fmt.Errorf("%w: %s has no cosign signature (looked for tag %s and for sigstore bundle referrers%s) but %s requires one: sign it with %s",
			ErrUnsigned, j.image, j.sigTag, ignored, rule, j.signCommand())
	}
	fix := ""
	switch j.worst.rank {
	case rankMismatch:
		fix = "a signature copied from another image proves nothing about this one: sign this digest with " + j.signCommand()
	case rankBad:
		fix = "re-sign with " + j.signCommand() + " and check who can push to the repository"
	default:
		fix = "if the signer is trusted, add its public key to the policy's trust list; otherwise sign the image with " + j.signCommand()
	}
	return fmt.Errorf("%w: %s: %s (%d signature(s) examined, none accepted) under %s: %s",
		j.worst.sentinel, j.image, j.worst.detail, j.examined, rule, fix)
}
