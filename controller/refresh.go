package controller

import (
	"context"
	"fmt"
	"net/http"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// Outdated re-resolves every service's image and lists those whose tag now
// points to a newer digest than the one pinned. Images written with a
// digest never move. A registry that does not answer is reported as an
// error for that service only.
func (c *Controller) Outdated(ctx context.Context) ([]wire.OutdatedService, []string) {
	out := []wire.OutdatedService{}
	var problems []string
	view := c.cfg.Store.View()
	for _, svc := range view.Services() {
		rev, ok := view.Revision(svc.Name, svc.Current)
		if !ok || svc.State == state.ServiceRemoving {
			continue
		}
		pin, err := c.cfg.Resolver.Resolve(ctx, rev.Spec.Image)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", svc.Name, err))
			continue
		}
		if secrets := outdatedSecrets(view, rev); pin.Digest != rev.Digest || len(secrets) > 0 {
			out = append(out, wire.OutdatedService{Service: svc.Name, Revision: rev.Number, Image: rev.Spec.Image, Pinned: rev.Digest, Latest: pin.Digest, Secrets: secrets})
		}
	}
	return out, problems
}

// Refresh applies a service's current spec again: its tag is resolved anew
// and, if it moved, the new digest rolls out like any release, with the
// same automatic rollback.
func (c *Controller) Refresh(ctx context.Context, name, idempotencyKey string) (wire.ApplyOutcome, error) {
	view := c.cfg.Store.View()
	svc, ok := view.Service(name)
	if !ok {
		return wire.ApplyOutcome{}, fmt.Errorf("%w: service %q", ErrNotFound, name)
	}
	rev, ok := view.Revision(name, svc.Current)
	if !ok {
		return wire.ApplyOutcome{}, fmt.Errorf("%w: service %q has no revision %d", ErrNotFound, name, svc.Current)
	}
	spec := rev.Spec
	return c.ApplyWith(ctx, ApplyRequest{Spec: &spec, IdempotencyKey: idempotencyKey})
}

func (a *API) getOutdated(w http.ResponseWriter, r *http.Request) {
	svcs, problems := a.c.Outdated(r.Context())
	writeJSON(w, http.StatusOK, wire.OutdatedReport{Services: svcs, Problems: problems})
}

func (a *API) refreshService(w http.ResponseWriter, r *http.Request) {
	name, key, ok := serviceWriteParams(w, r)
	if !ok {
		return
	}
	out, err := a.c.Refresh(r.Context(), name, key)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeApplyOutcome(w, out)
}
