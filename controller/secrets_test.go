package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

func withSecretsKey(t *testing.T) func(*Config) {
	key, err := secretbox.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) { c.SecretsKey = key }
}

// mustGet reads an API answer as raw bytes, for searching a value in it.
func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body
}

func containsValue(haystack []byte, value string) bool {
	return bytes.Contains(haystack, []byte(value)) ||
		bytes.Contains(haystack, []byte(base64.StdEncoding.EncodeToString([]byte(value))))
}

// The secret API: versions, limits, names; apply pins the version (in the
// fingerprint), a missing secret stores nothing, outdated and refresh see
// a newer version, and a used version cannot be removed.
func TestSecretLifecycle(t *testing.T) {
	n := mustStartNodeWith(t, withSecretsKey(t))
	mustRegisterServer(t, n)
	c := wire.NewClient([]string{n.api.URL}, nil)
	ctx := context.Background()
	const v1, v2, v3 = "value-one-4f1d9a", "value-two-7c2e8b", "value-three-9a0b1c"

	for i, v := range []string{v1, v2} {
		out, err := c.CreateSecret(ctx, "db-password", []byte(v))
		if err != nil || out.Version != i+1 || out.Size != len(v) {
			t.Fatalf("create %d = %+v, %v", i+1, out, err)
		}
	}
	if _, err := c.CreateSecret(ctx, "DB", []byte("x")); !errors.Is(err, wire.ErrBadRequest) {
		t.Fatalf("bad name: %v", err)
	}
	big := bytes.Repeat([]byte("x"), wire.MaxSecretSize+1)
	if _, err := c.CreateSecret(ctx, "big", big); !errors.Is(err, wire.ErrTooLarge) || !strings.Contains(err.Error(), "500 KiB") {
		t.Fatalf("oversized value: %v", err)
	}
	if _, err := c.CreateSecret(ctx, "big", big[:wire.MaxSecretSize]); err != nil {
		t.Fatalf("a value of exactly 500 KiB: %v", err)
	}

	// Apply naming a missing secret: 400 naming the entry, nothing stored.
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	spec := specFor(ref)
	spec.Secrets = []specs.Secret{{Name: "missing"}}
	spec.ApplyDefaults()
	_, err := n.ctrl.Apply(ctx, spec, "")
	var ve *specs.ValidationError
	if !errors.Is(err, ErrInvalidSpec) || !errors.As(err, &ve) || ve.Problems[0].Field != "secrets[0].name" ||
		!strings.Contains(err.Error(), "deployctl secret create missing") {
		t.Fatalf("missing secret: %v", err)
	}
	if _, ok := n.store.View().Service("web"); ok {
		t.Fatal("a spec naming a missing secret was stored")
	}

	// Pinned to the latest version; an explicit older version is another
	// fingerprint.
	spec.Secrets = []specs.Secret{{Name: "db-password"}}
	spec.ApplyDefaults()
	if _, err := n.ctrl.Apply(ctx, spec, ""); err != nil {
		t.Fatal(err)
	}
	rev1, _ := n.store.View().Revision("web", 1)
	if len(rev1.Secrets) != 1 || rev1.Secrets[0] != (state.SecretPin{Name: "db-password", Version: 2}) {
		t.Fatalf("pins %+v, want db-password version 2", rev1.Secrets)
	}
	if rev1.Fingerprint == FingerprintSecrets(rev1.Spec, rev1.Ref, []state.SecretPin{{Name: "db-password", Version: 1}}) {
		t.Fatal("the pinned version is not part of the fingerprint")
	}
	if again, err := n.ctrl.Apply(ctx, spec, ""); err != nil || !again.Unchanged {
		t.Fatalf("the same spec and version again: %+v, %v", again, err)
	}

	// A new version: outdated says so, refresh rolls it out.
	if _, err := c.CreateSecret(ctx, "db-password", []byte(v3)); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Outdated(ctx)
	if err != nil || len(rep.Services) != 1 || len(rep.Services[0].Secrets) != 1 ||
		rep.Services[0].Secrets[0] != (wire.OutdatedSecret{Name: "db-password", Pinned: 2, Latest: 3}) {
		t.Fatalf("outdated = %+v, %v", rep, err)
	}
	out, err := c.Refresh(ctx, "web")
	if err != nil || out.Revision != 2 {
		t.Fatalf("refresh = %+v, %v", out, err)
	}
	rev2, _ := n.store.View().Revision("web", 2)
	if rev2.Secrets[0].Version != 3 || rev2.Fingerprint == rev1.Fingerprint {
		t.Fatalf("refreshed revision pins %+v (fingerprint changed: %v)", rev2.Secrets, rev2.Fingerprint != rev1.Fingerprint)
	}

	// Removal: the current revision's version is refused, naming it; an
	// unused one goes; the whole secret is refused while one is held.
	if err := c.RemoveSecret(ctx, "db-password", 3); !errors.Is(err, wire.ErrConflict) || !strings.Contains(err.Error(), "web revision 2 (version 3, current)") {
		t.Fatalf("rm of the current version: %v", err)
	}
	if err := c.RemoveSecret(ctx, "db-password", 1); err != nil {
		t.Fatalf("rm of an unused version: %v", err)
	}
	if err := c.RemoveSecret(ctx, "db-password", 0); !errors.Is(err, wire.ErrConflict) {
		t.Fatalf("rm of a used secret: %v", err)
	}
	if err := c.RemoveSecret(ctx, "db-password", 9); !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("rm of a version that never was: %v", err)
	}

	info, err := c.Secret(ctx, "db-password")
	if err != nil || info.Latest != 3 || len(info.Versions) != 2 || info.Versions[0].Version != 2 || len(info.Uses) != 2 {
		t.Fatalf("inspect = %+v, %v", info, err)
	}
	list, err := c.Secrets(ctx)
	if err != nil || len(list) != 2 || list[1].Name != "db-password" {
		t.Fatalf("ls = %+v, %v", list, err)
	}

	// No operator answer carries a value (nor its base64).
	for _, path := range []string{"/v1/secrets", "/v1/secrets/db-password", "/v1/services/web", "/v1/services/web/history", "/v1/services", "/v1/outdated"} {
		body := mustGet(t, n.api.URL+path)
		for _, v := range []string{v1, v2, v3} {
			if containsValue(body, v) {
				t.Fatalf("%s answers the value %q: %s", path, v, body)
			}
		}
	}
	// The assignments (which agents may log) carry none either.
	set := n.store.View().Assignments("h1")
	data, _ := json.Marshal(set)
	for _, v := range []string{v2, v3} {
		if containsValue(data, v) {
			t.Fatal("assignments carry a value")
		}
	}
}

// GET /v1/agent/secrets answers a replica's values to the agent of its
// host only: another host's agent, and the operator, get 403.
func TestAgentSecretsOnlyToTheReplicasHost(t *testing.T) {
	c := mustStartTLSClusterWith(t, withSecretsKey(t))
	ctx := context.Background()
	h1, h2, op := c.client(t, "h1"), c.client(t, "h2"), c.client(t, "operator")
	const value = "s3cr3t-for-h1-only"
	// The server reports the FSM version that knows secrets, as it does
	// at every start.
	self, _ := c.store.View().Server("n1")
	if err := c.ctrl.Join(ctx, c.members, wire.JoinRequest{ID: "n1", RaftAddr: self.RaftAddr, APIAddr: self.APIAddr, Version: raftstore.FSMVersion}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ctrl.CreateSecret(ctx, "token", []byte(value), ""); err != nil {
		t.Fatal(err)
	}
	uid := 1234
	replica := mustReplicaWithSecret(t, c.testNode, "h1", specs.Secret{Name: "token", UID: &uid, Mode: 0o440})
	url := c.url + "/v1/agent/secrets?host=h1&replica=" + replica
	resp, err := h1.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var got wire.AgentSecrets
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(got.Secrets) != 1 {
		t.Fatalf("h1: %d %+v %v", resp.StatusCode, got, err)
	}
	s := got.Secrets[0]
	if string(s.Value) != value || s.Target != "/run/secrets/token" || s.Mode != 0o440 || s.UID == nil || *s.UID != 1234 || s.GID != nil || s.Version != 1 {
		t.Fatalf("h1 got %+v", s)
	}
	wantStatus(t, "h2 asking as h1", call(t, h2, "GET", url, nil), http.StatusForbidden, wire.CodeForbidden)
	wantStatus(t, "h2 asking for h1's replica", call(t, h2, "GET", c.url+"/v1/agent/secrets?host=h2&replica="+replica, nil), http.StatusForbidden, wire.CodeForbidden)
	wantStatus(t, "the operator", call(t, op, "GET", url, nil), http.StatusForbidden, wire.CodeForbidden)
	wantStatus(t, "no replica", call(t, h1, "GET", c.url+"/v1/agent/secrets?host=h1", nil), http.StatusBadRequest, wire.CodeBadRequest)
	wantStatus(t, "an agent cannot create secrets", call(t, h1, "POST", c.url+"/v1/secrets/x", "v"), http.StatusForbidden, wire.CodeForbidden)
}

// env: names that look like secrets: a warning at apply and in the audit,
// pointing at secrets:; the policy's env_secrets: refuse refuses them.
func TestEnvSecretsWarnedOrRefused(t *testing.T) {
	n := mustStartNode(t)
	ctx := context.Background()
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	spec := specFor(ref)
	spec.Env = map[string]string{"DB_PASSWORD": "x", "LOG_LEVEL": "info", "API_KEY": "y"}
	out, err := n.ctrl.Apply(ctx, spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(out.Warnings, "\n"); !strings.Contains(w, "env API_KEY looks like a secret") || !strings.Contains(w, "env DB_PASSWORD looks like a secret") ||
		strings.Contains(w, "LOG_LEVEL") {
		t.Fatalf("apply warnings: %v", out.Warnings)
	}
	rep := n.ctrl.Audits()
	if len(rep.Specs) != 2 || rep.Specs[1].Field != "env.DB_PASSWORD" || !strings.Contains(rep.Specs[1].Fix, "secret create db-password") || rep.Warnings != 2 {
		t.Fatalf("audit specs %+v (warnings %d)", rep.Specs, rep.Warnings)
	}
	pol := policy.Default()
	pol.EnvSecrets = policy.LevelRefuse
	mustSetPolicy(t, n, pol)
	spec.Env["LOG_LEVEL"] = "debug"
	_, err = n.ctrl.Apply(ctx, spec, "")
	var denied *policy.DeniedError
	if !errors.As(err, &denied) || denied.Violations[0].Field != "env.API_KEY" || denied.Violations[0].Rule != policy.RuleEnvSecrets {
		t.Fatalf("apply under env_secrets: refuse: %v", err)
	}
}

// A secret is created only while every registered server reports the
// leader's key-encryption key: another server could not open it.
func TestSecretRefusedWhileAServerHasAnotherKey(t *testing.T) {
	n := mustStartNodeWith(t, withSecretsKey(t))
	mustRegisterServer(t, n)
	ctx := context.Background()
	if _, err := n.ctrl.CreateSecret(ctx, "db", []byte("v1"), ""); err != nil {
		t.Fatal(err)
	}
	cmd, err := raftstore.Encode(raftstore.CmdRegisterServer, state.RegisterServerCmd{Server: state.ServerInfo{
		ID: "n2", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2", Version: raftstore.FSMVersion, SecretsKeyID: "0123456789abcdef"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.node.Apply(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	_, err = n.ctrl.CreateSecret(ctx, "db", []byte("v2"), "")
	if !errors.Is(err, wire.ErrSecretsKey) || !strings.Contains(err.Error(), "n2 (key 0123456789abcdef)") {
		t.Fatalf("create with n2 on another key: %v", err)
	}
	if status, body := wire.Body(err); status != http.StatusServiceUnavailable || body.Code != wire.CodeSecretsKey {
		t.Fatalf("answered %d %s", status, body.Code)
	}
}

// mustReplicaWithSecret applies a one-replica service using the secret
// entry and returns its replica, placed on host (the only host reporting).
func mustReplicaWithSecret(t *testing.T, n *testNode, host string, entry specs.Secret) string {
	t.Helper()
	ctx := context.Background()
	if err := n.ctrl.Report(ctx, state.HostReport{Host: host}); err != nil {
		t.Fatal(err)
	}
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	spec := specFor(ref)
	spec.Replicas = 1
	spec.Secrets = []specs.Secret{entry}
	spec.ApplyDefaults()
	if _, err := n.ctrl.Apply(ctx, spec, ""); err != nil {
		t.Fatal(err)
	}
	var replica string
	waitUntil(t, 10*time.Second, "a replica on "+host, func() bool {
		for _, r := range n.store.View().HostReplicas(host) {
			replica = r.ID
		}
		return replica != ""
	})
	return replica
}
