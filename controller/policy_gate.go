package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/controller/scangate"
	"github.com/deployctl/deployctl/controller/signature"
	"github.com/deployctl/deployctl/deployer/seccomp"
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
	rec, ok := c.cfg.Store.View().Policy()
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
	if err := seccomp.Validate(spec.Security.SeccompProfile); err != nil {
		return fmt.Errorf("%w: security.seccomp %s: %w", ErrBadProfile, spec.Security.Seccomp, err)
	}
	return nil
}

// gateScan holds the pinned digest's scan against the policy's scan gate:
// the report sent with the apply, or else a cosign vulnerability
// attestation attached to the image and signed by a key of the image's
// trust rule. Enforce refuses; warn returns the warnings to record.
func (c *Controller) gateScan(ctx context.Context, p *policy.Policy, pin PinnedImage, report []byte) ([]string, error) {
	if p.Scan.Mode == "" || p.Scan.Mode == scangate.ModeOff {
		return nil, nil
	}
	if len(report) == 0 {
		v := signature.Verifier{Rules: p.TrustRules(), Options: c.cfg.RegistryOptions}
		att, err := v.VulnAttestation(ctx, pin.Repository, pin.Digest, nil)
		switch {
		case err == nil:
			report = att.Result
		case errors.Is(err, signature.ErrNoAttestation), errors.Is(err, signature.ErrNoKeys):
			// No attested scan: the gate decides what a missing scan means.
		default:
			return nil, err
		}
	}
	digest := pin.Digest
	var r *scangate.Report
	if len(report) > 0 {
		parsed, err := scangate.ParseTrivy(report)
		if err != nil {
			return nil, err
		}
		r = &parsed
	}
	v := scangate.Evaluate(p.Scan, digest, c.cfg.Now(), r)
	if err := v.Err(); err != nil {
		return nil, err
	}
	return v.Warnings, nil
}

// verifySignature checks the pinned digest's signature where the policy's
// trust rules require one, and returns what verified it.
func (c *Controller) verifySignature(ctx context.Context, p *policy.Policy, pin PinnedImage) (signature.Result, error) {
	v := signature.Verifier{Rules: p.TrustRules(), Options: c.cfg.RegistryOptions}
	return v.Verify(ctx, pin.Repository, pin.Digest)
}
