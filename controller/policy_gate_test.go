package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
)

// gateKey is a cosign key pair: the private half signs in the test, the
// public half goes into the policy.
type gateKey struct {
	name string
	priv *ecdsa.PrivateKey
	pem  []byte
}

func mustGateKey(t *testing.T, keyName string) gateKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return gateKey{name: keyName, priv: priv, pem: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

func (k gateKey) sign(t *testing.T, message []byte) string {
	t.Helper()
	sum := sha256.Sum256(message)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func (k gateKey) entry(match string) policy.TrustEntry {
	return policy.TrustEntry{Match: match, Keys: []string{k.name}, KeysPEM: [][]byte{k.pem}}
}

// mustWriteTag writes a one-layer cosign object (what `cosign sign` and
// `cosign attest` write in their tag layout) at repo:tag.
func mustWriteTag(t *testing.T, repo, tag string, layer []byte, mediaType types.MediaType, annotations map[string]string) {
	t.Helper()
	r, err := name.NewRepository(repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(layer, mediaType), Annotations: annotations})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r.Tag(tag), img); err != nil {
		t.Fatal(err)
	}
}

// mustSign writes what `cosign sign --key` writes (cosign v2 tag layout).
func mustSign(t *testing.T, repo, digest string, k gateKey) {
	t.Helper()
	payload := []byte(`{"critical":{"identity":{"docker-reference":"` + repo + `"},"image":{"docker-manifest-digest":"` +
		digest + `"},"type":"cosign container image signature"},"optional":null}`)
	mustWriteTag(t, repo, strings.Replace(digest, ":", "-", 1)+".sig", payload, "application/vnd.dev.cosign.simplesigning.v1+json",
		map[string]string{"dev.cosignproject.cosign/signature": k.sign(t, payload)})
}

// mustAttestVuln writes what `cosign attest --key --type vuln` writes
// (cosign v2 tag layout) with report as the scanner's result.
func mustAttestVuln(t *testing.T, repo, digest string, k gateKey, report []byte) {
	t.Helper()
	now := time.Now().UTC().Format(time.RFC3339)
	statement := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://cosign.sigstore.dev/attestation/vuln/v1",
"subject":[{"name":%q,"digest":{"sha256":%q}}],
"predicate":{"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.50.0","version":"0.50.0","result":%s},
"metadata":{"scanStartedOn":%q,"scanFinishedOn":%q}}}`, repo, strings.TrimPrefix(digest, "sha256:"), report, now, now)
	payloadType := "application/vnd.in-toto+json"
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(statement), statement)
	envelope, err := json.Marshal(map[string]any{
		"payloadType": payloadType,
		"payload":     base64.StdEncoding.EncodeToString([]byte(statement)),
		"signatures":  []map[string]string{{"keyid": "", "sig": k.sign(t, []byte(pae))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mustWriteTag(t, repo, strings.Replace(digest, ":", "-", 1)+".att", envelope, "application/vnd.dsse.envelope.v1+json",
		map[string]string{"predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1"})
}

// trivyJSON is a Trivy report (schema 2) of repoDigest with one finding
// per severity; none makes the forged "clean" report of finding 8.
func trivyJSON(repoDigest string, severities ...string) []byte {
	vulns := make([]string, len(severities))
	for i, sev := range severities {
		vulns[i] = fmt.Sprintf(`{"VulnerabilityID": "CVE-2026-%04d", "PkgName": "openssl", "InstalledVersion": "1.0", "FixedVersion": "1.1", "Severity": %q}`, i+1, sev)
	}
	return fmt.Appendf(nil, `{"SchemaVersion": 2, "CreatedAt": %q, "ArtifactName": %q, "ArtifactType": "container_image",
"Metadata": {"RepoDigests": [%q]}, "Results": [{"Target": "app", "Vulnerabilities": [%s]}]}`,
		time.Now().UTC().Format(time.RFC3339), repoDigest, repoDigest, strings.Join(vulns, ","))
}

func mustSetPolicy(t *testing.T, n *testNode, p *policy.Policy) {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("test policy: %v", err)
	}
	current, err := n.ctrl.Policy()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.ctrl.SetPolicy(context.Background(), p, current.Version); err != nil {
		t.Fatal(err)
	}
}

// applyOverHTTP applies image (with replicas, to tell revisions apart)
// through the API, as `deployctl apply` does, and returns the outcome or
// the API's refusal.
func applyOverHTTP(t *testing.T, n *testNode, image string, replicas int, report []byte) (wire.ApplyOutcome, *wire.RemoteError) {
	t.Helper()
	spec := fmt.Sprintf("service: web\nimage: %s\nreplicas: %d\n", image, replicas)
	out, err := wire.NewClient([]string{n.api.URL}, nil).ApplyWith(context.Background(), wire.ApplyBody{SpecYAML: spec, ScanReport: report})
	if err == nil {
		return out, nil
	}
	var re *wire.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("apply %s: %v, want an API answer", image, err)
	}
	return out, re
}

func wantRefusal(t *testing.T, what string, re *wire.RemoteError, code string, mentions ...string) {
	t.Helper()
	if re == nil {
		t.Fatalf("%s: admitted, want a %s refusal", what, code)
	}
	if re.Status != http.StatusUnprocessableEntity || re.Code != code {
		t.Fatalf("%s: %d %s (%s), want 422 %s", what, re.Status, re.Code, re.APIError.Error, code)
	}
	for _, m := range mentions {
		if !strings.Contains(re.APIError.Error, m) {
			t.Errorf("%s: refusal %q does not mention %q", what, re.APIError.Error, m)
		}
	}
}

// Issue 16, finding 7: with a trust rule for localhost:PORT/team/*, the
// unsigned image deployed as LOCALHOST:PORT/team/app, and
// localhost:PORT/team/x/app too. Every spelling is now held to the rule,
// "**" covers nested repositories, and require_signatures refuses what no
// rule covers.
func TestApplyTrustRulesHoldEverySpelling(t *testing.T) {
	n := mustStartNode(t)
	reg, _, digest := mustRegistryImage(t, "team/app:v1")
	port := reg.URL[strings.LastIndex(reg.URL, ":")+1:]
	nestedDigest := mustPush(t, "127.0.0.1:"+port+"/team/x/app:v1")
	release := mustGateKey(t, "release.pub")
	mustSetPolicy(t, n, &policy.Policy{AllowCapabilities: policy.DefaultCapabilities(),
		Trust: []policy.TrustEntry{release.entry("localhost:" + port + "/team/*")}})

	for _, image := range []string{
		"localhost:" + port + "/team/app:v1",
		"LOCALHOST:" + port + "/team/app:v1",
		"LocalHost:" + port + "/team/app:v1",
		"127.0.0.1:" + port + "/team/app:v1",
		"localhost:" + port + "/team/app@" + digest,
		"LOCALHOST:" + port + "/team/app@" + digest,
	} {
		_, re := applyOverHTTP(t, n, image, 1, nil)
		wantRefusal(t, image, re, "signature", "release.pub", "not signed")
	}
	// Spellings without a canonical form are refused as invalid specs
	// (":PORT" dials this machine; 2130706433 is 127.0.0.1 to the C
	// resolver the Docker Engine uses).
	for _, image := range []string{":" + port + "/team/app:v1", "2130706433:" + port + "/team/app:v1"} {
		_, re := applyOverHTTP(t, n, image, 1, nil)
		if re == nil || re.Status != http.StatusBadRequest || re.Code != "invalid_spec" {
			t.Fatalf("apply %s: %+v, want 400 invalid_spec", image, re)
		}
	}
	// "*" stays within one segment: the nested repository is not covered
	// by team/* (documented), so it passes unsigned under this policy...
	nested := "LOCALHOST:" + port + "/team/x/app:v1"
	if _, re := applyOverHTTP(t, n, nested, 1, nil); re != nil {
		t.Fatalf("%s under team/*: %v, want admitted (not covered)", nested, re)
	}
	// ...but not when the policy requires a signature for every image,
	mustSetPolicy(t, n, &policy.Policy{AllowCapabilities: policy.DefaultCapabilities(), RequireSignatures: true,
		Trust: []policy.TrustEntry{release.entry("localhost:" + port + "/team/*")}})
	_, re := applyOverHTTP(t, n, nested, 2, nil)
	wantRefusal(t, nested+" under require_signatures", re, "signature", "require_signatures", "localhost:"+port+"/team/x/app", `"localhost:`+port+`/**"`)
	// ...nor when the rule says "**".
	mustSetPolicy(t, n, &policy.Policy{AllowCapabilities: policy.DefaultCapabilities(),
		Trust: []policy.TrustEntry{release.entry("127.0.0.1:" + port + "/team/**")}})
	for _, image := range []string{nested, "localhost:" + port + "/team/x/app@" + nestedDigest, "LOCALHOST:" + port + "/team/app:v1"} {
		_, re := applyOverHTTP(t, n, image, 2, nil)
		wantRefusal(t, image+" under team/**", re, "signature", "release.pub")
	}
	// Signed with the listed key: admitted whichever spelling, and the
	// revision records the key.
	mustSign(t, "127.0.0.1:"+port+"/team/x/app", nestedDigest, release)
	out, re := applyOverHTTP(t, n, nested, 2, nil)
	if re != nil {
		t.Fatalf("signed %s: %v", nested, re)
	}
	if rev, _ := n.store.View().Revision("web", out.Revision); rev.SignedBy != "release.pub" {
		t.Fatalf("signed revision %+v, want SignedBy release.pub", rev)
	}
}

// Issue 16, finding 8: a Trivy report with no results and the right digest
// was admitted under scan.mode: enforce, and a sent report overrode a
// signed attestation.
func TestApplyScanGateWantsSignedEvidence(t *testing.T) {
	n := mustStartNode(t)
	reg, ref, digest := mustRegistryImage(t, "team/app:v1")
	host := strings.TrimPrefix(reg.URL, "http://")
	repo := host + "/team/app"
	pinned := repo + "@" + digest
	scanner := mustGateKey(t, "scanner.pub")
	mustSign(t, repo, digest, scanner)
	enforce := func(acceptUnsigned bool) *policy.Policy {
		p := policy.Default()
		p.Trust = []policy.TrustEntry{scanner.entry(host + "/team/**")}
		p.Scan.Mode, p.Scan.AcceptUnsignedReports = "enforce", acceptUnsigned
		return p
	}
	forged := trivyJSON(pinned)

	// The forged empty report: refused, saying how to attach a signed
	// attestation or set the policy field.
	mustSetPolicy(t, n, enforce(false))
	_, re := applyOverHTTP(t, n, ref, 1, forged)
	wantRefusal(t, "forged report", re, "scan", "not signed", "cosign attest", "--type vuln", "scan.accept_unsigned_reports: true")
	if len(n.store.View().Revisions("web")) != 0 {
		t.Fatal("a refused apply stored a revision")
	}
	// The policy accepts unsigned reports: the same report is admitted.
	mustSetPolicy(t, n, enforce(true))
	if _, re := applyOverHTTP(t, n, ref, 1, forged); re != nil {
		t.Fatalf("report under accept_unsigned_reports: %v", re)
	}
	// A signed attestation with a critical finding wins over the clean
	// report, even where unsigned reports are accepted.
	mustAttestVuln(t, repo, digest, scanner, trivyJSON(pinned, "CRITICAL"))
	_, re = applyOverHTTP(t, n, ref, 2, forged)
	wantRefusal(t, "attested finding + clean report", re, "scan", "CVE-2026-0001", "report sent with the apply was ignored", "scanner.pub")
	// A clean attestation wins over a report with findings: admitted, and
	// the revision's warnings say the report was ignored.
	mustSetPolicy(t, n, enforce(false))
	mustAttestVuln(t, repo, digest, scanner, trivyJSON(pinned, "LOW"))
	out, re := applyOverHTTP(t, n, ref, 3, trivyJSON(pinned, "CRITICAL"))
	if re != nil {
		t.Fatalf("clean attestation + report with findings: %v", re)
	}
	rev, _ := n.store.View().Revision("web", out.Revision)
	if len(rev.ScanWarnings) != 1 || !strings.Contains(rev.ScanWarnings[0], "was ignored") {
		t.Fatalf("revision scan warnings %q, want the ignored report noted", rev.ScanWarnings)
	}
}

// Without a trust rule covering the image no attestation can be verified:
// enforce refuses, saying so; warn admits with the warnings, the unsigned
// report's findings included.
func TestApplyScanGateWithoutTrustRule(t *testing.T) {
	n := mustStartNode(t)
	reg, ref, digest := mustRegistryImage(t, "team/app:v1")
	pinned := strings.TrimPrefix(reg.URL, "http://") + "/team/app@" + digest
	p := policy.Default()
	p.Scan.Mode = "enforce"
	mustSetPolicy(t, n, p)
	_, re := applyOverHTTP(t, n, ref, 1, nil)
	wantRefusal(t, "no scan", re, "scan", "no trust rule covers the image")
	_, re = applyOverHTTP(t, n, ref, 1, trivyJSON(pinned))
	wantRefusal(t, "unsigned report", re, "scan", "no trust rule covers the image", "accept_unsigned_reports")

	p.Scan.Mode = "warn"
	mustSetPolicy(t, n, p)
	out, re := applyOverHTTP(t, n, ref, 1, trivyJSON(pinned, "HIGH"))
	if re != nil {
		t.Fatalf("warn mode: %v", re)
	}
	rev, _ := n.store.View().Revision("web", out.Revision)
	if text := strings.Join(rev.ScanWarnings, "\n"); len(rev.ScanWarnings) != 2 || !strings.Contains(text, "not signed") || !strings.Contains(text, "CVE-2026-0001") {
		t.Fatalf("warn-mode warnings %q, want the unsigned report and its finding", rev.ScanWarnings)
	}
}

// A policy stored before trust patterns were checked as they are now (here
// one without a registry, which never matched anything) refuses every
// apply with a 4xx that says to set the policy again, not a 500.
func TestApplyUnderAStoredPolicyThatNoLongerValidates(t *testing.T) {
	n := mustStartNode(t)
	_, ref, _ := mustRegistryImage(t, "team/app:v1")
	release := mustGateKey(t, "release.pub")
	old, err := json.Marshal(&policy.Policy{AllowCapabilities: policy.DefaultCapabilities(), Trust: []policy.TrustEntry{release.entry("team/*")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.ctrl.apply(context.Background(), raftstore.CmdSetPolicy, state.SetPolicyCmd{Now: time.Now(), JSON: old}); err != nil {
		t.Fatal(err)
	}
	_, re := applyOverHTTP(t, n, ref, 1, nil)
	if re == nil || re.Status != http.StatusBadRequest || re.Code != "invalid_policy" || !strings.Contains(re.APIError.Error, "deployctl policy set") {
		t.Fatalf("apply under a stale policy: %+v, want 400 invalid_policy saying to set the policy again", re)
	}
}
