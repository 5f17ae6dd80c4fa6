package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Fingerprint hashes everything that shapes a container: the pinned ref and
// the spec without the image text (the ref replaces it), the replica count,
// the update settings (they change how a rollout runs, not what runs), the
// ingress entries (they change how the proxies route to the replicas) and
// expose and connects_to (they change the proxies' paths between services
// and the names the agent's DNS answers; the DNS server a container is
// given does not depend on them).
// Revisions with equal fingerprints run identical containers, so a rollout
// to one adopts the other's replicas instead of restarting them.
func Fingerprint(spec specs.Spec, ref string) string {
	return FingerprintSecrets(spec, ref, nil)
}

// FingerprintSecrets is Fingerprint with the secret versions a revision
// pins (issue 13): a new version of a secret is a new fingerprint, so it
// rolls out health-gated like a new digest. Without pins the hash is
// Fingerprint's as before.
func FingerprintSecrets(spec specs.Spec, ref string, pins []state.SecretPin) string {
	s := *spec.Clone()
	s.Image = ""
	s.Replicas = 0
	s.Update = specs.Update{}
	s.Ingress = nil
	s.Expose = nil
	s.ConnectsTo = nil
	body, _ := json.Marshal(struct {
		Ref     string            `json:"ref"`
		Spec    specs.Spec        `json:"spec"`
		Secrets []state.SecretPin `json:"secrets,omitempty"`
	}{ref, s, pins})
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}
