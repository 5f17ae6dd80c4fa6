package controller

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Diff is a dry run of an apply (`deployctl diff`, POST
// /v1/services/diff): the same checks, the same resolution of the tag and
// the same admission (policy, signature, scan gate), then what the apply
// would change against the current revision, field by field, and whether
// its containers restart: the fingerprint decides, as it does for the
// rollout. Nothing is written.
func (c *Controller) Diff(ctx context.Context, req ApplyRequest) (wire.DiffOutcome, error) {
	if !c.Ready() {
		return wire.DiffOutcome{}, c.notLeader()
	}
	p, err := c.prepareApply(ctx, req)
	if err != nil {
		return wire.DiffOutcome{}, err
	}
	out := wire.DiffOutcome{Service: p.spec.Service, Exists: p.exists && p.cur.Number > 0, Revision: p.cur.Number, Unchanged: p.unchanged,
		Image: p.spec.Image, PinnedDigest: p.cur.Digest, ResolvedDigest: p.pin.Digest, Warnings: p.warnings}
	running := 0
	if out.Exists {
		for _, r := range p.view.ServiceReplicas(p.svc.Name) {
			if r.Desired == state.DesiredRunning {
				running++
			}
		}
		out.Changes = specChanges(&p.cur.Spec, p.spec)
	} else {
		out.Changes = specChanges(&specs.Spec{}, p.spec)
	}
	want := p.spec.Replicas
	out.Starts, out.Stops = max(want-running, 0), max(running-want, 0)
	if out.Exists && p.fp != p.cur.Fingerprint {
		out.Restart = true
		out.Restarts = min(running, want)
	}
	return out, nil
}

// containerFields are the spec's top-level fields left out of the
// fingerprint (FingerprintSecrets): changing them restarts nothing. The
// image text is replaced there by the pinned ref, which the digest lines
// show.
func containerField(field string) bool {
	top, _, _ := strings.Cut(field, ".")
	top, _, _ = strings.Cut(top, "[")
	return !slices.Contains([]string{"image", "replicas", "update", "ingress", "expose", "connects_to"}, top)
}

// specChanges lists the leaf fields that differ between two specs, named
// by their JSON paths (env.LOG_LEVEL, healthcheck.interval, ports[0].host_port).
func specChanges(old, new *specs.Spec) []wire.FieldChange {
	a, b := specs.Fields(old), specs.Fields(new)
	var fields []string
	for k := range a {
		fields = append(fields, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			fields = append(fields, k)
		}
	}
	slices.Sort(fields)
	var out []wire.FieldChange
	for _, f := range fields {
		if a[f] != b[f] {
			out = append(out, wire.FieldChange{Field: f, Old: a[f], New: b[f], Restarts: containerField(f)})
		}
	}
	return out
}

func (a *API) diffService(w http.ResponseWriter, r *http.Request) {
	req, ok := a.readApply(w, r)
	if !ok {
		return
	}
	out, err := a.c.Diff(r.Context(), req)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
