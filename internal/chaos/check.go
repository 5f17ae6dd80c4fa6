package chaos

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

var (
	// ErrNotLinearizable: porcupine found no linearization of the history.
	ErrNotLinearizable = errors.New("history is not linearizable")
	// ErrCheckInconclusive: porcupine ran out of time before deciding.
	ErrCheckInconclusive = errors.New("linearizability check timed out")
	// ErrLostWrite: an acknowledged write is missing from the final state,
	// or the final state holds a revision no write can explain.
	ErrLostWrite = errors.New("final state disagrees with the acknowledged writes")
)

// CheckLinearizable checks ops against Model within timeout. On a
// violation, or when the check times out, it writes porcupine's
// visualization to an HTML file in dir (os.TempDir() when empty) that
// outlives the test, and the error names it.
func CheckLinearizable(ops []porcupine.Operation, timeout time.Duration, dir string) error {
	model := Model()
	// The verbose check keeps partial linearizations for the
	// visualization: only worth it once the cheap one has failed.
	if porcupine.CheckOperationsTimeout(model, ops, timeout) == porcupine.Ok {
		return nil
	}
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	if res == porcupine.Ok {
		return nil // cannot happen: the same search, with bookkeeping
	}
	kind := ErrNotLinearizable
	if res == porcupine.Unknown {
		kind = ErrCheckInconclusive
	}
	f, err := os.CreateTemp(dir, "deployctl-chaos-*.html")
	if err != nil {
		return fmt.Errorf("%w (and the visualization could not be written: %v)", kind, err)
	}
	verr := porcupine.Visualize(model, info, f)
	if cerr := f.Close(); verr == nil {
		verr = cerr
	}
	if verr != nil {
		return fmt.Errorf("%w (and the visualization could not be written: %v)", kind, verr)
	}
	return fmt.Errorf("%w: porcupine's visualization is in %s", kind, f.Name())
}

// Revision is one entry of a service's final history, as the cluster
// reports it after every fault healed.
type Revision struct {
	Number int
	Value  int
	Cause  string
}

// ResolveUnknownWrites settles the unknown writes of a history with the
// final state: the full revision history of every service, read after
// every operation had ended (abandoned ones included). Revisions are never
// deleted, so a write that ever took effect is in it.
//
//   - An unknown write whose value is not in the final state never took
//     effect before the end: it is dropped, which is the same as porcupine
//     placing it after the last operation.
//   - An unknown write whose value the final state holds at revision r
//     took effect as revision r: its output says so, and the model only
//     lets it become revision r.
//
// This is sound because the final state is one more observation of the
// same system: if it disagrees with what the reads saw (a write dropped
// here that a read had seen, a revision number the reads contradict), the
// history is not linearizable, and CheckFinal checks the final state
// against the acknowledged writes on its own. Without it, every unknown
// write that never took effect stays pending to the end, and porcupine
// explores every subset and order of the pending ones at every step:
// exponential in the number of lost answers.
func ResolveUnknownWrites(ops []porcupine.Operation, final map[string][]Revision) []porcupine.Operation {
	at := map[string]map[int]int{} // service -> value -> revision
	for svc, revs := range final {
		at[svc] = map[int]int{}
		for _, r := range revs {
			at[svc][r.Value] = r.Number
		}
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		in, res := op.Input.(Input), op.Output.(Output)
		if in.Kind == Write && res.Outcome == Unknown {
			rev, ok := at[in.Service][in.Value]
			if !ok {
				continue
			}
			res.Revision = rev
			op.Output = res
		}
		out = append(out, op)
	}
	return out
}

// FinalReport is the comparison of the final state with the history.
type FinalReport struct {
	// AcknowledgedWrites counts ok writes that made a new revision.
	AcknowledgedWrites int
	// Lost counts acknowledged writes missing from the final state.
	Lost int
	// Problems describes every disagreement, lost writes included.
	Problems []string
}

// Err is nil when the final state agrees with the history, and wraps
// ErrLostWrite otherwise.
func (r FinalReport) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d acknowledged writes lost; %d problems:\n%s", ErrLostWrite, r.Lost, len(r.Problems), joinLines(r.Problems))
}

// CheckFinal compares the final revisions of every service with the
// history, independently of the linearizability check:
//
//   - every acknowledged write is in its service's final history, at the
//     revision number the server acknowledged, with its value;
//   - every final revision carries the value of a write issued on that
//     service that was not refused (ok or unknown), no value appears twice
//     (no write applied twice), revisions are numbered 1..n, and every one
//     comes from an apply (no rollback, no revision the workload did not
//     cause);
//   - a service the workload wrote with an acknowledged write exists.
func CheckFinal(ops []porcupine.Operation, final map[string][]Revision) FinalReport {
	var rep FinalReport
	type write struct {
		outcome Outcome
		rev     int
	}
	writes := map[string]map[int]write{} // service -> value -> write
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind != Write {
			continue
		}
		if writes[in.Service] == nil {
			writes[in.Service] = map[int]write{}
		}
		writes[in.Service][in.Value] = write{outcome: out.Outcome, rev: out.Revision}
		if out.Outcome != Ok || out.Unchanged {
			continue
		}
		rep.AcknowledgedWrites++
		revs := final[in.Service]
		if out.Revision < 1 || out.Revision > len(revs) || revs[out.Revision-1].Value != in.Value {
			rep.Lost++
			rep.Problems = append(rep.Problems, fmt.Sprintf("acknowledged write lost: %s value %d acknowledged as revision %d", in.Service, in.Value, out.Revision))
		}
	}
	services := make([]string, 0, len(final))
	for svc := range final {
		services = append(services, svc)
	}
	sort.Strings(services)
	for _, svc := range services {
		seen := map[int]int{}
		for i, r := range final[svc] {
			if r.Number != i+1 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision at position %d is numbered %d", svc, i+1, r.Number))
			}
			if r.Cause != "apply" {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision %d has cause %q, not from an apply", svc, r.Number, r.Cause))
			}
			if prev, dup := seen[r.Value]; dup {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: value %d is in revisions %d and %d: a write applied twice", svc, r.Value, prev, r.Number))
			}
			seen[r.Value] = r.Number
			w, issued := writes[svc][r.Value]
			switch {
			case !issued:
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision %d holds value %d that no write issued", svc, r.Number, r.Value))
			case w.outcome == Failed:
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision %d holds value %d of a write the server refused", svc, r.Number, r.Value))
			case w.outcome == Ok && w.rev != r.Number:
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: value %d acknowledged as revision %d is revision %d", svc, r.Value, w.rev, r.Number))
			}
		}
	}
	return rep
}

func joinLines(lines []string) string {
	out := ""
	for i, l := range lines {
		if i == 20 {
			return out + fmt.Sprintf("  ... and %d more\n", len(lines)-20)
		}
		out += "  " + l + "\n"
	}
	return out
}
