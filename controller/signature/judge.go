package signature

import (
	"fmt"
	"slices"
	"strings"
)

// candidate is one signature or attestation found in the registry,
// decoded but not yet trusted. Exactly one of broken, notWanted or
// signed/sigs is set.
type candidate struct {
	format string
	// ref is the manifest that holds the signature, "repository@digest".
	ref string
	// signed is exactly the bytes the signature covers.
	signed []byte
	// sigs are the raw signatures over signed; any one may verify.
	sigs [][]byte
	// statement is the in-toto statement of a DSSE envelope (the payload
	// signed covers), for callers that read its predicate once verified.
	statement []byte
	// hints are unauthenticated key identifiers the signer wrote; they
	// only choose between ErrBadSignature and ErrUntrustedKey.
	hints []string
	// claim is what is wrong with the signed content for the pinned
	// digest, nil when it vouches for it. It is computed from unverified
	// bytes and means something only once a key verifies the signature.
	claim *claimProblem
	// keyless is set for objects signed with a Fulcio certificate rather
	// than a key: they can never verify here, and the message says so.
	keyless bool
	// broken says why the object could not be decoded.
	broken error
	// notWanted says why the object is skipped: something signed, but not
	// what the search is after (an in-toto statement of another predicate
	// type).
	notWanted string
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

// evidence words a judge's messages for what it is looking for: image
// signatures (Verify) or vulnerability attestations (VulnAttestation).
type evidence struct {
	noun    string // one object, in messages: "signature", "attestation"
	absent  error  // the sentinel when none is found
	missing string // what is missing: "cosign signature"
	tag     string // where the tag layout keeps them
	skipped string // what skipped objects are, plural
	// need ends the "none found" message: who requires one and how to
	// make one.
	need string
	// command makes a valid one for this image.
	command string
	// addKey is how to trust a signer whose key is not listed.
	addKey string
}

// signatureEvidence words Verify's messages.
func signatureEvidence(image, sigTag string, trust string, keys []trustedKey) evidence {
	command := fmt.Sprintf("`cosign sign --key <private key of %s> %s`", keyNames(keys, " or "), image)
	return evidence{
		noun:    "signature",
		absent:  ErrUnsigned,
		missing: "cosign signature",
		tag:     sigTag,
		skipped: "attestation(s) that are not image signatures",
		need:    fmt.Sprintf("but %s requires one: sign it with %s", trust, command),
		command: command,
		addKey:  "add its public key to the policy's trust list",
	}
}

// judge weighs candidates for one image against one set of keys.
type judge struct {
	image string // repository@digest, as operators would type it
	trust string // where the keys come from, e.g. `trust rule "x" (keys: a, b)`
	keys  []trustedKey
	ev    evidence

	examined int
	skipped  []string
	worst    *verdict
}

func newJudge(image, trust string, keys []trustedKey, ev evidence) *judge {
	return &judge{image: image, trust: trust, keys: keys, ev: ev}
}

// ruleTrust describes a trust rule and its keys for messages.
func ruleTrust(rule TrustRule, keys []trustedKey) string {
	return fmt.Sprintf("trust rule %q (keys: %s)", rule.Match, keyNames(keys, ", "))
}

// consider returns the first candidate a key verifies and that vouches for
// the pinned digest; otherwise it records why each one failed.
func (j *judge) consider(found []candidate) (Result, bool) {
	for _, c := range found {
		if key, ok := j.accept(c); ok {
			return Result{Required: true, KeyName: key.name, Format: c.format, SignatureRef: c.ref}, true
		}
	}
	return Result{}, false
}

// accept returns the key that verifies c when c also vouches for the
// pinned digest; otherwise it records why c failed.
func (j *judge) accept(c candidate) (trustedKey, bool) {
	noun := j.ev.noun
	if c.notWanted != "" {
		j.skipped = append(j.skipped, fmt.Sprintf("%s (%s)", c.ref, c.notWanted))
		return trustedKey{}, false
	}
	j.examined++
	if c.broken != nil {
		j.record(ErrBadSignature, rankBad, fmt.Sprintf("%s object %s is malformed: %v", noun, c.ref, c.broken))
		return trustedKey{}, false
	}
	key, ok := j.verifyingKey(c)
	switch {
	case ok && c.claim == nil:
		return key, true
	case ok && c.claim.otherDigest:
		j.record(ErrDigestMismatch, rankMismatch, fmt.Sprintf("%s %s verifies with key %s but %s", noun, c.ref, key.name, c.claim.what))
	case ok:
		j.record(ErrBadSignature, rankBad, fmt.Sprintf("%s %s verifies with key %s but %s", noun, c.ref, key.name, c.claim.what))
	default:
		if named, ok := j.hintedKey(c); ok {
			j.record(ErrBadSignature, rankBad, fmt.Sprintf("%s %s names key %s but does not verify with it: the payload or the signature was altered after signing", noun, c.ref, named.name))
			return trustedKey{}, false
		}
		detail := fmt.Sprintf("%s %s does not verify with any listed key: it was made with another key, or its payload was altered after signing", noun, c.ref)
		if c.keyless {
			detail += " (it is a keyless, certificate-based signature, which is not supported: sign with --key)"
		}
		j.record(ErrUntrustedKey, rankUntrusted, detail)
	}
	return trustedKey{}, false
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

func keyNames(keys []trustedKey, sep string) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.name
	}
	return strings.Join(names, sep)
}

// failure is the error for an image no candidate vouched for. It names
// the image, where the keys came from and the fix.
func (j *judge) failure() error {
	ev := j.ev
	if j.worst == nil {
		ignored := ""
		if len(j.skipped) > 0 {
			ignored = fmt.Sprintf("; ignored %d %s: %s", len(j.skipped), ev.skipped, strings.Join(j.skipped, ", "))
		}
		return fmt.Errorf("%w: %s has no %s (looked for tag %s and for sigstore bundle referrers%s) %s",
			ev.absent, j.image, ev.missing, ev.tag, ignored, ev.need)
	}
	fix := ""
	switch j.worst.rank {
	case rankMismatch:
		fix = "what was made for another image proves nothing about this one: make one for this digest with " + ev.command
	case rankBad:
		fix = "make a new one with " + ev.command + " and check who can push to the repository"
	default:
		fix = "if the signer is trusted, " + ev.addKey + "; otherwise make one with " + ev.command
	}
	return fmt.Errorf("%w: %s: %s (%d %s(s) examined, none accepted) under %s: %s",
		j.worst.sentinel, j.image, j.worst.detail, j.examined, ev.noun, j.trust, fix)
}
