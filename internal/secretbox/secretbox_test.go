package secretbox

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpenRoundTrip(t *testing.T) {
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("hunter2-correct-horse")
	s, err := k.Seal(rand.Reader, plain, []byte("secret db v1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Ciphertext, plain) || bytes.Contains(s.WrappedKey, plain) {
		t.Fatal("plaintext visible in the sealed value")
	}
	got, err := k.Open(s, []byte("secret db v1"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Another name or version: refused.
	if _, err := k.Open(s, []byte("secret db v2")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("moved value opened: %v", err)
	}
	// Tampered ciphertext: refused.
	bad := s
	bad.Ciphertext = append([]byte(nil), s.Ciphertext...)
	bad.Ciphertext[0] ^= 1
	if _, err := k.Open(bad, []byte("secret db v1")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered value opened: %v", err)
	}
	// Another KEK: named as such.
	other, _ := GenerateKey(rand.Reader)
	if _, err := other.Open(s, []byte("secret db v1")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other key: %v", err)
	}
	// Two seals of one value differ (fresh data key and nonce).
	s2, _ := k.Seal(rand.Reader, plain, []byte("secret db v1"))
	if bytes.Equal(s.Ciphertext, s2.Ciphertext) || bytes.Equal(s.WrappedKey, s2.WrappedKey) {
		t.Fatal("two seals are equal")
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "secrets.key")
	k1, created, err := LoadOrCreateKeyFile(path, rand.Reader)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %o", di.Mode().Perm())
	}
	k2, created, err := LoadOrCreateKeyFile(path, rand.Reader)
	if err != nil || created {
		t.Fatalf("load: %v %v", created, err)
	}
	if k1.ID() != k2.ID() {
		t.Fatal("reloaded key differs")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("garbage key: %v", err)
	}
}

// TestRewrap: a value re-wrapped under a new KEK opens with it, keeps its
// ciphertext, and no longer opens with the old key; the additional data
// still binds it.
func TestRewrap(t *testing.T) {
	oldKey, _ := GenerateKey(rand.Reader)
	newKey, _ := GenerateKey(rand.Reader)
	aad := []byte("secret db v1")
	sealed, err := oldKey.Seal(rand.Reader, []byte("hunter2"), aad)
	if err != nil {
		t.Fatal(err)
	}
	re, err := oldKey.Rewrap(sealed, aad, newKey, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if re.KeyID != newKey.ID() || !bytes.Equal(re.Ciphertext, sealed.Ciphertext) || bytes.Equal(re.WrappedKey, sealed.WrappedKey) {
		t.Fatalf("rewrapped %+v from %+v", re, sealed)
	}
	if got, err := newKey.Open(re, aad); err != nil || string(got) != "hunter2" {
		t.Fatalf("open with the new key: %q %v", got, err)
	}
	if _, err := oldKey.Open(re, aad); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with the old key: %v", err)
	}
	if _, err := newKey.Rewrap(sealed, aad, oldKey, rand.Reader); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("rewrap with a key that did not seal it: %v", err)
	}
	if _, err := oldKey.Rewrap(sealed, []byte("secret db v2"), newKey, rand.Reader); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("rewrap under another name: %v", err)
	}
}

// TestKeyFileCreateReplaceParse: a new file is never written over, a
// replacement is atomic and 0600, and the content parses to the same key.
func TestKeyFileCreateReplaceParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k", "secrets.key")
	k1, err := CreateKeyFile(path, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateKeyFile(path, rand.Reader); !errors.Is(err, os.ErrExist) {
		t.Fatalf("create over an existing file: %v", err)
	}
	raw, _ := os.ReadFile(path)
	if k, err := ParseKey(raw); err != nil || k.ID() != k1.ID() {
		t.Fatalf("parse: %v", err)
	}
	if _, err := ParseKey([]byte("not a key")); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("parse garbage: %v", err)
	}
	k2, _ := GenerateKey(rand.Reader)
	if err := ReplaceKeyFile(path, k2); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKeyFile(path)
	if err != nil || got.ID() != k2.ID() {
		t.Fatalf("after replace: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("left over: %v", entries)
	}
}
