package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// deployctl diff against a running service: no change exits 0; a changed
// env names the field, says how many replicas restart and exits 1; an
// invalid spec exits 2; a tag moved to another digest shows both digests.
// apply --if-revision on a stale revision exits 6 and stores nothing; on
// the current one it applies.
func TestCLIDiffAndIfRevision(t *testing.T) {
	s := mustStartServer(t)
	// A tag of this test's own, at v1 for now.
	moving := env.regAddr + "/e2e/webapp:diff-" + strings.ToLower(t.Name())
	mustRetag(t, context.Background(), env.refs["v1"], moving)
	dir := t.TempDir()
	write := func(name, spec string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	v1 := write("v1.yaml", webSpec(moving, 2, "env: { LOG_LEVEL: info }\n"))

	r := mustCLI(t, s, 1, "", "diff", v1)
	if !strings.Contains(r.stdout, "new service") || !strings.Contains(r.stdout, "2 start") {
		t.Fatalf("diff of a new service:\n%s", r.stdout)
	}
	mustCLI(t, s, 0, "", "apply", v1)

	if r := mustCLI(t, s, 0, "", "diff", v1); !strings.Contains(r.stdout, "web: no changes against revision 1") {
		t.Fatalf("diff of the applied spec:\n%s", r.stdout)
	}
	changed := write("env.yaml", webSpec(moving, 2, "env: { LOG_LEVEL: debug }\n"))
	r = mustCLI(t, s, 1, "", "diff", changed)
	for _, want := range []string{
		"web: revision 1 -> a new revision",
		`env.LOG_LEVEL: "info" -> "debug"  (restarts)`,
		"  digest: sha256:" + trimAlgo(env.digests["v1"])[:12] + "  (" + moving + " still resolves to it)",
		"containers: 2 replicas restart (new fingerprint)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("diff of a changed env lacks %q:\n%s", want, r.stdout)
		}
	}
	scaled := write("scaled.yaml", webSpec(moving, 3, "env: { LOG_LEVEL: info }\n"))
	r = mustCLI(t, s, 1, "", "diff", scaled)
	if !strings.Contains(r.stdout, "replicas: 2 -> 3\n") || !strings.Contains(r.stdout, "containers: none restart (same fingerprint), 1 start") {
		t.Fatalf("diff of a count:\n%s", r.stdout)
	}
	invalid := write("invalid.yaml", webSpec(moving, 2, "env: { LOG_LEVEL: info }\nreplicaz: 3\n"))
	if r := mustCLI(t, s, 2, "", "diff", invalid); !strings.Contains(r.stderr, "replicaz") {
		t.Fatalf("diff of an invalid spec names no field:\n%s", r.stderr)
	}

	// The tag moves: the spec is the same, the digest is not.
	mustRetag(t, context.Background(), env.refs["v11"], moving)
	r = mustCLI(t, s, 1, "", "diff", v1)
	for _, want := range []string{
		"  digest: sha256:" + trimAlgo(env.digests["v1"])[:12] + " -> sha256:" + trimAlgo(env.digests["v11"])[:12] + "  (" + moving + " moved; restarts)",
		"containers: 2 replicas restart (new fingerprint)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("diff after the tag moved lacks %q:\n%s", want, r.stdout)
		}
	}

	// The CI guard: a stale revision changes nothing and exits 6.
	r = mustCLI(t, s, ExitConflict, "", "apply", "--if-revision", "7", changed)
	if !strings.Contains(r.stderr, "at revision 1, not 7") {
		t.Fatalf("--if-revision 7 at revision 1:\n%s", r.stderr)
	}
	if h := mustHistory(t, s, "web"); len(h) != 1 {
		t.Fatalf("%d revisions after a refused guarded apply, want 1", len(h))
	}
	if st := mustStatus(t, s, "web"); st.Revision != 1 || st.Digest != env.digests["v1"] {
		t.Fatalf("after a refused guarded apply: revision %d digest %s", st.Revision, st.Digest)
	}
	mustCLI(t, s, 0, "", "apply", "--if-revision", "1", changed)
	if st := mustStatus(t, s, "web"); st.Revision != 2 || st.Digest != env.digests["v11"] {
		t.Fatalf("after the guarded apply: revision %d digest %s", st.Revision, st.Digest)
	}
	if r := mustCLI(t, s, 0, "", "diff", changed); !strings.Contains(r.stdout, "no changes against revision 2") {
		t.Fatalf("diff after the guarded apply:\n%s", r.stdout)
	}
}

// Shell completion asks the running server: service names for the
// commands that take one, revision numbers for rollback --to, the
// current revision for apply --if-revision; a server that does not answer
// completes nothing and prints no error.
func TestCLICompletion(t *testing.T) {
	needEngine(t)
	s := mustStartServer(t)
	spec := webSpec(env.refs["v1"], 1, "")
	mustCLI(t, s, 0, spec, "apply", "-")
	mustCLI(t, s, 0, webSpec(env.refs["v11"], 1, ""), "apply", "-")
	path := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}

	lines := func(r cliResult) []string { return strings.Split(strings.TrimSpace(r.stdout), "\n") }
	for _, cmd := range []string{"rollback", "status", "history", "scale", "promote", "rm"} {
		r := mustCLI(t, s, 0, "", "__complete", cmd, "")
		got := lines(r)
		// Candidates, then ":4" (no file completion).
		if len(got) != 2 || !strings.HasPrefix(got[0], "web\t") || got[1] != ":4" {
			t.Fatalf("__complete %s '': %q", cmd, got)
		}
	}
	if got := lines(mustCLI(t, s, 0, "", "__complete", "rollback", "x")); len(got) != 1 || got[0] != ":4" {
		t.Fatalf("__complete rollback x: %q, want nothing", got)
	}
	got := lines(mustCLI(t, s, 0, "", "__complete", "rollback", "web", "--to", ""))
	if len(got) != 3 || !strings.HasPrefix(got[0], "2\tsucceeded: apply") || !strings.HasPrefix(got[1], "1\tsucceeded: apply") || got[2] != ":36" {
		t.Fatalf("__complete rollback web --to '': %q, want revisions 2 and 1 newest first", got)
	}
	if got := lines(mustCLI(t, s, 0, "", "__complete", "apply", path, "--if-revision", "")); len(got) != 2 || !strings.HasPrefix(got[0], "2\t") {
		t.Fatalf("__complete apply FILE --if-revision '': %q, want the current revision 2", got)
	}

	// No server there: nothing, quietly.
	r := mustCLI(t, s, 0, "", "__complete", "--addr", freeAddr(t), "rollback", "")
	if got := lines(r); len(got) != 1 || got[0] != ":4" || strings.Contains(r.stderr, "error") {
		t.Fatalf("__complete without a server: %q, stderr %q", got, r.stderr)
	}
}
