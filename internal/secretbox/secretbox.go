// Package secretbox is envelope encryption for secrets at rest: every
// sealed value has its own random 256-bit data key (AES-256-GCM), and that
// data key is stored wrapped (AES-256-GCM again) by the cluster's
// key-encryption key (KEK). What reaches raft is a Sealed value:
// ciphertext, nonce and wrapped data key, never the plaintext or a bare
// data key. The KEK lives outside raft, in a file readable by root only
// (LoadOrCreateKeyFile).
//
// The additional data given to Seal (e.g. "secret db-password v3") is
// authenticated with the value: a ciphertext moved to another name or
// version does not open.
package secretbox

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of a KEK and of every data key: AES-256.
const KeySize = 32

// Errors of the package.
var (
	// ErrWrongKey: the value was sealed under another KEK (its KeyID
	// differs from this one's).
	ErrWrongKey = errors.New("sealed with another key-encryption key")
	// ErrCorrupt: the value does not open under this KEK and additional
	// data (tampered, truncated, or moved to another name or version).
	ErrCorrupt = errors.New("sealed value does not open")
	// ErrKeyFile: the KEK file is unusable (size, format, permissions).
	ErrKeyFile = errors.New("unusable key-encryption key file")
)

// Key is a key-encryption key. It never leaves the server that loaded it.
type Key struct {
	k  [KeySize]byte
	id string
}

// NewKey returns the KEK of 32 raw bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w: a key is %d bytes, got %d", ErrKeyFile, KeySize, len(raw))
	}
	k := &Key{}
	copy(k.k[:], raw)
	mac := hmac.New(sha256.New, k.k[:])
	mac.Write([]byte("deployctl key-encryption key id"))
	k.id = hex.EncodeToString(mac.Sum(nil)[:8])
	return k, nil
}

// GenerateKey returns a new random KEK read from rand.
func GenerateKey(rand io.Reader) (*Key, error) {
	raw := make([]byte, KeySize)
	if _, err := io.ReadFull(rand, raw); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return NewKey(raw)
}

// ID names the key without revealing it (an HMAC of a fixed label under
// the key, 8 bytes in hex): stored with every sealed value, so a server
// with another KEK says so instead of failing to decrypt.
func (k *Key) ID() string { return k.id }

// Sealed is a value as it is stored: all of it may be written anywhere
// (raft log, snapshots); only the KEK opens it.
type Sealed struct {
	// KeyID is the ID of the KEK that wrapped the data key.
	KeyID string `json:"key_id"`
	// WrappedKey is the data key sealed by the KEK (nonce || ciphertext).
	WrappedKey []byte `json:"wrapped_key"`
	// Nonce and Ciphertext are the value sealed by the data key.
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// wrapLabel is the additional data of a wrapped data key: it binds the
// wrapped key to the value's own additional data.
func wrapLabel(aad []byte) []byte {
	return append([]byte("deployctl data key\x00"), aad...)
}

// Seal encrypts plaintext under a new data key read from rand and wraps
// that key under k. aad is authenticated, not encrypted.
func (k *Key) Seal(rand io.Reader, plaintext, aad []byte) (Sealed, error) {
	dek := make([]byte, KeySize)
	nonce := make([]byte, 12)
	wrapNonce := make([]byte, 12)
	for _, b := range [][]byte{dek, nonce, wrapNonce} {
		if _, err := io.ReadFull(rand, b); err != nil {
			return Sealed{}, fmt.Errorf("seal: random: %w", err)
		}
	}
	defer clear(dek)
	data, err := gcm(dek)
	if err != nil {
		return Sealed{}, err
	}
	kek, err := gcm(k.k[:])
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{
		KeyID:      k.id,
		WrappedKey: kek.Seal(wrapNonce, wrapNonce, dek, wrapLabel(aad)),
		Nonce:      nonce,
		Ciphertext: data.Seal(nil, nonce, plaintext, aad),
	}, nil
}

// Open unwraps the data key and decrypts the value.
func (k *Key) Open(s Sealed, aad []byte) ([]byte, error) {
	if s.KeyID != k.id {
		return nil, fmt.Errorf("%w: the value's key id is %s, this server's key is %s", ErrWrongKey, s.KeyID, k.id)
	}
	if len(s.WrappedKey) < 12 {
		return nil, fmt.Errorf("%w: wrapped key too short", ErrCorrupt)
	}
	kek, err := gcm(k.k[:])
	if err != nil {
		return nil, err
	}
	dek, err := kek.Open(nil, s.WrappedKey[:12], s.WrappedKey[12:], wrapLabel(aad))
	if err != nil {
		return nil, fmt.Errorf("%w: data key: %w", ErrCorrupt, err)
	}
	defer clear(dek)
	data, err := gcm(dek)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != data.NonceSize() {
		return nil, fmt.Errorf("%w: nonce of %d bytes", ErrCorrupt, len(s.Nonce))
	}
	out, err := data.Open(nil, s.Nonce, s.Ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return out, nil
}

// Rewrap re-seals the data key of s (sealed under k for aad) under the
// KEK to, with a new nonce from rand: the value's nonce and ciphertext are
// kept, so only the wrapped key and the key id change. This is how the
// KEK is rotated without opening any value.
func (k *Key) Rewrap(s Sealed, aad []byte, to *Key, rand io.Reader) (Sealed, error) {
	if s.KeyID != k.id {
		return Sealed{}, fmt.Errorf("%w: the value's key id is %s, this key is %s", ErrWrongKey, s.KeyID, k.id)
	}
	if len(s.WrappedKey) < 12 {
		return Sealed{}, fmt.Errorf("%w: wrapped key too short", ErrCorrupt)
	}
	old, err := gcm(k.k[:])
	if err != nil {
		return Sealed{}, err
	}
	dek, err := old.Open(nil, s.WrappedKey[:12], s.WrappedKey[12:], wrapLabel(aad))
	if err != nil {
		return Sealed{}, fmt.Errorf("%w: data key: %w", ErrCorrupt, err)
	}
	defer clear(dek)
	next, err := gcm(to.k[:])
	if err != nil {
		return Sealed{}, err
	}
	wrapNonce := make([]byte, 12)
	if _, err := io.ReadFull(rand, wrapNonce); err != nil {
		return Sealed{}, fmt.Errorf("rewrap: random: %w", err)
	}
	out := s
	out.KeyID = to.id
	out.WrappedKey = next.Seal(wrapNonce, wrapNonce, dek, wrapLabel(aad))
	return out, nil
}

// keyFileHeader starts a key file; the key follows in base64.
const keyFileHeader = "deployctl-kek-v1 "

// encodeKeyFile is the content of a key file holding k.
func encodeKeyFile(k *Key) []byte {
	return []byte(keyFileHeader + base64.StdEncoding.EncodeToString(k.k[:]) + "\n")
}

// LoadOrCreateKeyFile reads the KEK at path, or creates it (0600, its
// directory 0700) with a key from rand when no file exists. A file that
// group or others may read, or that does not hold one key, is refused:
// the key opens every secret of the cluster.
func LoadOrCreateKeyFile(path string, rand io.Reader) (key *Key, created bool, err error) {
	key, err = LoadKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return key, false, err
	}
	key, err = CreateKeyFile(path, rand)
	if errors.Is(err, os.ErrExist) {
		// Another process made it meanwhile: use that one.
		key, err = LoadKeyFile(path)
		return key, false, err
	}
	return key, err == nil, err
}

// CreateKeyFile writes a new key from rand to path (0600, its directory
// 0700 when it makes it); an existing file is never replaced (the error
// matches os.ErrExist).
func CreateKeyFile(path string, rand io.Reader) (*Key, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	key, err := GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	_, werr := f.Write(encodeKeyFile(key))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("%w: write %s: %w", ErrKeyFile, path, err)
	}
	return key, nil
}

// ReplaceKeyFile writes k to path atomically (a 0600 file beside it,
// synced, renamed over it): a crash leaves the old key or the new one,
// never half of either.
func ReplaceKeyFile(path string, k *Key) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".secrets-key-*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	tmp := f.Name()
	_, werr := f.Write(encodeKeyFile(k))
	merr := f.Chmod(0o600)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, merr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: write %s: %w", ErrKeyFile, path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	return nil
}

// LoadKeyFile reads the KEK at path (os.ErrNotExist when there is none).
func LoadKeyFile(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is mode %04o; it must be readable by its owner only (chmod 600 %s)",
			ErrKeyFile, path, fi.Mode().Perm(), path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer clear(raw)
	k, err := ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseKey reads the content of a key file (as LoadKeyFile and `deployctl
// cluster unlock` send it).
func ParseKey(content []byte) (*Key, error) {
	text, ok := strings.CutPrefix(string(bytes.TrimSpace(content)), keyFileHeader)
	if !ok {
		return nil, fmt.Errorf("%w: a key file starts with %q", ErrKeyFile, strings.TrimSpace(keyFileHeader))
	}
	k, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer clear(k)
	return NewKey(k)
}
