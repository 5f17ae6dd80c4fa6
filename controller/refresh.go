package controller

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/deployctl/deployctl/raftstore/state"
)

// OutdatedService is a service whose tag now resolves to another digest.
type OutdatedService struct {
	Service  string `json:"service"`
	Revision int    `json:"revision"`
	Image    string `json:"image"`
	Pinned   string `json:"pinned"`
	Latest   string `json:"latest"`
}

// Outdated re-resolves every service's image and lists those whose tag now
// points to a newer digest than the one pinned. Images written with a
// digest never move. A registry that does not answer is reported as an
// error for that service only.
func (c *Controller) Outdated(ctx context.Context) ([]OutdatedService, []string) {
	out := []OutdatedService{}
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
		if pin.Digest != rev.Digest {
			out = append(out, OutdatedService{Service: svc.Name, Revision: rev.Number, Image: rev.Spec.Image, Pinned: rev.Digest, Latest: pin.Digest})
		}
	}
	return out, problems
}

// Refresh applies a service's current spec again: its tag is resolved anew
// and, if it moved, the new digest rolls out like any release, with the
// same automatic rollback.
func (c *Controller) Refresh(ctx context.Context, name, idempotencyKey string) (ApplyOutcome, error) {
	view := c.cfg.Store.View()
	svc, ok := view.Service(name)
	if !ok {
		return ApplyOutcome{}, fmt.Errorf("%w: service %q", ErrNotFound, name)
	}
	rev, ok := view.Revision(name, svc.Current)
	if !ok {
		return ApplyOutcome{}, fmt.Errorf("%w: service %q has no revision %d", ErrNotFound, name, svc.Current)
	}
	spec := rev.Spec
	return c.ApplyWith(ctx, ApplyRequest{Spec: &spec, IdempotencyKey: idempotencyKey})
}

// OutdatedReport is `deployctl outdated -o json`.
type OutdatedReport struct {
	Services []OutdatedService `json:"services"`
	Problems []string          `json:"problems,omitempty"`
}

func (a *API) getOutdated(w http.ResponseWriter, r *http.Request) {
	svcs, problems := a.c.Outdated(r.Context())
	writeJSON(w, http.StatusOK, OutdatedReport{Services: svcs, Problems: problems})
}

func (a *API) refreshService(w http.ResponseWriter, r *http.Request) {
	name, ok := pathService(w, r)
	if !ok {
		return
	}
	key, ok := idempotencyKey(w, r)
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

// Outdated lists the services whose tag moved.
func (c *Client) Outdated(ctx context.Context) (OutdatedReport, error) {
	var out OutdatedReport
	err := c.do(ctx, http.MethodGet, "/v1/outdated", nil, nil, &out)
	return out, err
}

// Refresh re-resolves a service's image and rolls a new digest out.
func (c *Client) Refresh(ctx context.Context, service string) (ApplyOutcome, error) {
	h := http.Header{"Idempotency-Key": {NewID()}}
	var out ApplyOutcome
	err := c.retryWrite(ctx, func() error {
		return c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/refresh", h, nil, &out)
	})
	return out, err
}
