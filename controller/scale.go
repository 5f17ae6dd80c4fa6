package controller

import (
	"context"
	"fmt"
	"net/http"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// ScaleRequest asks for a service's replica count to change.
type ScaleRequest struct {
	Service        string
	Replicas       int
	IdempotencyKey string
}

// Scale stores a new revision of a service that is its current revision
// with the replica count set to req.Replicas, and starts its rollout. It
// is an apply of that spec pinned to the current digest: the tag is not
// resolved again (a moved tag is `apply --refresh`), and the revision
// passes today's checks as an apply or a rollback would (admitPinned:
// validation, which bounds the count, the policy, the signature and scan
// gates). The fingerprint, which leaves the replica count out, is the
// current revision's, so the rollout keeps every running replica and only
// starts or stops the difference. A count equal to the current one stores
// nothing and answers Unchanged, as an apply of an unchanged spec does.
//
// The new spec is computed here, on the leader, and written with the
// revision through the same command as an apply, guarded by the revision
// it was computed from (ExpectCurrent): a scale racing another change is a
// conflict, never a revision built on a stale spec.
func (c *Controller) Scale(ctx context.Context, req ScaleRequest) (wire.ApplyOutcome, error) {
	if !c.Ready() {
		return wire.ApplyOutcome{}, c.notLeader()
	}
	view := c.cfg.Store.View()
	if out, ok := repeatedRequest(view, req.Service, req.IdempotencyKey); ok {
		return out, nil
	}
	svc, err := liveService(view, req.Service)
	if err != nil {
		return wire.ApplyOutcome{}, err
	}
	cur, ok := view.Revision(svc.Name, svc.Current)
	if !ok {
		return wire.ApplyOutcome{}, fmt.Errorf("%w: service %q has no revision %d", ErrNotFound, svc.Name, svc.Current)
	}
	next := cur
	next.Spec = *cur.Spec.Clone()
	next.Spec.Replicas = req.Replicas
	adm, err := c.admitPinned(ctx, next)
	if err != nil {
		return wire.ApplyOutcome{}, fmt.Errorf("scale %s to %d replicas: %w", svc.Name, req.Replicas, err)
	}
	warnings := joinWarnings(adm.policyWarnings, prefixed("scan: ", adm.scanWarnings), adm.connectionWarnings)
	if cur.Spec.Replicas == req.Replicas {
		return wire.ApplyOutcome{Service: svc.Name, Revision: cur.Number, Digest: cur.Digest, Ref: cur.Ref, Unchanged: true, Warnings: warnings}, nil
	}
	cmd := state.ApplyRevisionCmd{
		Now:            c.cfg.Now(),
		IdempotencyKey: req.IdempotencyKey,
		ExpectCurrent:  svc.Current,
		Revision: state.Revision{
			Service: svc.Name, Spec: next.Spec, Digest: cur.Digest, Ref: cur.Ref, Fingerprint: cur.Fingerprint,
			Cause: ScaleCause(cur.Spec.Replicas, req.Replicas), Secrets: cur.Secrets,
			SignedBy: adm.signed.KeyName, SignatureFormat: adm.signed.Format, ScanWarnings: adm.scanWarnings, PolicyWarnings: adm.policyWarnings,
		},
	}
	res, err := c.storeRevision(ctx, cmd)
	if err != nil {
		return wire.ApplyOutcome{}, fmt.Errorf("scale %s: %w", svc.Name, err)
	}
	ar := res.(state.ApplyResult)
	c.log.Info("scale stored", "service", svc.Name, "revision", ar.Revision, "from", cur.Spec.Replicas, "to", req.Replicas)
	return wire.ApplyOutcome{Service: svc.Name, Revision: ar.Revision, Digest: cur.Digest, Ref: cur.Ref, Warnings: warnings}, nil
}

// ScaleCause is the cause a scale's revision records, which `deployctl
// history` shows and the chaos checks recognise.
func ScaleCause(from, to int) string {
	return fmt.Sprintf("scale from %d to %d", from, to)
}

func (a *API) scaleService(w http.ResponseWriter, r *http.Request) {
	name, key, ok := serviceWriteParams(w, r)
	if !ok {
		return
	}
	var body wire.ScaleBody
	if !decodeJSON(w, r, &body) {
		return
	}
	if body.Replicas == nil {
		// Never read a missing count as 0: that would stop every replica.
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, `replicas: required; send {"replicas": N}, the number of replicas to run (0 stops them all)`)
		return
	}
	out, err := a.c.Scale(r.Context(), ScaleRequest{Service: name, Replicas: *body.Replicas, IdempotencyKey: key})
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeApplyOutcome(w, out)
}
