package state

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/secretbox"
)

// Secret is a named secret and its versions (issue 13). Versions are
// immutable and numbered from 1; a number is never reused. The record
// holds sealed values only: ciphertext and a data key wrapped by the
// servers' key-encryption key, which is never in raft.
type Secret struct {
	Name        string          `json:"name"`
	Versions    []SecretVersion `json:"versions"`
	NextVersion int             `json:"next_version"`
	CreateIndex uint64          `json:"create_index"`
	ModifyIndex uint64          `json:"modify_index"`
}

// SecretVersion is one immutable value of a secret.
type SecretVersion struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// Size is the plaintext's length in bytes.
	Size   int              `json:"size"`
	Sealed secretbox.Sealed `json:"sealed"`
}

// Latest is the newest version, if any is left.
func (s Secret) Latest() (SecretVersion, bool) {
	if len(s.Versions) == 0 {
		return SecretVersion{}, false
	}
	return s.Versions[len(s.Versions)-1], true
}

// Version returns one version.
func (s Secret) Version(n int) (SecretVersion, bool) {
	for _, v := range s.Versions {
		if v.Version == n {
			return v, true
		}
	}
	return SecretVersion{}, false
}

// SecretPin is the version of a secret a revision runs with.
type SecretPin struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// SecretAAD is the additional data a secret version is sealed with: a
// sealed value copied to another name or version does not open.
func SecretAAD(name string, version int) []byte {
	return fmt.Appendf(nil, "deployctl secret %s v%d", name, version)
}

// Secret returns one secret's record.
func (t *Tables) Secret(name string) (Secret, bool) {
	v, ok := t.secrets.Get([]byte(name))
	if !ok {
		return Secret{}, false
	}
	s := *v.(*Secret)
	s.Versions = slices.Clone(s.Versions)
	return s, true
}

// Secrets lists every secret by name.
func (t *Tables) Secrets() []Secret {
	var out []Secret
	t.secrets.Root().Walk(func(k []byte, _ interface{}) bool {
		s, _ := t.Secret(string(k))
		out = append(out, s)
		return false
	})
	return out
}

// SecretUse is one revision that pins a secret version, and why it keeps
// that version from being removed ("" when it does not).
type SecretUse struct {
	Service  string `json:"service"`
	Revision int    `json:"revision"`
	Version  int    `json:"version"`
	// Holds says why the version must stay: "current", "running" (a
	// replica of it runs), "last good" or "succeeded" (a rollback could
	// return to it); "" for a revision that pins it but no rollback
	// returns to on its own.
	Holds string `json:"holds,omitempty"`
}

// SecretUses lists every revision pinning a version of the secret, by
// service and revision. It depends on state only, so the FSM refuses a
// removal exactly as the leader's check did.
func (t *Tables) SecretUses(name string) []SecretUse {
	var out []SecretUse
	running := map[string]bool{} // service \x00 revision with a replica desired running
	t.replicas.Root().Walk(func(_ []byte, v interface{}) bool {
		r := v.(*Replica)
		if r.Desired == DesiredRunning {
			running[fmt.Sprintf("%s\x00%d", r.Service, r.Revision)] = true
		}
		return false
	})
	t.revisions.Root().Walk(func(_ []byte, v interface{}) bool {
		rev := v.(*Revision)
		for _, p := range rev.Secrets {
			if p.Name != name {
				continue
			}
			use := SecretUse{Service: rev.Service, Revision: rev.Number, Version: p.Version}
			svc, _ := t.Service(rev.Service)
			switch {
			case svc.State != ServiceRemoving && svc.Current == rev.Number:
				use.Holds = "current"
			case running[fmt.Sprintf("%s\x00%d", rev.Service, rev.Number)]:
				use.Holds = "running"
			case svc.State != ServiceRemoving && svc.LastGood == rev.Number:
				use.Holds = "last good"
			case svc.State != ServiceRemoving && rev.State == RevisionSucceeded:
				use.Holds = "succeeded"
			}
			out = append(out, use)
		}
		return false
	})
	return out
}

// SecretHolders are the uses that keep version (0: any) of a secret.
func (t *Tables) SecretHolders(name string, version int) []SecretUse {
	var out []SecretUse
	for _, u := range t.SecretUses(name) {
		if u.Holds != "" && (version == 0 || u.Version == version) {
			out = append(out, u)
		}
	}
	return out
}

// DescribeHolders names the revisions of uses, for a refusal.
func DescribeHolders(uses []SecretUse) string {
	parts := make([]string, len(uses))
	for i, u := range uses {
		parts[i] = fmt.Sprintf("%s revision %d (version %d, %s)", u.Service, u.Revision, u.Version, u.Holds)
	}
	return strings.Join(parts, ", ")
}

// PutSecretCmd adds a version to a secret (creating it). The leader sealed
// the value for exactly Version (the additional data names it), so the
// write is refused unless that is the secret's next version.
type PutSecretCmd struct {
	Now time.Time `json:"now"`
	// IdempotencyKey: a retried create gets the first outcome (its
	// version), not a second version.
	IdempotencyKey string           `json:"idempotency_key,omitempty"`
	Name           string           `json:"name"`
	Version        int              `json:"version"`
	Size           int              `json:"size"`
	Sealed         secretbox.Sealed `json:"sealed"`
}

// ApplyPutSecret applies a PutSecretCmd at a raft index.
func (s *Store) ApplyPutSecret(index uint64, c PutSecretCmd) error {
	if c.Name == "" || c.Version < 1 || len(c.Sealed.Ciphertext) == 0 || c.Sealed.KeyID == "" {
		return fmt.Errorf("%w: a secret version needs a name, a version and a sealed value", ErrBadRecord)
	}
	if _, ok := s.View().Request(c.IdempotencyKey); ok {
		return nil
	}
	// After a rotation only the cluster's new key may seal: a value
	// sealed by a leader that still held the old key would be wrapped
	// with a key that is no longer in use.
	if id := s.View().secretsKeyID; id != "" && c.Sealed.KeyID != id {
		return fmt.Errorf("%w: secret %s was sealed with key-encryption key %s, the cluster's key is %s", ErrConflict, c.Name, c.Sealed.KeyID, id)
	}
	tx := s.begin(index)
	sec := &Secret{Name: c.Name, NextVersion: 1, CreateIndex: index}
	if v, ok := tx.secrets.Get([]byte(c.Name)); ok {
		cur := *v.(*Secret)
		cur.Versions = slices.Clone(cur.Versions)
		sec = &cur
	}
	if c.Version != sec.NextVersion {
		return fmt.Errorf("%w: secret %s's next version is %d, not %d", ErrConflict, c.Name, sec.NextVersion, c.Version)
	}
	sec.Versions = append(sec.Versions, SecretVersion{Version: c.Version, CreatedAt: c.Now, Size: c.Size, Sealed: c.Sealed})
	sec.NextVersion++
	sec.ModifyIndex = index
	tx.secrets.Insert([]byte(sec.Name), sec)
	tx.rememberRequest(c.IdempotencyKey, c.Now, c.Version)
	tx.commit(s)
	return nil
}

// DeleteSecretCmd removes one version of a secret, or every version
// (Version 0). A version a revision still holds (SecretHolders) is never
// removed: the command is refused with ErrConflict naming them.
type DeleteSecretCmd struct {
	Name    string `json:"name"`
	Version int    `json:"version,omitempty"`
}

// ApplyDeleteSecret applies a DeleteSecretCmd at a raft index.
func (s *Store) ApplyDeleteSecret(index uint64, c DeleteSecretCmd) error {
	view := s.View()
	sec, ok := view.Secret(c.Name)
	if !ok {
		return fmt.Errorf("%w: secret %s", ErrNotFound, c.Name)
	}
	if c.Version != 0 {
		if _, ok := sec.Version(c.Version); !ok {
			return fmt.Errorf("%w: secret %s has no version %d", ErrNotFound, c.Name, c.Version)
		}
	}
	if holders := view.SecretHolders(c.Name, c.Version); len(holders) > 0 {
		return fmt.Errorf("%w: secret %s is used by %s", ErrConflict, c.Name, DescribeHolders(holders))
	}
	tx := s.begin(index)
	sec.Versions = slices.DeleteFunc(sec.Versions, func(v SecretVersion) bool { return c.Version == 0 || v.Version == c.Version })
	// The record stays, without versions (lists leave it out): a version
	// number is never given twice, so a revision pinning a removed version
	// can never run another value under the same pin.
	sec.ModifyIndex = index
	tx.secrets.Insert([]byte(sec.Name), &sec)
	tx.commit(s)
	return nil
}

// SecretsKeyID is the id of the key-encryption key the cluster's secrets
// are sealed with: the one the last rotation recorded, else the key id of
// the stored values (the same on all of them: a create is refused while
// servers report different keys), else "" (no secret yet).
func (t *Tables) SecretsKeyID() string {
	if t.secretsKeyID != "" {
		return t.secretsKeyID
	}
	id := ""
	t.secrets.Root().Walk(func(_ []byte, v interface{}) bool {
		for _, ver := range v.(*Secret).Versions {
			id = ver.Sealed.KeyID
			return true
		}
		return false
	})
	return id
}

// RotatedSecretsKeyID is the key id the last rotation recorded ("" when
// there was none).
func (t *Tables) RotatedSecretsKeyID() string { return t.secretsKeyID }

// RewrappedKey is one secret version's data key wrapped by the new KEK.
type RewrappedKey struct {
	Name       string `json:"name"`
	Version    int    `json:"version"`
	WrappedKey []byte `json:"wrapped_key"`
}

// RotateSecretsKeyCmd moves every stored secret version from the KEK
// OldKeyID to NewKeyID (FSM version 4): the leader unwrapped each data
// key with the old KEK and wrapped it with the new one (no key and no
// randomness here), and the cluster's key id becomes NewKeyID, so a
// value sealed under any other key is refused from then on.
type RotateSecretsKeyCmd struct {
	OldKeyID string         `json:"old_key_id"`
	NewKeyID string         `json:"new_key_id"`
	Keys     []RewrappedKey `json:"keys"`
}

// ApplyRotateSecretsKey applies a RotateSecretsKeyCmd at a raft index. It
// is guarded: every version stored must be sealed under OldKeyID and
// re-wrapped by the command (a version created after the leader read the
// state is a conflict: the leader reads again and retries), so no version
// is left wrapped with the old key. A version removed meanwhile is
// skipped. Applying it again once the key is NewKeyID changes nothing.
func (s *Store) ApplyRotateSecretsKey(index uint64, c RotateSecretsKeyCmd) error {
	if c.OldKeyID == "" || c.NewKeyID == "" || c.OldKeyID == c.NewKeyID {
		return fmt.Errorf("%w: a rotation needs two different key ids", ErrBadRecord)
	}
	view := s.View()
	if view.SecretsKeyID() == c.NewKeyID && !view.anySealedWith(c.OldKeyID) {
		return nil
	}
	if cur := view.SecretsKeyID(); cur != "" && cur != c.OldKeyID {
		return fmt.Errorf("%w: the cluster's key-encryption key is %s, not %s", ErrConflict, cur, c.OldKeyID)
	}
	wrapped := map[string][]byte{}
	for _, k := range c.Keys {
		wrapped[fmt.Sprintf("%s\x00%d", k.Name, k.Version)] = k.WrappedKey
	}
	tx := s.begin(index)
	for _, sec := range view.Secrets() {
		changed := false
		for i, v := range sec.Versions {
			if v.Sealed.KeyID != c.OldKeyID {
				return fmt.Errorf("%w: secret %s version %d is sealed with key %s, not %s", ErrConflict, sec.Name, v.Version, v.Sealed.KeyID, c.OldKeyID)
			}
			w, ok := wrapped[fmt.Sprintf("%s\x00%d", sec.Name, v.Version)]
			if !ok || len(w) == 0 {
				return fmt.Errorf("%w: secret %s version %d is not in the rotation (created meanwhile); read the state again", ErrConflict, sec.Name, v.Version)
			}
			v.Sealed.KeyID, v.Sealed.WrappedKey = c.NewKeyID, w
			sec.Versions[i] = v
			changed = true
		}
		if changed {
			sec.ModifyIndex = index
			tx.secrets.Insert([]byte(sec.Name), &sec)
		}
	}
	tx.secretsKeyID = c.NewKeyID
	tx.commit(s)
	return nil
}

// anySealedWith reports whether a stored version is sealed under key id.
func (t *Tables) anySealedWith(id string) bool {
	found := false
	t.secrets.Root().Walk(func(_ []byte, v interface{}) bool {
		for _, ver := range v.(*Secret).Versions {
			if ver.Sealed.KeyID == id {
				found = true
				return true
			}
		}
		return false
	})
	return found
}
