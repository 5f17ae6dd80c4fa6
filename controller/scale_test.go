package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// A scale is a new revision of the current spec with another replica
// count, pinned to the same digest, shown in the history, undone by a
// rollback --to, and never written twice for one request.
func TestScaleStoresTheCurrentSpecWithTheNewCount(t *testing.T) {
	n := mustStartNode(t)
	_, ref, digest := mustRegistryImage(t, "team/web:v1")
	c := wire.NewClient([]string{n.api.URL}, nil)
	ctx := context.Background()
	spec := specFor(ref)
	spec.Env = map[string]string{"LOG_LEVEL": "info"}
	if _, err := n.ctrl.Apply(ctx, spec, ""); err != nil {
		t.Fatal(err)
	}
	// The tag moves after the apply: a scale must not pick the new digest
	// up (that is apply --refresh), only change the count.
	mustPush(t, ref)

	out, err := c.Scale(ctx, "web", 3)
	if err != nil {
		t.Fatal(err)
	}
	if out.Revision != 2 || out.Digest != digest || out.Unchanged {
		t.Fatalf("scale = %+v, want revision 2 at the pinned %s", out, digest)
	}
	view := n.store.View()
	rev1, _ := view.Revision("web", 1)
	rev2, _ := view.Revision("web", 2)
	want := *rev1.Spec.Clone()
	want.Replicas = 3
	if !sameSpec(&rev2.Spec, &want) {
		t.Fatalf("scaled spec %+v, want revision 1's with replicas 3 (%+v)", rev2.Spec, want)
	}
	if rev2.Ref != rev1.Ref || rev2.Fingerprint != rev1.Fingerprint || rev2.Cause != "scale from 2 to 3" || rev2.State != state.RevisionInProgress {
		t.Fatalf("scaled revision %+v, want revision 1's ref and fingerprint, cause scale from 2 to 3", rev2)
	}
	h, err := c.History(ctx, "web")
	if err != nil || len(h) != 2 || h[0].Replicas != 2 || h[1].Replicas != 3 || h[1].Cause != "scale from 2 to 3" {
		t.Fatalf("history %+v, %v: want replicas 2 then 3, the second caused by the scale", h, err)
	}
	st, err := c.Status(ctx, "web", 0, 0)
	if err != nil || st.Revision != 2 || st.Replicas.Desired != 3 {
		t.Fatalf("status %+v, %v: want revision 2 with 3 desired", st, err)
	}

	// The current count again: nothing stored, like an unchanged apply.
	same, err := c.Scale(ctx, "web", 3)
	if err != nil || !same.Unchanged || same.Revision != 2 {
		t.Fatalf("scale to the current count = %+v, %v; want revision 2 unchanged", same, err)
	}

	// A retried request (same key) answers its first outcome, even with
	// another count, and stores one revision.
	first, err := n.ctrl.Scale(ctx, ScaleRequest{Service: "web", Replicas: 5, IdempotencyKey: "scale-key"})
	if err != nil || first.Revision != 3 {
		t.Fatalf("scale to 5 = %+v, %v; want revision 3", first, err)
	}
	retry, err := n.ctrl.Scale(ctx, ScaleRequest{Service: "web", Replicas: 7, IdempotencyKey: "scale-key"})
	if err != nil || retry.Revision != 3 || retry.Digest != digest {
		t.Fatalf("retried scale = %+v, %v; want revision 3 again", retry, err)
	}
	if revs := n.store.View().Revisions("web"); len(revs) != 3 || revs[2].Spec.Replicas != 5 {
		t.Fatalf("revisions after a retried scale: %d, the last with %d replicas; want 3, the last with 5", len(revs), revs[len(revs)-1].Spec.Replicas)
	}

	// Zero is a count like any other (the body carries it, it is not
	// dropped as empty): every replica stops.
	if zero, err := c.Scale(ctx, "web", 0); err != nil || zero.Revision != 4 {
		t.Fatalf("scale to 0 = %+v, %v; want revision 4", zero, err)
	}
	if rev, _ := n.store.View().Revision("web", 4); rev.Spec.Replicas != 0 || rev.Cause != "scale from 5 to 0" {
		t.Fatalf("revision 4 %+v, want 0 replicas", rev)
	}

	// rollback --to 1 restores revision 1's spec, its count included.
	back, err := c.Rollback(ctx, "web", 1)
	if err != nil {
		t.Fatal(err)
	}
	if rev, _ := n.store.View().Revision("web", back.Revision); rev.Spec.Replicas != 2 || rev.RollbackTo != 1 {
		t.Fatalf("rollback --to 1 = revision %+v, want 2 replicas", rev)
	}
}

// Every refusal is a 4xx naming the problem, and stores nothing.
func TestScaleRefusals(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	ctx := context.Background()
	if _, err := n.ctrl.Apply(ctx, specFor(ref), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := n.ctrl.Apply(ctx, &specs.Spec{Service: "gone", Image: ref, Replicas: 0, Security: specFor(ref).Security}, ""); err != nil {
		t.Fatal(err)
	}
	if err := n.ctrl.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, body string
		status           int
		code, mentions   string
		problemField     string
	}{
		{"unknown service", "/v1/services/nope/scale", `{"replicas":3}`, 404, "not_found", "nope", ""},
		{"service being removed", "/v1/services/gone/scale", `{"replicas":3}`, 404, "not_found", "gone", ""},
		{"no count", "/v1/services/web/scale", `{}`, 400, "bad_request", "replicas: required", ""},
		{"count as a string", "/v1/services/web/scale", `{"replicas":"3"}`, 400, "bad_request", `field "replicas"`, ""},
		{"fraction", "/v1/services/web/scale", `{"replicas":1.5}`, 400, "bad_request", `field "replicas"`, ""},
		{"unknown field", "/v1/services/web/scale", `{"replicas":3,"force":true}`, 400, "bad_request", `"force"`, ""},
		{"negative", "/v1/services/web/scale", `{"replicas":-1}`, 400, "invalid_spec", "negative", "replicas"},
		{"over the maximum", "/v1/services/web/scale", fmt.Sprintf(`{"replicas":%d}`, specs.MaxReplicas+1), 400, "invalid_spec", "maximum", "replicas"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, n.api.URL+c.path, strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e wire.APIError
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("%d: error body is not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != c.status || e.Code != c.code || !strings.Contains(e.Error, c.mentions) {
				t.Fatalf("%d %s %q; want %d %s mentioning %q", resp.StatusCode, e.Code, e.Error, c.status, c.code, c.mentions)
			}
			if c.problemField != "" && !slices.ContainsFunc(e.Problems, func(p specs.Problem) bool { return p.Field == c.problemField }) {
				t.Fatalf("problems %+v do not name %s", e.Problems, c.problemField)
			}
		})
	}
	// The client maps them onto the sentinels: not found, invalid spec.
	c := wire.NewClient([]string{n.api.URL}, nil)
	if _, err := c.Scale(ctx, "nope", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("client scale of a missing service: %v, want not found", err)
	}
	if _, err := c.Scale(ctx, "web", -2); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("client scale to -2: %v, want invalid spec naming replicas", err)
	}
	if revs := n.store.View().Revisions("web"); len(revs) != 1 {
		t.Fatalf("refused scales stored revisions: %d", len(revs))
	}
}

// A scale is an admission: under a policy that now refuses the current
// spec it is refused like an apply of it, with the violations.
func TestScalePassesTodaysPolicy(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	ctx := context.Background()
	mustSetPolicy(t, n, permissive())
	if _, err := n.ctrl.Apply(ctx, privilegedSpec(ref), ""); err != nil {
		t.Fatal(err)
	}
	mustSetPolicy(t, n, policy.Default())
	_, err := wire.NewClient([]string{n.api.URL}, nil).Scale(ctx, "web", 2)
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Status != http.StatusForbidden || re.Code != wire.CodeDenied ||
		!slices.ContainsFunc(re.Violations, func(v policy.Violation) bool { return v.Field == "security.privileged" }) {
		t.Fatalf("scale under a tightened policy: %v, want 403 denied naming security.privileged", err)
	}
	if revs := n.store.View().Revisions("web"); len(revs) != 1 {
		t.Fatalf("a refused scale stored a revision: %d revisions", len(revs))
	}
}

// Only the count changes, so the rollout keeps the running replicas:
// scaling up adds replicas beside them, scaling down stops the extra
// slots, and no replica is replaced.
func TestScaleKeepsRunningReplicas(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	startFakeAgents(t, n, "h1", "h2")
	ctx := context.Background()
	spec := specFor(ref)
	spec.Update.Monitor = 50 * time.Millisecond
	spec.Update.ProgressDeadline = time.Minute
	out, err := n.ctrl.Apply(ctx, spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := waitRevision(t, n, out.Revision, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("first release ended %s", st)
	}
	running := func() map[int]string {
		bySlot := map[int]string{}
		for _, r := range n.store.View().ServiceReplicas("web") {
			if r.Desired == state.DesiredRunning {
				bySlot[r.Slot] = r.ID
			}
		}
		return bySlot
	}
	before := running()
	if len(before) != 2 {
		t.Fatalf("running before the scale: %v, want 2 slots", before)
	}
	scale := func(to int) map[int]string {
		t.Helper()
		out, err := n.ctrl.Scale(ctx, ScaleRequest{Service: "web", Replicas: to})
		if err != nil {
			t.Fatal(err)
		}
		if st, cur := waitRevision(t, n, out.Revision, 20*time.Second); st != state.RevisionSucceeded || cur != out.Revision {
			t.Fatalf("scale to %d ended %s on revision %d", to, st, cur)
		}
		// The rollout ends once the kept slots are done; the stops of
		// removed slots are confirmed by the agents right after.
		var now map[int]string
		waitUntil(t, 10*time.Second, fmt.Sprintf("%d replicas desired running", to), func() bool { now = running(); return len(now) == to })
		return now
	}
	up := scale(3)
	for slot, id := range before {
		if up[slot] != id {
			t.Fatalf("slot %d runs %s after scaling up, want %s kept (slots %v)", slot, up[slot], id, up)
		}
	}
	down := scale(1)
	if down[0] != before[0] {
		t.Fatalf("after scaling down to 1, slots %v; want slot 0 kept as %s", down, before[0])
	}
}
