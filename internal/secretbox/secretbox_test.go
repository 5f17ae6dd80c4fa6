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
