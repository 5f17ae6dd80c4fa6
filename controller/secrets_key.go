package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// The key-encryption key (KEK) of this server: from a file (the default),
// or, with --autolock, only in memory once the operator gave it (`deployctl
// cluster unlock`). A sealed server takes part in raft and serves
// everything but secrets. A rotation (`deployctl secret rotate-key`)
// re-wraps every data key on the leader and records the new key id in
// raft; servers still holding the old key say so until they are given
// the new one (unlock again, which also rewrites their key file).

// ErrSealed: this server runs with --autolock and was not unlocked.
var ErrSealed = wire.ErrSealed

// ErrWrongKey: a key the cluster cannot use.
var ErrWrongKey = wire.ErrWrongKey

// keyring holds this server's KEK. It is this process's memory only.
type keyring struct {
	mu  sync.Mutex
	key *secretbox.Key
	// autolock: the key is never on disk; nil until unlocked.
	autolock bool
	// file is where a server that keeps its key in a file writes a new
	// key it is given after a rotation ("" with autolock).
	file string
	// changed gets a value when the key changes (unlock, rotation), for
	// the server to register its new key id.
	changed chan struct{}
}

func newKeyring(cfg Config) *keyring {
	return &keyring{key: cfg.SecretsKey, autolock: cfg.Autolock, file: cfg.SecretsKeyFile, changed: make(chan struct{}, 1)}
}

func (k *keyring) get() *secretbox.Key {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.key
}

// set replaces the key and tells the watcher (never blocks).
func (k *keyring) set(key *secretbox.Key) {
	k.key = key
	select {
	case k.changed <- struct{}{}:
	default:
	}
}

// Sealed reports whether this server runs with --autolock and holds no
// key yet.
func (c *Controller) Sealed() bool {
	return c.keys.autolock && c.keys.get() == nil
}

// SecretsKeyID is the id of this server's key ("" while sealed or when
// it has none).
func (c *Controller) SecretsKeyID() string {
	if k := c.keys.get(); k != nil {
		return k.ID()
	}
	return ""
}

// SecretsKeyChanged gets a value whenever this server's key changed
// (unlocked, rotated, replaced): the server registers its new key id.
func (c *Controller) SecretsKeyChanged() <-chan struct{} { return c.keys.changed }

// sealedError is what a sealed server answers for anything needing a
// secret value.
func (c *Controller) sealedError() error {
	return fmt.Errorf("%w: server %s runs with --autolock and has not been given the key-encryption key, so it serves no secret; "+
		"unlock it: deployctl cluster unlock --server ADDR --key-file FILE (other servers may serve meanwhile)", ErrSealed, c.cfg.Raft.ID())
}

// secretsKey is the key to seal and open with: refused while sealed,
// without a key, or when the cluster's secrets use another key (rotated
// while this server held the old one).
func (c *Controller) secretsKey() (*secretbox.Key, error) {
	key := c.keys.get()
	if key == nil {
		if c.keys.autolock {
			return nil, c.sealedError()
		}
		return nil, fmt.Errorf("%w: start it with --secrets-key-file (or a data dir, where the key is made at first start)", ErrNoSecretsKey)
	}
	if id := c.cfg.Store.View().SecretsKeyID(); id != "" && id != key.ID() {
		return nil, fmt.Errorf("%w: server %s holds key-encryption key %s, but the cluster's secrets are wrapped with %s (rotated?): "+
			"give it the cluster's key: deployctl cluster unlock --server ADDR --key-file FILE (it also rewrites --secrets-key-file)",
			ErrNoSecretsKey, c.cfg.Raft.ID(), key.ID(), id)
	}
	return key, nil
}

// expectedKeyID is the key id a key given to this server must have: the
// cluster's (recorded by a rotation or on the stored values), else the
// one the other registered servers agree on, else "" (no key in use yet:
// the first unlock of a new autolocked cluster chooses it).
func expectedKeyID(view *state.Tables, self string) (id, source string) {
	if id := view.SecretsKeyID(); id != "" {
		return id, "the cluster's secrets are wrapped with"
	}
	ids := map[string][]string{}
	for _, srv := range view.Servers() {
		if srv.ID != self && srv.SecretsKeyID != "" {
			ids[srv.SecretsKeyID] = append(ids[srv.SecretsKeyID], srv.ID)
		}
	}
	if len(ids) == 1 {
		for id, servers := range ids {
			sort.Strings(servers)
			return id, "servers " + strings.Join(servers, ", ") + " use"
		}
	}
	return "", ""
}

// replicationLag bounds how long a follower waits for its state to show
// the key id it is given (a rotation the leader just committed).
const replicationLag = 3 * time.Second

// awaitKeyID is the key id a key given to this server must have. On a
// follower whose state does not show id yet, it waits (replicationLag at
// most) for the state to change: the operator may give the cluster's new
// key right after the leader committed the rotation.
func (c *Controller) awaitKeyID(ctx context.Context, id string) (want, source string) {
	deadline := time.NewTimer(replicationLag)
	defer deadline.Stop()
	for {
		view, changed := c.cfg.Store.Watch()
		want, source = expectedKeyID(view, c.cfg.Raft.ID())
		if want == "" || want == id || c.cfg.Raft.IsLeader() {
			return want, source
		}
		select {
		case <-ctx.Done():
			return want, source
		case <-deadline.C:
			return want, source
		case <-changed:
		}
	}
}

// Unlock gives this server the KEK (the content of a key file). A key
// the cluster does not use is refused (ErrWrongKey) and the server stays
// as it was. Given the cluster's new key after a rotation, a server that
// keeps its key in a file writes it there (atomically) first.
func (c *Controller) Unlock(ctx context.Context, content []byte) (wire.UnlockResult, error) {
	key, err := secretbox.ParseKey(content)
	if err != nil {
		return wire.UnlockResult{}, fmt.Errorf("%w: %w", ErrWrongKey, err)
	}
	self := c.cfg.Raft.ID()
	want, source := c.awaitKeyID(ctx, key.ID())
	if want != "" && key.ID() != want {
		return wire.UnlockResult{}, fmt.Errorf("%w: the key given has id %s, but %s key %s; server %s keeps its key (sealed: %v)",
			ErrWrongKey, key.ID(), source, want, self, c.Sealed())
	}
	if want == "" && c.Sealed() && c.cfg.ClaimKey != nil {
		// No secret yet, and this server's state may lag the others'
		// registrations: the leader judges the key on its own state.
		if err := c.cfg.ClaimKey(ctx, key.ID()); err != nil {
			return wire.UnlockResult{}, fmt.Errorf("server %s stays sealed: %w", self, err)
		}
	}
	c.keys.mu.Lock()
	defer c.keys.mu.Unlock()
	out := wire.UnlockResult{Node: self, KeyID: key.ID()}
	cur := c.keys.key
	switch {
	case cur != nil && cur.ID() == key.ID():
		out.Already = true
		return out, nil
	case cur != nil && want == "":
		return wire.UnlockResult{}, fmt.Errorf("%w: server %s already holds key %s and no secret uses another; a new key is taken with `deployctl secret rotate-key`",
			ErrWrongKey, self, cur.ID())
	}
	if c.keys.file != "" {
		if err := secretbox.ReplaceKeyFile(c.keys.file, key); err != nil {
			return wire.UnlockResult{}, fmt.Errorf("server %s: write the new key to %s: %w", self, c.keys.file, err)
		}
		out.KeyFile = c.keys.file
	}
	c.keys.set(key)
	if cur == nil {
		c.log.Info("unsealed: secrets are served with the key-encryption key given by the operator", "key_id", key.ID())
	} else {
		c.log.Info("key-encryption key replaced by the cluster's", "old_key_id", cur.ID(), "key_id", key.ID(), "file", c.keys.file)
	}
	return out, nil
}

// RotateSecretsKey moves every secret to a new KEK: on the leader, each
// data key is unwrapped with the current KEK and wrapped with the new one,
// and one raft command (CmdRotateSecretsKey) replaces them all and records
// the new key id. Creates on this leader wait meanwhile; the FSM refuses
// the command if a version it does not cover exists (then it is built
// again), and refuses any value sealed with another key afterwards.
func (c *Controller) RotateSecretsKey(ctx context.Context, content []byte) (wire.RotateKeyResult, error) {
	if !c.Ready() {
		return wire.RotateKeyResult{}, c.notLeader()
	}
	next, err := secretbox.ParseKey(content)
	if err != nil {
		return wire.RotateKeyResult{}, fmt.Errorf("%w: --new-key-file: %w", ErrWrongKey, err)
	}
	c.secretsMu.Lock()
	defer c.secretsMu.Unlock()
	cur := c.keys.get()
	if cur != nil && cur.ID() == next.ID() && c.cfg.Store.View().RotatedSecretsKeyID() == next.ID() {
		// A retry of a rotation that went through.
		return wire.RotateKeyResult{Leader: c.cfg.Raft.ID(), NewKeyID: next.ID(), Versions: countVersions(c.cfg.Store.View())}, nil
	}
	old, err := c.secretsKey()
	if err != nil {
		return wire.RotateKeyResult{}, err
	}
	if old.ID() == next.ID() {
		return wire.RotateKeyResult{}, fmt.Errorf("%w: the new key is the key in use (%s); make a new one with `deployctl secret key generate --out FILE`", ErrWrongKey, old.ID())
	}
	var res wire.RotateKeyResult
	for attempt := 0; ; attempt++ {
		view := c.cfg.Store.View()
		cmd := state.RotateSecretsKeyCmd{OldKeyID: old.ID(), NewKeyID: next.ID()}
		for _, sec := range view.Secrets() {
			for _, v := range sec.Versions {
				re, err := old.Rewrap(v.Sealed, state.SecretAAD(sec.Name, v.Version), next, c.random())
				if err != nil {
					return wire.RotateKeyResult{}, fmt.Errorf("re-wrap secret %s version %d: %w", sec.Name, v.Version, err)
				}
				cmd.Keys = append(cmd.Keys, state.RewrappedKey{Name: sec.Name, Version: v.Version, WrappedKey: re.WrappedKey})
			}
		}
		_, err := c.applyGated(ctx, raftstore.CmdRotateSecretsKey, cmd)
		if errors.Is(err, ErrConflict) && attempt < 3 {
			continue // a version came or went between the read and the write
		}
		if err != nil {
			return wire.RotateKeyResult{}, fmt.Errorf("rotate the key-encryption key: %w", err)
		}
		res = wire.RotateKeyResult{Leader: c.cfg.Raft.ID(), OldKeyID: old.ID(), NewKeyID: next.ID(), Versions: len(cmd.Keys)}
		break
	}
	c.keys.mu.Lock()
	defer c.keys.mu.Unlock()
	c.keys.set(next)
	c.log.Info("key-encryption key rotated: every data key is wrapped with the new key", "old_key_id", old.ID(), "key_id", next.ID(), "versions", res.Versions)
	if c.keys.file != "" {
		if err := secretbox.ReplaceKeyFile(c.keys.file, next); err != nil {
			return res, fmt.Errorf("the cluster now uses key %s, but writing it to %s failed: %w; copy the new key file there before this server restarts",
				next.ID(), c.keys.file, err)
		}
	}
	return res, nil
}

func countVersions(view *state.Tables) int {
	n := 0
	for _, sec := range view.Secrets() {
		n += len(sec.Versions)
	}
	return n
}

// watchSecretsKey logs, once per change, when this server cannot open
// the cluster's secrets (it holds a key the cluster no longer uses), so
// it says so rather than failing when it leads; and after a rotation is
// applied here it compacts the raft log (Config.CompactLog), so the
// entries holding data keys wrapped with the old key leave the data
// directory.
func (c *Controller) watchSecretsKey(ctx context.Context) {
	last := ""
	rotated := c.cfg.Store.View().RotatedSecretsKeyID()
	for {
		view, changed := c.cfg.Store.Watch()
		note := ""
		if key := c.keys.get(); key != nil {
			if id := view.SecretsKeyID(); id != "" && id != key.ID() {
				note = fmt.Sprintf("this server's key-encryption key %s is not the cluster's %s (rotated?): it cannot open secrets; give it the cluster's key: deployctl cluster unlock --server ADDR --key-file FILE", key.ID(), id)
			}
		}
		if note != last && note != "" {
			c.log.Error(note)
		}
		last = note
		if id := view.RotatedSecretsKeyID(); id != rotated {
			rotated = id
			if c.cfg.CompactLog != nil {
				if err := c.cfg.CompactLog(); err != nil {
					c.log.Warn("compacting the raft log after the key rotation failed: entries with the old wrapped keys stay until the next snapshot", "error", err)
				} else {
					c.log.Info("raft log compacted after the key rotation: no entry or snapshot with the old wrapped keys is left", "key_id", id)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// secretsNote is what cluster status tells of a server's key.
func secretsNote(info state.ServerInfo, clusterKeyID string) string {
	switch {
	case info.Sealed:
		return fmt.Sprintf("sealed (--autolock): serves no secret until deployctl cluster unlock --server %s --key-file FILE", info.APIAddr)
	case info.SecretsKeyID == "":
		return ""
	case clusterKeyID != "" && info.SecretsKeyID != clusterKeyID:
		return fmt.Sprintf("key %s, not the cluster's %s: cannot open secrets; deployctl cluster unlock --server %s --key-file FILE", info.SecretsKeyID, clusterKeyID, info.APIAddr)
	}
	return "key " + info.SecretsKeyID
}

// unsealed answers 503 sealed from a sealed server instead of serving or
// forwarding a request that carries a secret value: a sealed server
// handles no value, and the client tries another server.
func (a *API) unsealed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.c.Sealed() {
			a.c.log.Debug("refused while sealed", "path", r.URL.Path)
			a.writeErr(w, a.c.sealedError())
			return
		}
		h(w, r)
	}
}

func (a *API) unlock(w http.ResponseWriter, r *http.Request) {
	var req wire.UnlockRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	out, err := a.c.Unlock(r.Context(), []byte(req.Key))
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) rotateKey(w http.ResponseWriter, r *http.Request) {
	var req wire.RotateKeyRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	out, err := a.c.RotateSecretsKey(r.Context(), []byte(req.NewKey))
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
