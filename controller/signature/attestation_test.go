package signature

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestVulnAttestation(t *testing.T) {
	release := mustECDSASigner(t, "release.pub")
	stranger := mustECDSASigner(t, "stranger.pub")
	scanner := mustECDSASigner(t, "scanner.pub")
	const rulePattern = "127.0.0.1:*/team/*"
	older := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	newer := older.Add(6 * time.Hour)

	// found is the Attestation a success must return for spec stored at ref.
	found := func(spec vulnSpec, key, format, ref, rule string) Attestation {
		return Attestation{
			Result: []byte(spec.report), ScannerURI: trivyURI, ScannerVersion: trivyVersion,
			ScanFinishedOn: spec.finished, KeyName: key, Format: format, Ref: ref, Rule: rule,
		}
	}
	// valid is an attestation of the subject by signer, finished at when.
	valid := func(s scene, by signer, when time.Time, cve string) vulnSpec {
		return vulnSpec{signer: by, subject: s.subject.Digest, finished: when, report: trivyReport(cve)}
	}

	tests := []struct {
		name         string
		referrersAPI bool
		noRule       bool     // only a rule for another registry
		given        []signer // the keys argument
		// setup attests (or not) and returns what a success must return.
		setup     func(t *testing.T, s scene) Attestation
		wantErr   error
		wantInErr []string
	}{
		{
			name: "cosign v2 .att tag",
			setup: func(t *testing.T, s scene) Attestation {
				spec := valid(s, s.release, older, "CVE-2024-0001")
				ref := mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, spec))
				return found(spec, "release.pub", FormatCosignV2, ref, rulePattern)
			},
		},
		{
			name:         "bundle found through the referrers API",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) Attestation {
				spec := valid(s, s.release, older, "CVE-2024-0001")
				ref := mustAttachVulnBundle(t, s.repo, s.subject, spec)
				if fallbackTagExists(t, s.repo, s.subject.Digest) {
					t.Fatal("fallback tag written although the registry has the referrers API: the case would not test the API")
				}
				return found(spec, "release.pub", FormatBundleV3, ref, rulePattern)
			},
		},
		{
			name: "bundle found through the fallback tag",
			setup: func(t *testing.T, s scene) Attestation {
				spec := valid(s, s.release, older, "CVE-2024-0001")
				ref := mustAttachVulnBundle(t, s.repo, s.subject, spec)
				if !fallbackTagExists(t, s.repo, s.subject.Digest) {
					t.Fatal("no fallback tag written: the case would not test the tag schema")
				}
				return found(spec, "release.pub", FormatBundleV3, ref, rulePattern)
			},
		},
		{
			name:      "none",
			setup:     func(t *testing.T, s scene) Attestation { return Attestation{} },
			wantErr:   ErrNoAttestation,
			wantInErr: []string{"cosign attest --key <private key of release.pub>", "--type vuln", "--format cosign-vuln", ".att", rulePattern},
		},
		{
			// A signature and an SBOM, both by the listed key, in both
			// layouts: neither is a scan record.
			name:         "only a signature and an SBOM",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) Attestation {
				const spdx = "https://spdx.dev/Document"
				sbom := statement(t, s.subject.Digest, spdx)
				mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, attLayer{envelope: mustEnvelope(t, s.release, sbom, sbom), predicateType: spdx})
				b := mustBundle(t, bundleSpec{signer: s.release, statement: statement(t, s.subject.Digest, cosignSignPredicate)})
				mustAttachBundle(t, s.repo, s.subject, b, cosignSignPredicate)
				return Attestation{}
			},
			wantErr:   ErrNoAttestation,
			wantInErr: []string{"ignored 2", "spdx.dev", "sigstore.dev/cosign/sign"},
		},
		{
			name: "cosign v2 signed by an unlisted key",
			setup: func(t *testing.T, s scene) Attestation {
				mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, valid(s, s.stranger, older, "CVE-2024-0001")))
				return Attestation{}
			},
			wantErr:   ErrUntrustedKey,
			wantInErr: []string{"add its public key to the policy's trust list", "release.pub"},
		},
		{
			name:         "bundle signed by an unlisted key",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) Attestation {
				mustAttachVulnBundle(t, s.repo, s.subject, valid(s, s.stranger, older, "CVE-2024-0001"))
				return Attestation{}
			},
			wantErr: ErrUntrustedKey,
		},
		{
			name: "cosign v2 subject is another digest",
			setup: func(t *testing.T, s scene) Attestation {
				spec := valid(s, s.release, older, "CVE-2024-0001")
				spec.subject = s.other(t)
				mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, spec))
				return Attestation{}
			},
			wantErr:   ErrDigestMismatch,
			wantInErr: []string{"attestation", "verifies with key release.pub", "not this digest"},
		},
		{
			name:         "bundle subject is another digest",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) Attestation {
				spec := valid(s, s.release, older, "CVE-2024-0001")
				spec.subject = s.other(t)
				mustAttachVulnBundle(t, s.repo, s.subject, spec)
				return Attestation{}
			},
			wantErr: ErrDigestMismatch,
		},
		{
			// The bundle names its key, so an altered report is told apart
			// from another signer.
			name:         "bundle report altered after signing",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) Attestation {
				spec := valid(s, s.release, older, "CVE-2024-0001")
				spec.tampered = true
				mustAttachVulnBundle(t, s.repo, s.subject, spec)
				return Attestation{}
			},
			wantErr:   ErrBadSignature,
			wantInErr: []string{"names key release.pub", "altered"},
		},
		{
			// cosign v2 writes no key id: an altered report looks like
			// another signer, and the message says both.
			name: "cosign v2 report altered after signing",
			setup: func(t *testing.T, s scene) Attestation {
				spec := valid(s, s.release, older, "CVE-2024-0001")
				spec.tampered = true
				mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, spec))
				return Attestation{}
			},
			wantErr:   ErrUntrustedKey,
			wantInErr: []string{"altered"},
		},
		{
			// What `cosign attest --type vuln --predicate trivy.json` makes
			// of a plain Trivy report.
			name: "record without a scan result",
			setup: func(t *testing.T, s scene) Attestation {
				empty := vulnSpec{signer: s.release, subject: s.subject.Digest, finished: older}
				mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, empty))
				return Attestation{}
			},
			wantErr:   ErrBadSignature,
			wantInErr: []string{"scanner.result", "trivy image --format cosign-vuln"},
		},
		{
			name: "latest of two in one .att tag, although listed last",
			setup: func(t *testing.T, s scene) Attestation {
				latest := valid(s, s.release, newer, "CVE-2024-0002")
				ref := mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest,
					vulnLayer(t, valid(s, s.release, older, "CVE-2024-0001")), vulnLayer(t, latest))
				return found(latest, "release.pub", FormatCosignV2, ref, rulePattern)
			},
		},
		{
			name:         "latest in the .att tag, older referrer",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) Attestation {
				latest := valid(s, s.release, newer, "CVE-2024-0002")
				ref := mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, latest))
				mustAttachVulnBundle(t, s.repo, s.subject, valid(s, s.release, older, "CVE-2024-0001"))
				return found(latest, "release.pub", FormatCosignV2, ref, rulePattern)
			},
		},
		{
			name:         "latest referrer, older .att tag",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) Attestation {
				latest := valid(s, s.release, newer, "CVE-2024-0002")
				mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, valid(s, s.release, older, "CVE-2024-0001")))
				ref := mustAttachVulnBundle(t, s.repo, s.subject, latest)
				return found(latest, "release.pub", FormatBundleV3, ref, rulePattern)
			},
		},
		{
			// Only verified attestations compete: a newer one by another
			// key must not replace the report.
			name:         "newer attestation by an unlisted key loses",
			referrersAPI: true,
			setup: func(t *testing.T, s scene) Attestation {
				trusted := valid(s, s.release, older, "CVE-2024-0001")
				ref := mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, trusted))
				mustAttachVulnBundle(t, s.repo, s.subject, valid(s, s.stranger, newer, "CVE-2024-0002"))
				return found(trusted, "release.pub", FormatCosignV2, ref, rulePattern)
			},
		},
		{
			name:   "no rule covers the image: keys given",
			noRule: true,
			given:  []signer{stranger, scanner},
			setup: func(t *testing.T, s scene) Attestation {
				spec := vulnSpec{signer: scanner, subject: s.subject.Digest, finished: older, report: trivyReport("CVE-2024-0001")}
				ref := mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, spec))
				return found(spec, "scanner.pub", FormatCosignV2, ref, "")
			},
		},
		{
			name:   "no rule covers the image: keys given, none verifies",
			noRule: true,
			given:  []signer{scanner},
			setup: func(t *testing.T, s scene) Attestation {
				mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest, vulnLayer(t, valid(s, s.stranger, older, "CVE-2024-0001")))
				return Attestation{}
			},
			wantErr:   ErrUntrustedKey,
			wantInErr: []string{"attestation keys given (scanner.pub)", "pass its public key"},
		},
		{
			// The call site cannot widen the trust policy.
			name:  "rule covers the image: keys given are not used",
			given: []signer{scanner},
			setup: func(t *testing.T, s scene) Attestation {
				mustWriteCosignV2Attestations(t, s.repo, s.subject.Digest,
					vulnLayer(t, vulnSpec{signer: scanner, subject: s.subject.Digest, finished: older, report: trivyReport("CVE-2024-0001")}))
				return Attestation{}
			},
			wantErr:   ErrUntrustedKey,
			wantInErr: []string{rulePattern, "release.pub"},
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
			want := tt.setup(t, s)

			rules := []TrustRule{{Match: "registry.example.com/*", Keys: []Key{stranger.key}}}
			if !tt.noRule {
				rules = append(rules, TrustRule{Match: rulePattern, Keys: []Key{release.key}})
			}
			var given []Key
			for _, g := range tt.given {
				given = append(given, g.key)
			}
			v := &Verifier{Rules: rules}

			got, err := v.VulnAttestation(context.Background(), s.repo.Name(), s.subject.Digest.String(), given)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("VulnAttestation error = %v, want %v", err, tt.wantErr)
				}
				for _, w := range append(tt.wantInErr, s.repo.Name()+"@"+s.subject.Digest.String()) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("VulnAttestation: %v", err)
			}
			if !sameAttestation(got, want) {
				t.Errorf("VulnAttestation =\n%s\nwant\n%s", describe(got), describe(want))
			}
		})
	}
}

func sameAttestation(a, b Attestation) bool {
	return bytes.Equal(a.Result, b.Result) && a.ScanFinishedOn.Equal(b.ScanFinishedOn) &&
		a.ScannerURI == b.ScannerURI && a.ScannerVersion == b.ScannerVersion &&
		a.KeyName == b.KeyName && a.Format == b.Format && a.Ref == b.Ref && a.Rule == b.Rule
}

func describe(a Attestation) string {
	return strings.Join([]string{string(a.Result), a.ScanFinishedOn.String(), a.ScannerURI, a.ScannerVersion, a.KeyName, a.Format, a.Ref, a.Rule}, " | ")
}

// Configuration errors are reported before any registry access: the
// address below has no registry, so a request would fail differently.
func TestVulnAttestationBadInput(t *testing.T) {
	key := mustECDSASigner(t, "release.pub").key
	broken := Key{Name: "broken.pub", PEM: []byte("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")}
	digest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name       string
		rules      []TrustRule
		keys       []Key
		repository string
		digest     string
		wantErr    error
		wantInErr  string
	}{
		{"no rule and no keys", nil, nil, "127.0.0.1:1/team/web", digest, ErrNoKeys, "127.0.0.1:1/team/web@" + digest},
		{"no matching rule and no keys", []TrustRule{{Match: "registry.example.com/*", Keys: []Key{key}}}, nil, "127.0.0.1:1/team/web", digest, ErrNoKeys, "add a trust rule"},
		{"bad given key", nil, []Key{key, broken}, "127.0.0.1:1/team/web", digest, ErrBadKey, "broken.pub"},
		{"bad key in the matching rule", []TrustRule{{Match: "127.0.0.1:*/team/*", Keys: []Key{broken}}}, []Key{key}, "127.0.0.1:1/team/web", digest, ErrBadKey, "broken.pub"},
		{"malformed rule", []TrustRule{{Match: "x/[", Keys: []Key{key}}}, []Key{key}, "127.0.0.1:1/team/web", digest, ErrBadRule, "x/["},
		{"repository with a tag", nil, []Key{key}, "127.0.0.1:1/team/web:v1", digest, ErrBadReference, "web:v1"},
		{"tag instead of digest", nil, []Key{key}, "127.0.0.1:1/team/web", "v1", ErrBadReference, `"v1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{Rules: tt.rules}
			_, err := v.VulnAttestation(context.Background(), tt.repository, tt.digest, tt.keys)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VulnAttestation error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
		})
	}
}

// A registry that refuses us yields no verdict, only ErrRegistry.
func TestVulnAttestationRegistryError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	v := &Verifier{}
	_, err := v.VulnAttestation(context.Background(), host+"/team/web", "sha256:"+strings.Repeat("ab", 32), []Key{mustECDSASigner(t, "scanner.pub").key})
	if !errors.Is(err, ErrRegistry) {
		t.Fatalf("VulnAttestation error = %v, want ErrRegistry", err)
	}
	for _, verdict := range []error{ErrNoAttestation, ErrUntrustedKey, ErrBadSignature, ErrDigestMismatch} {
		if errors.Is(err, verdict) {
			t.Errorf("registry failure reported as verdict %v", verdict)
		}
	}
}

// Verify does not take a vulnerability attestation by a listed key for a
// signature.
func TestVerifyIgnoresVulnAttestation(t *testing.T) {
	release := mustECDSASigner(t, "release.pub")
	repo := mustRepo(t, mustRegistry(t, true)+"/team/web")
	subject := mustPushRandomImage(t, repo, "v1")
	spec := vulnSpec{signer: release, subject: subject.Digest, finished: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC), report: trivyReport("CVE-2024-0001")}
	mustWriteCosignV2Attestations(t, repo, subject.Digest, vulnLayer(t, spec))
	mustAttachVulnBundle(t, repo, subject, spec)

	v := &Verifier{Rules: []TrustRule{{Match: "127.0.0.1:*/team/*", Keys: []Key{release.key}}}}
	_, err := v.Verify(context.Background(), repo.Name(), subject.Digest.String())
	if !errors.Is(err, ErrUnsigned) {
		t.Fatalf("Verify error = %v, want ErrUnsigned", err)
	}
	if !strings.Contains(err.Error(), VulnPredicateType) {
		t.Errorf("error %q does not list the ignored attestation", err)
	}
}
