package chaos

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/deployctl/deployctl/controller"
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
	// Replicas is the revision's replica count.
	Replicas int
	Cause    string
	// State is the revision's rollout state (succeeded, rolled_back, ...).
	State string
	// RollbackOf and RollbackTo are set on rollback revisions.
	RollbackOf, RollbackTo int
	// CreatedAt is the revision's time by the clock of the leader that
	// stored it.
	CreatedAt time.Time
}

// HistoryOutput is the output of a history read of revs (none: the
// service does not exist).
func HistoryOutput(revs []Revision) Output {
	if len(revs) == 0 {
		return Output{Outcome: NotFound}
	}
	values, replicas := make([]int, len(revs)), make([]int, len(revs))
	for i, r := range revs {
		values[i], replicas[i] = r.Value, r.Replicas
	}
	return Output{Outcome: Ok, Values: RevisionList(values, replicas)}
}

// isScale reports whether r is a scale's revision: its cause is the one
// the controller writes (controller.ScaleCause), with any counts.
func isScale(r Revision) bool {
	var from, to int
	n, err := fmt.Sscanf(r.Cause, "scale from %d to %d", &from, &to)
	return err == nil && n == 2 && r.Cause == controller.ScaleCause(from, to)
}

// Removed lists the services some rm may have removed (an ok or unknown
// rm): their final history holds only their last life, so an
// acknowledged write missing from it may have been purged, and an unknown
// one missing from it may have taken effect before the purge.
func Removed(ops []porcupine.Operation) map[string]bool {
	out := map[string]bool{}
	for _, op := range ops {
		in, res := op.Input.(Input), op.Output.(Output)
		if in.Kind == Remove && (res.Outcome == Ok || res.Outcome == Unknown) {
			out[in.Service] = true
		}
	}
	return out
}

// ResolveUnknownWrites settles the unknown writes and rollbacks of a
// history with the final state: the full revision history of every
// service, read after every operation had ended (abandoned ones
// included). Revisions are never deleted except by the purge after rm,
// so on a service never removed a write that ever took effect is in it.
//
//   - An unknown write whose value is not in the final state of a service
//     never removed never took effect before the end: it is dropped,
//     which is the same as porcupine placing it after the last operation.
//     On a removed service it stays open (it may have been purged).
//   - An unknown write whose value the final state holds at revision r
//     took effect as revision r: its output says so, and the model only
//     lets it become revision r.
//   - An unknown rollback --to N on a service never removed, when the
//     final state has no rollback to N that an acknowledged rollback does
//     not account for, never took effect: dropped. Otherwise it stays
//     open (rollbacks carry no unique value). The same for an unknown
//     scale to N and the final state's scales to N (one that met N as the
//     current count made no revision: dropping it changes nothing).
//
// Unknown rm, policy and membership operations stay open: they are few.
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
	removed := Removed(ops)
	at := map[string]map[int]int{} // service -> apply value -> revision
	rollbacksTo := map[string]map[int]int{}
	scalesTo := map[string]map[int]int{}
	for svc, revs := range final {
		at[svc], rollbacksTo[svc], scalesTo[svc] = map[int]int{}, map[int]int{}, map[int]int{}
		for _, r := range revs {
			switch {
			case r.RollbackTo != 0:
				rollbacksTo[svc][r.RollbackTo]++
			case isScale(r):
				scalesTo[svc][r.Replicas]++
			default:
				at[svc][r.Value] = r.Number
			}
		}
	}
	for _, op := range ops {
		in, res := op.Input.(Input), op.Output.(Output)
		switch {
		case in.Kind == Rollback && res.Outcome == Ok && rollbacksTo[in.Service] != nil:
			rollbacksTo[in.Service][in.To]--
		case in.Kind == Scale && res.Outcome == Ok && !res.Unchanged && scalesTo[in.Service] != nil:
			scalesTo[in.Service][in.Replicas]--
		}
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		in, res := op.Input.(Input), op.Output.(Output)
		if res.Outcome == Unknown && !removed[in.Service] {
			switch in.Kind {
			case Write:
				rev, ok := at[in.Service][in.Value]
				if !ok {
					continue
				}
				res.Revision = rev
				op.Output = res
			case Rollback:
				if rollbacksTo[in.Service][in.To] <= 0 {
					continue
				}
			case Scale:
				if scalesTo[in.Service][in.Replicas] <= 0 {
					continue
				}
			}
		} else if res.Outcome == Unknown && in.Kind == Write {
			if rev, ok := at[in.Service][in.Value]; ok {
				res.Revision = rev
				op.Output = res
			}
		}
		out = append(out, op)
	}
	return out
}

// FinalReport is the comparison of the final state with the history.
type FinalReport struct {
	// AcknowledgedWrites counts ok writes that made a new revision.
	AcknowledgedWrites int
	// AcknowledgedRollbacks counts ok rollbacks.
	AcknowledgedRollbacks int
	// AcknowledgedScales counts ok scales that made a new revision.
	AcknowledgedScales int
	// Lost counts acknowledged writes and rollbacks missing from the final
	// state.
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
//     revision number the server acknowledged, with its value (on a
//     removed service: when it is there, at that number; it may have been
//     purged);
//   - every acknowledged rollback --to N is there too (services never
//     removed), as a rollback to N carrying revision N's value, and
//     every acknowledged scale to N that made a revision, as a scale to N;
//   - every final revision from an apply carries the value and replica
//     count of a write issued on that service that was not refused (ok or
//     unknown), no such value appears twice (no write applied twice),
//     revisions are numbered 1..n; every rollback revision k is "of k-1 to
//     N" with N < k-1, carries revision N's value and count, and some
//     rollback --to N was issued on that service and not refused; every
//     scale revision k is "scale from A to N" where A is revision k-1's
//     count and N != A, carries revision k-1's value, and some scale to N
//     was issued on that service and not refused;
//   - a service the workload wrote with an acknowledged write exists
//     (unless removed).
func CheckFinal(ops []porcupine.Operation, final map[string][]Revision) FinalReport {
	var rep FinalReport
	removed := Removed(ops)
	writes := writesByValue{}
	rollbacks := issued{} // service -> to -> rollbacks issued, not refused
	scales := issued{}    // service -> replicas -> scales issued, not refused
	// held checks that an acknowledged operation that made revision rev
	// is in its service's final history there (is says whether a
	// revision is it); a removed service's earlier lives are gone, so
	// there it is checked below when it is there, by porcupine otherwise.
	held := func(svc string, rev int, kind, what string, is func(Revision) bool) {
		revs := final[svc]
		if removed[svc] {
			return
		}
		if rev < 1 || rev > len(revs) || !is(revs[rev-1]) {
			rep.Lost++
			rep.Problems = append(rep.Problems, fmt.Sprintf("acknowledged %s lost: %s %s acknowledged as revision %d", kind, svc, what, rev))
		}
	}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if out.Outcome != Ok && out.Outcome != Unknown {
			if in.Kind == Write {
				writes.add(in, write{outcome: out.Outcome})
			}
			continue
		}
		made := out.Outcome == Ok && !out.Unchanged // acknowledged with a new revision
		switch in.Kind {
		case Scale:
			scales.add(in.Service, in.Replicas)
			if made {
				rep.AcknowledgedScales++
				held(in.Service, out.Revision, "scale", fmt.Sprintf("to %d replicas", in.Replicas), func(r Revision) bool { return isScale(r) && r.Replicas == in.Replicas })
			}
		case Rollback:
			rollbacks.add(in.Service, in.To)
			if made {
				rep.AcknowledgedRollbacks++
				held(in.Service, out.Revision, "rollback", fmt.Sprintf("--to %d", in.To), func(r Revision) bool { return r.RollbackTo == in.To })
			}
		case Write:
			writes.add(in, write{outcome: out.Outcome, rev: out.Revision, replicas: in.Replicas})
			if made {
				rep.AcknowledgedWrites++
				held(in.Service, out.Revision, "write", fmt.Sprintf("value %d", in.Value), func(r Revision) bool {
					return r.Value == in.Value && r.RollbackTo == 0 && !isScale(r)
				})
			}
		}
	}
	services := make([]string, 0, len(final))
	for svc := range final {
		services = append(services, svc)
	}
	sort.Strings(services)
	for _, svc := range services {
		revs := final[svc]
		seen := map[int]int{}
		for i, r := range revs {
			if r.Number != i+1 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision at position %d is numbered %d", svc, i+1, r.Number))
			}
			if r.RollbackTo != 0 {
				want := fmt.Sprintf("rollback of %d to %d", r.RollbackOf, r.RollbackTo)
				switch {
				case r.RollbackOf != r.Number-1 || r.RollbackTo < 1 || r.RollbackTo >= r.RollbackOf:
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision %d is a rollback of %d to %d: not of the revision before it to an earlier one", svc, r.Number, r.RollbackOf, r.RollbackTo))
				case revs[r.RollbackTo-1].Value != r.Value || revs[r.RollbackTo-1].Replicas != r.Replicas:
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision %d rolls back to %d but carries value %d x%d, not %d x%d",
						svc, r.Number, r.RollbackTo, r.Value, r.Replicas, revs[r.RollbackTo-1].Value, revs[r.RollbackTo-1].Replicas))
				case r.Cause != want:
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision %d has cause %q, want %q", svc, r.Number, r.Cause, want))
				case rollbacks[svc][r.RollbackTo] == 0:
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision %d is a rollback to %d that no rollback issued (or only refused ones)", svc, r.Number, r.RollbackTo))
				}
				continue
			}
			if isScale(r) {
				if p := checkScaleRevision(revs, i, scales[svc]); p != "" {
					rep.Problems = append(rep.Problems, svc+": "+p)
				}
				continue
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
			case w.replicas != r.Replicas:
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: revision %d holds %d replicas, its write sent %d", svc, r.Number, r.Replicas, w.replicas))
			}
		}
	}
	return rep
}

// issued counts operations issued and not refused, by service and key
// (a rollback's target, a scale's count).
type issued map[string]map[int]int

func (c issued) add(svc string, key int) {
	if c[svc] == nil {
		c[svc] = map[int]int{}
	}
	c[svc][key]++
}

// write is what CheckFinal knows of a write: its outcome, and the
// revision and count it acknowledged or sent.
type write struct {
	outcome       Outcome
	rev, replicas int
}

// writesByValue holds the writes of a history by service and value.
type writesByValue map[string]map[int]write

func (m writesByValue) add(in Input, w write) {
	if m[in.Service] == nil {
		m[in.Service] = map[int]write{}
	}
	m[in.Service][in.Value] = w
}

// checkScaleRevision says what is wrong with revs[i], a scale's revision,
// given the scales issued on its service by count: it must follow a
// revision, carry that revision's value, change its count as its cause
// says, and answer a scale that was issued and not refused.
func checkScaleRevision(revs []Revision, i int, issued map[int]int) string {
	r := revs[i]
	if i == 0 {
		return fmt.Sprintf("revision %d is a scale (%q) but no revision comes before it", r.Number, r.Cause)
	}
	prev := revs[i-1]
	switch {
	case r.Value != prev.Value:
		return fmt.Sprintf("revision %d is a scale but carries value %d, not revision %d's %d", r.Number, r.Value, prev.Number, prev.Value)
	case r.Cause != controller.ScaleCause(prev.Replicas, r.Replicas) || r.Replicas == prev.Replicas:
		return fmt.Sprintf("revision %d has cause %q with %d replicas after revision %d's %d", r.Number, r.Cause, r.Replicas, prev.Number, prev.Replicas)
	case issued[r.Replicas] == 0:
		return fmt.Sprintf("revision %d is a scale to %d that no scale issued (or only refused ones)", r.Number, r.Replicas)
	}
	return ""
}

// CheckRolloutsEnded checks that every rollout in the final histories
// ended exactly once: every revision before the current one is finished
// (succeeded, failed, superseded or rolled back, one state, never in
// progress or paused); a revision is rolled_back exactly when the next
// revision is a rollback of it (never both succeeded and rolled back,
// never rolled back twice: numbers are consecutive, so each revision has
// one successor); and the current revision's rollout, after the cluster
// healed, is finished (replicas: 0 succeeds at once, whichever leader
// drives it). Removed services are checked like the others: their last
// life is all there is.
func CheckRolloutsEnded(final map[string][]Revision) []string {
	var problems []string
	services := make([]string, 0, len(final))
	for svc := range final {
		services = append(services, svc)
	}
	sort.Strings(services)
	for _, svc := range services {
		revs := final[svc]
		for i, r := range revs {
			last := i == len(revs)-1
			rolledBackByNext := !last && revs[i+1].RollbackOf == r.Number
			switch {
			case r.State == "rolled_back" && !rolledBackByNext:
				problems = append(problems, fmt.Sprintf("%s: revision %d is rolled_back but no rollback of it follows", svc, r.Number))
			case rolledBackByNext && r.State != "rolled_back":
				problems = append(problems, fmt.Sprintf("%s: revision %d was rolled back by %d but ended %q", svc, r.Number, revs[i+1].Number, r.State))
			case last && r.State != "succeeded":
				problems = append(problems, fmt.Sprintf("%s: current revision %d ended %q after healing, not succeeded", svc, r.Number, r.State))
			case !last && r.State != "succeeded" && r.State != "failed" && r.State != "superseded" && r.State != "rolled_back":
				problems = append(problems, fmt.Sprintf("%s: revision %d was replaced but its rollout never ended (%q)", svc, r.Number, r.State))
			}
		}
	}
	return problems
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
