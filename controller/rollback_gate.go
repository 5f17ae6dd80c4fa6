package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deployctl/deployctl/controller/signature"
	"github.com/deployctl/deployctl/raftstore/state"
)

// DefaultRollbackCheckTimeout bounds the registry lookups (signature,
// scan attestation) of an automatic rollback's admission.
const DefaultRollbackCheckTimeout = 30 * time.Second

// ErrRollbackRefused marks a rollback whose target no longer passes
// today's rules; the error also wraps the rule's own error (a
// *policy.DeniedError, signature.ErrUnsigned, a scangate error...), which
// the API maps to its status code.
var ErrRollbackRefused = errors.New("rollback refused")

// admitted is what today's rules said of a revision: the key its
// signature verified with and the scan gate's warnings, recorded on the
// revision that restores (or scales) it.
type admitted struct {
	signed       signature.Result
	scanWarnings []string
	// connectionWarnings are connectionCheck's: targets that do not exist
	// yet, callers whose port the revision does not expose.
	connectionWarnings []string
	// policyWarnings are the policy's warnings about weakened hardening
	// defaults (hardeningWarnings).
	policyWarnings []string
}

// readmit holds a stored revision against today's rules exactly as an
// apply of its spec, pinned to its digest, would be: spec validation, the
// seccomp profile, its connections (a target that exists must expose the
// port: 409 otherwise), the policy (its connections rule included), the
// signature where a trust rule matches and the scan gate. The scan gate
// sees only the attestation attached to the image (a report sent with the
// original apply is not kept). A revision admitted under an older policy
// is therefore not restored when today's policy refuses it.
func (c *Controller) readmit(ctx context.Context, rev state.Revision) (admitted, error) {
	adm, err := c.admitPinned(ctx, rev)
	if err != nil {
		return admitted{}, fmt.Errorf("%w: revision %d of %s no longer passes today's rules: %w", ErrRollbackRefused, rev.Number, rev.Service, err)
	}
	return adm, nil
}

// admitPinned runs readmit's checks on a revision's spec and pinned
// digest, and returns the rule's own error unwrapped: the caller says
// what was refused (a rollback's target, a scale's new revision).
func (c *Controller) admitPinned(ctx context.Context, rev state.Revision) (admitted, error) {
	spec := rev.Spec.Clone()
	if err := spec.Validate(); err != nil {
		return admitted{}, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	if err := checkProfile(spec); err != nil {
		return admitted{}, err
	}
	if err := checkPins(c.cfg.Store.View(), rev.Secrets); err != nil {
		return admitted{}, err
	}
	connectionWarnings, err := connectionCheck(c.cfg.Store.View(), spec)
	if err != nil {
		return admitted{}, err
	}
	pol, err := c.admit(spec)
	if err != nil {
		return admitted{}, err
	}
	pin := PinnedImage{Repository: strings.TrimSuffix(rev.Ref, "@"+rev.Digest), Digest: rev.Digest, Ref: rev.Ref}
	signed, err := c.verifySignature(ctx, pol, pin)
	if err != nil {
		return admitted{}, err
	}
	warnings, err := c.gateScan(ctx, pol, pin, nil)
	if err != nil {
		return admitted{}, err
	}
	return admitted{signed: signed, scanWarnings: warnings, connectionWarnings: connectionWarnings,
		policyWarnings: hardeningWarnings(pol, spec)}, nil
}

// rollbackKey names one automatic rollback decision: the failed revision,
// the revision it would restore and the policy version judged against.
type rollbackKey struct {
	current, target, policyVersion int
}

// rollbackCheck is an automatic rollback's admission, run off the loop
// (it may ask registries) and kept in leader memory until the loop writes
// its outcome. The verdict reaches raft inside the command the loop writes,
// so followers never repeat the lookups.
type rollbackCheck struct {
	key  rollbackKey
	done bool
	adm  admitted
	err  error
}

// rollbackVerdict returns the admission of target for service svc's
// automatic rollback, not done while the check runs (it wakes the loop
// when it ends). At most one check per service is kept; a new failed
// revision, target or policy version starts a new one.
func (c *Controller) rollbackVerdict(ctx context.Context, svc state.Service, target state.Revision) rollbackCheck {
	version := 0
	if p, err := c.Policy(); err == nil {
		version = p.Version
	}
	key := rollbackKey{current: svc.Current, target: target.Number, policyVersion: version}
	c.mu.Lock()
	chk, ok := c.rollbackChecks[svc.Name]
	if ok && chk.key == key {
		verdict := *chk
		c.mu.Unlock()
		return verdict
	}
	chk = &rollbackCheck{key: key}
	c.rollbackChecks[svc.Name] = chk
	c.mu.Unlock()
	go func() {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.RollbackCheckTimeout)
		adm, err := c.readmit(cctx, target)
		if err != nil && cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (the checks did not finish within %s)", err, c.cfg.RollbackCheckTimeout)
		}
		cancel()
		c.mu.Lock()
		chk.adm, chk.err, chk.done = adm, err, true
		c.mu.Unlock()
		c.wake()
	}()
	return rollbackCheck{key: key}
}

// forgetRollbackCheck drops a service's check once its outcome is written.
func (c *Controller) forgetRollbackCheck(service string) {
	c.mu.Lock()
	delete(c.rollbackChecks, service)
	c.mu.Unlock()
}

// wake makes the loop decide again without waiting for a change or tick.
func (c *Controller) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// oneLine folds a multi-line error (a policy's violations) for a revision
// message.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
