package chaos

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// op builds an operation; ret < 0 means unknown (open until the end).
func op(client int, in Input, call, ret int64, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func w(svc string, v int) Input { return Input{Kind: Write, Service: svc, Value: v} }
func r(svc string) Input        { return Input{Kind: Read, Service: svc} }

func okw(rev int) Output       { return Output{Outcome: Ok, Revision: rev} }
func okr(rev, v int) Output    { return Output{Outcome: Ok, Revision: rev, Value: v} }
func unknown() Output          { return Output{Outcome: Unknown} }
func refused() Output          { return Output{Outcome: Failed} }
func unchanged(rev int) Output { return Output{Outcome: Ok, Revision: rev, Unchanged: true} }

// fromRecorder runs ops through a Recorder so unknown operations get the
// return time the real tests give them.
func fromRecorder(ops []porcupine.Operation) []porcupine.Operation {
	var last int64
	for _, o := range ops {
		last = max(last, o.Call, o.Return)
	}
	out := append([]porcupine.Operation(nil), ops...)
	for i := range out {
		if out[i].Output.(Output).Outcome == Unknown {
			out[i].Return = last + 1
		}
	}
	return out
}

func TestModelJudgesHistories(t *testing.T) {
	cases := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"empty service reads as revision 0", []porcupine.Operation{op(0, r("a"), 0, 1, okr(0, 0))}, true},
		{"sequential write then read", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(1, r("a"), 2, 3, okr(1, 1)),
		}, true},
		{"stale read after an acknowledged write", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(0, w("a", 2), 2, 3, okw(2)), op(1, r("a"), 4, 5, okr(1, 1)),
		}, false},
		{"concurrent read may see either", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(0, w("a", 2), 2, 6, okw(2)), op(1, r("a"), 3, 4, okr(1, 1)), op(2, r("a"), 3, 5, okr(2, 2)),
		}, true},
		{"reads may not go back in time", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(0, w("a", 2), 2, 9, okw(2)), op(1, r("a"), 3, 4, okr(2, 2)), op(2, r("a"), 5, 6, okr(1, 1)),
		}, false},
		{"acknowledged revision must be the next one", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(0, w("a", 2), 2, 3, okw(3)),
		}, false},
		{"a write applied twice shows as a skipped revision", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(1, r("a"), 2, 3, okr(2, 1)),
		}, false},
		{"unknown write that took effect", []porcupine.Operation{
			op(0, w("a", 1), 0, -1, unknown()), op(1, r("a"), 5, 6, okr(1, 1)),
		}, true},
		{"unknown write that never took effect", []porcupine.Operation{
			op(0, w("a", 1), 0, -1, unknown()), op(1, r("a"), 5, 6, okr(0, 0)), op(1, w("a", 2), 7, 8, okw(1)), op(1, r("a"), 9, 10, okr(1, 2)),
		}, true},
		{"unknown write that takes effect late", []porcupine.Operation{
			op(0, w("a", 1), 0, -1, unknown()), op(1, r("a"), 5, 6, okr(0, 0)), op(1, r("a"), 7, 8, okr(1, 1)),
		}, true},
		{"unknown write cannot take effect before its call", []porcupine.Operation{
			op(1, r("a"), 0, 1, okr(1, 1)), op(0, w("a", 1), 2, -1, unknown()),
		}, false},
		{"refused write never takes effect", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, refused()), op(1, r("a"), 2, 3, okr(1, 1)),
		}, false},
		{"refused write leaves the state", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(0, w("a", 2), 2, 3, refused()), op(1, r("a"), 4, 5, okr(1, 1)),
		}, true},
		{"unchanged needs the same value", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(0, w("a", 2), 2, 3, unchanged(1)),
		}, false},
		{"services are independent registers", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(1, w("b", 2), 0, 1, okw(1)), op(2, r("a"), 2, 3, okr(1, 1)), op(2, r("b"), 4, 5, okr(1, 2)),
		}, true},
		{"a value read from another service", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(2, r("b"), 2, 3, okr(1, 1)),
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := CheckLinearizable(fromRecorder(tc.ops), 10*time.Second, dir)
			if tc.ok {
				if err != nil {
					t.Fatalf("want linearizable, got %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNotLinearizable) {
				t.Fatalf("want %v, got %v", ErrNotLinearizable, err)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "deployctl-chaos-*.html"))
			if len(files) != 1 || !strings.Contains(err.Error(), files[0]) {
				t.Fatalf("visualization files %v, error %v: want one, named in the error", files, err)
			}
			if fi, err := os.Stat(files[0]); err != nil || fi.Size() == 0 {
				t.Fatalf("visualization %s: %v", files[0], err)
			}
		})
	}
}

func TestRecorderClosesUnknownOperationsAfterTheEnd(t *testing.T) {
	rec := NewRecorder()
	call := rec.Now()
	rec.Record(0, w("a", 1), call, unknown())
	rec.Record(1, r("a"), rec.Now(), okr(0, 0))
	ops := rec.Operations()
	if len(ops) != 2 {
		t.Fatalf("ops %+v", ops)
	}
	if ops[0].Return <= ops[1].Return || ops[0].Return <= ops[1].Call {
		t.Fatalf("unknown write returns at %d, before the last event %d", ops[0].Return, ops[1].Return)
	}
	if ops[1].Return < ops[1].Call {
		t.Fatalf("read returns before its call: %+v", ops[1])
	}
	st := rec.Stats()
	if st.Operations != 2 || st.UnknownWrites != 1 || st.Reads != 1 || st.OkWrites != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCheckFinal(t *testing.T) {
	history := []porcupine.Operation{
		op(0, w("a", 1), 0, 1, okw(1)),
		op(0, w("a", 2), 2, -1, unknown()),
		op(1, w("a", 3), 2, 3, refused()),
		op(1, w("a", 4), 4, 5, okw(3)),
	}
	apply := func(n, v int) Revision { return Revision{Number: n, Value: v, Cause: "apply"} }
	cases := []struct {
		name     string
		final    []Revision
		lost     int
		problems int
	}{
		{"every acknowledged write, unknown one applied", []Revision{apply(1, 1), apply(2, 2), apply(3, 4)}, 0, 0},
		{"acknowledged write missing", []Revision{apply(1, 1), apply(2, 2)}, 1, 1},
		{"refused write present", []Revision{apply(1, 1), apply(2, 3), apply(3, 4)}, 0, 1},
		{"value no write issued", []Revision{apply(1, 1), apply(2, 99), apply(3, 4)}, 0, 1},
		{"write applied twice", []Revision{apply(1, 1), apply(2, 2), apply(3, 4), apply(4, 4)}, 0, 2},
		{"a rollback", []Revision{apply(1, 1), apply(2, 2), {Number: 3, Value: 4, Cause: "automatic rollback of 2 to 1"}}, 0, 1},
		{"acknowledged at another revision", []Revision{apply(1, 1), apply(2, 4)}, 1, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := CheckFinal(history, map[string][]Revision{"a": tc.final})
			if rep.AcknowledgedWrites != 2 || rep.Lost != tc.lost || len(rep.Problems) != tc.problems {
				t.Fatalf("report %+v: want 2 acknowledged, %d lost, %d problems", rep, tc.lost, tc.problems)
			}
			if (tc.problems == 0) != (rep.Err() == nil) || (rep.Err() != nil && !errors.Is(rep.Err(), ErrLostWrite)) {
				t.Fatalf("Err() = %v", rep.Err())
			}
		})
	}
}

func TestResolveUnknownWrites(t *testing.T) {
	apply := func(n, v int) Revision { return Revision{Number: n, Value: v, Cause: "apply"} }
	cases := []struct {
		name  string
		ops   []porcupine.Operation
		final []Revision
		ok    bool
	}{
		{"never took effect: dropped", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(1, w("a", 2), 2, -1, unknown()), op(0, r("a"), 3, 4, okr(1, 1)),
		}, []Revision{apply(1, 1)}, true},
		{"took effect late: placed at its revision", []porcupine.Operation{
			op(1, w("a", 2), 0, -1, unknown()), op(0, r("a"), 1, 2, okr(0, 0)), op(0, w("a", 1), 3, 4, okw(1)), op(0, r("a"), 5, 6, okr(2, 2)),
		}, []Revision{apply(1, 1), apply(2, 2)}, true},
		{"dropped, but a read had seen it", []porcupine.Operation{
			op(1, w("a", 2), 0, -1, unknown()), op(0, r("a"), 1, 2, okr(1, 2)),
		}, nil, false},
		{"final revision contradicts the reads", []porcupine.Operation{
			op(0, w("a", 1), 0, 1, okw(1)), op(1, w("a", 2), 2, -1, unknown()), op(0, r("a"), 3, 4, okr(2, 2)),
		}, []Revision{apply(1, 1), apply(2, 7), apply(3, 2)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops := ResolveUnknownWrites(fromRecorder(tc.ops), map[string][]Revision{"a": tc.final})
			err := CheckLinearizable(ops, 10*time.Second, t.TempDir())
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrNotLinearizable)) {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// Many lost answers of writes that never took effect, under concurrency:
// resolved, the history is decided at once (unresolved, porcupine would
// try every subset and order of the pending writes at every step).
func TestResolvedHistoryWithManyLostAnswersIsDecided(t *testing.T) {
	var ops []porcupine.Operation
	var final []Revision
	rev, ts := 0, int64(0)
	for i := 1; i <= 400; i++ {
		switch {
		case i%10 == 0: // lost answer, never applied
			ops = append(ops, op(2, w("a", i), ts, -1, unknown()))
		case i%10 == 5: // lost answer, applied
			rev++
			final = append(final, Revision{Number: rev, Value: i, Cause: "apply"})
			ops = append(ops, op(2, w("a", i), ts, -1, unknown()))
		default:
			rev++
			final = append(final, Revision{Number: rev, Value: i, Cause: "apply"})
			ops = append(ops, op(0, w("a", i), ts, ts+10, okw(rev)), op(1, r("a"), ts+5, ts+20, okr(rev, i)))
		}
		ts += 11
	}
	resolved := ResolveUnknownWrites(fromRecorder(ops), map[string][]Revision{"a": final})
	if len(resolved) != len(ops)-40 {
		t.Fatalf("resolved %d operations, want the %d lost never-applied writes dropped from %d", len(resolved), 40, len(ops))
	}
	if err := CheckLinearizable(resolved, time.Minute, t.TempDir()); err != nil {
		t.Fatal(err)
	}
}
