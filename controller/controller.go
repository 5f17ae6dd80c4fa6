// Package controller is the control plane of deployctl: the HTTP API, image
// resolution, placement, and the leader's loop that turns rollout decisions
// (package controller/rollout) into raft writes.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/controller/signature"
	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Sentinel errors of the controller. They are the API's (internal/wire):
// the wire table maps each to its code and status on the server and back
// on the client.
var (
	ErrInvalidSpec      = wire.ErrInvalidSpec
	ErrNotFound         = wire.ErrNotFound
	ErrConflict         = wire.ErrConflict
	ErrNotLeader        = wire.ErrNotLeader
	ErrNoLeader         = wire.ErrNoLeader
	ErrNotReady         = wire.ErrNotReady
	ErrNoRollbackTarget = wire.ErrNoRollbackTarget
	ErrNotClustered     = wire.ErrNotClustered
)

// Raft is what the controller needs of the raft node (raftstore.Node).
type Raft interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
	IsLeader() bool
	Leader() (id, addr string)
	Barrier(ctx context.Context) error
	VerifyLeader(ctx context.Context) error
	ID() string
}

// Resolver pins an image reference to a digest.
type Resolver interface {
	Resolve(ctx context.Context, image string) (PinnedImage, error)
}

// Config wires a Controller.
type Config struct {
	Raft     Raft
	Store    *state.Store
	Resolver Resolver
	Logger   hclog.Logger
	// Now and NewID are the leader's clock and ID source; every time and ID
	// that reaches raft comes from them. Tests may replace them.
	Now   func() time.Time
	NewID func() string
	// Tick is how often the leader re-evaluates services when nothing
	// changed. Timed changes (monitor windows, delays, deadlines) wake the
	// loop on their own, so the tick is only a safety net. Default 1s.
	Tick time.Duration
	// HostTTL: a host whose agent has not reported for this long is marked
	// down. HostDownGrace: after this long down, its replicas are placed
	// elsewhere. Defaults 10s and 30s.
	HostTTL, HostDownGrace time.Duration
	// RegistryOptions reach registries for signature checks (credentials,
	// transport); nil means anonymous. New puts RegistryAccess{}'s
	// transport first, so TLS is required of non-loopback registries and
	// error bodies are scrubbed unless a later option replaces it (give
	// RegistryAccess.Transport to remote.WithTransport).
	RegistryOptions []remote.Option
	// RollbackCheckTimeout bounds the registry lookups that admit an
	// automatic rollback's target. Default DefaultRollbackCheckTimeout.
	RollbackCheckTimeout time.Duration
	// ServeIngress admits specs with `ingress:`. The spec, its conflict
	// checks and the proxy (deployer/proxy) are built, but no agent runs
	// the proxy yet (issue 8): until one does, such a spec is refused with
	// the fix rather than stored and silently not served.
	ServeIngress bool
	// SecretsKey seals and opens secrets (issue 13); nil: secrets cannot
	// be created or delivered by this server. Rand is where data keys and
	// nonces come from (crypto/rand when nil).
	SecretsKey *secretbox.Key
	Rand       io.Reader
	// Autolock: SecretsKey is nil and the server is sealed until the
	// operator gives it the key (Unlock); the key stays in memory only.
	Autolock bool
	// SecretsKeyFile is where SecretsKey came from: a key given after a
	// rotation is written there ("" with Autolock).
	SecretsKeyFile string
	// ClaimKey registers this server with a key id just given by unlock
	// before any secret exists, through the leader (JoinRequest.Unlocking),
	// which refuses a key other servers do not hold. nil: not asked.
	ClaimKey func(ctx context.Context, keyID string) error
	// CompactLog snapshots and drops the raft log it covers (after a key
	// rotation). nil: not done.
	CompactLog func() error
	// Metrics records the API's requests and the rollouts the loop ends
	// (NewMetrics); nil records nothing.
	Metrics *Metrics
}

// Controller applies user intent and drives rollouts while its node leads.
type Controller struct {
	cfg Config
	log hclog.Logger

	mu        sync.Mutex
	heartbeat map[string]time.Time // host -> last report, leader memory only
	// backoff holds the restart back-off of failing slots (leader memory).
	backoff map[slotKey]*slotBackoff
	// unplaced holds, per service, why its steady-state starts found no
	// host on the last pass (leader memory, see noteUnplaced).
	unplaced map[string][]string
	// audits holds each host's latest audit (leader memory, never raft).
	audits map[string]wire.HostAuditRecord
	// traffic sums the proxies' figures per rollout (leader memory, see
	// traffic.go).
	traffic *trafficBook
	// rollbackChecks holds each service's automatic-rollback admission
	// while the loop waits for it (leader memory, see rollback_gate.go).
	rollbackChecks map[string]*rollbackCheck
	// kick wakes the loop when a check ends.
	kick chan struct{}
	// ingress is the cached ingress table agents long-poll (leader memory).
	ingress *ingressFeed
	// claims serialises the ingress conflict check with the write of the
	// revision it admits (storeRevision): two services applied at the same
	// moment cannot both claim one port.
	claims sync.Mutex
	// addresses is the last try to turn service addresses on (leader
	// memory, guarded by mu).
	addresses addressAttempt
	// secretsMu serialises secret creates and key rotations on this
	// leader (secrets.go, secrets_key.go).
	secretsMu sync.Mutex
	// keys is this server's key-encryption key (secrets_key.go).
	keys *keyring
	// leadingSince is when this node last became leader: the heartbeat of
	// a host not heard from in this term counts from then.
	leadingSince time.Time

	// events queues the events no command carries (observe.go).
	events *eventQueue

	// ready is set once this node leads and its FSM has applied every entry
	// committed before (a barrier): until then its state may be a replay in
	// progress, and an agent shown that partial state would remove the
	// containers it does not see.
	ready atomic.Bool
}

// Ready reports whether this node leads with a caught-up state.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Wake makes the loop look at raft's state again at once. The server calls
// it on each change of leadership: an election applies nothing to the
// state store, so without it a new leader would start deciding (and
// taking writes) only at its next tick.
func (c *Controller) Wake() { c.wake() }

// New returns a Controller.
func New(cfg Config) (*Controller, error) {
	if cfg.Raft == nil || cfg.Store == nil || cfg.Resolver == nil {
		return nil, errors.New("controller: Raft, Store and Resolver are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	if cfg.NewID == nil {
		cfg.NewID = wire.NewID
	}
	if cfg.HostTTL <= 0 {
		cfg.HostTTL = DefaultHostTTL
	}
	if cfg.HostDownGrace <= 0 {
		cfg.HostDownGrace = DefaultHostDownGrace
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	cfg.RegistryOptions = append([]remote.Option{remote.WithTransport(RegistryAccess{}.Transport(nil))}, cfg.RegistryOptions...)
	if cfg.RollbackCheckTimeout <= 0 {
		cfg.RollbackCheckTimeout = DefaultRollbackCheckTimeout
	}
	return &Controller{cfg: cfg, log: cfg.Logger.Named("controller"), heartbeat: map[string]time.Time{},
		rollbackChecks: map[string]*rollbackCheck{}, kick: make(chan struct{}, 1), ingress: newIngressFeed(cfg.Store),
		traffic: newTrafficBook(), keys: newKeyring(cfg), events: newEventQueue()}, nil
}

// Store is the state this controller reads.
func (c *Controller) Store() *state.Store { return c.cfg.Store }

// apply proposes one command and translates raft's errors.
func (c *Controller) apply(ctx context.Context, t raftstore.CommandType, cmd any) (any, error) {
	buf, err := raftstore.Encode(t, cmd)
	if err != nil {
		return nil, err
	}
	res, err := c.cfg.Raft.Apply(ctx, buf)
	return res, translate(err)
}

// applyGated is apply for a command a user waits on whose type is behind
// the version gate: a server that just started registers its FSM version
// within a second or so, so the command waits for it (bounded by
// registrationWait) rather than refusing the user meanwhile. The loop's
// own commands use apply: it must not stall.
func (c *Controller) applyGated(ctx context.Context, t raftstore.CommandType, cmd any) (any, error) {
	wait := time.NewTimer(registrationWait)
	defer wait.Stop()
	for {
		res, err := c.apply(ctx, t, cmd)
		if !errors.Is(err, raftstore.ErrNotRegistered) {
			return res, err
		}
		retry := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			retry.Stop()
			return res, err
		case <-wait.C:
			retry.Stop()
			return res, err
		case <-retry.C:
		}
	}
}

// registrationWait bounds how long a gated command waits for servers
// that have not registered their version yet.
const registrationWait = 10 * time.Second

// translate maps store and raft sentinels onto the controller's own.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftstore.ErrNotLeader):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raftstore.ErrNoLeader):
		return fmt.Errorf("%w: %v", ErrNoLeader, err)
	case errors.Is(err, state.ErrNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, state.ErrConflict), errors.Is(err, state.ErrRemoving):
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

// Apply stores a new revision of a service and starts its rollout. The
// image is resolved first; if that fails nothing is stored. A spec equal
// to the current revision's (same digest) makes no new revision.
func (c *Controller) Apply(ctx context.Context, spec *specs.Spec, idempotencyKey string) (wire.ApplyOutcome, error) {
	return c.ApplyWith(ctx, ApplyRequest{Spec: spec, IdempotencyKey: idempotencyKey})
}

// ApplyRequest is a spec with what came along with it.
type ApplyRequest struct {
	Spec           *specs.Spec
	IdempotencyKey string
	// ScanReport is a Trivy JSON report of the image, for the scan gate.
	ScanReport []byte
	// Force stores a new revision even when the spec (and the digest its
	// tag resolves to) is the current revision's, when that revision failed
	// or paused: `apply --force` retries it (see retryable).
	Force bool
	// IfRevision, when set, stores the revision only while the service's
	// current revision is *IfRevision (0: it must not exist); otherwise
	// ErrRevisionConflict and nothing is stored. The FSM checks it again
	// in the write (ExpectCurrent), so an apply that lands in between
	// cannot slip through.
	IfRevision *int
}

// ErrRevisionConflict: an apply's IfRevision is not the current revision.
var ErrRevisionConflict = wire.ErrRevisionConflict

// preparedApply is an apply checked, resolved and admitted, not yet
// written: what ApplyWith stores and Diff shows.
type preparedApply struct {
	spec     *specs.Spec
	view     *state.Tables
	svc      state.Service
	exists   bool
	pin      PinnedImage
	signed   signature.Result
	pins     []state.SecretPin
	fp       string
	warnings []string
	scanW    []string
	policyW  []string
	// cur is the current revision and unchanged whether the spec (and
	// pin) equal it, when the service exists.
	cur       state.Revision
	unchanged bool
}

// prepareApply runs every check of an apply and resolves its image,
// writing nothing.
func (c *Controller) prepareApply(ctx context.Context, req ApplyRequest) (preparedApply, error) {
	spec := req.Spec.Clone()
	spec.ApplyDefaults()
	if err := spec.Validate(); err != nil {
		return preparedApply{}, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	if err := checkProfile(spec); err != nil {
		return preparedApply{}, err
	}
	view := c.cfg.Store.View()
	svc, exists := view.Service(spec.Service)
	if exists && svc.State == state.ServiceRemoving {
		return preparedApply{}, fmt.Errorf("%w: service %s is being removed; wait for `deployctl rm` to finish", ErrConflict, spec.Service)
	}
	if len(spec.Ingress) > 0 && !c.cfg.ServeIngress {
		return preparedApply{}, fmt.Errorf("%w: ingress: this version does not serve ingress yet (the hosts' proxy is not running); publish the service with ports: for now", ErrInvalidSpec)
	}
	if err := ingressConflicts(view, spec); err != nil {
		return preparedApply{}, err
	}
	connectionWarnings, err := connectionCheck(view, spec)
	if err != nil {
		return preparedApply{}, err
	}
	pol, err := c.admit(spec)
	if err != nil {
		return preparedApply{}, err
	}
	secretPins, err := pinSecrets(view, spec)
	if err != nil {
		return preparedApply{}, err
	}
	if secretPins, err = pinIngressTLS(view, spec, secretPins); err != nil {
		return preparedApply{}, err
	}
	tlsWarnings, err := c.checkIngressTLS(view, spec, secretPins)
	if err != nil {
		return preparedApply{}, err
	}
	pin, err := c.cfg.Resolver.Resolve(ctx, spec.Image)
	if err != nil {
		return preparedApply{}, err
	}
	signed, err := c.verifySignature(ctx, pol, pin)
	if err != nil {
		return preparedApply{}, err
	}
	scanWarnings, err := c.gateScan(ctx, pol, pin, req.ScanReport)
	if err != nil {
		return preparedApply{}, err
	}
	policyWarnings := hardeningWarnings(pol, spec)
	p := preparedApply{spec: spec, view: view, svc: svc, exists: exists, pin: pin, signed: signed, pins: secretPins,
		fp: FingerprintSecrets(*spec, pin.Ref, containerPins(spec, secretPins)), scanW: scanWarnings, policyW: policyWarnings,
		warnings: joinWarnings(policyWarnings, prefixed("scan: ", scanWarnings), connectionWarnings, tlsWarnings)}
	if exists {
		if cur, ok := view.Revision(svc.Name, svc.Current); ok {
			p.cur = cur
			p.unchanged = cur.Fingerprint == p.fp && sameSpec(&cur.Spec, spec) && slices.Equal(cur.Secrets, secretPins)
		}
	}
	return p, nil
}

// ApplyWith is Apply with a scan report and a revision guard.
func (c *Controller) ApplyWith(ctx context.Context, req ApplyRequest) (wire.ApplyOutcome, error) {
	if !c.Ready() {
		return wire.ApplyOutcome{}, c.notLeader()
	}
	view := c.cfg.Store.View()
	if out, ok := repeatedRequest(view, req.Spec.Service, req.IdempotencyKey); ok {
		return out, nil
	}
	// Early, before any registry is asked; again below on the view the
	// write is decided on.
	if err := checkIfRevision(view, req.Spec.Service, req.IfRevision); err != nil {
		return wire.ApplyOutcome{}, err
	}
	p, err := c.prepareApply(ctx, req)
	if err != nil {
		return wire.ApplyOutcome{}, err
	}
	if err := checkIfRevision(p.view, p.spec.Service, req.IfRevision); err != nil {
		return wire.ApplyOutcome{}, err
	}
	cause := "apply"
	if p.unchanged {
		retry, hint := retryable(p.svc, p.cur, req.Force)
		if !retry {
			return wire.ApplyOutcome{Service: p.svc.Name, Revision: p.cur.Number, Digest: p.cur.Digest, Ref: p.cur.Ref, Unchanged: true,
				Warnings: joinWarnings(p.warnings, hint)}, nil
		}
		cause = fmt.Sprintf("apply --force: retry of revision %d", p.cur.Number)
	}
	cmd := state.ApplyRevisionCmd{
		Now:            c.cfg.Now(),
		IdempotencyKey: req.IdempotencyKey,
		// The revision the checks saw; under IfRevision the one asked for.
		ExpectCurrent: p.svc.Current,
		Revision: state.Revision{
			Service: p.spec.Service, Spec: *p.spec, Digest: p.pin.Digest, Ref: p.pin.Ref, Fingerprint: p.fp, Cause: cause, Secrets: p.pins,
			SignedBy: p.signed.KeyName, SignatureFormat: p.signed.Format, ScanWarnings: p.scanW, PolicyWarnings: p.policyW,
		},
	}
	res, err := c.storeRevision(ctx, cmd)
	if err != nil {
		if req.IfRevision != nil && errors.Is(err, ErrConflict) {
			// Another write landed between the check and this one: the
			// FSM refused ours; say so as the guard's own answer.
			if guard := checkIfRevision(c.cfg.Store.View(), p.spec.Service, req.IfRevision); guard != nil {
				return wire.ApplyOutcome{}, guard
			}
		}
		return wire.ApplyOutcome{}, fmt.Errorf("apply %s: %w", p.spec.Service, err)
	}
	ar := res.(state.ApplyResult)
	c.log.Info("revision stored", "service", p.spec.Service, "revision", ar.Revision, "ref", p.pin.Ref)
	return wire.ApplyOutcome{Service: p.spec.Service, Revision: ar.Revision, Digest: p.pin.Digest, Ref: p.pin.Ref, Warnings: p.warnings}, nil
}

// checkIfRevision is the guard of apply --if-revision: nil when want is
// unset or is the service's current revision (0: no such service).
func checkIfRevision(view *state.Tables, service string, want *int) error {
	if want == nil {
		return nil
	}
	svc, ok := view.Service(service)
	cur := 0
	if ok {
		cur = svc.Current
	}
	if cur == *want {
		return nil
	}
	if cur == 0 {
		return fmt.Errorf("%w: service %s does not exist, not at revision %d (--if-revision); nothing stored", ErrRevisionConflict, service, *want)
	}
	return fmt.Errorf("%w: service %s is at revision %d, not %d (--if-revision); nothing stored: see `deployctl history %s` and `deployctl diff`",
		ErrRevisionConflict, service, cur, *want, service)
}

// retryable decides what an apply of the current revision's own spec
// does. A revision that failed or paused is retried as a new revision
// (same spec, same pinned digest, rolled out like any release) when the
// apply says --force; without it nothing is stored, and the hint says that
// --force exists, since applying the same spec again is what an operator
// tries first (issue 17: a failed first release had no way back but rm).
// A revision that runs or rolls out has nothing to retry: --force changes
// nothing then, and says so.
func retryable(svc state.Service, cur state.Revision, force bool) (retry bool, hint []string) {
	stuck := svc.State == state.ServiceFailed || svc.State == state.ServicePaused ||
		cur.State == state.RevisionFailed || cur.State == state.RevisionPaused
	switch {
	case stuck && force:
		return true, nil
	case stuck:
		return false, []string{fmt.Sprintf("service %s is %s at revision %d and this spec is that revision's, so nothing was stored; "+
			"`deployctl apply --force` retries revision %d as a new revision (same spec and digest), "+
			"after you fixed what made it fail (see `deployctl status %s`)", svc.Name, svc.State, cur.Number, cur.Number, svc.Name)}
	case force:
		return false, []string{fmt.Sprintf("--force: revision %d of %s is %s, nothing to retry; nothing was stored", cur.Number, svc.Name, cur.State)}
	}
	return false, nil
}

// repeatedRequest is the first outcome of a write whose idempotency key
// the store remembers: a retry after a lost answer gets it, and nothing
// is written again.
func repeatedRequest(view *state.Tables, service, key string) (wire.ApplyOutcome, bool) {
	prev, ok := view.Request(key)
	if !ok {
		return wire.ApplyOutcome{}, false
	}
	rev, _ := view.Revision(service, prev.Revision)
	return wire.ApplyOutcome{Service: service, Revision: prev.Revision, Digest: rev.Digest, Ref: rev.Ref}, true
}

// liveService is the service a rollback or scale changes: one that exists
// and is not being removed (a removing one is as good as gone).
func liveService(view *state.Tables, name string) (state.Service, error) {
	svc, ok := view.Service(name)
	if !ok || svc.State == state.ServiceRemoving {
		return state.Service{}, fmt.Errorf("%w: service %q", ErrNotFound, name)
	}
	return svc, nil
}

func sameSpec(a, b *specs.Spec) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// RollbackRequest asks for a rollback.
type RollbackRequest struct {
	Service string
	// To is the revision to restore; 0 means the latest earlier revision
	// that succeeded with a different digest than the current one.
	To             int
	IdempotencyKey string
}

// Rollback stores a new revision that restores an earlier one and starts
// its rollout. The rolled-back revision is marked rolled_back.
func (c *Controller) Rollback(ctx context.Context, req RollbackRequest) (wire.ApplyOutcome, error) {
	if !c.Ready() {
		return wire.ApplyOutcome{}, c.notLeader()
	}
	view := c.cfg.Store.View()
	if out, ok := repeatedRequest(view, req.Service, req.IdempotencyKey); ok {
		return out, nil
	}
	svc, err := liveService(view, req.Service)
	if err != nil {
		return wire.ApplyOutcome{}, err
	}
	cur, _ := view.Revision(svc.Name, svc.Current)
	target, err := rollbackTarget(view.Revisions(svc.Name), cur, req.To)
	if err != nil {
		return wire.ApplyOutcome{}, err
	}
	// The target was admitted under the policy of its day: it must pass
	// today's, or a tightened policy could be undone by `rollback --to`.
	adm, err := c.readmit(ctx, target)
	if err != nil {
		return wire.ApplyOutcome{}, err
	}
	cause := fmt.Sprintf("rollback of %d to %d", cur.Number, target.Number)
	return c.storeRollback(ctx, svc, cur, target, adm, cause, "", req.IdempotencyKey)
}

// rollbackTarget picks the revision a rollback restores.
func rollbackTarget(history []state.Revision, cur state.Revision, to int) (state.Revision, error) {
	if to != 0 {
		for _, r := range history {
			if r.Number == to {
				if to == cur.Number {
					return state.Revision{}, fmt.Errorf("%w: revision %d is the current one", ErrNoRollbackTarget, to)
				}
				return r, nil
			}
		}
		return state.Revision{}, fmt.Errorf("%w: revision %d does not exist; see `deployctl history %s`", ErrNoRollbackTarget, to, cur.Service)
	}
	for i := len(history) - 1; i >= 0; i-- {
		r := history[i]
		if r.Number < cur.Number && r.State == state.RevisionSucceeded && r.Digest != cur.Digest {
			return r, nil
		}
	}
	return state.Revision{}, fmt.Errorf("%w: no revision before %d succeeded with a different digest; pick one with --to N (see `deployctl history %s`), "+
		"or retry revision %d as it is with `deployctl apply --force` on its spec",
		ErrNoRollbackTarget, cur.Number, cur.Service, cur.Number)
}

// storeRollback stores the revision restoring target, which readmit
// admitted (adm): the signature and scan verdicts recorded are today's.
func (c *Controller) storeRollback(ctx context.Context, svc state.Service, cur, target state.Revision, adm admitted, cause, reason, key string) (wire.ApplyOutcome, error) {
	cmd := state.ApplyRevisionCmd{
		Now:             c.cfg.Now(),
		IdempotencyKey:  key,
		ExpectCurrent:   svc.Current,
		PreviousOutcome: state.RevisionRolledBack,
		PreviousMessage: reason,
		Revision: state.Revision{
			Service: svc.Name, Spec: target.Spec, Digest: target.Digest, Ref: target.Ref, Fingerprint: target.Fingerprint,
			Cause: cause, RollbackOf: cur.Number, RollbackTo: target.Number, Secrets: target.Secrets,
			SignedBy: adm.signed.KeyName, SignatureFormat: adm.signed.Format, ScanWarnings: adm.scanWarnings,
		},
	}
	res, err := c.storeRevision(ctx, cmd)
	if err != nil {
		return wire.ApplyOutcome{}, fmt.Errorf("rollback %s: %w", svc.Name, err)
	}
	ar := res.(state.ApplyResult)
	c.log.Info("rollback stored", "service", svc.Name, "revision", ar.Revision, "cause", cause)
	return wire.ApplyOutcome{Service: svc.Name, Revision: ar.Revision, Digest: target.Digest, Ref: target.Ref, Warnings: adm.connectionWarnings}, nil
}

// storeRevision writes a revision (an apply or a rollback) once its
// ingress claims collide with no other service's, and its connections
// reach ports their targets expose, in the state the write lands on. The
// checks before the registry lookups give the early answer; these, under
// claims and just before the write, close the window in which another
// service's apply could take the same port (or stop exposing one)
// meanwhile. A new leader serves only after its FSM applied every entry
// of earlier terms, so the view checked here is the one the write follows.
func (c *Controller) storeRevision(ctx context.Context, cmd state.ApplyRevisionCmd) (any, error) {
	c.claims.Lock()
	defer c.claims.Unlock()
	view := c.cfg.Store.View()
	if err := ingressConflicts(view, &cmd.Revision.Spec); err != nil {
		return nil, err
	}
	if _, err := connectionCheck(view, &cmd.Revision.Spec); err != nil {
		return nil, err
	}
	return c.apply(ctx, raftstore.CmdApplyRevision, cmd)
}

// Remove starts removing a service: its replicas stop, then it is purged.
func (c *Controller) Remove(ctx context.Context, name string) error {
	if !c.Ready() {
		return c.notLeader()
	}
	svc, ok := c.cfg.Store.View().Service(name)
	if !ok {
		return fmt.Errorf("%w: service %q", ErrNotFound, name)
	}
	if svc.State == state.ServiceRemoving {
		return nil // already on its way: removing twice is not an error
	}
	_, err := c.apply(ctx, raftstore.CmdDeleteService, state.DeleteServiceCmd{Now: c.cfg.Now(), Service: name})
	return err
}

// Report takes an agent's batch. Only changes reach raft: a heartbeat that
// changes nothing is kept in the leader's memory, so idle hosts cost no
// raft writes.
func (c *Controller) Report(ctx context.Context, r state.HostReport) error {
	if !c.Ready() {
		return c.notLeader()
	}
	if r.Host == "" {
		return fmt.Errorf("%w: report without a host id", ErrInvalidSpec)
	}
	now := c.cfg.Now()
	c.mu.Lock()
	c.heartbeat[r.Host] = now
	c.mu.Unlock()

	view := c.waitApplied(ctx, r.AssignmentIndex)
	changed := r
	changed.Reports = nil
	foreign, foreignID := 0, ""
	for _, rep := range r.Reports {
		cur, ok := view.Replica(rep.ReplicaID)
		if !ok || cur.Host != r.Host {
			// A host speaks only for the replicas assigned to it: an entry
			// for another host's replica is dropped (it is also what a
			// just-moved replica's old host may still send).
			if ok {
				foreign++
				if foreignID == "" {
					foreignID = rep.ReplicaID
				}
			}
			continue
		}
		if cur.Status.State != rep.State || cur.Status.ContainerID != rep.ContainerID || cur.Status.Message != rep.Message {
			changed.Reports = append(changed.Reports, rep)
		}
	}
	if foreign > 0 {
		c.log.Warn("report entries dropped: their replicas are not assigned to the reporting host",
			"host", r.Host, "dropped", foreign, "first", foreignID)
	}
	h, known := view.Host(r.Host)
	sameEngine := r.Engine == nil || (h.Engine != nil && *h.Engine == *r.Engine)
	sameLabels := r.Labels == nil || maps.Equal(h.Labels, r.Labels)
	if known && h.State == state.HostReady && len(changed.Reports) == 0 && sameLabels && sameEngine && h.ProxyAddr == r.ProxyAddr &&
		slices.Equal(h.ProxyProblems, r.ProxyProblems) {
		return nil
	}
	_, err := c.apply(ctx, raftstore.CmdHostReport, state.HostReportCmd{Now: now, Report: changed})
	return err
}

// waitApplied returns the state once it holds index, or as it is after
// reportIndexWait (a report that waits longer is judged on what is there:
// entries of replicas still unknown are dropped, and the agent's next
// report or resync sends them again).
func (c *Controller) waitApplied(ctx context.Context, index uint64) *state.Tables {
	view, changed := c.cfg.Store.Watch()
	if view.Index() >= index {
		return view
	}
	timer := time.NewTimer(reportIndexWait)
	defer timer.Stop()
	for view.Index() < index {
		select {
		case <-ctx.Done():
			return view
		case <-timer.C:
			return view
		case <-changed:
			view, changed = c.cfg.Store.Watch()
		}
	}
	return view
}

// reportIndexWait bounds how long a report waits for the leader's state
// machine to reach the agent's assignment index.
const reportIndexWait = 2 * time.Second

func (c *Controller) notLeader() error {
	if c.cfg.Raft.IsLeader() {
		return ErrNotReady
	}
	id, addr := c.cfg.Raft.Leader()
	if id == "" {
		return ErrNoLeader
	}
	return fmt.Errorf("%w: the leader is %s (%s)", ErrNotLeader, id, addr)
}
