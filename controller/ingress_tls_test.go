package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/testca"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

func mustLeaf(t *testing.T, ca *testca.CA, names ...string) testca.Leaf {
	t.Helper()
	leaf, err := ca.Issue(names...)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// Issue 13, point 5: ingress tls secrets are pinned per revision (outside
// the fingerprint), checked at apply (PEM, key matching the certificate),
// delivered only to registered hosts' agents, and rotated by an apply.
func TestIngressTLSPinnedCheckedAndDelivered(t *testing.T) {
	withKey := withSecretsKey(t)
	c := mustStartTLSClusterWith(t, func(cfg *Config) { withKey(cfg); cfg.ServeIngress = true })
	ctx := context.Background()
	h1, h2, op := c.client(t, "h1"), c.client(t, "h2"), c.client(t, "operator")
	self, _ := c.store.View().Server("n1")
	if err := c.ctrl.Join(ctx, c.members, wire.JoinRequest{ID: "n1", RaftAddr: self.RaftAddr, APIAddr: self.APIAddr, Version: raftstore.FSMVersion}); err != nil {
		t.Fatal(err)
	}
	if err := c.ctrl.Report(ctx, state.HostReport{Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	ca, err := testca.New("test ca")
	if err != nil {
		t.Fatal(err)
	}
	v1, other := mustLeaf(t, ca, "shop.example.com"), mustLeaf(t, ca, "shop.example.com")
	for name, value := range map[string][]byte{"shop-cert": v1.CertPEM, "shop-key": v1.KeyPEM, "other-key": other.KeyPEM, "not-pem": []byte("hello")} {
		if _, err := c.ctrl.CreateSecret(ctx, name, value, ""); err != nil {
			t.Fatal(err)
		}
	}
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	spec := specFor(ref)
	spec.Replicas = 1
	spec.Ingress = []specs.Ingress{{Listen: 443, Port: 8080, Host: "shop.example.com",
		TLS: &specs.IngressTLS{Cert: specs.SecretRef{Name: "shop-cert"}, Key: specs.SecretRef{Name: "shop-key"}}}}
	spec.ApplyDefaults()

	refused := func(what string, mutate func(*specs.Spec), field, message string) {
		t.Helper()
		s := spec.Clone()
		mutate(s)
		_, err := c.ctrl.Apply(ctx, s, "")
		var verr *specs.ValidationError
		if !errors.Is(err, ErrInvalidSpec) || !errors.As(err, &verr) || len(verr.Problems) != 1 ||
			verr.Problems[0].Field != field || !strings.Contains(verr.Problems[0].Message, message) {
			t.Errorf("%s: apply = %v\nwant one problem on %s containing %q", what, err, field, message)
		}
		if _, ok := c.store.View().Service("web"); ok {
			t.Fatalf("%s: a refused apply stored service web", what)
		}
	}
	refused("a missing secret", func(s *specs.Spec) { s.Ingress[0].TLS.Cert.Name = "nope" }, "ingress[0].tls.cert",
		"secret nope does not exist; create it first with `deployctl secret create nope -f FILE`")
	refused("a missing version", func(s *specs.Spec) { s.Ingress[0].TLS.Key.Version = 7 }, "ingress[0].tls.key.version", "secret shop-key has no version 7")
	refused("a key of another certificate", func(s *specs.Spec) { s.Ingress[0].TLS.Key.Name = "other-key" }, "ingress[0].tls",
		"secret shop-cert version 1 (certificate) and secret other-key version 1 (key): the key is not the certificate's private key")
	refused("a certificate that is not PEM", func(s *specs.Spec) { s.Ingress[0].TLS.Cert.Name = "not-pem" }, "ingress[0].tls",
		"the certificate secret holds no PEM certificate")
	refused("one secret at two versions", func(s *specs.Spec) {
		s.Secrets = []specs.Secret{{Name: "shop-key", Version: 1}}
		s.Ingress[0].TLS.Key.Version = 0
		s.ApplyDefaults()
		if _, err := c.ctrl.CreateSecret(ctx, "shop-key", v1.KeyPEM, ""); err != nil { // version 2, the latest
			t.Fatal(err)
		}
	}, "ingress[0].tls.key", "secret shop-key is version 2 here but version 1 in secrets[0]")
	spec.Ingress[0].TLS.Key.Version = 1 // shop-key 2 holds the same key: pin 1 to keep the test's story plain

	out, err := c.ctrl.Apply(ctx, spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Warnings) != 0 {
		t.Errorf("warnings for a matching certificate: %v", out.Warnings)
	}
	rev, _ := c.store.View().Revision("web", out.Revision)
	if want := []state.SecretPin{{Name: "shop-cert", Version: 1}, {Name: "shop-key", Version: 1}}; !slices.Equal(rev.Secrets, want) {
		t.Fatalf("pins = %+v, want %+v", rev.Secrets, want)
	}
	if rev.Fingerprint != Fingerprint(*spec, rev.Ref) {
		t.Errorf("the ingress certificate's pins are in the fingerprint: rotating it would restart every replica")
	}
	table, err := c.ctrl.Ingress(ctx, 0, 0)
	if err != nil || len(table.Routes) != 1 || table.Routes[0].TLS != (wire.IngressTLSRef{Cert: wire.SecretRef{Name: "shop-cert", Version: 1}, Key: wire.SecretRef{Name: "shop-key", Version: 1}}) {
		t.Fatalf("ingress table = %+v, %v", table.Routes, err)
	}
	if body, _ := json.Marshal(table); bytes.Contains(body, v1.KeyPEM) || bytes.Contains(body, v1.CertPEM) {
		t.Fatalf("the ingress table (which agents may log) carries a value")
	}

	url := c.url + "/v1/agent/secrets?host=h1&ingress=1"
	resp, err := h1.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var got wire.AgentIngressTLS
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(got.Certificates) != 1 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("h1: %d %v %d certificates", resp.StatusCode, err, len(got.Certificates))
	}
	if g := got.Certificates[0]; !bytes.Equal(g.CertPEM, v1.CertPEM) || !bytes.Equal(g.KeyPEM, v1.KeyPEM) || g.Cert.Version != 1 || g.Key.Name != "shop-key" {
		t.Fatalf("h1 got the wrong certificate: %+v", g.IngressTLSRef)
	}
	wantStatus(t, "h2 asking as h1", call(t, h2, "GET", url, nil), http.StatusForbidden, wire.CodeForbidden)
	wantStatus(t, "h2, not registered", call(t, h2, "GET", c.url+"/v1/agent/secrets?host=h2&ingress=1", nil), http.StatusForbidden, wire.CodeForbidden)
	wantStatus(t, "the operator", call(t, op, "GET", url, nil), http.StatusForbidden, wire.CodeForbidden)

	// Rotation: new versions, and apply again. A new revision with the
	// same fingerprint (the replicas stay), pinning the new versions.
	v2 := mustLeaf(t, ca, "shop.example.com")
	for name, value := range map[string][]byte{"shop-cert": v2.CertPEM, "shop-key": v2.KeyPEM} {
		if _, err := c.ctrl.CreateSecret(ctx, name, value, ""); err != nil {
			t.Fatal(err)
		}
	}
	spec.Ingress[0].TLS.Key.Version = 0
	outdated, _ := c.ctrl.Outdated(ctx)
	if len(outdated) != 1 || len(outdated[0].Secrets) != 1 || outdated[0].Secrets[0].Name != "shop-cert" {
		t.Fatalf("outdated = %+v, want web with shop-cert (shop-key is pinned at version 1 by the spec)", outdated)
	}
	out2, err := c.ctrl.Apply(ctx, spec, "")
	if err != nil || out2.Unchanged || out2.Revision == out.Revision {
		t.Fatalf("rotation apply = %+v, %v: want a new revision", out2, err)
	}
	rev2, _ := c.store.View().Revision("web", out2.Revision)
	if want := []state.SecretPin{{Name: "shop-cert", Version: 2}, {Name: "shop-key", Version: 3}}; !slices.Equal(rev2.Secrets, want) || rev2.Fingerprint != rev.Fingerprint {
		t.Fatalf("after rotation: pins %+v (want %+v), same fingerprint %v", rev2.Secrets, want, rev2.Fingerprint == rev.Fingerprint)
	}
	if again, err := c.ctrl.Apply(ctx, spec, ""); err != nil || !again.Unchanged {
		t.Fatalf("the same apply again = %+v, %v: want unchanged", again, err)
	}
	waitUntil(t, 10*time.Second, "the table to name version 2", func() bool {
		table, err := c.ctrl.Ingress(ctx, 0, 0)
		return err == nil && len(table.Routes) == 1 && table.Routes[0].TLS.Cert.Version == 2 && table.Routes[0].TLS.Key.Version == 3
	})
	err = c.ctrl.RemoveSecret(ctx, "shop-cert", 2)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "web revision "+strconv.Itoa(out2.Revision)+" (version 2, current)") {
		t.Fatalf("removing the served certificate = %v", err)
	}
}
