package chaos

import (
	"math"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Recorder collects a concurrent history. Timestamps are nanoseconds on
// the monotonic clock since the recorder was made, taken by the caller
// before the call and by Record right after the answer, so an operation's
// interval always covers the real one.
type Recorder struct {
	start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation
}

// NewRecorder returns an empty history whose clock starts now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the timestamp to pass to Record as an operation's call time.
func (r *Recorder) Now() int64 { return time.Since(r.start).Nanoseconds() }

// Record adds an operation that was called at call and has just returned.
// An unknown outcome is kept open: Operations gives it a return time after
// every other operation.
func (r *Recorder) Record(client int, in Input, call int64, out Output) {
	ret := r.Now()
	if out.Outcome == Unknown {
		ret = math.MaxInt64
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// Operations returns a copy of the history for porcupine. Unknown
// operations return one nanosecond after the last timestamp of the history
// (not MaxInt64, which the visualization cannot scale).
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := append([]porcupine.Operation(nil), r.ops...)
	var last int64
	for _, op := range ops {
		last = max(last, op.Call)
		if op.Return != math.MaxInt64 {
			last = max(last, op.Return)
		}
	}
	for i := range ops {
		if ops[i].Return == math.MaxInt64 {
			ops[i].Return = last + 1
		}
	}
	return ops
}

// Stats counts a history's operations by kind and outcome.
type Stats struct {
	Operations      int
	OkWrites        int
	FailedWrites    int
	UnknownWrites   int
	Reads           int
	ServicesRead    int
	ServicesWritten int
	// Per kind, every outcome: rollbacks, scales (ok: a new revision;
	// unchanged: ok without one), rm, policy sets and reads, membership
	// changes, cluster reads.
	Rollbacks, OkRollbacks int
	Scales, OkScales       int
	UnchangedScales        int
	Removes, OkRemoves     int
	PolicySets, OkPolicy   int
	PolicyReads            int
	MemberChanges          int
	ClusterReads           int
}

// Stats counts the operations recorded so far.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s Stats
	read, written := map[string]bool{}, map[string]bool{}
	for _, op := range r.ops {
		in, out := op.Input.(Input), op.Output.(Output)
		s.Operations++
		switch in.Kind {
		case Read:
			s.Reads++
			read[in.Service] = true
			continue
		case Rollback:
			s.Rollbacks++
			if out.Outcome == Ok {
				s.OkRollbacks++
			}
			continue
		case Scale:
			s.Scales++
			switch {
			case out.Outcome == Ok && out.Unchanged:
				s.UnchangedScales++
			case out.Outcome == Ok:
				s.OkScales++
			}
			continue
		case Remove:
			s.Removes++
			if out.Outcome == Ok {
				s.OkRemoves++
			}
			continue
		case PolicySet:
			s.PolicySets++
			if out.Outcome == Ok {
				s.OkPolicy++
			}
			continue
		case PolicyRead:
			s.PolicyReads++
			continue
		case MemberRemove, MemberJoin:
			s.MemberChanges++
			continue
		case ClusterRead:
			s.ClusterReads++
			continue
		case HistoryRead:
			continue
		}
		switch out.Outcome {
		case Ok:
			s.OkWrites++
			written[in.Service] = true
		case Failed:
			s.FailedWrites++
		default:
			s.UnknownWrites++
		}
	}
	s.ServicesRead, s.ServicesWritten = len(read), len(written)
	return s
}
