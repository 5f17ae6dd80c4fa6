package signature

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// scene is what a test case's setup works on: a registry repository
// holding one pushed image, the subject to sign.
type scene struct {
	repo     name.Repository
	subject  v1.Descriptor
	release  signer // listed in the rule
	stranger signer // listed nowhere
}

// other pushes a second image and returns its digest: signatures for it
// must not pass for the subject.
func (s scene) other(t *testing.T) v1.Hash {
	t.Helper()
	return mustPushRandomImage(t, s.repo, "other").Digest
}

func TestVerify(t *testing.T) {
	release := mustECDSASigner(t, "release.pub")
	stranger := mustECDSASigner(t, "stranger.pub")
	backup := mustECDSASigner(t, "backup.pub")

	tests := []struct {
		name         string
		referrersAPI bool
		listed       []signer // keys of the rule; default: release
		// setup signs (or not) and returns the SignatureRef a success
		// must report.
		setup      func(t *testing.T, s scene) string
		wantErr    error
		wantFormat string
		wantKey    string
		wantInErr  []string
	}{
		{
			name: "cosign v2 tag layout",
			setup: func(t *testing.T, s scene) string {
				return mustWriteCosignV2(t, s.repo, s.subject.Digest,
					signedLayer(t, s.release, simpleSigningPayload(s.repo, s.subject.Digest, simpleSigningType)))
			},
			wantFormat: FormatCosignV2, wantKey: "release.pub",
		},
		{
			name:         "bundle found through the referrers API",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) string {
				b := mustBundle(t, bundleSpec{signer: s.release, statement: statement(t, s.subject.Digest, cosignSignPredicate)})
				ref := mustAttachBundle(t, s.repo, s.subject, b, cosignSignPredicate)
				if fallbackTagExists(t, s.repo, s.subject.Digest) {
					t.Fatal("fallback tag written although the registry has the referrers API: the case would not test the API")
				}
				return ref
			},
			wantFormat: FormatBundleV3, wantKey: "release.pub",
		},
		{
			name:         "bundle found through the fallback tag",
			referrersAPI: false,
			setup: func(t *testing.T, s scene) string {
				b := mustBundle(t, bundleSpec{signer: s.release, statement: statement(t, s.subject.Digest, cosignSignPredicate)})
				ref := mustAttachBundle(t, s.repo, s.subject, b, cosignSignPredicate)
				if !fallbackTagExists(t, s.repo, s.subject.Digest) {
					t.Fatal("no fallback tag written: the case would not test the tag schema")
				}
				return ref
			},
			wantFormat: FormatBundleV3, wantKey: "release.pub",
		},
		{
			name:      "unsigned",
			setup:     func(t *testing.T, s scene) string { return "" },
			wantErr:   ErrUnsigned,
			wantInErr: []string{"cosign sign --key", "release.pub", "127.0.0.1:*/team/*"},
		},
		{
			// Without a key hint an altered payload looks exactly like a
			// signature by another key; the message says both.
			name: "cosign v2 payload altered after signing",
			setup: func(t *testing.T, s scene) string {
				l := signedLayer(t, s.release, simpleSigningPayload(s.repo, s.subject.Digest, simpleSigningType))
				l.payload = []byte(strings.Replace(string(l.payload), `"optional":null`, `"optional":{"x":"y"}`, 1))
				mustWriteCosignV2(t, s.repo, s.subject.Digest, l)
				return ""
			},
			wantErr:   ErrUntrustedKey,
			wantInErr: []string{"altered", "trust list"},
		},
		{
			// A bundle names its key, so an altered payload is told apart.
			name:         "bundle payload altered after signing",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) string {
				signed := statement(t, s.other(t), cosignSignPredicate)
				b := mustBundle(t, bundleSpec{signer: s.release, statement: signed, shipped: statement(t, s.subject.Digest, cosignSignPredicate)})
				mustAttachBundle(t, s.repo, s.subject, b, cosignSignPredicate)
				return ""
			},
			wantErr:   ErrBadSignature,
			wantInErr: []string{"names key release.pub", "altered"},
		},
		{
			name: "cosign v2 signature copied from another digest",
			setup: func(t *testing.T, s scene) string {
				mustWriteCosignV2(t, s.repo, s.subject.Digest,
					signedLayer(t, s.release, simpleSigningPayload(s.repo, s.other(t), simpleSigningType)))
				return ""
			},
			wantErr:   ErrDigestMismatch,
			wantInErr: []string{"verifies with key release.pub", "not this digest"},
		},
		{
			name:         "bundle signed for another digest",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) string {
				b := mustBundle(t, bundleSpec{signer: s.release, statement: statement(t, s.other(t), cosignSignPredicate)})
				mustAttachBundle(t, s.repo, s.subject, b, cosignSignPredicate)
				return ""
			},
			wantErr: ErrDigestMismatch,
		},
		{
			name: "cosign v2 signed by an unlisted key",
			setup: func(t *testing.T, s scene) string {
				mustWriteCosignV2(t, s.repo, s.subject.Digest,
					signedLayer(t, s.stranger, simpleSigningPayload(s.repo, s.subject.Digest, simpleSigningType)))
				return ""
			},
			wantErr:   ErrUntrustedKey,
			wantInErr: []string{"add its public key to the policy's trust list", "release.pub"},
		},
		{
			name:         "bundle signed by an unlisted key",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) string {
				b := mustBundle(t, bundleSpec{signer: s.stranger, statement: statement(t, s.subject.Digest, cosignSignPredicate)})
				mustAttachBundle(t, s.repo, s.subject, b, cosignSignPredicate)
				return ""
			},
			wantErr: ErrUntrustedKey,
		},
		{
			name:   "second listed key verifies",
			listed: []signer{backup, release},
			setup: func(t *testing.T, s scene) string {
				return mustWriteCosignV2(t, s.repo, s.subject.Digest,
					signedLayer(t, s.release, simpleSigningPayload(s.repo, s.subject.Digest, simpleSigningType)))
			},
			wantFormat: FormatCosignV2, wantKey: "release.pub",
		},
		{
			name: "one good signature among untrusted ones in the same tag",
			setup: func(t *testing.T, s scene) string {
				payload := simpleSigningPayload(s.repo, s.subject.Digest, simpleSigningType)
				return mustWriteCosignV2(t, s.repo, s.subject.Digest,
					signedLayer(t, s.stranger, payload), signedLayer(t, s.release, payload))
			},
			wantFormat: FormatCosignV2, wantKey: "release.pub",
		},
		{
			name:         "untrusted tag signature, trusted bundle",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) string {
				mustWriteCosignV2(t, s.repo, s.subject.Digest,
					signedLayer(t, s.stranger, simpleSigningPayload(s.repo, s.subject.Digest, simpleSigningType)))
				b := mustBundle(t, bundleSpec{signer: s.release, statement: statement(t, s.subject.Digest, cosignSignPredicate)})
				return mustAttachBundle(t, s.repo, s.subject, b, cosignSignPredicate)
			},
			wantFormat: FormatBundleV3, wantKey: "release.pub",
		},
		{
			name: "digest mismatch is reported over an untrusted key",
			setup: func(t *testing.T, s scene) string {
				mustWriteCosignV2(t, s.repo, s.subject.Digest,
					signedLayer(t, s.stranger, simpleSigningPayload(s.repo, s.subject.Digest, simpleSigningType)),
					signedLayer(t, s.release, simpleSigningPayload(s.repo, s.other(t), simpleSigningType)))
				return ""
			},
			wantErr: ErrDigestMismatch,
		},
		{
			name: "verified payload that is not a cosign signature",
			setup: func(t *testing.T, s scene) string {
				mustWriteCosignV2(t, s.repo, s.subject.Digest,
					signedLayer(t, s.release, simpleSigningPayload(s.repo, s.subject.Digest, "atomic container signature")))
				return ""
			},
			wantErr:   ErrBadSignature,
			wantInErr: []string{"atomic container signature"},
		},
		{
			name: "signature layer without its annotation",
			setup: func(t *testing.T, s scene) string {
				mustWriteCosignV2(t, s.repo, s.subject.Digest,
					sigLayer{payload: simpleSigningPayload(s.repo, s.subject.Digest, simpleSigningType)})
				return ""
			},
			wantErr:   ErrBadSignature,
			wantInErr: []string{signatureAnnotation},
		},
		{
			// cosign v3 stores attestations as the same kind of referrer;
			// one signed by a listed key still is no signature.
			name:         "attestation only",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) string {
				const provenance = "https://slsa.dev/provenance/v1"
				b := mustBundle(t, bundleSpec{signer: s.release, statement: statement(t, s.subject.Digest, provenance)})
				mustAttachBundle(t, s.repo, s.subject, b, provenance)
				return ""
			},
			wantErr:   ErrUnsigned,
			wantInErr: []string{"ignored 1 attestation", "slsa.dev/provenance"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := scene{
				repo:     mustRepo(t, mustRegistry(t, tt.referrersAPI)+"/team/web"),
				release:  release,
				stranger: stranger,
			}
			s.subject = mustPushRandomImage(t, s.repo, "v1")
			wantRef := tt.setup(t, s)

			listed := tt.listed
			if listed == nil {
				listed = []signer{release}
			}
			rule := TrustRule{Match: "127.0.0.1:*/team/*"}
			for _, k := range listed {
				rule.Keys = append(rule.Keys, k.key)
			}
			v := &Verifier{Rules: []TrustRule{{Match: "registry.example.com/*", Keys: []Key{stranger.key}}, rule}}

			got, err := v.Verify(context.Background(), s.repo.Name(), s.subject.Digest.String())
			if !got.Required {
				t.Errorf("Required = false, want true: the rule matches")
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
				}
				for _, want := range append(tt.wantInErr, s.repo.Name()+"@"+s.subject.Digest.String()) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Result{Required: true, KeyName: tt.wantKey, Format: tt.wantFormat, SignatureRef: wantRef}
			if got != want {
				t.Errorf("Verify = %+v, want %+v", got, want)
			}
		})
	}
}

// Nothing is fetched for an image no rule covers: the address below has no
// registry, so any request would fail.
func TestVerifyNoMatchingRule(t *testing.T) {
	v := &Verifier{Rules: []TrustRule{{Match: "registry.example.com/team/*", Keys: []Key{mustECDSASigner(t, "release.pub").key}}}}
	for _, repository := range []string{"127.0.0.1:1/team/web", "registry.example.com/team/web/api", "registry.example.com/other/web"} {
		got, err := v.Verify(context.Background(), repository, "sha256:"+strings.Repeat("ab", 32))
		if err != nil || got != (Result{}) {
			t.Errorf("Verify(%s) = %+v, %v; want not required", repository, got, err)
		}
	}
}

func TestVerifyBadKey(t *testing.T) {
	good := mustECDSASigner(t, "release.pub").key
	v := &Verifier{Rules: []TrustRule{{
		Match: "127.0.0.1:*/team/*",
		Keys:  []Key{good, {Name: "broken.pub", PEM: []byte("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")}},
	}}}
	// 127.0.0.1:1 has no registry: keys are checked before any request.
	got, err := v.Verify(context.Background(), "127.0.0.1:1/team/web", "sha256:"+strings.Repeat("ab", 32))
	if !errors.Is(err, ErrBadKey) {
		t.Fatalf("Verify error = %v, want ErrBadKey", err)
	}
	if !strings.Contains(err.Error(), "broken.pub") {
		t.Errorf("error %q does not name the bad key", err)
	}
	if !got.Required {
		t.Error("Required = false, want true: the rule matches")
	}
}

func TestVerifyBadInput(t *testing.T) {
	key := mustECDSASigner(t, "release.pub").key
	digest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name       string
		rules      []TrustRule
		repository string
		digest     string
		wantErr    error
	}{
		{"malformed pattern", []TrustRule{{Match: "127.0.0.1:*/team/[", Keys: []Key{key}}}, "127.0.0.1:1/team/web", digest, ErrBadRule},
		// A malformed rule fails every image, matched or not.
		{"malformed pattern in another rule", []TrustRule{{Match: "x/[", Keys: []Key{key}}}, "127.0.0.1:1/team/web", digest, ErrBadRule},
		{"empty pattern", []TrustRule{{Match: "", Keys: []Key{key}}}, "127.0.0.1:1/team/web", digest, ErrBadRule},
		{"rule without keys", []TrustRule{{Match: "127.0.0.1:*/team/*"}}, "127.0.0.1:1/team/web", digest, ErrBadRule},
		{"repository with a tag", nil, "127.0.0.1:1/team/web:v1", digest, ErrBadReference},
		{"tag instead of digest", nil, "127.0.0.1:1/team/web", "v1", ErrBadReference},
		{"short digest", nil, "127.0.0.1:1/team/web", "sha256:abcd", ErrBadReference},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{Rules: tt.rules}
			if _, err := v.Verify(context.Background(), tt.repository, tt.digest); !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// A registry that refuses us yields no verdict, only ErrRegistry.
func TestVerifyRegistryError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	v := &Verifier{Rules: []TrustRule{{Match: "127.0.0.1:*/team/*", Keys: []Key{mustECDSASigner(t, "release.pub").key}}}}
	_, err := v.Verify(context.Background(), host+"/team/web", "sha256:"+strings.Repeat("ab", 32))
	if !errors.Is(err, ErrRegistry) {
		t.Fatalf("Verify error = %v, want ErrRegistry", err)
	}
	for _, verdict := range []error{ErrUnsigned, ErrUntrustedKey, ErrBadSignature, ErrDigestMismatch} {
		if errors.Is(err, verdict) {
			t.Errorf("registry failure reported as verdict %v", verdict)
		}
	}
}

// A cancelled context stops registry access instead of waiting on it.
func TestVerifyCancelled(t *testing.T) {
	repo := mustRepo(t, mustRegistry(t, true)+"/team/web")
	subject := mustPushRandomImage(t, repo, "v1")
	v := &Verifier{Rules: []TrustRule{{Match: "127.0.0.1:*/team/*", Keys: []Key{mustECDSASigner(t, "release.pub").key}}}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, repo.Name(), subject.Digest.String()); !errors.Is(err, ErrRegistry) {
		t.Fatalf("Verify error = %v, want ErrRegistry", err)
	}
}

// One Verifier serves concurrent applies.
func TestVerifyConcurrent(t *testing.T) {
	release := mustECDSASigner(t, "release.pub")
	repo := mustRepo(t, mustRegistry(t, true)+"/team/web")
	subject := mustPushRandomImage(t, repo, "v1")
	mustWriteCosignV2(t, repo, subject.Digest, signedLayer(t, release, simpleSigningPayload(repo, subject.Digest, simpleSigningType)))
	v := &Verifier{
		Rules:   []TrustRule{{Match: "127.0.0.1:*/team/*", Keys: []Key{release.key}}},
		Options: make([]remote.Option, 0, 8), // spare capacity: appending to it in Verify would race
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = v.Verify(context.Background(), repo.Name(), subject.Digest.String()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Verify #%d: %v", i, err)
		}
	}
}

func TestMatchRule(t *testing.T) {
	key := Key{Name: "k"}
	rules := []TrustRule{
		{Match: "registry.example.com/team/*", Keys: []Key{{Name: "team"}}},
		{Match: "registry.example.com/*/*", Keys: []Key{{Name: "any-two"}}},
		{Match: "docker.io/library/*", Keys: []Key{{Name: "hub"}}},
		{Match: "localhost:5000/app", Keys: []Key{key}},
	}
	tests := []struct {
		repository string
		want       string // key name of the matching rule, "" for none
	}{
		{"registry.example.com/team/web", "team"}, // first match wins over any-two
		{"registry.example.com/ops/web", "any-two"},
		{"registry.example.com/team/web/api", ""}, // "*" does not cross "/"
		{"registry.example.com/team", ""},
		{"nginx", "hub"}, // Docker Hub's short form, canonically index.docker.io/library/nginx
		{"docker.io/library/nginx", "hub"},
		{"index.docker.io/library/nginx", "hub"},
		{"localhost:5000/app", "k"},
		{"other.example.com/team/web", ""},
	}
	for _, tt := range tests {
		repo, err := parseRepository(tt.repository)
		if err != nil {
			t.Fatal(err)
		}
		rule, ok, err := matchRule(rules, repo)
		got := ""
		if ok {
			got = rule.Keys[0].Name
		}
		if err != nil || got != tt.want {
			t.Errorf("matchRule(%s) = %q, %v; want %q", tt.repository, got, err, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := mustECDSASigner(t, "release.pub").key
	v := &Verifier{Rules: []TrustRule{
		{Match: "registry.example.com/team/*", Keys: []Key{good}},
		{Match: "registry.example.com/[", Keys: []Key{good}},
		{Match: "registry.example.com/ops/*", Keys: []Key{{Name: "private.key", PEM: []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")}}},
	}}
	err := v.Validate()
	if !errors.Is(err, ErrBadRule) || !errors.Is(err, ErrBadKey) {
		t.Fatalf("Validate = %v, want both ErrBadRule and ErrBadKey", err)
	}
	if !strings.Contains(err.Error(), "private.key") {
		t.Errorf("Validate error %q does not name the bad key", err)
	}
	if err := (&Verifier{Rules: v.Rules[:1]}).Validate(); err != nil {
		t.Errorf("Validate of a good policy = %v", err)
	}
}

// Loopback registries are spoken to over plain HTTP.
func TestParseRepositoryScheme(t *testing.T) {
	for repository, want := range map[string]string{
		"127.0.0.2:5000/team/web":       "http",
		"localhost:5000/team/web":       "http",
		"registry.example.com/team/web": "https",
	} {
		repo, err := parseRepository(repository)
		if err != nil {
			t.Fatal(err)
		}
		if got := repo.Scheme(); got != want {
			t.Errorf("scheme of %s = %s, want %s", repository, got, want)
		}
	}
}
