package controller

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Secrets (issue 13). The leader seals a value under a new data key
// wrapped by its key-encryption key (Config.SecretsKey) before anything
// reaches raft, so the log, snapshots and bolt hold ciphertext only; the
// FSM stores what it is given (no randomness, no key). The value leaves
// the leader only in the answer to GET /v1/agent/secrets, to the agent of
// the host of a replica that uses it.

// ErrNoSecretsKey: this server was started without a key-encryption key.
var ErrNoSecretsKey = wire.ErrSecretsKey

func (c *Controller) random() io.Reader {
	if c.cfg.Rand != nil {
		return c.cfg.Rand
	}
	return rand.Reader
}

// checkSecretName refuses a name no secret can have (400, naming it).
func checkSecretName(name string) error {
	if !specs.IsServiceName(name) {
		return fmt.Errorf("%w: secret name %q: use 1 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (like db-password)", wire.ErrBadRequest, clip(name))
	}
	return nil
}

// CreateSecret stores value as the next version of secret name (creating
// the secret). Versions are immutable. A retry with the same idempotency
// key gets the first outcome.
func (c *Controller) CreateSecret(ctx context.Context, name string, value []byte, idempotencyKey string) (wire.SecretCreated, error) {
	if !c.Ready() {
		return wire.SecretCreated{}, c.notLeader()
	}
	if err := checkSecretName(name); err != nil {
		return wire.SecretCreated{}, err
	}
	if len(value) == 0 {
		return wire.SecretCreated{}, fmt.Errorf("%w: secret %s: the value is empty; send the content of a file (-f FILE) or stdin (-)", wire.ErrBadRequest, name)
	}
	if len(value) > wire.MaxSecretSize {
		return wire.SecretCreated{}, fmt.Errorf("%w: secret %s: %d bytes; a secret holds at most %d bytes (500 KiB)", wire.ErrTooLarge, name, len(value), wire.MaxSecretSize)
	}
	key, err := c.secretsKey()
	if err != nil {
		return wire.SecretCreated{}, err
	}
	if err := sameKeyEverywhere(c.cfg.Store.View(), key.ID()); err != nil {
		return wire.SecretCreated{}, err
	}
	// One create at a time on this leader: the version sealed into the
	// additional data is the one the FSM gives.
	c.secretsMu.Lock()
	defer c.secretsMu.Unlock()
	view := c.cfg.Store.View()
	if prev, ok := view.Request(idempotencyKey); ok {
		return wire.SecretCreated{Name: name, Version: prev.Revision, Size: len(value)}, nil
	}
	version := 1
	if sec, ok := view.Secret(name); ok {
		version = sec.NextVersion
	}
	sealed, err := key.Seal(c.random(), value, state.SecretAAD(name, version))
	if err != nil {
		return wire.SecretCreated{}, fmt.Errorf("seal secret %s: %w", name, err)
	}
	cmd := state.PutSecretCmd{Now: c.cfg.Now(), IdempotencyKey: idempotencyKey, Name: name, Version: version, Size: len(value), Sealed: sealed}
	if _, err := c.applyGated(ctx, raftstore.CmdPutSecret, cmd); err != nil {
		return wire.SecretCreated{}, fmt.Errorf("create secret %s: %w", name, err)
	}
	c.log.Info("secret version stored", "secret", name, "version", version, "size", len(value))
	return wire.SecretCreated{Name: name, Version: version, Size: len(value)}, nil
}

func secretInfo(sec state.Secret) wire.SecretInfo {
	info := wire.SecretInfo{Name: sec.Name, Versions: []wire.SecretVersionInfo{}}
	for _, v := range sec.Versions {
		info.Versions = append(info.Versions, wire.SecretVersionInfo{Version: v.Version, CreatedAt: v.CreatedAt, Size: v.Size, KeyID: v.Sealed.KeyID})
		info.Latest = v.Version
	}
	return info
}

// Secrets lists the secrets that have a version (never a value).
func (c *Controller) Secrets() []wire.SecretInfo {
	out := []wire.SecretInfo{}
	for _, sec := range c.cfg.Store.View().Secrets() {
		if len(sec.Versions) > 0 {
			out = append(out, secretInfo(sec))
		}
	}
	return out
}

// SecretDetail describes one secret: versions and the revisions using
// them (never a value).
func (c *Controller) SecretDetail(name string) (wire.SecretInfo, error) {
	view := c.cfg.Store.View()
	sec, ok := view.Secret(name)
	if !ok || len(sec.Versions) == 0 {
		return wire.SecretInfo{}, fmt.Errorf("%w: secret %q; `deployctl secret ls` lists them", ErrNotFound, name)
	}
	info := secretInfo(sec)
	info.Uses = view.SecretUses(name)
	return info, nil
}

// RemoveSecret removes one version of a secret (version 0: every
// version). A version that a current, running, last-good or succeeded
// revision uses is refused (409) naming them; the FSM checks it again on
// the state the write lands on.
func (c *Controller) RemoveSecret(ctx context.Context, name string, version int) error {
	if !c.Ready() {
		return c.notLeader()
	}
	view := c.cfg.Store.View()
	sec, ok := view.Secret(name)
	if !ok || len(sec.Versions) == 0 {
		return fmt.Errorf("%w: secret %q", ErrNotFound, name)
	}
	if version != 0 {
		if _, ok := sec.Version(version); !ok {
			return fmt.Errorf("%w: secret %s has no version %d; `deployctl secret inspect %s` lists them", ErrNotFound, name, version, name)
		}
	}
	if holders := view.SecretHolders(name, version); len(holders) > 0 {
		return fmt.Errorf("%w: secret %s is used by %s; apply those services without it (or with another version) first, or remove them",
			ErrConflict, name, state.DescribeHolders(holders))
	}
	_, err := c.applyGated(ctx, raftstore.CmdDeleteSecret, state.DeleteSecretCmd{Name: name, Version: version})
	if err != nil {
		return fmt.Errorf("remove secret %s: %w", name, err)
	}
	c.log.Info("secret removed", "secret", name, "version", version)
	return nil
}

// pinSecrets pins the version of every secret a spec names: the entry's
// version, or the latest. A secret (or version) that does not exist is an
// invalid spec naming the entry and the fix; nothing is stored.
func pinSecrets(view *state.Tables, spec *specs.Spec) ([]state.SecretPin, error) {
	var pins []state.SecretPin
	var problems []specs.Problem
	for i, entry := range spec.Secrets {
		field := fmt.Sprintf("secrets[%d]", i)
		sec, ok := view.Secret(entry.Name)
		latest, any := sec.Latest()
		switch {
		case !ok || !any:
			problems = append(problems, specs.Problem{Field: field + ".name", Message: fmt.Sprintf(
				"secret %s does not exist; create it first with `deployctl secret create %s -f FILE`", entry.Name, entry.Name)})
		case entry.Version != 0:
			if _, ok := sec.Version(entry.Version); !ok {
				problems = append(problems, specs.Problem{Field: field + ".version", Message: fmt.Sprintf(
					"secret %s has no version %d (latest: %d); `deployctl secret inspect %s` lists them", entry.Name, entry.Version, latest.Version, entry.Name)})
				continue
			}
			pins = append(pins, state.SecretPin{Name: entry.Name, Version: entry.Version})
		default:
			pins = append(pins, state.SecretPin{Name: entry.Name, Version: latest.Version})
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, &specs.ValidationError{Problems: problems})
	}
	return pins, nil
}

// checkPins refuses a stored revision whose pinned secret versions are
// gone (a rollback to it, a scale of it).
func checkPins(view *state.Tables, pins []state.SecretPin) error {
	for _, p := range pins {
		sec, _ := view.Secret(p.Name)
		if _, ok := sec.Version(p.Version); !ok {
			return fmt.Errorf("%w: it uses secret %s version %d, which was removed", ErrConflict, p.Name, p.Version)
		}
	}
	return nil
}

// outdatedSecrets names the secrets of a revision whose entry takes the
// latest version (no version: in the spec) and whose latest version is
// newer than the pinned one: `apply --refresh` rolls them out.
func outdatedSecrets(view *state.Tables, rev state.Revision) []wire.OutdatedSecret {
	var out []wire.OutdatedSecret
	for _, p := range rev.Secrets {
		sec, _ := view.Secret(p.Name)
		if latest, ok := sec.Latest(); followsLatest(rev.Spec, p.Name) && ok && latest.Version > p.Version {
			out = append(out, wire.OutdatedSecret{Name: p.Name, Pinned: p.Version, Latest: latest.Version})
		}
	}
	return out
}

// AgentSecrets opens the secret files of one replica for the agent of
// its host: only a replica assigned to host and desired running gets
// them. This answer is the only place a value leaves the leader.
func (c *Controller) AgentSecrets(host, replicaID string) (wire.AgentSecrets, error) {
	if !c.Ready() {
		return wire.AgentSecrets{}, c.notLeader()
	}
	view := c.cfg.Store.View()
	r, ok := view.Replica(replicaID)
	if !ok || r.Desired != state.DesiredRunning {
		return wire.AgentSecrets{}, fmt.Errorf("%w: replica %q is not one to run", ErrNotFound, replicaID)
	}
	if r.Host != host {
		return wire.AgentSecrets{}, fmt.Errorf("%w: replica %s is not assigned to host %s", wire.ErrForbidden, replicaID, host)
	}
	rev, ok := view.Revision(r.Service, r.Revision)
	if !ok {
		return wire.AgentSecrets{}, fmt.Errorf("%w: revision %d of %s", ErrNotFound, r.Revision, r.Service)
	}
	out := wire.AgentSecrets{Replica: replicaID, Secrets: []wire.AgentSecret{}}
	if len(rev.Spec.Secrets) == 0 {
		return out, nil
	}
	key, err := c.secretsKey()
	if err != nil {
		return wire.AgentSecrets{}, err
	}
	for _, entry := range rev.Spec.Secrets {
		version := 0
		for _, p := range rev.Secrets {
			if p.Name == entry.Name {
				version = p.Version
			}
		}
		sec, _ := view.Secret(entry.Name)
		v, ok := sec.Version(version)
		if !ok {
			return wire.AgentSecrets{}, fmt.Errorf("%w: secret %s version %d of revision %d of %s was removed", ErrConflict, entry.Name, version, rev.Number, rev.Service)
		}
		value, err := key.Open(v.Sealed, state.SecretAAD(entry.Name, version))
		if err != nil {
			return wire.AgentSecrets{}, fmt.Errorf("open secret %s version %d: %w", entry.Name, version, err)
		}
		out.Secrets = append(out.Secrets, wire.AgentSecret{Name: entry.Name, Version: version, Target: entry.Target,
			UID: entry.UID, GID: entry.GID, Mode: entry.Mode, Value: value})
	}
	return out, nil
}

// maxSecretBody is what the create endpoint reads: one byte more than a
// secret may hold, so an oversized value is told apart.
const maxSecretBody = wire.MaxSecretSize + 1

// pathSecret reads the secret name in the path; a name no secret can
// have is a 400 naming it.
func (a *API) pathSecret(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if err := checkSecretName(name); err != nil {
		a.writeErr(w, err)
		return "", false
	}
	return name, true
}

func (a *API) createSecret(w http.ResponseWriter, r *http.Request) {
	name, ok := a.pathSecret(w, r)
	if !ok {
		return
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	mt, ok := requestMediaType(w, r)
	if !ok {
		return
	}
	if mt != "" && mt != "application/octet-stream" {
		unsupportedMedia(w, r.Header.Get("Content-Type"), "application/octet-stream")
		return
	}
	value, err := io.ReadAll(io.LimitReader(r.Body, maxSecretBody))
	if err != nil {
		a.writeErr(w, fmt.Errorf("%w: reading body: %w", wire.ErrBadRequest, err))
		return
	}
	if len(value) > wire.MaxSecretSize {
		a.writeErr(w, fmt.Errorf("%w: secret %s: over %d bytes; a secret holds at most 500 KiB", wire.ErrTooLarge, name, wire.MaxSecretSize))
		return
	}
	out, err := a.c.CreateSecret(r.Context(), name, value, key)
	clear(value)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) listSecrets(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.c.Secrets())
}

func (a *API) getSecret(w http.ResponseWriter, r *http.Request) {
	name, ok := a.pathSecret(w, r)
	if !ok {
		return
	}
	info, err := a.c.SecretDetail(name)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *API) removeSecret(w http.ResponseWriter, r *http.Request) {
	name, ok := a.pathSecret(w, r)
	if !ok {
		return
	}
	version := 0
	if s := r.URL.Query().Get("version"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			a.writeErr(w, fmt.Errorf("%w: version: %s is not a version; versions count from 1", wire.ErrBadRequest, clip(strconv.Quote(s))))
			return
		}
		version = v
	}
	if err := a.c.RemoveSecret(r.Context(), name, version); err != nil {
		a.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// agentSecrets answers a replica's secret files to the agent of its host
// (the certificate must speak for host, and the replica be assigned to
// it). Nothing of the answer is logged.
func (a *API) agentSecrets(w http.ResponseWriter, r *http.Request) {
	host := r.URL.Query().Get("host")
	if !hostParam(w, "host", host) {
		return
	}
	if !speaksFor(w, r, host) {
		return
	}
	if r.URL.Query().Has("ingress") {
		a.agentIngressTLS(w, host) // ingress_tls.go
		return
	}
	replica := r.URL.Query().Get("replica")
	if !hostParam(w, "replica", replica) {
		return
	}
	out, err := a.c.AgentSecrets(host, replica)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// envSecretFindings are the audit's findings about services' current
// specs: every env: name that looks like a secret (specs.LooksLikeSecret),
// pointing at secrets:.
func envSecretFindings(view *state.Tables) []wire.SpecFinding {
	var out []wire.SpecFinding
	for _, svc := range view.Services() {
		rev, ok := view.Revision(svc.Name, svc.Current)
		if !ok || svc.State == state.ServiceRemoving {
			continue
		}
		for _, name := range rev.Spec.SecretLikeEnv() {
			out = append(out, wire.SpecFinding{Service: svc.Name, Revision: rev.Number, Field: "env." + name,
				Message: fmt.Sprintf("env %s looks like a secret: its value is in plain text in raft, docker inspect, status and history", name),
				Fix:     fmt.Sprintf("deployctl secret create %s -f FILE, then list it under secrets: and read /run/secrets/%s (the policy's env_secrets: refuse makes this a refusal)", secretNameFor(name), secretNameFor(name))})
		}
	}
	return out
}

// secretNameFor suggests a secret name for an env name: DB_PASSWORD is
// db-password.
func secretNameFor(env string) string {
	return strings.Trim(strings.ReplaceAll(strings.ToLower(env), "_", "-"), "-")
}

// sameKeyEverywhere refuses a create while a registered server reports
// another key-encryption key than this leader's: it could not open the
// secret once it leads. Servers that report none (older builds, tests)
// are not judged.
func sameKeyEverywhere(view *state.Tables, id string) error {
	var other []string
	for _, srv := range view.Servers() {
		if srv.SecretsKeyID != "" && srv.SecretsKeyID != id {
			other = append(other, fmt.Sprintf("%s (key %s)", srv.ID, srv.SecretsKeyID))
		}
	}
	if len(other) > 0 {
		return fmt.Errorf("%w: this leader's key-encryption key is %s, but %s run another: copy the leader's key file (--secrets-key-file, default DATA-DIR/secrets.key) to them and restart them first",
			ErrNoSecretsKey, id, strings.Join(other, ", "))
	}
	return nil
}
