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
	"time"

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

// vulnSpec describes one vulnerability attestation to mint.
type vulnSpec struct {
	signer   signer
	subject  v1.Hash   // the statement's subject digest
	finished time.Time // metadata.scanFinishedOn
	report   string    // scanner.result, compact JSON; "" attests a record without one
	// tampered ships a statement whose report lists no vulnerabilities
	// instead of the one signed.
	tampered bool
}

// trivyReport is a small Trivy JSON report naming cve.
func trivyReport(cve string) string {
	return `{"SchemaVersion":2,"ArtifactName":"web","ArtifactType":"container_image","Results":[{"Target":"web (alpine 3.19.1)","Class":"os-pkgs","Type":"alpine","Vulnerabilities":[{"VulnerabilityID":"` +
		cve + `","PkgName":"libcrypto3","InstalledVersion":"3.1.4-r5","FixedVersion":"3.1.4-r6","Severity":"HIGH"}]}]}`
}

const (
	trivyURI     = "pkg:github/aquasecurity/trivy@0.50.0"
	trivyVersion = "0.50.0"
)

// vulnStatementJSON is the statement `cosign attest --type vuln` signs for a
// predicate made by `trivy image --format cosign-vuln`: in-toto v0.1, as
// cosign v2 writes it.
func vulnStatementJSON(t *testing.T, subject v1.Hash, finished time.Time, report string) []byte {
	t.Helper()
	result := json.RawMessage("null")
	if report != "" {
		result = json.RawMessage(report)
	}
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": VulnPredicateType,
		"subject":       []any{map[string]any{"name": "127.0.0.1/team/web", "digest": map[string]string{"sha256": subject.Hex}}},
		"predicate": map[string]any{
			"invocation": map[string]any{"parameters": nil, "uri": "", "event_id": "", "builder.id": ""},
			"scanner": map[string]any{
				"uri": trivyURI, "version": trivyVersion,
				"db":     map[string]string{"uri": "", "version": ""},
				"result": result,
			},
			"metadata": map[string]any{"scanStartedOn": finished.Add(-time.Minute), "scanFinishedOn": finished},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// statements returns what spec's signature covers and what is shipped.
func (spec vulnSpec) statements(t *testing.T) (signed, shipped []byte) {
	t.Helper()
	signed = vulnStatementJSON(t, spec.subject, spec.finished, spec.report)
	if spec.tampered {
		return signed, vulnStatementJSON(t, spec.subject, spec.finished, `{"SchemaVersion":2,"Results":[]}`)
	}
	return signed, signed
}

// mustEnvelope is a DSSE envelope as cosign v2 stores it in an ".att"
// layer: key-based signatures carry an empty keyid.
func mustEnvelope(t *testing.T, s signer, signed, shipped []byte) []byte {
	t.Helper()
	sig := s.sign(t, pae(inTotoPayloadType, signed))
	b, err := json.Marshal(map[string]any{
		"payloadType": inTotoPayloadType,
		"payload":     base64.StdEncoding.EncodeToString(shipped),
		"signatures":  []any{map[string]string{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attLayer is one layer of an ".att" manifest.
type attLayer struct {
	envelope      []byte
	predicateType string // the layer's predicateType annotation
}

func vulnLayer(t *testing.T, spec vulnSpec) attLayer {
	t.Helper()
	signed, shipped := spec.statements(t)
	return attLayer{envelope: mustEnvelope(t, spec.signer, signed, shipped), predicateType: VulnPredicateType}
}

// mustWriteCosignV2Attestations writes cosign v2's attestation tag layout
// for image, one layer per attestation as successive `cosign attest` runs
// append them, and returns the manifest reference.
func mustWriteCosignV2Attestations(t *testing.T, repo name.Repository, image v1.Hash, layers ...attLayer) string {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		add := mutate.Addendum{
			Layer:       static.NewLayer(l.envelope, dsseEnvelopeMediaType),
			Annotations: map[string]string{signatureAnnotation: "", attestationPredicateAnnotation: l.predicateType},
		}
		var err error
		if img, err = mutate.Append(img, add); err != nil {
			t.Fatal(err)
		}
	}
	tag := repo.Tag(image.Algorithm + "-" + image.Hex + ".att")
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("write %s: %v", tag, err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo.Digest(digest.String()).String()
}

// mustAttachVulnBundle attaches spec as cosign v3 does: a sigstore bundle
// referrer of image. It returns the referrer's reference.
func mustAttachVulnBundle(t *testing.T, repo name.Repository, image v1.Descriptor, spec vulnSpec) string {
	t.Helper()
	signed, shipped := spec.statements(t)
	b := mustBundle(t, bundleSpec{signer: spec.signer, statement: signed, shipped: shipped})
	return mustAttachBundle(t, repo, image, b, VulnPredicateType)
}
