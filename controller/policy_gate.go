package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/controller/scangate"
	"github.com/deployctl/deployctl/controller/signature"
	"github.com/deployctl/deployctl/internal/seccompprofile"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// ErrInvalidPolicy is a policy that cannot be stored.
var ErrInvalidPolicy = wire.ErrInvalidPolicy

// Policy returns the cluster policy: the stored one, or the default (deny
// every exception) when none was set.
func (c *Controller) Policy() (*policy.Policy, error) {
	return storedPolicy(c.cfg.Store.View())
}

// storedPolicy is the policy of one state version: the stored one, or the
// default when none was set.
func storedPolicy(t *state.Tables) (*policy.Policy, error) {
	rec, ok := t.Policy()
	if !ok {
		return policy.Default(), nil
	}
	var p policy.Policy
	if err := json.Unmarshal(rec.JSON, &p); err != nil {
		return nil, fmt.Errorf("decode stored policy version %d: %w", rec.Version, err)
	}
	p.Version = rec.Version
	return &p, nil
}

// SetPolicy validates and stores a policy; trust keys must be loaded (the
// CLI reads the key files). expectVersion guards against a concurrent set.
func (c *Controller) SetPolicy(ctx context.Context, p *policy.Policy, expectVersion int) (int, error) {
	if !c.Ready() {
		return 0, c.notLeader()
	}
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	if !p.KeysLoaded() {
		return 0, fmt.Errorf("%w: trust keys are file paths without their PEM; `deployctl policy set` reads them", ErrInvalidPolicy)
	}
	cp := p.Clone()
	cp.Version = 0
	body, err := json.Marshal(cp)
	if err != nil {
		return 0, fmt.Errorf("encode policy: %w", err)
	}
	res, err := c.apply(ctx, raftstore.CmdSetPolicy, state.SetPolicyCmd{Now: c.cfg.Now(), ExpectVersion: expectVersion, JSON: body})
	if err != nil {
		return 0, err
	}
	return res.(int), nil
}

// admit checks a spec against the policy before anything is resolved or
// stored: every violation is reported at once, each naming the field, the
// rule and how to change the policy.
func (c *Controller) admit(spec *specs.Spec) (*policy.Policy, error) {
	p, err := c.Policy()
	if err != nil {
		return nil, err
	}
	registry, err := policy.RegistryOf(spec.Image)
	if err != nil {
		return nil, fmt.Errorf("%w: image: %v", ErrInvalidSpec, err)
	}
	if err := policy.Deny(policy.Check(p, spec, registry)); err != nil {
		return nil, err
	}
	return p, nil
}

// hardeningWarnings are the policy's warnings about the spec's weakened
// hardening defaults (policy.Warnings), as the sentences stored with the
// revision and returned by the apply.
func hardeningWarnings(p *policy.Policy, spec *specs.Spec) []string {
	var out []string
	for _, w := range policy.Warnings(p, spec) {
		out = append(out, w.String())
	}
	return out
}

// joinWarnings is every warning of an apply, in a new slice.
func joinWarnings(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// prefixed returns each warning with prefix, which says where it came from.
func prefixed(prefix string, warnings []string) []string {
	out := make([]string, len(warnings))
	for i, w := range warnings {
		out[i] = prefix + w
	}
	return out
}

// ErrBadProfile is a seccomp profile that cannot be used.
var ErrBadProfile = wire.ErrBadProfile

// checkProfile validates a seccomp profile file the CLI sent with a spec
// that names one; a spec that names none must not carry one.
func checkProfile(spec *specs.Spec) error {
	if spec.Security.SeccompMode() != specs.SeccompModeFile {
		if len(spec.Security.SeccompProfile) > 0 {
			return fmt.Errorf("%w: a profile was sent but security.seccomp is %q", ErrBadProfile, spec.Security.Seccomp)
		}
		return nil
	}
	if len(spec.Security.SeccompProfile) == 0 {
		return fmt.Errorf("%w: security.seccomp names the file %q; send its content (deployctl apply reads it)", ErrBadProfile, spec.Security.Seccomp)
	}
	if err := seccompprofile.Validate(spec.Security.SeccompProfile); err != nil {
		return fmt.Errorf("%w: security.seccomp %s: %w", ErrBadProfile, spec.Security.Seccomp, err)
	}
	return nil
}

// gateScan holds the pinned digest's scan against the policy's scan gate.
// The evidence is a cosign vulnerability attestation attached to the image
// and signed by a key of the image's trust rule, and/or the report sent
// with the apply. A verified attestation always wins; a sent report is
// unsigned, and enforce mode judges it only when the policy says
// scan.accept_unsigned_reports (scangate.EvaluateEvidence). Enforce
// refuses; warn returns the warnings to record. A rollback calls it with
// no report: only the attestation counts then.
func (c *Controller) gateScan(ctx context.Context, p *policy.Policy, pin PinnedImage, report []byte) ([]string, error) {
	if p.Scan.Mode == "" || p.Scan.Mode == scangate.ModeOff {
		return nil, nil
	}
	var ev scangate.Evidence
	if len(report) > 0 {
		parsed, err := scangate.ParseTrivy(report)
		if err != nil {
			return nil, err
		}
		ev.Sent = &parsed
	}
	var attWarnings []string
	v := c.signatureVerifier(p)
	att, err := v.VulnAttestation(ctx, pin.Repository, pin.Digest, nil)
	switch {
	case errors.Is(err, signature.ErrBadRule):
		return nil, storedPolicyError(err)
	case err == nil:
		parsed, err := scangate.ParseTrivy(att.Result)
		if err != nil {
			return nil, fmt.Errorf("the signed vulnerability attestation %s (key %s): %w", att.Ref, att.KeyName, err)
		}
		parsed.SignedBy = fmt.Sprintf("key %s, %s attestation %s", att.KeyName, att.Format, att.Ref)
		ev.Attested = &parsed
	case errors.Is(err, signature.ErrNoAttestation):
		ev.NoAttestation = "no signed vulnerability attestation is attached to the image"
	case errors.Is(err, signature.ErrNoKeys):
		ev.NoAttestation = "no trust rule covers the image, so no attestation could be verified; add one listing the scanner's key"
	case p.Scan.Mode == scangate.ModeWarn:
		// Warn never refuses: a broken or unreadable attestation is said,
		// and the gate goes on without it.
		ev.NoAttestation = "the attached attestation could not be used"
		attWarnings = append(attWarnings, "vulnerability attestation not used: "+err.Error())
	default:
		// Enforce: an attestation that does not verify (another key, an
		// altered payload, another digest) or cannot be read refuses.
		return nil, err
	}
	verdict := scangate.EvaluateEvidence(p.Scan, pin.Digest, c.cfg.Now(), ev)
	if err := verdict.Err(); err != nil {
		return nil, err
	}
	return append(attWarnings, verdict.Warnings...), nil
}

// signatureVerifier holds images to the policy's trust rules; with
// require_signatures, an image no rule covers is refused.
func (c *Controller) signatureVerifier(p *policy.Policy) signature.Verifier {
	return signature.Verifier{Rules: p.TrustRules(), RequireMatch: p.RequireSignatures, Options: c.cfg.RegistryOptions}
}

// verifySignature checks the pinned digest's signature where the policy's
// trust rules require one (every image under require_signatures), and
// returns what verified it. Refusals wrap the signature package's
// sentinels (ErrUnsigned for an image no rule covers).
func (c *Controller) verifySignature(ctx context.Context, p *policy.Policy, pin PinnedImage) (signature.Result, error) {
	v := c.signatureVerifier(p)
	res, err := v.Verify(ctx, pin.Repository, pin.Digest)
	if errors.Is(err, signature.ErrBadRule) {
		return res, storedPolicyError(err)
	}
	return res, err
}

// storedPolicyError words a trust rule of the stored policy that no
// longer validates (a pattern stored before the rules were tightened, such
// as one without a registry): nothing is admitted under it until the
// policy is set again, and the answer says so instead of a server error.
func storedPolicyError(err error) error {
	return fmt.Errorf("%w: the stored policy's trust rules cannot be applied, so nothing is admitted: %w; correct them and store the policy again (deployctl policy set)", ErrInvalidPolicy, err)
}
