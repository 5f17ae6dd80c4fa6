package controller

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/controller/signature"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Issue 16, finding 9: a rollback restores a revision admitted under the
// policy of its day; it must pass today's policy, signature and scan rules.

// permissive allows what the privileged revision needs.
func permissive() *policy.Policy {
	p := policy.Default()
	p.AllowPrivileged, p.AllowHostPID = true, true
	return p
}

// privilegedSpec is the review's revision 1: privileged, pid: host.
func privilegedSpec(image string) *specs.Spec {
	s := specFor(image)
	s.Replicas = 1
	s.Security.Privileged = true
	s.PID = specs.NamespaceHost
	s.Update.Monitor = 0
	return s
}

func compliantSpec(image string) *specs.Spec {
	s := specFor(image)
	s.Replicas = 1
	s.Update.Monitor = 0
	s.Env = map[string]string{"RELEASE": "2"}
	return s
}

// trustRuleFor requires repo to be signed by a fresh key nobody signed with.
func trustRuleFor(t *testing.T, repo string) policy.TrustEntry {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return policy.TrustEntry{Match: repo, Keys: []string{"team.pub"}, KeysPEM: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}}
}

// postRollback calls the API as the CLI does and returns the status and
// decoded error body.
func postRollback(t *testing.T, n *testNode, service string, to int) (int, wire.APIError) {
	t.Helper()
	body, _ := json.Marshal(wire.RollbackBody{To: to})
	req, _ := http.NewRequest(http.MethodPost, n.api.URL+"/v1/services/"+service+"/rollback", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", wire.NewID())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var apiErr wire.APIError
	_ = json.NewDecoder(resp.Body).Decode(&apiErr)
	return resp.StatusCode, apiErr
}

func TestManualRollbackPassesTodaysRules(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name      string
		tighten   func(t *testing.T, repo string) *policy.Policy
		status    int
		code      string
		violation []string
	}{
		{"policy no longer allows privileged and pid host", func(*testing.T, string) *policy.Policy { return policy.Default() },
			http.StatusForbidden, "denied", []string{"security.privileged", "pid"}},
		{"a trust rule now covers the unsigned image", func(t *testing.T, repo string) *policy.Policy {
			p := permissive()
			p.Trust = []policy.TrustEntry{trustRuleFor(t, repo)}
			return p
		}, http.StatusUnprocessableEntity, "signature", nil},
		{"policy unchanged (control)", func(*testing.T, string) *policy.Policy { return permissive() }, http.StatusCreated, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := mustStartNode(t)
			_, ref, _ := mustRegistryImage(t, "team/web:v1")
			mustSetPolicy(t, n, permissive())
			if _, err := n.ctrl.Apply(ctx, privilegedSpec(ref), ""); err != nil {
				t.Fatal(err)
			}
			if _, err := n.ctrl.Apply(ctx, compliantSpec(ref), ""); err != nil {
				t.Fatal(err)
			}
			rev1, _ := n.store.View().Revision("web", 1)
			mustSetPolicy(t, n, c.tighten(t, strings.TrimSuffix(rev1.Ref, "@"+rev1.Digest)))

			status, apiErr := postRollback(t, n, "web", 1)
			if status != c.status || apiErr.Code != c.code {
				t.Fatalf("rollback --to 1 = %d %q (%s), want %d %q", status, apiErr.Code, apiErr.Error, c.status, c.code)
			}
			got := map[string]bool{}
			for _, v := range apiErr.Violations {
				got[v.Field] = true
			}
			for _, f := range c.violation {
				if !got[f] {
					t.Errorf("violations %+v do not name %s", apiErr.Violations, f)
				}
			}
			revs := n.store.View().Revisions("web")
			if c.status != http.StatusCreated {
				if len(revs) != 2 {
					t.Fatalf("a refused rollback stored something: %d revisions", len(revs))
				}
				// The controller's own error says which revision and why.
				_, err := n.ctrl.Rollback(ctx, RollbackRequest{Service: "web", To: 1})
				if !errors.Is(err, ErrRollbackRefused) || !strings.Contains(err.Error(), "revision 1") {
					t.Fatalf("Rollback = %v, want ErrRollbackRefused naming revision 1", err)
				}
				if c.code == "signature" && !errors.Is(err, signature.ErrUnsigned) {
					t.Errorf("Rollback = %v, want signature.ErrUnsigned", err)
				}
				return
			}
			if len(revs) != 3 || revs[2].RollbackTo != 1 {
				t.Fatalf("control: the rollback was not stored: %+v", revs)
			}
		})
	}
}

// reportAll reports every replica of service desired running on host h1 in
// the given state.
func reportAll(t *testing.T, n *testNode, revision int, st string) {
	t.Helper()
	var reps []state.StatusReport
	for _, r := range n.store.View().ServiceReplicas("web") {
		if r.Revision == revision && r.Desired == state.DesiredRunning {
			reps = append(reps, state.StatusReport{ReplicaID: r.ID, State: st, ContainerID: "c-" + r.ID})
		}
	}
	if len(reps) == 0 {
		t.Fatalf("no replica of revision %d to report %s", revision, st)
	}
	if err := n.ctrl.Report(context.Background(), state.HostReport{Host: "h1", Reports: reps}); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls the store until ok holds.
func waitForState(t *testing.T, n *testNode, what string, ok func(*state.Tables) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok(n.store.View()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasReplicaOf(revision int) func(*state.Tables) bool {
	return func(v *state.Tables) bool {
		for _, r := range v.ServiceReplicas("web") {
			if r.Revision == revision && r.Desired == state.DesiredRunning {
				return true
			}
		}
		return false
	}
}

func TestAutomaticRollbackPassesTodaysRules(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		tighten func(t *testing.T, repo string) *policy.Policy
		refused []string // in the failed revision's message; nil: the rollback goes ahead
	}{
		{"policy no longer allows privileged and pid host", func(*testing.T, string) *policy.Policy { return policy.Default() },
			[]string{"no automatic rollback: rollback refused: revision 1 of web", "security.privileged", "pid"}},
		{"a trust rule now covers the unsigned image", func(t *testing.T, repo string) *policy.Policy {
			p := permissive()
			p.Trust = []policy.TrustEntry{trustRuleFor(t, repo)}
			return p
		}, []string{"no automatic rollback: rollback refused: revision 1 of web", "signed", "trust rule"}},
		{"policy unchanged (control)", func(*testing.T, string) *policy.Policy { return permissive() }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := mustStartNode(t)
			_, ref, _ := mustRegistryImage(t, "team/web:v1")
			if err := n.ctrl.Report(ctx, state.HostReport{Host: "h1"}); err != nil {
				t.Fatal(err)
			}
			mustSetPolicy(t, n, permissive())
			if _, err := n.ctrl.Apply(ctx, privilegedSpec(ref), ""); err != nil {
				t.Fatal(err)
			}
			waitForState(t, n, "revision 1 has a replica", hasReplicaOf(1))
			reportAll(t, n, 1, state.ReplicaHealthy)
			waitForState(t, n, "revision 1 succeeded", func(v *state.Tables) bool {
				svc, _ := v.Service("web")
				return svc.State == state.ServiceRunning && svc.LastGood == 1
			})
			old := n.store.View().ServiceReplicas("web")[0]

			rev1, _ := n.store.View().Revision("web", 1)
			mustSetPolicy(t, n, c.tighten(t, strings.TrimSuffix(rev1.Ref, "@"+rev1.Digest)))
			// Revision 2 comes from another repository, which no trust rule
			// covers: it is admitted today, revision 1 is not.
			ref2 := strings.Replace(ref, "/team/web:v1", "/team/api:v2", 1)
			mustPush(t, ref2)
			if _, err := n.ctrl.Apply(ctx, compliantSpec(ref2), ""); err != nil {
				t.Fatal(err)
			}
			waitForState(t, n, "revision 2 has a replica", hasReplicaOf(2))
			reportAll(t, n, 2, state.ReplicaFailed)

			if c.refused == nil {
				waitForState(t, n, "the rollback revision is stored", func(v *state.Tables) bool {
					svc, _ := v.Service("web")
					return svc.Current == 3
				})
				return
			}
			waitForState(t, n, "the service failed", func(v *state.Tables) bool {
				svc, _ := v.Service("web")
				return svc.State == state.ServiceFailed
			})
			v := n.store.View()
			svc, _ := v.Service("web")
			rev2, _ := v.Revision("web", 2)
			if svc.Current != 2 || len(v.Revisions("web")) != 2 || rev2.State != state.RevisionFailed {
				t.Fatalf("service %+v, revision 2 %s, %d revisions: want revision 2 failed and no rollback revision", svc, rev2.State, len(v.Revisions("web")))
			}
			for _, want := range c.refused {
				if !strings.Contains(rev2.Message, want) || !strings.Contains(svc.Rollout.Message, want) {
					t.Errorf("revision 2 message %q / rollout message %q, want %q", rev2.Message, svc.Rollout.Message, want)
				}
			}
			// Nothing of revision 1 was started; the replica that ran before
			// is the only one, still running (see DESIGN.md).
			time.Sleep(300 * time.Millisecond) // a few more passes of the loop
			for _, r := range n.store.View().ServiceReplicas("web") {
				if r.Fingerprint == rev1.Fingerprint && r.ID != old.ID {
					t.Errorf("replica %s of revision 1 was started after the refusal", r.ID)
				}
				if r.Revision == 2 && r.Desired == state.DesiredRunning {
					t.Errorf("failed replica %s of revision 2 is still desired running", r.ID)
				}
			}
			if len(v.Revisions("web")) != 2 {
				t.Errorf("revisions %d, want 2", len(v.Revisions("web")))
			}
			// The CLI exits 4 on a failed revision with its message
			// (cmd/deployctl/wait.go); the status it reads says why.
			st, err := wire.NewClient([]string{strings.TrimPrefix(n.api.URL, "http://")}, nil).Status(ctx, "web", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if st.RevisionState != state.RevisionFailed || !strings.Contains(st.Message, "refused") {
				t.Errorf("status: revision state %q, message %q; want failed with the refusal", st.RevisionState, st.Message)
			}
		})
	}
}

// The automatic rollback's checks may wait on a registry: they run off the
// loop, other services keep being served, and a check that does not finish
// in time refuses the rollback (fail closed).
func TestAutomaticRollbackCheckDoesNotBlockTheLoop(t *testing.T) {
	ctx := context.Background()
	n := mustStartNodeWith(t, func(c *Config) { c.RollbackCheckTimeout = 3 * time.Second })
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, ".sig") || strings.Contains(r.URL.Path, "/referrers/") {
			<-r.Context().Done() // a registry that never answers signature lookups
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	web, api := host+"/team/web:v1", host+"/team/api:v2"
	mustPush(t, web)
	mustPush(t, api)
	if err := n.ctrl.Report(ctx, state.HostReport{Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.ctrl.Apply(ctx, compliantSpec(web), ""); err != nil {
		t.Fatal(err)
	}
	waitForState(t, n, "revision 1 has a replica", hasReplicaOf(1))
	reportAll(t, n, 1, state.ReplicaHealthy)
	waitForState(t, n, "revision 1 succeeded", func(v *state.Tables) bool {
		svc, _ := v.Service("web")
		return svc.LastGood == 1
	})
	p := policy.Default()
	p.Trust = []policy.TrustEntry{trustRuleFor(t, host+"/team/web")}
	mustSetPolicy(t, n, p)
	rev2 := compliantSpec(api)
	if _, err := n.ctrl.Apply(ctx, rev2, ""); err != nil {
		t.Fatal(err)
	}
	waitForState(t, n, "revision 2 has a replica", hasReplicaOf(2))
	started := time.Now()
	reportAll(t, n, 2, state.ReplicaFailed)

	// While web's check hangs, another service is placed.
	other := compliantSpec(api)
	other.Service = "other"
	if _, err := n.ctrl.Apply(ctx, other, ""); err != nil {
		t.Fatal(err)
	}
	waitForState(t, n, "the other service has a replica", func(v *state.Tables) bool { return len(v.ServiceReplicas("other")) > 0 })
	if svc, _ := n.store.View().Service("web"); svc.State == state.ServiceFailed || time.Since(started) > 3*time.Second {
		t.Fatalf("the other service waited for web's check (%s, web %s)", time.Since(started), svc.State)
	}
	waitForState(t, n, "web failed", func(v *state.Tables) bool {
		svc, _ := v.Service("web")
		return svc.State == state.ServiceFailed
	})
	rev, _ := n.store.View().Revision("web", 2)
	if !strings.Contains(rev.Message, "no automatic rollback") || !strings.Contains(rev.Message, "did not finish within 3s") {
		t.Fatalf("revision 2 message %q, want the timeout named", rev.Message)
	}
	if len(n.store.View().Revisions("web")) != 2 {
		t.Fatal("a rollback revision was stored")
	}
}
