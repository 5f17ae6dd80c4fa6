package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/internal/wire"
)

// SpecYAML is the spec a write of value applies: no replicas (control
// plane only: nothing to run, no agent needed), the value in the image
// tag, where status reads find it again, and in env X.
func SpecYAML(service, image string, value int) []byte {
	return fmt.Appendf(nil, "service: %s\nimage: %s\nreplicas: 0\nenv:\n  X: \"%d\"\n", service, image, value)
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

// Apply writes value to service through c, waiting at most timeout, and
// records the operation as client's.
func Apply(ctx context.Context, rec *Recorder, client int, c *wire.Client, service, image string, value int, timeout time.Duration) Output {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := rec.Now()
	res, err := c.Apply(ctx, SpecYAML(service, image, value))
	out := WriteOutcome(res, err)
	rec.Record(client, Input{Kind: Write, Service: service, Value: value}, call, out)
	return out
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
		out = Output{Outcome: Ok}
	case err != nil:
		return Output{}, fmt.Errorf("read %s: %w", service, err)
	default:
		v, verr := ValueOfImage(st.Image)
		if verr != nil {
			v = -1
		}
		out = Output{Outcome: Ok, Revision: st.Revision, Value: v}
	}
	rec.Record(client, Input{Kind: Read, Service: service}, call, out)
	return out, nil
}

// Workload is concurrent clients writing and reading services: each
// operation picks a service at random, then a write (of a value unique in
// the run) or a read, with even odds.
type Workload struct {
	// Clients: one worker per client; give each its servers in a
	// different order so that every server is somebody's first.
	Clients  []*wire.Client
	Services []string
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
	// sharing a counter.
	next := id + 1
	for ctx.Err() == nil {
		svc := w.Services[rng.IntN(len(w.Services))]
		if rng.IntN(2) == 0 {
			Apply(opCtx, w.Recorder, id, c, svc, w.Image(next), next, w.OpTimeout)
			next += len(w.Clients)
		} else {
			_, _ = ReadStatus(opCtx, w.Recorder, id, c, svc, w.OpTimeout)
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
