package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// SpecYAML is the spec a write of value applies: no replicas (control
// plane only: nothing to run, no agent needed), the value in the image
// tag, where status reads find it again, and in env X. A scale keeps the
// rest of the spec and asks for replicas that no host will run (the
// harness has no agent), so their rollout waits until the next revision;
// failure_action: pause keeps its progress deadline (which a forward
// clock step passes at once) from writing an automatic rollback the model
// knows nothing of: a paused revision is superseded like a waiting one.
func SpecYAML(service, image string, value int) []byte {
	return fmt.Appendf(nil, "service: %s\nimage: %s\nreplicas: 0\nupdate:\n  failure_action: pause\nenv:\n  X: \"%d\"\n", service, image, value)
}

// WriteOutcome classifies an apply's answer. Only refusals that happen
// before a command reaches the raft log, or that the state machine
// rejected, are Failed: a conflict (the state machine's check that the
// current revision did not move), an invalid spec, an image that does not
// resolve. A retried write carries the same idempotency key, so a retry
// after its first try committed answers ok, never conflict. Anything else
// (a timeout, no leader until the deadline, a reset connection, a 5xx) may
// have been committed: Unknown.
func WriteOutcome(out wire.ApplyOutcome, err error) Output {
	switch {
	case err == nil:
		return Output{Outcome: Ok, Revision: out.Revision, Unchanged: out.Unchanged}
	case errors.Is(err, controller.ErrConflict), errors.Is(err, controller.ErrInvalidSpec), errors.Is(err, controller.ErrImageUnresolvable):
		return Output{Outcome: Failed}
	default:
		return Output{Outcome: Unknown}
	}
}

// recorded runs one operation, in, through call within timeout, and
// records it as client's with the outcome call gives.
func recorded(ctx context.Context, rec *Recorder, client int, in Input, timeout time.Duration, call func(context.Context) Output) Output {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := rec.Now()
	out := call(ctx)
	rec.Record(client, in, start, out)
	return out
}

// Apply writes value to service through c, waiting at most timeout, and
// records the operation as client's.
func Apply(ctx context.Context, rec *Recorder, client int, c *wire.Client, service, image string, value int, timeout time.Duration) Output {
	return recorded(ctx, rec, client, Input{Kind: Write, Service: service, Value: value}, timeout, func(ctx context.Context) Output {
		return WriteOutcome(c.Apply(ctx, SpecYAML(service, image, value)))
	})
}

// ReadStatus reads service's current revision through c, waiting at most
// timeout, and records the read when the cluster answered. A service that
// does not exist reads as revision 0; a current image that is not a
// workload image reads as value -1, which no write has, so the checker
// reports it. A read that got no answer is not recorded: it cannot have
// changed anything.
func ReadStatus(ctx context.Context, rec *Recorder, client int, c *wire.Client, service string, timeout time.Duration) (Output, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := rec.Now()
	st, err := c.Status(ctx, service, 0, 0)
	var out Output
	switch {
	case errors.Is(err, controller.ErrNotFound):
		out = Output{Outcome: NotFound}
	case err != nil:
		return Output{}, fmt.Errorf("read %s: %w", service, err)
	default:
		v, verr := ValueOfImage(st.Image)
		if verr != nil {
			v = -1
		}
		out = Output{Outcome: Ok, Revision: st.Revision, Value: v, Replicas: st.Replicas.Desired, Removing: st.State == state.ServiceRemoving}
	}
	rec.Record(client, Input{Kind: Read, Service: service}, call, out)
	return out, nil
}

// RollbackOutcome classifies a rollback's answer: the refusals the
// model predicts (no target, not found), a conflict (no effect), else
// unknown. A retried rollback carries the same idempotency key.
func RollbackOutcome(out wire.ApplyOutcome, err error) Output {
	switch {
	case err == nil:
		return Output{Outcome: Ok, Revision: out.Revision}
	case errors.Is(err, controller.ErrNoRollbackTarget):
		return Output{Outcome: NoTarget}
	case errors.Is(err, controller.ErrNotFound):
		return Output{Outcome: NotFound}
	case errors.Is(err, controller.ErrConflict):
		return Output{Outcome: Failed}
	default:
		return Output{Outcome: Unknown}
	}
}

// DoRollback asks for a rollback of service to revision to.
func DoRollback(ctx context.Context, rec *Recorder, client int, c *wire.Client, service string, to int, timeout time.Duration) Output {
	return recorded(ctx, rec, client, Input{Kind: Rollback, Service: service, To: to}, timeout, func(ctx context.Context) Output {
		return RollbackOutcome(c.Rollback(ctx, service, to))
	})
}

// ScaleOutcome classifies a scale's answer: not found (the model
// predicts it), a conflict or an invalid count (no effect), else
// unknown. A retried scale carries the same idempotency key.
func ScaleOutcome(out wire.ApplyOutcome, err error) Output {
	switch {
	case err == nil:
		return Output{Outcome: Ok, Revision: out.Revision, Unchanged: out.Unchanged}
	case errors.Is(err, controller.ErrNotFound):
		return Output{Outcome: NotFound}
	case errors.Is(err, controller.ErrConflict), errors.Is(err, controller.ErrInvalidSpec):
		return Output{Outcome: Failed}
	default:
		return Output{Outcome: Unknown}
	}
}

// DoScale runs `scale service replicas`.
func DoScale(ctx context.Context, rec *Recorder, client int, c *wire.Client, service string, replicas int, timeout time.Duration) Output {
	return recorded(ctx, rec, client, Input{Kind: Scale, Service: service, Replicas: replicas}, timeout, func(ctx context.Context) Output {
		return ScaleOutcome(c.Scale(ctx, service, replicas))
	})
}

// RemoveOutcome classifies an rm's answer. rm carries no idempotency key:
// a retry after a try that committed (and a purge) answers not found,
// which the model allows (see step).
func RemoveOutcome(err error) Output {
	switch {
	case err == nil:
		return Output{Outcome: Ok}
	case errors.Is(err, controller.ErrNotFound):
		return Output{Outcome: NotFound}
	default:
		return Output{Outcome: Unknown}
	}
}

// DoRemove runs `rm service`.
func DoRemove(ctx context.Context, rec *Recorder, client int, c *wire.Client, service string, timeout time.Duration) Output {
	return recorded(ctx, rec, client, Input{Kind: Remove, Service: service}, timeout, func(ctx context.Context) Output {
		return RemoveOutcome(c.Remove(ctx, service))
	})
}

// policyPrefix is where a policy carries its value: a volume prefix, which
// no workload spec uses (no volumes), so the policy admits every write.
const policyPrefix = "/srv/deployctl-chaos/"

// PolicyValue is the value a policy carries (0: none, the default).
func PolicyValue(p *policy.Policy) int {
	for _, vp := range p.VolumePrefixes {
		if v, err := strconv.Atoi(strings.TrimPrefix(vp, policyPrefix)); err == nil && strings.HasPrefix(vp, policyPrefix) {
			return v
		}
	}
	return 0
}

// ReadPolicy reads the policy and records the read when answered.
func ReadPolicy(ctx context.Context, rec *Recorder, client int, c *wire.Client, timeout time.Duration) (*policy.Policy, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := rec.Now()
	p, err := c.Policy(ctx)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	rec.Record(client, Input{Kind: PolicyRead, Service: PolicyKey}, call, Output{Outcome: Ok, Revision: p.Version, Value: PolicyValue(p)})
	return p, nil
}

// SetPolicy stores base carrying value, expecting base.Version.
func SetPolicy(ctx context.Context, rec *Recorder, client int, c *wire.Client, base *policy.Policy, value int, timeout time.Duration) Output {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p := base.Clone()
	p.VolumePrefixes = []string{fmt.Sprintf("%s%d", policyPrefix, value)}
	call := rec.Now()
	v, err := c.SetPolicy(ctx, p)
	var out Output
	switch {
	case err == nil:
		out = Output{Outcome: Ok, Revision: v}
	case errors.Is(err, controller.ErrConflict):
		out = Output{Outcome: Conflict}
	case errors.Is(err, controller.ErrInvalidPolicy):
		out = Output{Outcome: Failed}
	default:
		out = Output{Outcome: Unknown}
	}
	rec.Record(client, Input{Kind: PolicySet, Service: PolicyKey, Value: value, Expect: base.Version}, call, out)
	return out
}

// ReadCluster reads the voters and records the read when answered.
func ReadCluster(ctx context.Context, rec *Recorder, client int, c *wire.Client, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := rec.Now()
	st, err := c.Cluster(ctx)
	if err != nil {
		return "", fmt.Errorf("read cluster: %w", err)
	}
	var ids []string
	for _, n := range st.Nodes {
		if n.Voter {
			ids = append(ids, n.ID)
		}
	}
	sort.Strings(ids)
	m := strings.Join(ids, ",")
	rec.Record(client, Input{Kind: ClusterRead, Service: ClusterKey}, call, Output{Outcome: Ok, Members: m})
	return m, nil
}

// Workload is concurrent clients writing and reading services: each
// operation picks a service at random, then a write (of a value unique in
// the run) or a read, with even odds.
type Workload struct {
	// Clients: one worker per client; give each its servers in a
	// different order so that every server is somebody's first.
	Clients  []*wire.Client
	Services []string
	// Removable services take writes, reads and rm (no rollbacks: their
	// history restarts at each purge).
	Removable []string
	// Mix: when set, the workload also scales, rolls back, removes, sets
	// and reads the policy and reads the cluster's voters (DESIGN.md);
	// else only writes and reads, half each.
	Mix bool
	// Image is the image reference that carries a value (TagRegistry.Image).
	Image func(value int) string
	// OpTimeout bounds each operation; past it a write is unknown.
	OpTimeout time.Duration
	// Pause is the mean think time between a worker's operations: it
	// keeps the load (and the history to check) modest on small machines.
	Pause    time.Duration
	Seed     uint64
	Recorder *Recorder
}

// Run runs the workers until ctx ends. An operation under way then is
// finished (within OpTimeout), not abandoned, so that fewer writes end
// unknown.
func (w Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, c := range w.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.worker(ctx, i, c)
		}()
	}
	wg.Wait()
}

func (w Workload) worker(ctx context.Context, id int, c *wire.Client) {
	rng := rand.New(rand.NewPCG(w.Seed, uint64(id)))
	opCtx := context.WithoutCancel(ctx)
	// Values id+1, id+1+n, id+1+2n, ...: unique across workers without
	// sharing a counter (writes and policy sets draw from it).
	next := id + 1
	take := func() int { v := next; next += len(w.Clients); return v }
	seen := map[string]int{} // the latest revision this worker saw, per service
	all := append(append([]string(nil), w.Services...), w.Removable...)
	for ctx.Err() == nil {
		svc := all[rng.IntN(len(all))]
		roll := rng.IntN(100)
		if !w.Mix {
			roll = rng.IntN(2) * 50 // writes and reads, half each
		}
		switch {
		case roll < 34:
			v := take()
			if out := Apply(opCtx, w.Recorder, id, c, svc, w.Image(v), v, w.OpTimeout); out.Outcome == Ok {
				seen[svc] = out.Revision
			}
		case roll < 40:
			// 0 to 3: often the current count (unchanged), often not.
			if out := DoScale(opCtx, w.Recorder, id, c, svc, rng.IntN(4), w.OpTimeout); out.Outcome == Ok {
				seen[svc] = out.Revision
			}
		case roll < 70:
			if out, err := ReadStatus(opCtx, w.Recorder, id, c, svc, w.OpTimeout); err == nil {
				seen[svc] = out.Revision
			}
		case roll < 80:
			s := w.Services[rng.IntN(len(w.Services))]
			// Mostly an earlier revision; sometimes the current one or
			// one beyond it (no target).
			to := 1 + rng.IntN(seen[s]+1)
			if out := DoRollback(opCtx, w.Recorder, id, c, s, to, w.OpTimeout); out.Outcome == Ok {
				seen[s] = out.Revision
			}
		case roll < 84:
			if len(w.Removable) > 0 {
				DoRemove(opCtx, w.Recorder, id, c, w.Removable[rng.IntN(len(w.Removable))], w.OpTimeout)
			}
		case roll < 92:
			if p, err := ReadPolicy(opCtx, w.Recorder, id, c, w.OpTimeout); err == nil {
				SetPolicy(opCtx, w.Recorder, id, c, p, take(), w.OpTimeout)
			}
		default:
			_, _ = ReadCluster(opCtx, w.Recorder, id, c, w.OpTimeout)
		}
		if w.Pause > 0 {
			pause := time.Duration(rng.Int64N(int64(2 * w.Pause)))
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}
}
