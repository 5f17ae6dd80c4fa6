package chaos

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func rb(svc string, to int) Input { return Input{Kind: Rollback, Service: svc, To: to} }
func rm(svc string) Input         { return Input{Kind: Remove, Service: svc} }
func pset(v, expect int) Input {
	return Input{Kind: PolicySet, Service: PolicyKey, Value: v, Expect: expect}
}
func pread() Input                                         { return Input{Kind: PolicyRead, Service: PolicyKey} }
func mremove(node string) Input                            { return Input{Kind: MemberRemove, Service: ClusterKey, Node: node} }
func mjoin(node string) Input                              { return Input{Kind: MemberJoin, Service: ClusterKey, Node: node} }
func cread() Input                                         { return Input{Kind: ClusterRead, Service: ClusterKey} }
func outcome(o Outcome) Output                             { return Output{Outcome: o} }
func okp(version, v int) Output                            { return Output{Outcome: Ok, Revision: version, Value: v} }
func removing(rev, v int) Output                           { return Output{Outcome: Ok, Revision: rev, Value: v, Removing: true} }
func members(m string) Output                              { return Output{Outcome: Ok, Members: m} }
func okrb(rev int) Output                                  { return Output{Outcome: Ok, Revision: rev} }
func seq(ops ...porcupine.Operation) []porcupine.Operation { return ops }
func sc(svc string, n int) Input                           { return Input{Kind: Scale, Service: svc, Replicas: n} }

// okrn is a read of revision rev carrying value v with n replicas desired.
func okrn(rev, v, n int) Output { return Output{Outcome: Ok, Revision: rev, Value: v, Replicas: n} }

// Each case is a bug the model must catch, or the correct behaviour next
// to it that it must accept.
func TestModelJudgesEveryOperation(t *testing.T) {
	two := []porcupine.Operation{op(0, w("a", 1), 0, 1, okw(1)), op(0, w("a", 2), 2, 3, okw(2))}
	with := func(more ...porcupine.Operation) []porcupine.Operation {
		return append(append([]porcupine.Operation(nil), two...), more...)
	}
	cases := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		// rollback: its outcome depends on the history.
		{"rollback --to 1 restores revision 1's value as revision 3", with(op(0, rb("a", 1), 4, 5, okrb(3)), op(1, r("a"), 6, 7, okr(3, 1))), true},
		{"rollback restoring the wrong revision's value", with(op(0, rb("a", 1), 4, 5, okrb(3)), op(1, r("a"), 6, 7, okr(3, 2))), false},
		{"rollback numbered other than next", with(op(0, rb("a", 1), 4, 5, okrb(4))), false},
		{"rollback --to the current revision accepted", with(op(0, rb("a", 2), 4, 5, okrb(3))), false},
		{"rollback --to the current revision refused", with(op(0, rb("a", 2), 4, 5, outcome(NoTarget))), true},
		{"rollback --to a revision beyond refused", with(op(0, rb("a", 7), 4, 5, outcome(NoTarget))), true},
		{"rollback --to an earlier revision refused as no target", with(op(0, rb("a", 1), 4, 5, outcome(NoTarget))), false},
		{"rollback of an existing service answered not found", with(op(0, rb("a", 1), 4, 5, outcome(NotFound))), false},
		{"rollback of no service answered not found", seq(op(0, rb("a", 1), 0, 1, outcome(NotFound))), true},
		{"unknown rollback that took effect", with(op(0, rb("a", 1), 4, -1, unknown()), op(1, r("a"), 6, 7, okr(3, 1))), true},
		{"unknown rollback that never did", with(op(0, rb("a", 1), 4, -1, unknown()), op(1, r("a"), 6, 7, okr(2, 2))), true},
		{"refused rollback that took effect", with(op(0, rb("a", 1), 4, 5, refused()), op(1, r("a"), 6, 7, okr(3, 1))), false},
		{"a rollback --to a rollback revision", with(op(0, rb("a", 1), 4, 5, okrb(3)), op(0, w("a", 3), 6, 7, okw(4)), op(0, rb("a", 3), 8, 9, okrb(5)), op(1, r("a"), 10, 11, okr(5, 1))), true},

		// scale: the current value with another count, or nothing.
		{"scale to 3 is the next revision: the current value, 3 replicas", with(op(0, sc("a", 3), 4, 5, okw(3)), op(1, r("a"), 6, 7, okrn(3, 2, 3))), true},
		{"a read showing the wrong replica count after a scale", with(op(0, sc("a", 3), 4, 5, okw(3)), op(1, r("a"), 6, 7, okrn(3, 2, 2))), false},
		{"a read showing replicas no scale asked for", with(op(1, r("a"), 4, 5, okrn(2, 2, 1))), false},
		{"a scale carrying another revision's value", with(op(0, sc("a", 3), 4, 5, okw(3)), op(1, r("a"), 6, 7, okrn(3, 1, 3))), false},
		{"scale to the current count is unchanged", with(op(0, sc("a", 0), 4, 5, unchanged(2)), op(1, r("a"), 6, 7, okrn(2, 2, 0))), true},
		{"scale to the current count made a revision", with(op(0, sc("a", 0), 4, 5, okw(3))), false},
		{"scale to another count answered unchanged", with(op(0, sc("a", 3), 4, 5, unchanged(2))), false},
		{"scale numbered other than next", with(op(0, sc("a", 3), 4, 5, okw(4))), false},
		{"scale of no service answered not found", seq(op(0, sc("a", 1), 0, 1, outcome(NotFound))), true},
		{"scale of an existing service answered not found", with(op(0, sc("a", 1), 4, 5, outcome(NotFound))), false},
		{"scale of a removing service answered not found", with(op(0, rm("a"), 4, 5, outcome(Ok)), op(0, sc("a", 1), 6, 7, outcome(NotFound))), true},
		{"scale accepted on a removing service", with(op(0, rm("a"), 4, 5, outcome(Ok)), op(0, sc("a", 1), 6, 7, okw(3))), false},
		{"scale of no service accepted", seq(op(0, sc("a", 1), 0, 1, okw(1))), false},
		{"unknown scale that took effect", with(op(0, sc("a", 3), 4, -1, unknown()), op(1, r("a"), 6, 7, okrn(3, 2, 3))), true},
		{"unknown scale that never did", with(op(0, sc("a", 3), 4, -1, unknown()), op(1, r("a"), 6, 7, okrn(2, 2, 0))), true},
		{"refused scale that took effect", with(op(0, sc("a", 3), 4, 5, refused()), op(1, r("a"), 6, 7, okrn(3, 2, 3))), false},
		{"rollback --to N restores revision N's count", with(op(0, sc("a", 3), 4, 5, okw(3)), op(0, rb("a", 2), 6, 7, okrb(4)), op(1, r("a"), 8, 9, okrn(4, 2, 0))), true},
		{"rollback --to N keeping the scaled count", with(op(0, sc("a", 3), 4, 5, okw(3)), op(0, rb("a", 2), 6, 7, okrb(4)), op(1, r("a"), 8, 9, okrn(4, 2, 3))), false},
		{"rollback --to a scale's revision restores its count", with(op(0, sc("a", 3), 4, 5, okw(3)), op(0, w("a", 3), 6, 7, okw(4)), op(0, rb("a", 3), 8, 9, okrb(5)), op(1, r("a"), 10, 11, okrn(5, 2, 3))), true},
		{"a write after a scale keeping the scaled count", with(op(0, sc("a", 3), 4, 5, okw(3)), op(0, w("a", 3), 6, 7, okw(4)), op(1, r("a"), 8, 9, okrn(4, 3, 3))), false},
		{"a removing service reads 0 desired", with(op(0, sc("a", 3), 4, 5, okw(3)), op(0, rm("a"), 6, 7, outcome(Ok)), op(1, r("a"), 8, 9, removing(3, 2))), true},
		{"a removing service reading its count", with(op(0, sc("a", 3), 4, 5, okw(3)), op(0, rm("a"), 6, 7, outcome(Ok)), op(1, r("a"), 8, 9, Output{Outcome: Ok, Revision: 3, Value: 2, Replicas: 3, Removing: true})), false},
		{"history shows each revision's count", with(op(0, sc("a", 3), 4, 5, okw(3)), op(1, Input{Kind: HistoryRead, Service: "a"}, 6, 7, Output{Values: "1:0,2:0,2:3"})), true},
		{"history missing a scale's count", with(op(0, sc("a", 3), 4, 5, okw(3)), op(1, Input{Kind: HistoryRead, Service: "a"}, 6, 7, Output{Values: "1:0,2:0,2:0"})), false},

		// rm: idempotent, then purged; numbers restart.
		{"rm twice, both ok, read sees removing", with(op(0, rm("a"), 4, 5, outcome(Ok)), op(1, rm("a"), 6, 7, outcome(Ok)), op(1, r("a"), 8, 9, removing(2, 2))), true},
		{"rm of no service answered ok", seq(op(0, rm("a"), 0, 1, outcome(Ok))), false},
		{"rm forgotten: read after it is not removing", with(op(0, rm("a"), 4, 5, outcome(Ok)), op(1, r("a"), 6, 7, okr(2, 2))), false},
		{"purged service comes back", with(op(0, rm("a"), 4, 5, outcome(Ok)), op(1, r("a"), 6, 7, outcome(NotFound)), op(1, r("a"), 8, 9, removing(2, 2))), false},
		{"write after the purge is revision 1 of a new life", with(op(0, rm("a"), 4, 5, outcome(Ok)), op(0, w("a", 3), 6, 7, okw(1)), op(1, r("a"), 8, 9, okr(1, 3))), true},
		{"write accepted on a removing service's old life", with(op(0, rm("a"), 4, 5, outcome(Ok)), op(0, w("a", 3), 6, 7, okw(3))), false},
		{"service vanishes without rm", with(op(1, r("a"), 4, 5, outcome(NotFound))), false},
		{"rm answered not found after its own retry committed", with(op(0, rm("a"), 4, 5, outcome(NotFound)), op(1, r("a"), 6, 7, outcome(NotFound))), true},
		{"unknown rm that took effect", with(op(0, rm("a"), 4, -1, unknown()), op(1, r("a"), 6, 7, removing(2, 2))), true},

		// history: the final observation, every revision of this life.
		{"history holds every revision", with(op(0, rb("a", 1), 4, 5, okrb(3)), op(1, Input{Kind: HistoryRead, Service: "a"}, 6, 7, Output{Values: "1:0,2:0,1:0"})), true},
		{"history keeps a purged life's revisions", with(op(0, rm("a"), 4, 5, outcome(Ok)), op(0, w("a", 3), 6, 7, okw(1)), op(1, Input{Kind: HistoryRead, Service: "a"}, 8, 9, Output{Values: "3:0,2:0"})), false},
		{"history misses a revision", with(op(1, Input{Kind: HistoryRead, Service: "a"}, 4, 5, Output{Values: "1:0"})), false},

		// policy set: guarded by the version.
		{"policy set then read", seq(op(0, pread(), 0, 1, okp(0, 0)), op(0, pset(5, 0), 2, 3, okp(1, 0)), op(1, pread(), 4, 5, okp(1, 5))), true},
		{"two sets from the same version both accepted (lost update)", seq(op(0, pset(5, 0), 0, 3, okp(1, 0)), op(1, pset(6, 0), 1, 4, okp(1, 0))), false},
		{"second set from the same version is a conflict", seq(op(0, pset(5, 0), 0, 3, okp(1, 0)), op(1, pset(6, 0), 1, 4, outcome(Conflict)), op(1, pread(), 5, 6, okp(1, 5))), true},
		{"conflict while the version did not move, and nothing changed", seq(op(0, pset(5, 0), 0, 1, outcome(Conflict)), op(1, pread(), 2, 3, okp(0, 0))), false},
		{"conflict answered to a retry of a set that committed", seq(op(0, pset(5, 0), 0, 1, outcome(Conflict)), op(1, pread(), 2, 3, okp(1, 5))), true},
		{"set accepted with the wrong version", seq(op(0, pset(5, 0), 0, 1, okp(2, 0))), false},
		{"stale policy read", seq(op(0, pset(5, 0), 0, 1, okp(1, 0)), op(1, pread(), 2, 3, okp(0, 0))), false},

		// membership: changes what cluster status reads.
		{"initial voters", seq(op(0, cread(), 0, 1, members("n1,n2,n3"))), true},
		{"removed voter still listed", seq(op(0, mremove("n3"), 0, 1, outcome(Ok)), op(1, cread(), 2, 3, members("n1,n2,n3"))), false},
		{"remove then rejoin", seq(op(0, mremove("n3"), 0, 1, outcome(Ok)), op(1, cread(), 2, 3, members("n1,n2")), op(0, mjoin("n3"), 4, 7, outcome(Ok)), op(1, cread(), 5, 6, members("n1,n2")), op(1, cread(), 8, 9, members("n1,n2,n3"))), true},
		{"a voter missing with no remove", seq(op(0, cread(), 0, 1, members("n1,n2"))), false},
		{"voters go back after a read saw the join", seq(op(0, mremove("n3"), 0, 1, outcome(Ok)), op(0, mjoin("n3"), 2, 9, outcome(Ok)), op(1, cread(), 3, 4, members("n1,n2,n3")), op(1, cread(), 5, 6, members("n1,n2"))), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLinearizable(fromRecorder(tc.ops), 10*time.Second, t.TempDir())
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrNotLinearizable)) {
				t.Fatalf("got %v, want linearizable=%v", err, tc.ok)
			}
		})
	}
}

func TestCheckFinalRollbacks(t *testing.T) {
	apply := func(n, v int) Revision { return Revision{Number: n, Value: v, Cause: "apply"} }
	rollback := func(n, v, of, to int) Revision {
		return Revision{Number: n, Value: v, Cause: "rollback of " + itoa(of) + " to " + itoa(to), RollbackOf: of, RollbackTo: to}
	}
	history := []porcupine.Operation{
		op(0, w("a", 1), 0, 1, okw(1)), op(0, w("a", 2), 2, 3, okw(2)), op(0, rb("a", 1), 4, 5, okrb(3)),
	}
	cases := []struct {
		name     string
		final    []Revision
		lost     int
		problems int
	}{
		{"the rollback is there", []Revision{apply(1, 1), apply(2, 2), rollback(3, 1, 2, 1)}, 0, 0},
		{"acknowledged rollback lost", []Revision{apply(1, 1), apply(2, 2)}, 1, 1},
		{"rollback carrying another revision's value", []Revision{apply(1, 1), apply(2, 2), rollback(3, 2, 2, 1)}, 0, 1},
		{"rollback to a revision no rollback named", []Revision{apply(1, 1), apply(2, 2), rollback(3, 2, 2, 2)}, 1, 2},
		{"rollback of a revision that was not current", []Revision{apply(1, 1), apply(2, 2), rollback(3, 1, 1, 1)}, 0, 1},
		{"rollback carrying another revision's count", []Revision{apply(1, 1), apply(2, 2), withReplicas(rollback(3, 1, 2, 1), 3)}, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := CheckFinal(history, map[string][]Revision{"a": tc.final})
			if rep.AcknowledgedRollbacks != 1 || rep.Lost != tc.lost || len(rep.Problems) != tc.problems {
				t.Fatalf("report %+v: want 1 acknowledged rollback, %d lost, %d problems", rep, tc.lost, tc.problems)
			}
		})
	}
	// A removed service's final history is its last life only: an
	// acknowledged write of an earlier life is not reported lost.
	removed := []porcupine.Operation{op(0, w("b", 1), 0, 1, okw(1)), op(0, rm("b"), 2, 3, outcome(Ok)), op(0, w("b", 2), 4, 5, okw(1))}
	if rep := CheckFinal(removed, map[string][]Revision{"b": {apply(1, 2)}}); rep.Err() != nil {
		t.Fatal(rep.Err())
	}
	if rep := CheckFinal(removed, map[string][]Revision{"b": {apply(1, 9), apply(2, 2)}}); rep.Err() == nil {
		t.Fatal("value 2 acknowledged as revision 1 is revision 2: want a problem")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func withReplicas(r Revision, n int) Revision { r.Replicas = n; return r }

// A scale's revision in the final history: there when acknowledged, at
// its number, with its count, the value before it, and a cause that says
// both counts; an apply's revision holds the count its write sent.
func TestCheckFinalScales(t *testing.T) {
	apply := func(n, v, replicas int) Revision {
		return Revision{Number: n, Value: v, Replicas: replicas, Cause: "apply"}
	}
	scale := func(n, v, from, to int) Revision {
		return Revision{Number: n, Value: v, Replicas: to, Cause: "scale from " + itoa(from) + " to " + itoa(to)}
	}
	history := []porcupine.Operation{
		op(0, w("a", 1), 0, 1, okw(1)), op(0, sc("a", 3), 2, 3, okw(2)), op(1, sc("a", 3), 4, 5, unchanged(2)),
	}
	cases := []struct {
		name     string
		final    []Revision
		lost     int
		problems int
	}{
		{"the scale is there", []Revision{apply(1, 1, 0), scale(2, 1, 0, 3)}, 0, 0},
		{"acknowledged scale lost", []Revision{apply(1, 1, 0)}, 1, 1},
		{"scaled to another count", []Revision{apply(1, 1, 0), scale(2, 1, 0, 2)}, 1, 2},
		{"scale carrying another value", []Revision{apply(1, 1, 0), scale(2, 9, 0, 3)}, 0, 1},
		{"cause names another count before", []Revision{apply(1, 1, 0), scale(2, 1, 1, 3)}, 0, 1},
		{"apply revision with a count its write did not send", []Revision{apply(1, 1, 2), scale(2, 1, 2, 3)}, 0, 1},
		{"a scale as the first revision", []Revision{scale(1, 1, 0, 3)}, 2, 3},
		{"a scale applied twice", []Revision{apply(1, 1, 0), scale(2, 1, 0, 3), scale(3, 1, 3, 3)}, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := CheckFinal(history, map[string][]Revision{"a": tc.final})
			if rep.AcknowledgedScales != 1 || rep.Lost != tc.lost || len(rep.Problems) != tc.problems {
				t.Fatalf("report %+v: want 1 acknowledged scale, %d lost, %d problems", rep, tc.lost, tc.problems)
			}
		})
	}
}

// An unknown scale is settled like an unknown rollback: dropped when the
// final state has no scale to its count beyond the acknowledged ones,
// kept (and placed by porcupine) otherwise.
func TestResolveUnknownScales(t *testing.T) {
	apply := Revision{Number: 1, Value: 1, Cause: "apply"}
	scaled := func(n, from, to int) Revision {
		return Revision{Number: n, Value: 1, Replicas: to, Cause: "scale from " + itoa(from) + " to " + itoa(to)}
	}
	cases := []struct {
		name  string
		ops   []porcupine.Operation
		final []Revision
		kept  int
		ok    bool
	}{
		{"never took effect: dropped", seq(op(0, w("a", 1), 0, 1, okw(1)), op(1, sc("a", 3), 2, -1, unknown()), op(0, r("a"), 3, 4, okrn(1, 1, 0))),
			[]Revision{apply}, 2, true},
		{"the only scale to 3 is an acknowledged one: dropped", seq(op(0, w("a", 1), 0, 1, okw(1)), op(1, sc("a", 3), 2, -1, unknown()), op(0, sc("a", 3), 3, 4, okw(2)), op(0, r("a"), 5, 6, okrn(2, 1, 3))),
			[]Revision{apply, scaled(2, 0, 3)}, 3, true},
		{"took effect: kept, and placed", seq(op(0, w("a", 1), 0, 1, okw(1)), op(1, sc("a", 3), 2, -1, unknown()), op(0, r("a"), 3, 4, okrn(1, 1, 0)), op(0, r("a"), 5, 6, okrn(2, 1, 3))),
			[]Revision{apply, scaled(2, 0, 3)}, 4, true},
		{"dropped, but a read had seen it", seq(op(0, w("a", 1), 0, 1, okw(1)), op(1, sc("a", 3), 2, -1, unknown()), op(0, r("a"), 3, 4, okrn(2, 1, 3))),
			[]Revision{apply}, 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops := ResolveUnknownWrites(fromRecorder(tc.ops), map[string][]Revision{"a": tc.final})
			if len(ops) != tc.kept {
				t.Fatalf("%d operations kept, want %d", len(ops), tc.kept)
			}
			err := CheckLinearizable(ops, 10*time.Second, t.TempDir())
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrNotLinearizable)) {
				t.Fatalf("got %v, want linearizable=%v", err, tc.ok)
			}
		})
	}
}

func TestCheckRolloutsEnded(t *testing.T) {
	rev := func(n int, state string, of int) Revision {
		r := Revision{Number: n, State: state}
		if of != 0 {
			r.RollbackOf, r.RollbackTo = of, 1
		}
		return r
	}
	cases := []struct {
		name  string
		revs  []Revision
		wants string
	}{
		{"all ended", []Revision{rev(1, "succeeded", 0), rev(2, "rolled_back", 0), rev(3, "succeeded", 2), rev(4, "superseded", 0), rev(5, "succeeded", 0)}, ""},
		{"rolled back and marked succeeded", []Revision{rev(1, "succeeded", 0), rev(2, "succeeded", 0), rev(3, "succeeded", 2)}, "was rolled back by 3"},
		{"rolled back with no rollback", []Revision{rev(1, "succeeded", 0), rev(2, "rolled_back", 0), rev(3, "succeeded", 0)}, "no rollback of it follows"},
		{"replaced but never ended", []Revision{rev(1, "in_progress", 0), rev(2, "succeeded", 0)}, "never ended"},
		{"current rollout still running", []Revision{rev(1, "succeeded", 0), rev(2, "in_progress", 0)}, "not succeeded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(CheckRolloutsEnded(map[string][]Revision{"a": tc.revs}), "\n")
			if (tc.wants == "") != (got == "") || !strings.Contains(got, tc.wants) {
				t.Fatalf("problems %q, want one containing %q", got, tc.wants)
			}
		})
	}
}
