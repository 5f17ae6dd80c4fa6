// Package chaos holds the reusable pieces of deployctl's fault-injection
// tests: a porcupine model of the control plane's service specs, a history
// recorder, the check that no acknowledged write was lost, a concurrent
// client workload, an image registry that resolves any tag, and network
// namespaces that partition real server processes. DESIGN.md explains the
// model and why it is sound.
package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"
)

// OpKind says what an operation did.
type OpKind int

const (
	// Write is an apply of a spec whose value (image tag and env X) is
	// unique to this operation, with Input.Replicas replicas.
	Write OpKind = iota
	// Read is a status read: the current revision, its value and replica
	// count, whether the service is being removed.
	Read
	// Rollback is `deployctl rollback SERVICE --to N` (Input.To): a new
	// revision carrying revision N's value.
	Rollback
	// Remove is `deployctl rm SERVICE`: the service is removing, then
	// purged (history and all) once no replica is left; numbers restart.
	Remove
	// PolicySet is `deployctl policy set` of a policy carrying Value, sent
	// with the version the client last read (Input.Expect).
	PolicySet
	// PolicyRead reads the policy's version and value.
	PolicyRead
	// MemberRemove is `deployctl cluster remove NODE` (or `cluster leave`
	// of NODE): raft drops the voter.
	MemberRemove
	// MemberJoin is a server (re)joining with --join: the harness records
	// it from the server's start until it is seen as a voter.
	MemberJoin
	// ClusterRead is `deployctl cluster status`: the voters' ids.
	ClusterRead
	// HistoryRead is `deployctl history SERVICE`: the value and replica
	// count of every revision (Output.Values), read once per service
	// after healing.
	HistoryRead
	// Scale is `deployctl scale SERVICE N` (Input.Replicas): a new
	// revision carrying the current value with N replicas, or none when N
	// is the current count.
	Scale
)

var kindNames = [...]string{"write", "read", "rollback", "rm", "policy set", "policy read", "member remove", "member join", "cluster read", "history read", "scale"}

func (k OpKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Partition keys of the operations that are not about one service.
const (
	PolicyKey  = "@policy"
	ClusterKey = "@cluster"
)

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
	// NotFound: the service does not exist (rm, rollback, scale, read).
	NotFound
	// NoTarget: a rollback's --to names no revision or the current one.
	NoTarget
	// Conflict: a policy set answered 409 (the version moved). The client
	// retries a set whose answer was lost with the same expected version,
	// so a 409 may also mean its own earlier try committed: the model
	// lets it take effect when the version still matched (see stepPolicy).
	Conflict
)

func (o Outcome) String() string {
	switch o {
	case Ok:
		return "ok"
	case Failed:
		return "failed"
	case NotFound:
		return "not found"
	case NoTarget:
		return "no target"
	case Conflict:
		return "conflict"
	default:
		return "unknown"
	}
}

// Input is an operation's call: on which service (or PolicyKey,
// ClusterKey), and what it sends.
type Input struct {
	Kind    OpKind
	Service string
	// Value: the value a write or policy set stores.
	Value int
	// Replicas: the replica count a write's spec or a scale asks for.
	Replicas int
	// To: a rollback's target revision.
	To int
	// Expect: a policy set's expected version.
	Expect int
	// Node: a membership operation's server id.
	Node string
}

// Output is an operation's result. For an ok write or scale, Revision is
// the revision number the server assigned; for an ok read, Revision, Value
// and Replicas are the service's current revision, its value and its
// desired replica count (0, 0 and 0: the service does not exist yet). For
// an unknown write Revision is 0, or the revision the final state shows it
// became (ResolveUnknownWrites). Unchanged marks an ok write or scale the
// server found equal to the current revision (no new revision).
type Output struct {
	Outcome   Outcome
	Revision  int
	Value     int
	Replicas  int
	Unchanged bool
	// Removing: a read found the service being removed.
	Removing bool
	// Members: a cluster read's voters, sorted, comma-separated.
	Members string
	// Values: a history read's revisions, "value:replicas" each,
	// comma-separated (RevisionList).
	Values string
}

// ServiceState is the model's state of one partition. For a service:
// Values holds the value and replica count of each revision of its
// current life ("value:replicas", comma-separated: revision i is entry i;
// the current revision is the last; none: no service), Revision, Value
// and Replicas repeat the current one, and Removing says `rm` was
// accepted and the purge may come at any time. For the policy: Revision
// is its version, Value its value. For the cluster: Members, the voters'
// ids sorted and comma-separated. Values is a string so that states
// compare with ==.
type ServiceState struct {
	Values   string
	Removing bool
	Revision int
	Value    int
	Replicas int
	Members  string
}

// rev is one revision of the model: the value it carries and its replica
// count.
type rev struct{ value, replicas int }

func (r rev) String() string { return strconv.Itoa(r.value) + ":" + strconv.Itoa(r.replicas) }

// RevisionList renders revisions as ServiceState.Values and a history
// read's Output.Values: "value:replicas", comma-separated.
func RevisionList(values, replicas []int) string {
	parts := make([]string, len(values))
	for i := range values {
		parts[i] = rev{values[i], replicas[i]}.String()
	}
	return strings.Join(parts, ",")
}

// InitialMembers is the chaos cluster's configuration at the start.
const InitialMembers = "n1,n2,n3"

func (s ServiceState) revisions() []rev {
	if s.Values == "" {
		return nil
	}
	var out []rev
	for _, f := range strings.Split(s.Values, ",") {
		v, n, _ := strings.Cut(f, ":")
		value, _ := strconv.Atoi(v)
		replicas, _ := strconv.Atoi(n)
		out = append(out, rev{value, replicas})
	}
	return out
}

// with is the state after r became the next revision.
func (s ServiceState) with(r rev) ServiceState {
	if s.Values == "" {
		return ServiceState{Values: r.String(), Revision: 1, Value: r.value, Replicas: r.replicas}
	}
	return ServiceState{Values: s.Values + "," + r.String(), Revision: s.Revision + 1, Value: r.value, Replicas: r.replicas}
}

// Model is the sequential specification of deployctl's control plane as
// the chaos workload sees it, one partition per service, one for the
// policy and one for the cluster's membership (DESIGN.md, "The model"):
//
//   - a write that takes effect creates the next revision (its value and
//     replica count); an ok write must report exactly that revision; on a
//     removing service an ok write means the purge came first: it is
//     revision 1 of a new life;
//   - an ok write the server calls unchanged leaves the state and requires
//     the current value and count to equal the written ones;
//   - a rollback --to N that takes effect creates the next revision with
//     revision N's value and replica count; it is legal only when N is an
//     earlier revision of the current life; "no target" only when N is the
//     current one or beyond it; "not found" only when there is no service
//     or it is removing;
//   - a scale to N that takes effect creates the next revision with the
//     current value and N replicas; it is legal only on a service that
//     exists and is not removing, and takes effect only when N is not the
//     current count; ok unchanged only when N is the current count (the
//     current revision reported); "not found" only when there is no
//     service or it is removing;
//   - rm is idempotent: ok on an existing or removing service (the state
//     becomes removing), never ok on no service; not found means gone now
//     (purged, or there was none; an existing service may be answered not
//     found when the client's own earlier try committed and the purge
//     followed, rm having no idempotency key), which later reads check;
//   - a policy set takes effect only when the version is the expected
//     one, and then the version is the next; a conflict answer is legal
//     when the version moved, and when it did not, it is an earlier try
//     of the same set that committed (the client retries lost answers);
//   - membership: a remove takes the node out of the voters, a join puts
//     it in; a cluster read returns the voters;
//   - a failed operation has no effect; an unknown one either takes effect
//     like an ok one or never does: its return time is after every other
//     operation (see Recorder), so porcupine may place it anywhere after
//     its call, including after the end of the history, which is "never";
//     once ResolveUnknownWrites found a write in the final state at
//     revision r, it must become exactly revision r;
//   - reads return the state (a removing service's desired count is 0:
//     its replicas are going away); a history read returns every revision
//     of the current life (none left over from a purged one, none
//     missing), each with its value and count.
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
			switch {
			case s.Members != "":
				return "voters " + s.Members
			case s.Values == "" && s.Revision > 0:
				return fmt.Sprintf("policy v%d = %d", s.Revision, s.Value)
			case s.Values == "":
				return "none"
			case s.Removing:
				return fmt.Sprintf("removing [%s] (value:replicas)", s.Values)
			}
			return fmt.Sprintf("[%s] (value:replicas)", s.Values)
		},
	}
}

func step(s ServiceState, in Input, out Output) (bool, interface{}) {
	switch in.Kind {
	case PolicySet, PolicyRead:
		return stepPolicy(s, in, out)
	case MemberRemove, MemberJoin, ClusterRead:
		return stepCluster(s, in, out)
	case HistoryRead:
		switch {
		case out.Outcome == NotFound:
			if s.Removing {
				return true, ServiceState{}
			}
			return s.Values == "", s
		case out.Outcome != Ok:
			return false, s
		}
		return out.Values == s.Values, s
	case Read:
		switch {
		case out.Outcome == NotFound || (out.Outcome == Ok && out.Revision == 0):
			if s.Removing {
				return true, ServiceState{} // purged
			}
			return s.Values == "", s
		case out.Outcome != Ok:
			return false, s
		}
		replicas := s.Replicas
		if s.Removing {
			replicas = 0 // status shows no desired replicas while removing
		}
		return s.Values != "" && out.Revision == s.Revision && out.Value == s.Value && out.Replicas == replicas && out.Removing == s.Removing, s
	case Write:
		written := rev{in.Value, in.Replicas}
		next := s.with(written)
		if s.Removing {
			next = ServiceState{}.with(written) // the purge came first
		}
		switch out.Outcome {
		case Ok:
			if out.Unchanged {
				return !s.Removing && s.Values != "" && s.Revision == out.Revision && s.Value == in.Value && s.Replicas == in.Replicas, s
			}
			return out.Revision == next.Revision, next
		case Unknown:
			// Revision is known only once ResolveUnknownWrites found the
			// write in the final state.
			return out.Revision == 0 || out.Revision == next.Revision, next
		default:
			return true, s
		}
	case Rollback:
		vals := s.revisions()
		legal := !s.Removing && in.To >= 1 && in.To < len(vals)
		switch out.Outcome {
		case Ok:
			if !legal {
				return false, s
			}
			next := s.with(vals[in.To-1])
			return out.Revision == next.Revision, next
		case Unknown:
			if !legal {
				return out.Revision == 0, s // it can only have been refused
			}
			next := s.with(vals[in.To-1])
			return out.Revision == 0 || out.Revision == next.Revision, next
		case NoTarget:
			return !s.Removing && len(vals) > 0 && !legal, s
		case NotFound:
			return s.Removing || len(vals) == 0, s
		default:
			return true, s
		}
	case Scale:
		return stepScale(s, in, out)
	case Remove:
		switch out.Outcome {
		case Ok:
			if s.Values == "" {
				return false, s
			}
			s.Removing = true
			return true, s
		case Unknown:
			if s.Values != "" {
				s.Removing = true
			}
			return true, s
		case NotFound:
			// rm carries no idempotency key: a retry after a try that
			// committed, and the purge that followed, answers not found.
			// So not found says only "gone now": later reads check it.
			return true, ServiceState{}
		default:
			return true, s
		}
	}
	return false, s
}

// stepScale: a scale is legal on a live service; it makes a revision only
// when the count changes, carrying the current value.
func stepScale(s ServiceState, in Input, out Output) (bool, interface{}) {
	live := !s.Removing && s.Values != ""
	changes := live && s.Replicas != in.Replicas
	next := s
	if changes {
		next = s.with(rev{s.Value, in.Replicas})
	}
	switch out.Outcome {
	case Ok:
		if out.Unchanged {
			return live && !changes && out.Revision == s.Revision, s
		}
		return changes && out.Revision == next.Revision, next
	case Unknown:
		// Taking effect (porcupine also tries "never", after the end) is
		// the next revision, or nothing when it cannot change anything.
		return out.Revision == 0 || (changes && out.Revision == next.Revision), next
	case NotFound:
		return !live, s
	case Failed:
		return true, s
	}
	return false, s
}

// stepPolicy: Revision is the policy's version, Value its value (0 and 0:
// the default policy, never set).
func stepPolicy(s ServiceState, in Input, out Output) (bool, interface{}) {
	if in.Kind == PolicyRead {
		return out.Outcome == Ok && out.Revision == s.Revision && out.Value == s.Value, s
	}
	next := ServiceState{Revision: s.Revision + 1, Value: in.Value}
	matches := s.Revision == in.Expect
	switch out.Outcome {
	case Ok:
		return matches && out.Revision == next.Revision, next
	case Conflict, Unknown:
		if matches {
			return true, next
		}
		return true, s
	default:
		return true, s
	}
}

func stepCluster(s ServiceState, in Input, out Output) (bool, interface{}) {
	if s.Members == "" {
		s.Members = InitialMembers
	}
	members := strings.Split(s.Members, ",")
	switch in.Kind {
	case ClusterRead:
		return out.Outcome == Ok && out.Members == s.Members, s
	case MemberRemove:
		if out.Outcome != Ok && out.Outcome != Unknown {
			return true, s
		}
		members = slices.DeleteFunc(members, func(m string) bool { return m == in.Node })
	case MemberJoin:
		if out.Outcome != Ok && out.Outcome != Unknown {
			return true, s
		}
		if !slices.Contains(members, in.Node) {
			members = append(members, in.Node)
		}
	}
	sort.Strings(members)
	s.Members = strings.Join(members, ",")
	return true, s
}

// DescribeOperation renders an operation for the visualization and for
// failure messages.
func DescribeOperation(in Input, out Output) string {
	switch in.Kind {
	case Read:
		switch {
		case out.Outcome != Ok:
			return fmt.Sprintf("%s read -> %s", in.Service, out.Outcome)
		case out.Removing:
			return fmt.Sprintf("%s read -> removing, rev %d = %d x%d", in.Service, out.Revision, out.Value, out.Replicas)
		}
		return fmt.Sprintf("%s read -> rev %d = %d x%d", in.Service, out.Revision, out.Value, out.Replicas)
	case Scale:
		switch {
		case out.Outcome != Ok:
			return fmt.Sprintf("%s scale %d -> %s", in.Service, in.Replicas, out.Outcome)
		case out.Unchanged:
			return fmt.Sprintf("%s scale %d -> unchanged rev %d", in.Service, in.Replicas, out.Revision)
		}
		return fmt.Sprintf("%s scale %d -> rev %d", in.Service, in.Replicas, out.Revision)
	case Rollback:
		if out.Outcome == Ok {
			return fmt.Sprintf("%s rollback --to %d -> rev %d", in.Service, in.To, out.Revision)
		}
		return fmt.Sprintf("%s rollback --to %d -> %s", in.Service, in.To, out.Outcome)
	case Remove:
		return fmt.Sprintf("%s rm -> %s", in.Service, out.Outcome)
	case PolicySet:
		if out.Outcome == Ok {
			return fmt.Sprintf("policy set %d (expect v%d) -> v%d", in.Value, in.Expect, out.Revision)
		}
		return fmt.Sprintf("policy set %d (expect v%d) -> %s", in.Value, in.Expect, out.Outcome)
	case PolicyRead:
		return fmt.Sprintf("policy read -> v%d = %d", out.Revision, out.Value)
	case MemberRemove, MemberJoin:
		return fmt.Sprintf("%s %s -> %s", in.Kind, in.Node, out.Outcome)
	case ClusterRead:
		return fmt.Sprintf("cluster read -> %s", out.Members)
	case HistoryRead:
		if out.Outcome != Ok {
			return fmt.Sprintf("%s history -> %s", in.Service, out.Outcome)
		}
		return fmt.Sprintf("%s history -> [%s]", in.Service, out.Values)
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
