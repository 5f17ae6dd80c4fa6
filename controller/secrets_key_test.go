package controller

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// keyFileContent is a key file's content for key material from rand, as
// `deployctl secret key generate` writes it.
func keyFileContent(t *testing.T) (*secretbox.Key, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k")
	key, err := secretbox.CreateKeyFile(path, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return key, raw
}

// --autolock: a server holding secrets sealed with the cluster's key
// starts sealed; it refuses creates and deliveries with 503 sealed naming
// the unlock command, refuses a wrong key (403, still sealed), and serves
// once given the right one, which it keeps in memory only.
func TestAutolockSealedUntilUnlocked(t *testing.T) {
	c := mustStartTLSClusterWith(t, func(cfg *Config) { cfg.Autolock = true })
	ctx := context.Background()
	h1, op := c.client(t, "h1"), c.client(t, "operator")
	self, _ := c.store.View().Server("n1")
	if err := c.ctrl.Join(ctx, c.members, wire.JoinRequest{ID: "n1", RaftAddr: self.RaftAddr, APIAddr: self.APIAddr, Version: raftstore.FSMVersion, Sealed: true}); err != nil {
		t.Fatal(err)
	}
	if !c.ctrl.Sealed() {
		t.Fatal("an autolocked server without a key is not sealed")
	}
	// The cluster's secrets were sealed with key1 (by another server).
	key1, file1 := keyFileContent(t)
	_, file2 := keyFileContent(t)
	sealed, err := key1.Seal(rand.Reader, []byte("autolocked-value"), state.SecretAAD("token", 1))
	if err != nil {
		t.Fatal(err)
	}
	put, _ := raftstore.Encode(raftstore.CmdPutSecret, state.PutSecretCmd{Name: "token", Version: 1, Size: 16, Sealed: sealed})
	if _, err := c.node.Apply(ctx, put); err != nil {
		t.Fatal(err)
	}
	replica := mustReplicaWithSecret(t, c.testNode, "h1", specs.Secret{Name: "token"})
	url := c.url + "/v1/agent/secrets?host=h1&replica=" + replica

	for what, got := range map[string]answer{
		"create while sealed":   call(t, op, "POST", c.url+"/v1/secrets/other", "v"),
		"delivery while sealed": call(t, h1, "GET", url, nil),
	} {
		wantStatus(t, what, got, http.StatusServiceUnavailable, wire.CodeSealed)
		if !strings.Contains(got.Error, "deployctl cluster unlock") {
			t.Errorf("%s: %q does not name the unlock command", what, got.Error)
		}
	}
	if st := c.store.View(); !st.Servers()[0].Sealed {
		t.Fatal("the registration does not say sealed")
	}
	// Status works meanwhile and says so.
	resp, err := op.Get(c.url + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	var cs wire.ClusterStatus
	err = json.NewDecoder(resp.Body).Decode(&cs)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(cs.Nodes) != 1 || !strings.HasPrefix(cs.Nodes[0].Secrets, "sealed") {
		t.Fatalf("cluster status while sealed: %d %+v %v", resp.StatusCode, cs.Nodes, err)
	}

	wantStatus(t, "unlock with garbage", call(t, op, "POST", c.url+"/v1/cluster/unlock", wire.UnlockRequest{Key: "hunter2"}), http.StatusForbidden, wire.CodeWrongKey)
	wrong := call(t, op, "POST", c.url+"/v1/cluster/unlock", wire.UnlockRequest{Key: string(file2)})
	wantStatus(t, "unlock with another key", wrong, http.StatusForbidden, wire.CodeWrongKey)
	if !strings.Contains(wrong.Error, key1.ID()) || !c.ctrl.Sealed() {
		t.Fatalf("wrong key: %q, sealed %v", wrong.Error, c.ctrl.Sealed())
	}
	wantStatus(t, "unlock as an agent", call(t, h1, "POST", c.url+"/v1/cluster/unlock", wire.UnlockRequest{Key: string(file1)}), http.StatusForbidden, wire.CodeForbidden)

	out, err := c.ctrl.Unlock(ctx, file1)
	if err != nil || out.KeyID != key1.ID() || out.KeyFile != "" || c.ctrl.Sealed() {
		t.Fatalf("unlock: %+v %v (sealed %v)", out, err, c.ctrl.Sealed())
	}
	select {
	case <-c.ctrl.SecretsKeyChanged():
	default:
		t.Fatal("unlock did not signal the key change")
	}
	if again, err := c.ctrl.Unlock(ctx, file1); err != nil || !again.Already {
		t.Fatalf("second unlock: %+v %v", again, err)
	}
	got, err := c.ctrl.AgentSecrets("h1", replica)
	if err != nil || len(got.Secrets) != 1 || string(got.Secrets[0].Value) != "autolocked-value" {
		t.Fatalf("delivery after unlock: %+v %v", got, err)
	}
	if _, err := c.ctrl.CreateSecret(ctx, "other", []byte("v"), ""); err != nil {
		t.Fatalf("create after unlock: %v", err)
	}
}

// Rotation: every data key is re-wrapped under the new key through raft;
// values still open, the leader's key file holds the new key, the old
// key is refused by unlock, and a server still holding the old key says
// so until it is given the new one (which rewrites its key file).
func TestRotateSecretsKeyRewrapsEverything(t *testing.T) {
	dir := t.TempDir()
	leaderFile := filepath.Join(dir, "leader.key")
	key1, err := secretbox.CreateKeyFile(leaderFile, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	file1, _ := os.ReadFile(leaderFile)
	c := mustStartTLSClusterWith(t, func(cfg *Config) { cfg.SecretsKey, cfg.SecretsKeyFile = key1, leaderFile })
	mustRegisterServer(t, c.testNode)
	ctx := context.Background()
	for _, v := range []string{"one", "two"} {
		if _, err := c.ctrl.CreateSecret(ctx, "token", []byte(v), ""); err != nil {
			t.Fatal(err)
		}
	}
	replica := mustReplicaWithSecret(t, c.testNode, "h1", specs.Secret{Name: "token", Version: 1})
	key2, file2 := keyFileContent(t)

	if _, err := c.ctrl.RotateSecretsKey(ctx, file1); !errors.Is(err, wire.ErrWrongKey) {
		t.Fatalf("rotation to the key in use: %v", err)
	}
	res, err := c.ctrl.RotateSecretsKey(ctx, file2)
	if err != nil || res.OldKeyID != key1.ID() || res.NewKeyID != key2.ID() || res.Versions != 2 {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	if again, err := c.ctrl.RotateSecretsKey(ctx, file2); err != nil || again.NewKeyID != key2.ID() {
		t.Fatalf("a retried rotation: %+v %v", again, err)
	}
	if k, err := secretbox.LoadKeyFile(leaderFile); err != nil || k.ID() != key2.ID() {
		t.Fatalf("the leader's key file after rotation: %v", err)
	}
	info, err := c.ctrl.SecretDetail("token")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range info.Versions {
		if v.KeyID != key2.ID() {
			t.Fatalf("version %d still wrapped with %s", v.Version, v.KeyID)
		}
	}
	got, err := c.ctrl.AgentSecrets("h1", replica)
	if err != nil || string(got.Secrets[0].Value) != "one" {
		t.Fatalf("delivery after rotation: %+v %v", got, err)
	}
	if _, err := c.ctrl.Unlock(ctx, file1); !errors.Is(err, wire.ErrWrongKey) || !strings.Contains(err.Error(), key2.ID()) {
		t.Fatalf("unlock with the old key after rotation: %v", err)
	}

	// Another server over the same state that kept the old key file.
	otherFile := filepath.Join(dir, "other.key")
	if err := os.WriteFile(otherFile, file1, 0o600); err != nil {
		t.Fatal(err)
	}
	other, err := New(Config{Raft: c.node, Store: c.store, Resolver: RegistryResolver{}, SecretsKey: key1, SecretsKeyFile: otherFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.secretsKey(); !errors.Is(err, wire.ErrSecretsKey) || !strings.Contains(err.Error(), key1.ID()) || !strings.Contains(err.Error(), key2.ID()) {
		t.Fatalf("a server with the old key: %v", err)
	}
	if note := secretsNote(state.ServerInfo{SecretsKeyID: key1.ID(), APIAddr: "a:1"}, c.store.View().SecretsKeyID()); !strings.Contains(note, "not the cluster's "+key2.ID()) {
		t.Fatalf("cluster status note: %q", note)
	}
	out, err := other.Unlock(ctx, file2)
	if err != nil || out.KeyFile != otherFile {
		t.Fatalf("giving the new key to the other server: %+v %v", out, err)
	}
	if k, err := secretbox.LoadKeyFile(otherFile); err != nil || k.ID() != key2.ID() {
		t.Fatalf("the other server's key file: %v", err)
	}
	if _, err := other.secretsKey(); err != nil {
		t.Fatalf("the other server with the new key: %v", err)
	}
}

// Right after a server starts, until it registered its FSM version, a
// create waits for the registration (bounded) instead of answering 409
// version_gate "not registered yet".
func TestCreateWaitsForTheServersRegistration(t *testing.T) {
	n := mustStartNodeWith(t, withSecretsKey(t))
	// The gate refuses a secret command now, as "not registered yet".
	probe, _ := raftstore.Encode(raftstore.CmdDeleteSecret, state.DeleteSecretCmd{Name: "db"})
	if _, err := n.node.Apply(context.Background(), probe); !errors.Is(err, raftstore.ErrNotRegistered) {
		t.Fatalf("gate before registration: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := n.ctrl.CreateSecret(context.Background(), "db", []byte("v"), "")
		done <- err
	}()
	// The create is waiting on the gate; register the server now.
	mustRegisterServer(t, n)
	if err := <-done; err != nil {
		t.Fatalf("create before the registration: %v", err)
	}
	if sec, ok := n.store.View().Secret("db"); !ok || len(sec.Versions) != 1 {
		t.Fatalf("secret not stored: %+v", sec)
	}
}
