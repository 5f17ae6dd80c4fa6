package controller

import (
	"fmt"
	"strings"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// ingressConflicts refuses a spec whose ingress entries or published tcp
// host ports collide with another service's (specs.IngressConflicts), with
// ErrConflict and one line per collision naming the other service, its
// entry and the fix. A service claims what its current revision declares,
// and during a rollout also what the revision it started from declares:
// that revision's replicas still run, and an automatic rollback returns
// to it. A service being removed keeps its claims until it is gone.
func ingressConflicts(view *state.Tables, spec *specs.Spec) error {
	var others []*specs.Spec
	for _, svc := range view.Services() {
		if svc.Name == spec.Service {
			continue
		}
		revisions := []int{svc.Current}
		if svc.Rollout != nil && svc.Rollout.From != 0 && svc.Rollout.From != svc.Current {
			revisions = append(revisions, svc.Rollout.From)
		}
		for _, n := range revisions {
			if rev, ok := view.Revision(svc.Name, n); ok {
				others = append(others, &rev.Spec)
			}
		}
	}
	problems := specs.IngressConflicts(spec, others)
	if len(problems) == 0 {
		return nil
	}
	lines := make([]string, len(problems))
	for i, p := range problems {
		lines[i] = p.String()
	}
	return fmt.Errorf("%w: %s", ErrConflict, strings.Join(lines, "\n"))
}
