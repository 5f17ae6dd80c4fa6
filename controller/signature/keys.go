package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
)

// minRSABits rejects RSA keys too short to be a meaningful trust anchor.
const minRSABits = 2048

// ParsePublicKey parses one PEM public key: "PUBLIC KEY" (PKIX, as cosign
// writes cosign.pub) holding ECDSA P-256/P-384/P-521, RSA (at least 2048
// bits) or Ed25519, or "RSA PUBLIC KEY" (PKCS#1). Private keys and
// certificates are refused with a hint, since both are easy to list by
// mistake. Every error wraps ErrBadKey.
func ParsePublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found (expected -----BEGIN PUBLIC KEY-----)", ErrBadKey)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("%w: more than one PEM block; list each key in its own file", ErrBadKey)
	}
	var pub crypto.PublicKey
	var err error
	switch {
	case block.Type == "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case block.Type == "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return nil, fmt.Errorf("%w: %q is a private key; list the public key (cosign.pub), never the private one", ErrBadKey, block.Type)
	case block.Type == "CERTIFICATE":
		return nil, fmt.Errorf("%w: certificates are not supported; list the public key (openssl x509 -pubkey -noout -in cert.pem)", ErrBadKey)
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a public key", ErrBadKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if len(ecdsaHashes(k.Curve)) == 0 {
			return nil, fmt.Errorf("%w: unsupported ECDSA curve %s", ErrBadKey, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: RSA key has %d bits, need at least %d", ErrBadKey, k.N.BitLen(), minRSABits)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%w: unsupported key type %T (want ECDSA, RSA or Ed25519)", ErrBadKey, pub)
	}
	return pub, nil
}

// trustedKey is a parsed key of the matching rule.
type trustedKey struct {
	name string
	pub  crypto.PublicKey
	// hints are the identifiers a signer may write next to a signature to
	// say which key made it (sigstore bundles do). They are unauthenticated
	// and only ever used to word a failure, never to accept one.
	hints []string
}

// parseRuleKeys parses every key of rule. One bad key fails the rule: a
// policy that silently dropped a key would fail later, and less clearly.
func parseRuleKeys(rule TrustRule) ([]trustedKey, error) {
	return parseKeys(fmt.Sprintf("trust rule %q", rule.Match), rule.Keys)
}

// parseKeys parses keys; where says where they come from, for messages.
func parseKeys(where string, keys []Key) ([]trustedKey, error) {
	parsed := make([]trustedKey, 0, len(keys))
	for i, k := range keys {
		label := keyLabel(k, i)
		pub, err := ParsePublicKey(k.PEM)
		if err != nil {
			return nil, fmt.Errorf("%s, key %s: %w", where, label, err)
		}
		parsed = append(parsed, trustedKey{name: label, pub: pub, hints: keyHints(pub)})
	}
	return parsed, nil
}

func keyLabel(k Key, index int) string {
	if k.Name != "" {
		return k.Name
	}
	return fmt.Sprintf("#%d", index+1)
}

// keyHints are the spellings of a key's SHA-256 fingerprint (over its PKIX
// DER encoding) that sigstore tools put in a bundle's publicKey.hint or a
// DSSE keyid.
func keyHints(pub crypto.PublicKey) []string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return []string{
		base64.StdEncoding.EncodeToString(sum[:]),
		base64.RawStdEncoding.EncodeToString(sum[:]),
		hex.EncodeToString(sum[:]),
	}
}

// ecdsaHashes are the digests a signer may have used with a curve: the
// curve's own size first, then SHA-256, which cosign uses for every key it
// loads from a file.
func ecdsaHashes(curve elliptic.Curve) []func([]byte) []byte {
	sha256Of := func(m []byte) []byte { s := sha256.Sum256(m); return s[:] }
	switch curve {
	case elliptic.P256():
		return []func([]byte) []byte{sha256Of}
	case elliptic.P384():
		return []func([]byte) []byte{func(m []byte) []byte { s := sha512.Sum384(m); return s[:] }, sha256Of}
	case elliptic.P521():
		return []func([]byte) []byte{func(m []byte) []byte { s := sha512.Sum512(m); return s[:] }, sha256Of}
	}
	return nil
}

// verifySignature reports whether sig is pub's signature over message:
// ECDSA (ASN.1 DER, as cosign writes), RSA PKCS#1 v1.5 or PSS over
// SHA-256, or pure Ed25519.
func verifySignature(pub crypto.PublicKey, message, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		for _, digest := range ecdsaHashes(k.Curve) {
			if ecdsa.VerifyASN1(k, digest(message), sig) {
				return true
			}
		}
	case *rsa.PublicKey:
		sum := sha256.Sum256(message)
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil {
			return true
		}
		return rsa.VerifyPSS(k, crypto.SHA256, sum[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil
	case ed25519.PublicKey:
		return len(k) == ed25519.PublicKeySize && ed25519.Verify(k, message, sig)
	}
	return false
}

// decodeBase64 accepts standard and URL-safe base64, padded or not: DSSE
// lets signers pick either alphabet.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
