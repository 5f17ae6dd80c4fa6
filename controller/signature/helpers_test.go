package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The helpers below mint signatures the way the cosign CLI lays them out,
// in-process, so the tests need neither the cosign binary nor a network.

// mustRegistry serves go-containerregistry's in-memory registry on a real
// loopback listener and returns its host:port.
func mustRegistry(t *testing.T, referrersAPI bool) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(
		registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithReferrersSupport(referrersAPI),
	))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func mustRepo(t *testing.T, repository string) name.Repository {
	t.Helper()
	repo, err := name.NewRepository(repository, name.Insecure)
	if err != nil {
		t.Fatalf("repository %q: %v", repository, err)
	}
	return repo
}

// mustPushRandomImage pushes a small random image and returns its
// descriptor, the subject signatures refer to.
func mustPushRandomImage(t *testing.T, repo name.Repository, tag string) v1.Descriptor {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag(tag), img); err != nil {
		t.Fatalf("push image: %v", err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := img.Size()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Digest: digest, Size: size}
}

// signer is a key pair whose public half can be listed in a rule.
type signer struct {
	priv crypto.Signer
	key  Key
}

func mustPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func mustSigner(t *testing.T, keyName string, priv crypto.Signer) signer {
	t.Helper()
	return signer{priv: priv, key: Key{Name: keyName, PEM: mustPEM(t, priv.Public())}}
}

func mustECDSASigner(t *testing.T, keyName string) signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return mustSigner(t, keyName, priv)
}

func mustRSASigner(t *testing.T, keyName string, bits int) signer {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return mustSigner(t, keyName, priv)
}

func mustEd25519Signer(t *testing.T, keyName string) signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return mustSigner(t, keyName, priv)
}

// sign signs message as cosign does: ECDSA ASN.1 and RSA PKCS#1 v1.5 over
// SHA-256, Ed25519 over the message itself.
func (s signer) sign(t *testing.T, message []byte) []byte {
	t.Helper()
	var sig []byte
	var err error
	if _, ok := s.priv.(ed25519.PrivateKey); ok {
		sig, err = s.priv.Sign(rand.Reader, message, crypto.Hash(0))
	} else {
		sum := sha256.Sum256(message)
		sig, err = s.priv.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// hint is the fingerprint sigstore tools write as a bundle's key hint.
func (s signer) hint(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(s.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// simpleSigningPayload is the payload `cosign sign` (tag layout) signs.
func simpleSigningPayload(repo name.Repository, digest v1.Hash, payloadType string) []byte {
	return []byte(`{"critical":{"identity":{"docker-reference":"` + repo.Name() + `"},"image":{"docker-manifest-digest":"` +
		digest.String() + `"},"type":"` + payloadType + `"},"optional":null}`)
}

// sigLayer is one layer of a ".sig" manifest: the payload and the
// annotation value (base64 signature; "" leaves the annotation out).
type sigLayer struct {
	payload   []byte
	signature string
}

func signedLayer(t *testing.T, s signer, payload []byte) sigLayer {
	t.Helper()
	return sigLayer{payload: payload, signature: base64.StdEncoding.EncodeToString(s.sign(t, payload))}
}

// mustWriteCosignV2 writes the tag layout for subject and returns the
// reference Verify should report.
func mustWriteCosignV2(t *testing.T, repo name.Repository, subject v1.Hash, layers ...sigLayer) string {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		add := mutate.Addendum{Layer: static.NewLayer(l.payload, simpleSigningMediaType)}
		if l.signature != "" {
			add.Annotations = map[string]string{signatureAnnotation: l.signature}
		}
		var err error
		if img, err = mutate.Append(img, add); err != nil {
			t.Fatal(err)
		}
	}
	tag := repo.Tag(subject.Algorithm + "-" + subject.Hex + ".sig")
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("write %s: %v", tag, err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo.Digest(digest.String()).String()
}

// statement is the in-toto statement `cosign sign` (bundle layout) signs.
func statement(t *testing.T, digest v1.Hash, predicateType string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{digest.Algorithm: digest.Hex}}},
		"predicateType": predicateType,
		"predicate":     map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bundleSpec describes a sigstore bundle to mint.
type bundleSpec struct {
	signer    signer
	statement []byte // what the signature covers
	shipped   []byte // what the envelope carries instead, to tamper; nil ships statement
	noHint    bool
}

func mustBundle(t *testing.T, spec bundleSpec) []byte {
	t.Helper()
	sig := spec.signer.sign(t, pae(inTotoPayloadType, spec.statement))
	shipped := spec.statement
	if spec.shipped != nil {
		shipped = spec.shipped
	}
	material := map[string]any{"tlogEntries": []any{}, "timestampVerificationData": map[string]any{}}
	if !spec.noHint {
		material["publicKey"] = map[string]string{"hint": spec.signer.hint(t)}
	}
	b, err := json.Marshal(map[string]any{
		"mediaType":            bundleMediaType,
		"verificationMaterial": material,
		"dsseEnvelope": map[string]any{
			"payload":     base64.StdEncoding.EncodeToString(shipped),
			"payloadType": inTotoPayloadType,
			"signatures":  []any{map[string]string{"sig": base64.StdEncoding.EncodeToString(sig), "keyid": ""}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawManifest lets remote.Put write exact manifest bytes.
type rawManifest struct {
	body      []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// mustAttachBundle attaches bundle to subject as cosign does: an OCI 1.1
// artifact manifest whose subject is the image. go-containerregistry's
// writer maintains the "sha256-<hex>" fallback tag when the registry has no
// referrers API, as cosign does. It returns the reference Verify should
// report.
func mustAttachBundle(t *testing.T, repo name.Repository, subject v1.Descriptor, bundle []byte, predicateType string) string {
	t.Helper()
	config := static.NewLayer([]byte("{}"), emptyConfigType)
	blob := static.NewLayer(bundle, bundleMediaType)
	for _, l := range []v1.Layer{config, blob} {
		if err := remote.WriteLayer(repo, l); err != nil {
			t.Fatalf("write blob: %v", err)
		}
	}
	descriptorOf := func(l v1.Layer, mt string) map[string]any {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"mediaType": mt, "digest": d.String(), "size": size}
	}
	layer := descriptorOf(blob, bundleMediaType)
	layer["annotations"] = map[string]string{"org.opencontainers.image.title": "bundle.sigstore.json"}
	body, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  bundleMediaType,
		"config":        descriptorOf(config, emptyConfigType),
		"layers":        []any{layer},
		"subject":       map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest.String(), "size": subject.Size},
		"annotations": map[string]string{
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": predicateType,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	digest, _, err := v1.SHA256(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	ref := repo.Digest(digest.String())
	if err := remote.Put(ref, rawManifest{body: body, mediaType: types.OCIManifestSchema1}); err != nil {
		t.Fatalf("put referrer: %v", err)
	}
	return ref.String()
}

// fallbackTagExists reports whether the OCI referrers tag for subject is
// in the registry.
func fallbackTagExists(t *testing.T, repo name.Repository, subject v1.Hash) bool {
	t.Helper()
	_, err := remote.Head(repo.Tag(subject.Algorithm + "-" + subject.Hex))
	if err != nil && !isNotFound(err) {
		t.Fatalf("head fallback tag: %v", err)
	}
	return err == nil
}
