package controller

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/specs"
)

// TestApplyHardeningPolicy is issue 16's finding 6 at the controller: a
// spec that weakens a hardening default the policy refuses is refused with
// the field, the rule and the policy change, and nothing is stored; one the
// policy warns about is stored, and the warning comes back with the apply
// and stays with the revision.
func TestApplyHardeningPolicy(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	ctx := context.Background()

	refused := []struct {
		name, field, rule string
		weaken            func(s *specs.Spec)
	}{
		{"no_new_privileges: false", "security.no_new_privileges", policy.RuleAllowNewPrivileges,
			func(s *specs.Spec) { s.Security.NoNewPrivileges = false }},
		{"root group", "security.allow_root_group", policy.RuleAllowRootGroup,
			func(s *specs.Spec) { s.Security.User = "10001:0"; s.Security.AllowRootGroup = true }},
	}
	for _, tt := range refused {
		s := specFor(ref)
		tt.weaken(s)
		_, err := n.ctrl.Apply(ctx, s, "")
		if !errors.Is(err, policy.ErrDenied) {
			t.Fatalf("%s: apply = %v, want ErrDenied", tt.name, err)
		}
		for _, word := range []string{tt.field, "rule: " + tt.rule, tt.rule + ": true", "deployctl policy set"} {
			if !strings.Contains(err.Error(), word) {
				t.Errorf("%s: error %q does not contain %q", tt.name, err, word)
			}
		}
		if got := len(n.store.View().Revisions("web")); got != 0 {
			t.Fatalf("%s: a refused apply stored %d revisions", tt.name, got)
		}
	}

	// The policy change the error names lets the spec through.
	p := policy.Default()
	p.AllowNewPrivileges = true
	if _, err := n.ctrl.SetPolicy(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	s := specFor(ref)
	s.Security.NoNewPrivileges = false
	s.Security.ReadOnly = false
	out, err := n.ctrl.Apply(ctx, s, "")
	if err != nil {
		t.Fatalf("apply under allow_new_privileges: %v", err)
	}
	// read_only: false is only warned about, by the default level.
	if len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], "security.read_only") || !strings.Contains(out.Warnings[0], policy.RuleWritableRootfs) {
		t.Fatalf("apply warnings = %q, want one about security.read_only (%s)", out.Warnings, policy.RuleWritableRootfs)
	}
	rev, ok := n.store.View().Revision("web", out.Revision)
	if !ok || len(rev.PolicyWarnings) != 1 || rev.PolicyWarnings[0] != out.Warnings[0] {
		t.Fatalf("stored revision warnings = %q, want %q", rev.PolicyWarnings, out.Warnings)
	}
	view := n.store.View()
	svc, _ := view.Service("web")
	if h := history(view, svc, false); len(h) != 1 || len(h[0].PolicyWarnings) != 1 {
		t.Fatalf("history = %+v; want the warning on revision 1", h)
	}

	// writable_rootfs: refuse turns the warning into a refusal.
	p.WritableRootfs = policy.LevelRefuse
	if _, err := n.ctrl.SetPolicy(ctx, p, 1); err != nil {
		t.Fatal(err)
	}
	s.Replicas = 3 // a different spec, so it is not "unchanged"
	_, err = n.ctrl.Apply(ctx, s, "")
	if !errors.Is(err, policy.ErrDenied) || !strings.Contains(err.Error(), "writable_rootfs: warn or allow") {
		t.Fatalf("apply under writable_rootfs: refuse = %v, want ErrDenied naming the level to set", err)
	}
	if got := len(n.store.View().Revisions("web")); got != 1 {
		t.Fatalf("a refused apply stored a revision: %d revisions", got)
	}
}
