package controller

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Diff on the real loop: nothing, a field that restarts, a count that
// does not, a moved tag, an invalid spec; and nothing is ever stored.
func TestDiff(t *testing.T) {
	n := mustStartNode(t)
	_, ref, digest := mustRegistryImage(t, "team/web:v1")
	startFakeAgents(t, n, "h1")
	waitUntil(t, 10*time.Second, "host h1", func() bool { _, ok := n.store.View().Host("h1"); return ok })
	ctx := context.Background()
	spec := func() *specs.Spec {
		s := specFor(ref)
		s.Update.Monitor = 50 * time.Millisecond
		s.Env = map[string]string{"LOG_LEVEL": "info"}
		return s
	}
	client := wire.NewClient([]string{strings.TrimPrefix(n.api.URL, "http://")}, nil)
	diff := func(s *specs.Spec) wire.DiffOutcome {
		t.Helper()
		before := len(n.store.View().Revisions("web"))
		out, err := n.ctrl.Diff(ctx, ApplyRequest{Spec: s})
		if err != nil {
			t.Fatal(err)
		}
		if after := len(n.store.View().Revisions("web")); after != before {
			t.Fatalf("diff stored a revision: %d -> %d", before, after)
		}
		return out
	}

	if d := diff(spec()); d.Exists || d.Unchanged || d.Starts != 2 || d.ResolvedDigest != digest {
		t.Fatalf("diff of a new service = %+v, want 2 starts at %s", d, digest)
	}
	v1, err := n.ctrl.Apply(ctx, spec(), "")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := waitRevision(t, n, v1.Revision, 20*time.Second); st != state.RevisionSucceeded {
		t.Fatalf("release ended %s", st)
	}

	if d := diff(spec()); !d.Unchanged || len(d.Changes) != 0 || d.Restart || d.Revision != 1 || d.PinnedDigest != digest {
		t.Fatalf("diff of the same spec = %+v, want unchanged", d)
	}
	env := spec()
	env.Env["LOG_LEVEL"] = "debug"
	d := diff(env)
	want := wire.FieldChange{Field: "env.LOG_LEVEL", Old: `"info"`, New: `"debug"`, Restarts: true}
	if d.Unchanged || !d.Restart || d.Restarts != 2 || !slices.Equal(d.Changes, []wire.FieldChange{want}) {
		t.Fatalf("diff of a changed env = %+v, want %+v restarting 2", d, want)
	}
	more := spec()
	more.Replicas = 3
	more.Update.Parallelism = 2
	d = diff(more)
	if d.Unchanged || d.Restart || d.Restarts != 0 || d.Starts != 1 ||
		!slices.Equal(d.Changes, []wire.FieldChange{{Field: "replicas", Old: "2", New: "3"}, {Field: "update.parallelism", Old: "1", New: "2"}}) {
		t.Fatalf("diff of replicas and update = %+v, want no restart, 1 start", d)
	}
	// Through the API and the client.
	moved := mustPush(t, ref)
	d, err = client.Diff(ctx, wire.ApplyBody{SpecYAML: "service: web\nimage: " + ref + "\nreplicas: 2\nenv: {LOG_LEVEL: info}\nupdate: {monitor: 50ms}\n"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Unchanged || !d.Restart || d.PinnedDigest != digest || d.ResolvedDigest != moved {
		t.Fatalf("diff after the tag moved = %+v, want %s -> %s restarting", d, digest, moved)
	}
	bad := spec()
	bad.Replicas = -1
	if _, err := n.ctrl.Diff(ctx, ApplyRequest{Spec: bad}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("diff of an invalid spec: %v, want ErrInvalidSpec", err)
	}
	if _, err := client.Diff(ctx, wire.ApplyBody{SpecYAML: "service: web\nimage: " + ref + "\nreplicas: -1\n"}); !errors.Is(err, wire.ErrInvalidSpec) {
		t.Fatalf("API diff of an invalid spec: %v, want invalid_spec", err)
	}
}

// apply --if-revision: refused on another revision with nothing stored,
// and under a race of applies all guarded by the same revision exactly
// one is stored: the FSM checks the guard in the write itself.
func TestApplyIfRevision(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	ctx := context.Background()
	rev := func(i int) *int { return &i }
	withEnv := func(v string) *specs.Spec {
		s := specFor(ref)
		s.Env = map[string]string{"V": v}
		return s
	}
	if _, err := n.ctrl.ApplyWith(ctx, ApplyRequest{Spec: withEnv("a"), IfRevision: rev(1)}); !errors.Is(err, ErrRevisionConflict) {
		t.Fatalf("--if-revision 1 on a new service: %v, want ErrRevisionConflict", err)
	}
	if _, ok := n.store.View().Service("web"); ok {
		t.Fatal("a refused apply created the service")
	}
	if _, err := n.ctrl.ApplyWith(ctx, ApplyRequest{Spec: withEnv("a"), IfRevision: rev(0)}); err != nil {
		t.Fatalf("--if-revision 0 on a new service: %v", err)
	}
	for _, stale := range []int{0, 2} {
		_, err := n.ctrl.ApplyWith(ctx, ApplyRequest{Spec: withEnv("b"), IfRevision: rev(stale)})
		if !errors.Is(err, ErrRevisionConflict) || !strings.Contains(err.Error(), "at revision 1") {
			t.Fatalf("--if-revision %d at revision 1: %v, want ErrRevisionConflict naming revision 1", stale, err)
		}
	}
	if got := len(n.store.View().Revisions("web")); got != 1 {
		t.Fatalf("%d revisions after refused applies, want 1", got)
	}
	// Through the API: 409 revision_conflict, which the client maps back.
	client := wire.NewClient([]string{strings.TrimPrefix(n.api.URL, "http://")}, nil)
	if _, err := client.ApplyWith(ctx, wire.ApplyBody{SpecYAML: "service: web\nimage: " + ref + "\n", IfRevision: rev(7)}); !errors.Is(err, wire.ErrRevisionConflict) {
		t.Fatalf("API apply with if_revision 7: %v, want revision_conflict", err)
	}

	const racers = 6
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() {
			_, errs[i] = n.ctrl.ApplyWith(ctx, ApplyRequest{Spec: withEnv(string(rune('c' + i))), IfRevision: rev(1)})
		})
	}
	wg.Wait()
	stored := 0
	for _, err := range errs {
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, ErrRevisionConflict):
			t.Fatalf("a racing guarded apply failed with %v, want ErrRevisionConflict", err)
		}
	}
	if got := len(n.store.View().Revisions("web")); stored != 1 || got != 2 {
		t.Fatalf("%d racing applies guarded by revision 1 stored, %d revisions; want exactly 1 and 2", stored, got)
	}
}
