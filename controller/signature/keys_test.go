package signature

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
)

func TestParsePublicKey(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048 := mustRSASigner(t, "rsa", 2048)
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsa2048.priv.Public().(*rsa.PublicKey))})
	p256 := mustECDSASigner(t, "p256").key.PEM
	block := func(typ string) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: []byte{1, 2, 3}}) }

	tests := []struct {
		name    string
		pem     []byte
		wantErr bool
	}{
		{"ECDSA P-256, as cosign generate-key-pair writes", p256, false},
		{"ECDSA P-384", mustPEM(t, p384.Public()), false},
		{"RSA 2048 PKIX", rsa2048.key.PEM, false},
		{"RSA 2048 PKCS#1", pkcs1, false},
		{"Ed25519", mustEd25519Signer(t, "ed").key.PEM, false},
		{"leading text is ignored", append([]byte("# release key\n"), p256...), false},
		{"RSA 1024", mustRSASigner(t, "small", 1024).key.PEM, true},
		{"X25519 cannot sign", mustPEM(t, x25519.PublicKey()), true},
		{"private key", block("EC PRIVATE KEY"), true},
		{"cosign encrypted private key", block("ENCRYPTED SIGSTORE PRIVATE KEY"), true},
		{"certificate", block("CERTIFICATE"), true},
		{"corrupt key bytes", block("PUBLIC KEY"), true},
		{"two keys in one file", append(append([]byte{}, p256...), p256...), true},
		{"not PEM", []byte("ssh-ed25519 AAAA"), true},
		{"empty", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, err := ParsePublicKey(tt.pem)
			if tt.wantErr {
				if !errors.Is(err, ErrBadKey) {
					t.Errorf("ParsePublicKey error = %v, want ErrBadKey", err)
				}
				return
			}
			if err != nil || pub == nil {
				t.Errorf("ParsePublicKey = %v, %v; want a key", pub, err)
			}
		})
	}
}

// Each supported algorithm accepts its own signature and refuses one over
// other bytes or from another key.
func TestVerifySignatureAlgorithms(t *testing.T) {
	message := []byte("DSSEv1 28 application/vnd.in-toto+json 2 {}")
	other := mustECDSASigner(t, "other")
	rsaKey := mustRSASigner(t, "rsa", 2048)
	sum := sha256.Sum256(message)
	pss, err := rsa.SignPSS(rand.Reader, rsaKey.priv.(*rsa.PrivateKey), crypto.SHA256, sum[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384SHA256, err := ecdsa.SignASN1(rand.Reader, p384, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	ed := mustEd25519Signer(t, "ed")

	tests := []struct {
		name string
		pub  crypto.PublicKey
		sig  []byte
	}{
		{"ECDSA P-256 SHA-256", mustParse(t, other.key.PEM), other.sign(t, message)},
		{"ECDSA P-384 over SHA-256, as cosign signs with any file key", p384.Public(), p384SHA256},
		{"RSA PKCS#1 v1.5", mustParse(t, rsaKey.key.PEM), rsaKey.sign(t, message)},
		{"RSA PSS", mustParse(t, rsaKey.key.PEM), pss},
		{"Ed25519", mustParse(t, ed.key.PEM), ed.sign(t, message)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, sig := tt.pub, tt.sig
			if !verifySignature(pub, message, sig) {
				t.Error("own signature refused")
			}
			if verifySignature(pub, append([]byte("x"), message...), sig) {
				t.Error("signature accepted over other bytes")
			}
			if verifySignature(mustParse(t, mustECDSASigner(t, "stranger").key.PEM), message, sig) {
				t.Error("signature accepted with another key")
			}
		})
	}
}

func mustParse(t *testing.T, pemBytes []byte) crypto.PublicKey {
	t.Helper()
	pub, err := ParsePublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// The DSSE specification's own example.
func TestPAE(t *testing.T) {
	got := string(pae("http://example.com/HelloWorld", []byte("hello world")))
	if want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"; got != want {
		t.Errorf("pae = %q, want %q", got, want)
	}
}

func TestDecodeBase64(t *testing.T) {
	want := "\xfb\xff\xfe" // differs between the standard and URL-safe alphabets
	for _, encoded := range []string{"+//+", "-__-", "+//+\n"} {
		got, err := decodeBase64(encoded)
		if err != nil || string(got) != want {
			t.Errorf("decodeBase64(%q) = %q, %v; want %q", encoded, got, err, want)
		}
	}
	if _, err := decodeBase64("not base64!"); err == nil {
		t.Error("decodeBase64 accepted garbage")
	}
}
