package controller

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Ingress TLS (issue 13, point 5): `ingress[].tls: {cert, key}` names two
// secrets. A revision pins their versions in Revision.Secrets with those
// of secrets: (so removal, `secret inspect`, outdated, refresh and
// rollbacks treat them alike), but only the pins of secrets: are part of
// the fingerprint: a new certificate changes the proxies, not the
// containers, so rotating it restarts nothing. The values go only to
// hosts' agents, whose proxies serve every ingress route, in the answer
// of GET /v1/agent/secrets?ingress=1.

// tlsRef is one secret reference of an ingress entry's tls, with its field.
type tlsRef struct {
	field string // ingress[N].tls.cert
	ref   specs.SecretRef
}

func ingressTLSRefs(spec *specs.Spec) []tlsRef {
	var out []tlsRef
	for i, in := range spec.Ingress {
		if in.TLS == nil {
			continue
		}
		out = append(out, tlsRef{fmt.Sprintf("ingress[%d].tls.cert", i), in.TLS.Cert}, tlsRef{fmt.Sprintf("ingress[%d].tls.key", i), in.TLS.Key})
	}
	return out
}

// pinIngressTLS adds to pins (those of secrets:) the version of every
// secret the ingress entries' tls name: the version written, or the
// latest. One revision pins one version of a secret, so a secret named
// twice with different versions is refused, as is one that does not
// exist; problems name the field and the fix, nothing is stored.
func pinIngressTLS(view *state.Tables, spec *specs.Spec, pins []state.SecretPin) ([]state.SecretPin, error) {
	pinnedBy := map[string]string{}
	for i, e := range spec.Secrets {
		pinnedBy[e.Name] = fmt.Sprintf("secrets[%d]", i)
	}
	var problems []specs.Problem
	for _, r := range ingressTLSRefs(spec) {
		sec, ok := view.Secret(r.ref.Name)
		latest, any := sec.Latest()
		version := latest.Version
		switch {
		case !ok || !any:
			problems = append(problems, specs.Problem{Field: r.field, Message: fmt.Sprintf(
				"secret %s does not exist; create it first with `deployctl secret create %s -f FILE` (a PEM file)", r.ref.Name, r.ref.Name)})
			continue
		case r.ref.Version != 0:
			if _, ok := sec.Version(r.ref.Version); !ok {
				problems = append(problems, specs.Problem{Field: r.field + ".version", Message: fmt.Sprintf(
					"secret %s has no version %d (latest: %d); `deployctl secret inspect %s` lists them", r.ref.Name, r.ref.Version, latest.Version, r.ref.Name)})
				continue
			}
			version = r.ref.Version
		}
		if i := slices.IndexFunc(pins, func(p state.SecretPin) bool { return p.Name == r.ref.Name }); i >= 0 {
			if pins[i].Version != version {
				problems = append(problems, specs.Problem{Field: r.field, Message: fmt.Sprintf(
					"secret %s is version %d here but version %d in %s; a revision runs one version of a secret: write the same version in both, or leave version out in both",
					r.ref.Name, version, pins[i].Version, pinnedBy[r.ref.Name])})
			}
			continue
		}
		pinnedBy[r.ref.Name] = r.field
		pins = append(pins, state.SecretPin{Name: r.ref.Name, Version: version})
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, &specs.ValidationError{Problems: problems})
	}
	return pins, nil
}

// containerPins are the pins of the secrets the containers receive (the
// spec's secrets:), the ones the fingerprint hashes: a revision whose
// ingress certificate changed runs the same containers.
func containerPins(spec *specs.Spec, pins []state.SecretPin) []state.SecretPin {
	var out []state.SecretPin
	for _, p := range pins {
		if slices.ContainsFunc(spec.Secrets, func(e specs.Secret) bool { return e.Name == p.Name }) {
			out = append(out, p)
		}
	}
	return out
}

// followsLatest reports whether a spec takes the latest version of secret
// name somewhere (an entry without version:), so that a newer version
// makes the revision outdated.
func followsLatest(spec specs.Spec, name string) bool {
	for _, e := range spec.Secrets {
		if e.Name == name && e.Version == 0 {
			return true
		}
	}
	for _, r := range ingressTLSRefs(&spec) {
		if r.ref.Name == name && r.ref.Version == 0 {
			return true
		}
	}
	return false
}

func pinnedVersion(pins []state.SecretPin, name string) int {
	for _, p := range pins {
		if p.Name == name {
			return p.Version
		}
	}
	return 0
}

// routeTLS is the certificate and key an entry of rev is served with.
func routeTLS(rev state.Revision, in specs.Ingress) wire.IngressTLSRef {
	if in.TLS == nil {
		return wire.IngressTLSRef{}
	}
	return wire.IngressTLSRef{
		Cert: wire.SecretRef{Name: in.TLS.Cert.Name, Version: pinnedVersion(rev.Secrets, in.TLS.Cert.Name)},
		Key:  wire.SecretRef{Name: in.TLS.Key.Name, Version: pinnedVersion(rev.Secrets, in.TLS.Key.Name)},
	}
}

// openSecret opens one pinned version.
func openSecret(key *secretbox.Key, view *state.Tables, ref wire.SecretRef) ([]byte, error) {
	sec, _ := view.Secret(ref.Name)
	v, ok := sec.Version(ref.Version)
	if !ok {
		return nil, fmt.Errorf("%w: secret %s version %d was removed", ErrConflict, ref.Name, ref.Version)
	}
	value, err := key.Open(v.Sealed, state.SecretAAD(ref.Name, ref.Version))
	if err != nil {
		return nil, fmt.Errorf("open secret %s version %d: %w", ref.Name, ref.Version, err)
	}
	return value, nil
}

// checkIngressTLS opens the pinned certificate and key of every tls entry
// and refuses (400, naming the field) a pair that is not a PEM
// certificate chain and its private key: the proxies could not serve it,
// and an invalid spec must never replace a valid one. A certificate that
// does not name the entry's host, or is outside its validity period, is
// a warning: the operator may know better (a client pinning it, a
// certificate renewed right after). Values are cleared after use.
func (c *Controller) checkIngressTLS(view *state.Tables, spec *specs.Spec, pins []state.SecretPin) ([]string, error) {
	refs := ingressTLSRefs(spec)
	if len(refs) == 0 {
		return nil, nil
	}
	key, err := c.secretsKey()
	if err != nil {
		return nil, err
	}
	var problems []specs.Problem
	var warnings []string
	for i, in := range spec.Ingress {
		if in.TLS == nil {
			continue
		}
		field := fmt.Sprintf("ingress[%d].tls", i)
		rev := state.Revision{Secrets: pins}
		ref := routeTLS(rev, in)
		certPEM, err := openSecret(key, view, ref.Cert)
		if err != nil {
			return nil, err
		}
		keyPEM, err := openSecret(key, view, ref.Key)
		if err != nil {
			clear(certPEM)
			return nil, err
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		clear(certPEM)
		clear(keyPEM)
		if err != nil {
			problems = append(problems, specs.Problem{Field: field, Message: keyPairProblem(ref, err)})
			continue
		}
		leaf := pair.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				problems = append(problems, specs.Problem{Field: field + ".cert", Message: fmt.Sprintf("secret %s version %d: the certificate does not parse: %v", ref.Cert.Name, ref.Cert.Version, err)})
				continue
			}
		}
		// A wildcard host is checked with a name of its own: the
		// certificate must cover every name the route takes.
		if name, wild := strings.CutPrefix(in.Host, "*."); in.Host != "" && leaf.VerifyHostname(map[bool]string{true: "deployctl-check." + name, false: in.Host}[wild]) != nil {
			warnings = append(warnings, fmt.Sprintf("%s.cert: the certificate of secret %s version %d does not name %s (it names %s); clients checking the name will refuse it",
				field, ref.Cert.Name, ref.Cert.Version, in.Host, strings.Join(leaf.DNSNames, ", ")))
		}
		if now := c.cfg.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			warnings = append(warnings, fmt.Sprintf("%s.cert: the certificate of secret %s version %d is valid from %s to %s only; clients will refuse it",
				field, ref.Cert.Name, ref.Cert.Version, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, &specs.ValidationError{Problems: problems})
	}
	return warnings, nil
}

// keyPairProblem says what is wrong with a certificate and key pair, from
// crypto/tls's error (which never quotes the key).
func keyPairProblem(ref wire.IngressTLSRef, err error) string {
	what := fmt.Sprintf("secret %s version %d (certificate) and secret %s version %d (key)", ref.Cert.Name, ref.Cert.Version, ref.Key.Name, ref.Key.Version)
	fix := "create new versions with `deployctl secret create NAME -f FILE` holding the PEM certificate chain (leaf first) and its PEM private key, then apply again"
	msg := err.Error()
	switch {
	case strings.Contains(msg, "private key does not match public key"):
		return fmt.Sprintf("%s: the key is not the certificate's private key; %s", what, fix)
	case strings.Contains(msg, "failed to find any PEM data in certificate input"),
		strings.Contains(msg, "failed to find certificate PEM data"):
		return fmt.Sprintf("%s: the certificate secret holds no PEM certificate (-----BEGIN CERTIFICATE-----); %s", what, fix)
	case strings.Contains(msg, "failed to find any PEM data in key input"),
		strings.Contains(msg, "failed to find PEM block with type ending in \"PRIVATE KEY\""):
		return fmt.Sprintf("%s: the key secret holds no PEM private key (-----BEGIN ... PRIVATE KEY-----); %s", what, fix)
	}
	return fmt.Sprintf("%s are not a usable certificate and key: %v; %s", what, err, fix)
}

// ingressCertificates lists the distinct certificate and key pairs the
// current ingress routes name, sorted.
func ingressCertificates(view *state.Tables) []wire.IngressTLSRef {
	var out []wire.IngressTLSRef
	for _, r := range ingressRoutes(view) {
		if !r.TLS.IsZero() && !slices.Contains(out, r.TLS) {
			out = append(out, r.TLS)
		}
	}
	slices.SortFunc(out, func(a, b wire.IngressTLSRef) int {
		return strings.Compare(fmt.Sprintf("%s\x00%09d\x00%s\x00%09d", a.Cert.Name, a.Cert.Version, a.Key.Name, a.Key.Version),
			fmt.Sprintf("%s\x00%09d\x00%s\x00%09d", b.Cert.Name, b.Cert.Version, b.Key.Name, b.Key.Version))
	})
	return out
}

// AgentIngressTLS opens the certificates and keys of the ingress routes
// for the agent of host: every registered host's proxy serves every
// ingress route, so every registered host gets them, and nothing else
// does (an unregistered host is refused). Besides AgentSecrets this is
// the only answer that carries values.
func (c *Controller) AgentIngressTLS(host string) (wire.AgentIngressTLS, error) {
	if !c.Ready() {
		return wire.AgentIngressTLS{}, c.notLeader()
	}
	view := c.cfg.Store.View()
	if !slices.ContainsFunc(view.Hosts(), func(h state.Host) bool { return h.ID == host }) {
		return wire.AgentIngressTLS{}, fmt.Errorf("%w: host %s is not registered; its agent registers with its first heartbeat, then its proxy gets the ingress certificates", wire.ErrForbidden, host)
	}
	out := wire.AgentIngressTLS{Certificates: []wire.IngressCertificate{}}
	refs := ingressCertificates(view)
	if len(refs) == 0 {
		return out, nil
	}
	key, err := c.secretsKey()
	if err != nil {
		return wire.AgentIngressTLS{}, err
	}
	for _, ref := range refs {
		certPEM, err := openSecret(key, view, ref.Cert)
		if err != nil {
			return wire.AgentIngressTLS{}, err
		}
		keyPEM, err := openSecret(key, view, ref.Key)
		if err != nil {
			return wire.AgentIngressTLS{}, err
		}
		out.Certificates = append(out.Certificates, wire.IngressCertificate{IngressTLSRef: ref, CertPEM: certPEM, KeyPEM: keyPEM})
	}
	return out, nil
}

// agentIngressTLS answers GET /v1/agent/secrets?host=H&ingress=1 (the
// caller's certificate already checked to speak for H). Nothing of the
// answer is logged.
func (a *API) agentIngressTLS(w http.ResponseWriter, host string) {
	out, err := a.c.AgentIngressTLS(host)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
