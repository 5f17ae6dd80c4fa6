package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// DoomedSpecYAML is a release that can never be placed (one replica, no
// agent in the harness) with a 1 s progress deadline: its rollout fails
// at the deadline and the leader rolls it back on its own.
func DoomedSpecYAML(service, image string, value int) []byte {
	return fmt.Appendf(nil, "service: %s\nimage: %s\nreplicas: 1\nupdate:\n  progress_deadline: 1s\nenv:\n  X: \"%d\"\n", service, image, value)
}

// DoomedOp is one apply of the doomed worker: a good release (replicas:
// 0) or a doomed one (DoomedSpecYAML). For a doomed one, Ended is when
// the worker saw the service quiet again (its rollback done), zero when
// it gave up waiting.
type DoomedOp struct {
	Value    int
	Doomed   bool
	Outcome  Outcome
	Revision int
	Call     time.Time
	Ended    time.Time
}

// DoomedWorker alternates good and doomed releases on one service, outside
// the porcupine model: the leader writes the rollback revisions itself,
// at a time only its clock decides. After each doomed release it waits,
// bounded, until the service is quiet (the newest revision ended and
// holds no doomed value) before the next apply, so faults land during
// rollouts, not between them.
type DoomedWorker struct {
	Client    *wire.Client
	Service   string
	Image     func(value int) string
	OpTimeout time.Duration
	// Wait bounds the wait for a doomed release to be rolled back; past it
	// the worker stops (the final check reports the stall).
	Wait time.Duration
	Log  []DoomedOp
	// GaveUp is set when a wait passed its bound.
	GaveUp bool
}

// Run applies until ctx ends; the operation under way then is finished.
func (w *DoomedWorker) Run(ctx context.Context) {
	opCtx := context.WithoutCancel(ctx)
	for v := 1; ctx.Err() == nil; v++ {
		doomed := v%2 == 0
		spec := SpecYAML(w.Service, w.Image(v), v)
		if doomed {
			spec = DoomedSpecYAML(w.Service, w.Image(v), v)
		}
		actx, cancel := context.WithTimeout(opCtx, w.OpTimeout)
		op := DoomedOp{Value: v, Doomed: doomed, Call: time.Now()}
		res, err := w.Client.Apply(actx, spec)
		cancel()
		out := WriteOutcome(res, err)
		op.Outcome, op.Revision = out.Outcome, out.Revision
		if doomed && out.Outcome != Failed {
			if !w.waitQuiet(opCtx) {
				w.Log = append(w.Log, op)
				w.GaveUp = true
				return
			}
			op.Ended = time.Now()
		}
		w.Log = append(w.Log, op)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitQuiet polls the history until the newest revision's rollout ended
// and it holds no doomed value (a doomed release that was never committed
// leaves the good one newest), and reports whether it did within Wait.
func (w *DoomedWorker) waitQuiet(ctx context.Context) bool {
	deadline := time.Now().Add(w.Wait)
	for {
		hctx, cancel := context.WithTimeout(ctx, w.OpTimeout)
		h, err := w.Client.History(hctx, w.Service)
		cancel()
		if err == nil && len(h) > 0 {
			last := h[len(h)-1]
			v, verr := ValueOfImage(last.Image)
			if verr == nil && v%2 == 1 && ended(last.State) {
				return true
			}
		} else if errors.Is(err, controller.ErrNotFound) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ended(s string) bool {
	switch s {
	case state.RevisionSucceeded, state.RevisionFailed, state.RevisionRolledBack, state.RevisionSuperseded:
		return true
	}
	return false
}

// Window is when a fault was under way.
type Window struct{ Start, End time.Time }

// DoomedReport is CheckDoomed's verdict.
type DoomedReport struct {
	// Rollbacks is the number of automatic rollbacks in the final history;
	// WithFault, how many of them had a fault under way between the doomed
	// apply and the moment the worker saw it rolled back.
	Rollbacks, WithFault int
	Problems             []string
}

// Err is nil when no problem was found.
func (r DoomedReport) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("automatic rollbacks: %d problems:\n%s", len(r.Problems), joinLines(r.Problems))
}

// CheckDoomed checks the final history of the doomed worker's service:
// every revision holds a value the worker issued (none refused); every
// doomed revision ended rolled_back, and the revision right after it is
// its automatic rollback (cause "automatic rollback of N to M", M
// earlier) carrying revision M's value, which is a good value; every
// rollback revision follows the doomed revision it rolls back (so none is
// rolled back twice and no doomed revision has two rollbacks); good
// revisions come from applies; and the current revision holds a good
// value and succeeded. A doomed release whose answer was lost may be
// superseded instead when the worker's next good apply came first: only
// then is superseded allowed. faults are the fault windows, for the count.
func CheckDoomed(log []DoomedOp, final []Revision, faults []Window) DoomedReport {
	var rep DoomedReport
	issued := map[int]DoomedOp{}
	for _, op := range log {
		issued[op.Value] = op
	}
	rolledBackBy := map[int]int{}
	for i, r := range final {
		if r.Number != i+1 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d at position %d: numbers not consecutive", r.Number, i+1))
			return rep
		}
		if r.RollbackOf != 0 {
			if prev := rolledBackBy[r.RollbackOf]; prev != 0 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d is rolled back twice, by %d and %d", r.RollbackOf, prev, r.Number))
			}
			rolledBackBy[r.RollbackOf] = r.Number
			want := fmt.Sprintf("automatic rollback of %d to %d", r.RollbackOf, r.RollbackTo)
			switch {
			case r.RollbackOf != r.Number-1 || r.RollbackTo < 1 || r.RollbackTo >= r.RollbackOf:
				rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d rolls back %d to %d: not the revision before it to an earlier one", r.Number, r.RollbackOf, r.RollbackTo))
			case r.Cause != want:
				rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d has cause %q, want %q", r.Number, r.Cause, want))
			case final[r.RollbackTo-1].Value != r.Value:
				rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d rolls back to %d but carries value %d, not %d", r.Number, r.RollbackTo, r.Value, final[r.RollbackTo-1].Value))
			case !final[r.RollbackOf-1].doomedIn(issued):
				rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d rolls back %d, which is not a doomed release", r.Number, r.RollbackOf))
			case final[r.RollbackTo-1].doomedIn(issued):
				rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d restores %d, a doomed release", r.Number, r.RollbackTo))
			}
			if r.State == state.RevisionRolledBack {
				rep.Problems = append(rep.Problems, fmt.Sprintf("rollback revision %d was itself rolled back", r.Number))
			}
			continue
		}
		op, ok := issued[r.Value]
		switch {
		case !ok:
			rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d holds value %d that the worker never issued", r.Number, r.Value))
			continue
		case r.Cause != "apply":
			rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d has cause %q, not from an apply", r.Number, r.Cause))
		case op.Outcome == Ok && op.Revision != r.Number:
			rep.Problems = append(rep.Problems, fmt.Sprintf("value %d acknowledged as revision %d is revision %d", r.Value, op.Revision, r.Number))
		case op.Outcome == Failed:
			rep.Problems = append(rep.Problems, fmt.Sprintf("revision %d holds value %d of a refused apply", r.Number, r.Value))
		}
		if !op.Doomed {
			continue
		}
		last := i == len(final)-1
		switch {
		case !last && final[i+1].RollbackOf == r.Number:
			if r.State != state.RevisionRolledBack {
				rep.Problems = append(rep.Problems, fmt.Sprintf("doomed revision %d was rolled back by %d but ended %q", r.Number, final[i+1].Number, r.State))
			}
			rep.Rollbacks++
			if !op.Ended.IsZero() && overlaps(op.Call, op.Ended, faults) {
				rep.WithFault++
			}
		case !last && r.State == state.RevisionSuperseded && op.Outcome == Unknown && final[i+1].RollbackOf == 0:
			// A lost answer: the worker did not know to wait.
		default:
			rep.Problems = append(rep.Problems, fmt.Sprintf("doomed revision %d ended %q with no automatic rollback after it", r.Number, r.State))
		}
	}
	if n := len(final); n > 0 {
		cur := final[n-1]
		if cur.doomedIn(issued) || cur.State != state.RevisionSucceeded {
			rep.Problems = append(rep.Problems, fmt.Sprintf("current revision %d (value %d) is %q, not a good release that succeeded", cur.Number, cur.Value, cur.State))
		}
	}
	return rep
}

// doomedIn reports whether r carries a doomed release's value.
func (r Revision) doomedIn(issued map[int]DoomedOp) bool {
	return issued[r.Value].Doomed
}

func overlaps(start, end time.Time, ws []Window) bool {
	for _, w := range ws {
		if w.Start.Before(end) && start.Before(w.End) {
			return true
		}
	}
	return false
}
