// Package chaos holds the reusable pieces of deployctl's fault-injection
// tests: a porcupine model of the control plane's service specs, a history
// recorder, the check that no acknowledged write was lost, a concurrent
// client workload, an image registry that resolves any tag, and network
// namespaces that partition real server processes. DESIGN.md explains the
// model and why it is sound.
package chaos

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// OpKind says what an operation did.
type OpKind int

const (
	// Write is an apply of a spec whose value (image tag and env X) is
	// unique to this operation.
	Write OpKind = iota
	// Read is a status read: the current revision and its value.
	Read
)

func (k OpKind) String() string {
	if k == Write {
		return "write"
	}
	return "read"
}

// Outcome is what the client learned about an operation.
type Outcome int

const (
	// Ok: the server answered with a result.
	Ok Outcome = iota
	// Failed: the server refused before anything could take effect (a
	// conflict rejected by the state machine, an invalid spec, an image
	// that does not resolve). The write never takes effect.
	Failed
	// Unknown: the answer was lost (timeout, connection reset, no leader
	// until the deadline). The write may take effect at any later time, or
	// never.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Ok:
		return "ok"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}

// Input is an operation's call: on which service, and for a write the
// value it stores.
type Input struct {
	Kind    OpKind
	Service string
	Value   int
}

// Output is an operation's result. For an ok write, Revision is the
// revision number the server assigned; for an ok read, Revision and Value
// are the service's current revision and its value (0 and 0: the service
// does not exist yet). For an unknown write Revision is 0, or the revision
// the final state shows it became (ResolveUnknownWrites). Unchanged marks an ok write the server found equal to
// the current revision (no new revision).
type Output struct {
	Outcome   Outcome
	Revision  int
	Value     int
	Unchanged bool
}

// ServiceState is the model's state of one service: its current revision
// number and the value that revision carries. Revision 0 is "no service".
type ServiceState struct {
	Revision int
	Value    int
}

// Model is the sequential specification of deployctl's services as seen
// through apply and status, one register per service (the history is
// partitioned by service):
//
//   - a write that takes effect creates the next revision: state becomes
//     (Revision+1, value); an ok write must report exactly that revision;
//   - an ok write the server calls unchanged leaves the state and requires
//     the current value to equal the written one;
//   - a failed write has no effect;
//   - an unknown write either takes effect like an ok one or never does:
//     its return time is after every other operation (see Recorder), so
//     porcupine may place it anywhere after its call, including after the
//     end of the history, which is "never"; once ResolveUnknownWrites
//     found it in the final state at revision r, it must become exactly
//     revision r;
//   - a read returns the state.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByService,
		Init:      func() interface{} { return ServiceState{} },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			return step(state.(ServiceState), input.(Input), output.(Output))
		},
		DescribeOperation: func(input, output interface{}) string {
			return DescribeOperation(input.(Input), output.(Output))
		},
		DescribeState: func(state interface{}) string {
			s := state.(ServiceState)
			if s.Revision == 0 {
				return "no service"
			}
			return fmt.Sprintf("rev %d = %d", s.Revision, s.Value)
		},
	}
}

func step(s ServiceState, in Input, out Output) (bool, interface{}) {
	switch in.Kind {
	case Read:
		return out.Revision == s.Revision && out.Value == s.Value, s
	case Write:
		switch out.Outcome {
		case Failed:
			return true, s
		case Unknown:
			// Revision is known only once ResolveUnknownWrites found the
			// write in the final state.
			next := ServiceState{Revision: s.Revision + 1, Value: in.Value}
			return out.Revision == 0 || out.Revision == next.Revision, next
		default:
			if out.Unchanged {
				return s.Revision == out.Revision && s.Value == in.Value, s
			}
			next := ServiceState{Revision: s.Revision + 1, Value: in.Value}
			return out.Revision == next.Revision, next
		}
	}
	return false, s
}

// DescribeOperation renders an operation for the visualization and for
// failure messages.
func DescribeOperation(in Input, out Output) string {
	if in.Kind == Read {
		return fmt.Sprintf("%s read -> rev %d = %d", in.Service, out.Revision, out.Value)
	}
	switch {
	case out.Outcome != Ok:
		return fmt.Sprintf("%s write %d -> %s", in.Service, in.Value, out.Outcome)
	case out.Unchanged:
		return fmt.Sprintf("%s write %d -> unchanged rev %d", in.Service, in.Value, out.Revision)
	default:
		return fmt.Sprintf("%s write %d -> rev %d", in.Service, in.Value, out.Revision)
	}
}

func partitionByService(history []porcupine.Operation) [][]porcupine.Operation {
	by := map[string][]porcupine.Operation{}
	for _, op := range history {
		svc := op.Input.(Input).Service
		by[svc] = append(by[svc], op)
	}
	names := make([]string, 0, len(by))
	for name := range by {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([][]porcupine.Operation, 0, len(names))
	for _, name := range names {
		out = append(out, by[name])
	}
	return out
}
