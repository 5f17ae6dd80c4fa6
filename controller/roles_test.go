package controller

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
)

// fakeMembership is a raft configuration the join/remove handlers change.
type fakeMembership struct {
	mu      sync.Mutex
	servers []RaftServer
}

func (f *fakeMembership) Servers(context.Context) ([]RaftServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.servers), nil
}

func (f *fakeMembership) AddVoter(_ context.Context, id, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.servers {
		if s.ID == id {
			f.servers[i].Address = addr
			return nil
		}
	}
	f.servers = append(f.servers, RaftServer{ID: id, Address: addr, Voter: true})
	return nil
}

func (f *fakeMembership) RemoveServer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.servers = slices.DeleteFunc(f.servers, func(s RaftServer) bool { return s.ID == id })
	return nil
}

func (f *fakeMembership) TransferLeadership(context.Context) error { return nil }
func (f *fakeMembership) HadState() bool                           { return true }

func (f *fakeMembership) has(id string) bool {
	servers, _ := f.Servers(context.Background())
	return slices.ContainsFunc(servers, func(s RaftServer) bool { return s.ID == id })
}

// tlsCluster is a leader (n1) serving its API over mutual TLS with
// certificates from pki: servers n1, n2, agents h1, h2, the operator.
type tlsCluster struct {
	*testNode
	dir     string
	url     string // the leader's API
	members *fakeMembership
}

func mustStartTLSCluster(t *testing.T) *tlsCluster {
	t.Helper()
	return mustStartTLSClusterWith(t, nil)
}

// mustStartTLSClusterWith is mustStartTLSCluster with a hook to adjust
// the Config.
func mustStartTLSClusterWith(t *testing.T, adjust func(*Config)) *tlsCluster {
	t.Helper()
	n := mustStartNodeWith(t, adjust)
	dir := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Nodes: []string{"n1", "n2"}, Agents: []string{"h1", "h2"}}); err != nil {
		t.Fatal(err)
	}
	members := &fakeMembership{servers: []RaftServer{{ID: "n1", Address: n.node.Addr(), Voter: true, Leader: true}}}
	n1 := pki.NodeFiles(dir, "n1")
	serverTLS, err := pki.ServerConfig(n1.CA, n1.Cert, n1.Key)
	if err != nil {
		t.Fatal(err)
	}
	forwardTLS, err := pki.ClientConfig(n1.CA, n1.Cert, n1.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	self := state.ServerInfo{ID: "n1", RaftAddr: n.node.Addr(), APIAddr: srv.Listener.Addr().String()}
	srv.Config.Handler = NewAPI(APIConfig{Controller: n.ctrl, Membership: members, Self: self, Scheme: "https",
		Forward: &http.Client{Transport: &http.Transport{TLSClientConfig: forwardTLS}}}).Handler()
	// Not StartTLS: it adds its own certificate, which the stdlib prefers
	// to GetCertificate when the client sends no server name (an IP).
	srv.Listener = tls.NewListener(srv.Listener, serverTLS)
	srv.Start()
	t.Cleanup(srv.Close)
	// The leader registers itself, as formCluster does.
	if err := n.ctrl.Join(context.Background(), members, wire.JoinRequest{ID: "n1", RaftAddr: self.RaftAddr, APIAddr: self.APIAddr}); err != nil {
		t.Fatal(err)
	}
	return &tlsCluster{testNode: n, dir: dir, url: "https://" + self.APIAddr, members: members}
}

// client is an https client presenting name's certificate ("operator"
// for client.pem).
func (c *tlsCluster) client(t *testing.T, name string) *http.Client {
	t.Helper()
	files := pki.NodeFiles(c.dir, name)
	if name == "operator" {
		files = pki.ClientFiles(c.dir)
	}
	cfg, err := pki.ClientConfig(files.CA, files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 20 * time.Second}
}

type answer struct {
	status int
	wire.APIError
}

// call sends one request as who and returns the status and error body.
func call(t *testing.T, hc *http.Client, method, url string, body any, header ...string) answer {
	t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := body.(string); !ok && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var a answer
	a.status = resp.StatusCode
	_ = json.NewDecoder(resp.Body).Decode(&a.APIError)
	return a
}

func wantStatus(t *testing.T, what string, got answer, status int, code string) {
	t.Helper()
	if got.status != status || (code != "" && got.Code != code) {
		t.Errorf("%s: %d %q %q, want %d %q", what, got.status, got.Code, got.Error, status, code)
	}
}

const rolesSpec = "service: web\nimage: nginx:1.27\n"

// TestAgentCertificateIsConfinedToItsHost: finding 1/2/3 of issue 16. An
// agent certificate reaches the agent endpoints for its own host and
// nothing else; an operator certificate cannot speak for a host.
func TestAgentCertificateIsConfinedToItsHost(t *testing.T) {
	c := mustStartTLSCluster(t)
	h1, op, n1 := c.client(t, "h1"), c.client(t, "operator"), c.client(t, "n1")

	for _, tt := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/services", rolesSpec},
		{"GET", "/v1/services", nil},
		{"GET", "/v1/services/web", nil},
		{"DELETE", "/v1/services/web", nil},
		{"POST", "/v1/services/web/rollback", nil},
		{"POST", "/v1/services/web/scale", wire.ScaleBody{}},
		{"POST", "/v1/services/web/promote", nil},
		{"GET", "/v1/policy", nil},
		{"PUT", "/v1/policy", map[string]any{"version": 0}},
		{"GET", "/v1/cluster", nil},
		{"GET", "/v1/audit", nil},
		{"GET", "/v1/services/web/ps", nil},
		{"GET", "/v1/services/web/logs", nil},
		{"GET", "/v1/events", nil},
		{"POST", "/v1/cluster/join", wire.JoinRequest{ID: "h1", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2"}},
		{"POST", "/v1/cluster/remove", wire.RemoveRequest{ID: "n1"}},
		{"GET", "/v1/cluster/peer", nil},
	} {
		got := call(t, h1, tt.method, c.url+tt.path, tt.body)
		wantStatus(t, "agent h1: "+tt.method+" "+tt.path, got, http.StatusForbidden, "forbidden")
		if !strings.Contains(got.Error, "needs the") || !strings.Contains(got.Error, "agent/h1") {
			t.Errorf("%s %s: error %q should name the role needed and the caller", tt.method, tt.path, got.Error)
		}
	}
	if !c.members.has("n1") || len(c.members.servers) != 1 {
		t.Fatalf("membership changed by an agent: %+v", c.members.servers)
	}

	// Its own host: allowed. Another host: refused, for reading and writing.
	wantStatus(t, "h1 reads its assignments", call(t, h1, "GET", c.url+"/v1/agent/assignments?host=h1", nil), http.StatusOK, "")
	wantStatus(t, "h1 reads h2's assignments", call(t, h1, "GET", c.url+"/v1/agent/assignments?host=h2", nil), http.StatusForbidden, "forbidden")
	wantStatus(t, "h1 reports", call(t, h1, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h1"}), http.StatusNoContent, "")
	wantStatus(t, "h1 reports as h2", call(t, h1, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h2"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "h1 audits", call(t, h1, "POST", c.url+"/v1/agent/audit", audit.HostAudit{Host: "h1"}), http.StatusNoContent, "")
	wantStatus(t, "h1 audits as h2", call(t, h1, "POST", c.url+"/v1/agent/audit", audit.HostAudit{Host: "h2"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "h1 sends traffic", call(t, h1, "POST", c.url+"/v1/agent/traffic", wire.TrafficReport{Host: "h1"}), http.StatusNoContent, "")
	wantStatus(t, "h1 sends traffic as h2", call(t, h1, "POST", c.url+"/v1/agent/traffic", wire.TrafficReport{Host: "h2"}), http.StatusForbidden, "forbidden")
	if _, ok := c.store.View().Host("h2"); ok {
		t.Error("a report for h2 sent with h1's certificate created host h2")
	}

	// The operator runs the API but does not speak for hosts.
	wantStatus(t, "operator reads the services", call(t, op, "GET", c.url+"/v1/services", nil), http.StatusOK, "")
	wantStatus(t, "operator reports as h1", call(t, op, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h1"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "operator audits as h1", call(t, op, "POST", c.url+"/v1/agent/audit", audit.HostAudit{Host: "h1"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "operator sends traffic as h1", call(t, op, "POST", c.url+"/v1/agent/traffic", wire.TrafficReport{Host: "h1"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "operator reads h1's assignments", call(t, op, "GET", c.url+"/v1/agent/assignments?host=h1", nil), http.StatusForbidden, "forbidden")

	// A server speaks for the host named like it (its local agent), only.
	wantStatus(t, "n1 reports as n1", call(t, n1, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "n1"}), http.StatusNoContent, "")
	wantStatus(t, "n1 reports as h1", call(t, n1, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h1"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "n1 sends traffic as n1", call(t, n1, "POST", c.url+"/v1/agent/traffic", wire.TrafficReport{Host: "n1"}), http.StatusNoContent, "")
	wantStatus(t, "n1 applies", call(t, n1, "POST", c.url+"/v1/services", rolesSpec), http.StatusForbidden, "forbidden")

	// Only h1's own audit is kept.
	var rep wire.AuditReport
	resp, err := op.Get(c.url + "/v1/audit")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if len(rep.Hosts) != 1 || rep.Hosts[0].Host != "h1" {
		t.Errorf("audits kept: %+v, want h1's only", rep.Hosts)
	}

	// cluster status names each host's certificate and each member's.
	var st wire.ClusterStatus
	resp, err = op.Get(c.url + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	ids := map[string]string{}
	for _, h := range st.Hosts {
		ids[h.ID] = h.Identity
	}
	if ids["h1"] != "agent/h1" || ids["n1"] != "server/n1" || len(ids) != 2 {
		t.Errorf("host identities %v, want h1=agent/h1 n1=server/n1", ids)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Identity != "server/n1" {
		t.Errorf("nodes %+v, want n1 as server/n1", st.Nodes)
	}
}

// TestAuditSizeIsBounded: a host's audit is bounded in entries (and, like
// every body, in bytes).
func TestAuditSizeIsBounded(t *testing.T) {
	c := mustStartTLSCluster(t)
	h1 := c.client(t, "h1")
	many := audit.HostAudit{Host: "h1", Containers: make([]audit.ContainerAudit, maxAuditContainers+1)}
	wantStatus(t, "too many containers", call(t, h1, "POST", c.url+"/v1/agent/audit", many), http.StatusRequestEntityTooLarge, "too_large")
	wide := audit.HostAudit{Host: "h1", Containers: []audit.ContainerAudit{{Results: make([]audit.Result, maxAuditResults+1)}}}
	wantStatus(t, "too many results", call(t, h1, "POST", c.url+"/v1/agent/audit", wide), http.StatusRequestEntityTooLarge, "too_large")
	huge := `{"host":"h1","benchmark":"` + strings.Repeat("x", maxBody) + `"}`
	wantStatus(t, "over the body limit", call(t, h1, "POST", c.url+"/v1/agent/audit", json.RawMessage(huge)), http.StatusRequestEntityTooLarge, "too_large")
	if got := c.ctrl.Audits(); len(got.Hosts) != 0 {
		t.Errorf("an oversized audit was kept: %+v", got.Hosts)
	}
	ok := audit.HostAudit{Host: "h1", Containers: make([]audit.ContainerAudit, maxAuditContainers)}
	wantStatus(t, "at the limit", call(t, h1, "POST", c.url+"/v1/agent/audit", ok), http.StatusNoContent, "")
}

// TestReportForAnotherHostsReplicaIsDropped: a host's report changes only
// the replicas assigned to it, so h1 cannot mark h2's replica healthy.
func TestReportForAnotherHostsReplicaIsDropped(t *testing.T) {
	c := mustStartTLSCluster(t)
	_, ref, _ := mustRegistryImage(t, "team/web:v1")
	h1, h2, op := c.client(t, "h1"), c.client(t, "h2"), c.client(t, "operator")
	wantStatus(t, "h2 reports", call(t, h2, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h2"}), http.StatusNoContent, "")
	wantStatus(t, "apply", call(t, op, "POST", c.url+"/v1/services", fmt.Sprintf("service: web\nimage: %s\nreplicas: 1\n", ref)), http.StatusCreated, "")

	var replica state.Replica
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reps := c.store.View().HostReplicas("h2"); len(reps) == 1 {
			replica = reps[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no replica placed on h2")
		}
		time.Sleep(20 * time.Millisecond)
	}
	fake := state.HostReport{Host: "h1", Reports: []state.StatusReport{{ReplicaID: replica.ID, State: state.ReplicaHealthy, ContainerID: "forged"}}}
	wantStatus(t, "h1 reports h2's replica", call(t, h1, "POST", c.url+"/v1/agent/report", fake), http.StatusNoContent, "")
	if got, _ := c.store.View().Replica(replica.ID); got.Status.ContainerID == "forged" || got.Status.State == state.ReplicaHealthy {
		t.Fatalf("h1's report changed h2's replica: %+v", got.Status)
	}
	// The same report from h2 counts: the test can tell the difference.
	real := fake
	real.Host = "h2"
	wantStatus(t, "h2 reports its replica", call(t, h2, "POST", c.url+"/v1/agent/report", real), http.StatusNoContent, "")
	if got, _ := c.store.View().Replica(replica.ID); got.Status.ContainerID != "forged" {
		t.Fatalf("h2's own report was not applied: %+v", got.Status)
	}
}

// TestJoinNeedsTheJoiningServersCertificate: only server n2's certificate
// joins n2; a member's id cannot be taken with other addresses, nor a
// member's address with another id; remove is the operator's or the
// leaving server's.
func TestJoinNeedsTheJoiningServersCertificate(t *testing.T) {
	c := mustStartTLSCluster(t)
	n1, n2, op := c.client(t, "n1"), c.client(t, "n2"), c.client(t, "operator")
	leader, _ := c.store.View().Server("n1")

	wantStatus(t, "n2 joins as n1", call(t, n2, "POST", c.url+"/v1/cluster/join",
		wire.JoinRequest{ID: "n1", RaftAddr: "127.0.0.1:9", APIAddr: "127.0.0.1:10"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "operator joins n2", call(t, op, "POST", c.url+"/v1/cluster/join",
		wire.JoinRequest{ID: "n2", RaftAddr: "127.0.0.1:9", APIAddr: "127.0.0.1:10"}), http.StatusForbidden, "forbidden")
	// Even n1's own certificate cannot move n1 (where followers forward).
	got := call(t, n1, "POST", c.url+"/v1/cluster/join", wire.JoinRequest{ID: "n1", RaftAddr: leader.RaftAddr, APIAddr: "127.0.0.1:10"})
	wantStatus(t, "n1 rejoins with another API address", got, http.StatusConflict, "conflict")
	if !strings.Contains(got.Error, "remove it first") {
		t.Errorf("conflict message %q should tell to remove the member first", got.Error)
	}
	wantStatus(t, "n1 rejoins with another raft address", call(t, n1, "POST", c.url+"/v1/cluster/join",
		wire.JoinRequest{ID: "n1", RaftAddr: "127.0.0.1:9", APIAddr: leader.APIAddr}), http.StatusConflict, "conflict")
	wantStatus(t, "n2 joins at n1's raft address", call(t, n2, "POST", c.url+"/v1/cluster/join",
		wire.JoinRequest{ID: "n2", RaftAddr: leader.RaftAddr, APIAddr: "127.0.0.1:10"}), http.StatusConflict, "conflict")
	wantStatus(t, "n2 joins at n1's API address", call(t, n2, "POST", c.url+"/v1/cluster/join",
		wire.JoinRequest{ID: "n2", RaftAddr: "127.0.0.1:9", APIAddr: leader.APIAddr}), http.StatusConflict, "conflict")
	if after, _ := c.store.View().Server("n1"); after != leader || c.members.has("n2") {
		t.Fatalf("a refused join changed the cluster: n1 %+v, members %+v", after, c.members.servers)
	}

	wantStatus(t, "n1 rejoins unchanged", call(t, n1, "POST", c.url+"/v1/cluster/join",
		wire.JoinRequest{ID: "n1", RaftAddr: leader.RaftAddr, APIAddr: leader.APIAddr}), http.StatusOK, "")
	wantStatus(t, "n2 joins", call(t, n2, "POST", c.url+"/v1/cluster/join",
		wire.JoinRequest{ID: "n2", RaftAddr: "127.0.0.1:9", APIAddr: "127.0.0.1:10"}), http.StatusOK, "")
	if info, ok := c.store.View().Server("n2"); !ok || info.APIAddr != "127.0.0.1:10" || !c.members.has("n2") {
		t.Fatalf("n2 not a member after its join: %+v", info)
	}

	wantStatus(t, "n2 removes n1", call(t, n2, "POST", c.url+"/v1/cluster/remove", wire.RemoveRequest{ID: "n1"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "operator removes n2", call(t, op, "POST", c.url+"/v1/cluster/remove", wire.RemoveRequest{ID: "n2"}), http.StatusOK, "")
	if c.members.has("n2") {
		t.Fatal("n2 still a member")
	}
}

// TestForwardedCallerHeaderTrustedFromServersOnly: the header a follower
// uses to pass its caller on is believed from a server certificate only.
func TestForwardedCallerHeaderTrustedFromServersOnly(t *testing.T) {
	c := mustStartTLSCluster(t)
	h1, op, n2 := c.client(t, "h1"), c.client(t, "operator"), c.client(t, "n2")

	got := call(t, h1, "GET", c.url+"/v1/services", nil, callerHeader, "operator")
	wantStatus(t, "agent claims operator", got, http.StatusForbidden, "forbidden")
	if !strings.Contains(got.Error, callerHeader) {
		t.Errorf("error %q should name the header", got.Error)
	}
	wantStatus(t, "agent claims h2", call(t, h1, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h2"}, callerHeader, "agent/h2"),
		http.StatusForbidden, "forbidden")
	wantStatus(t, "operator claims agent h1", call(t, op, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h1"}, callerHeader, "agent/h1"),
		http.StatusForbidden, "forbidden")
	wantStatus(t, "empty claim from an agent", call(t, h1, "GET", c.url+"/v1/agent/assignments?host=h1", nil, callerHeader, ""),
		http.StatusForbidden, "forbidden")

	// From a server the header is the caller, both ways.
	wantStatus(t, "server as itself", call(t, n2, "GET", c.url+"/v1/services", nil), http.StatusForbidden, "forbidden")
	wantStatus(t, "server forwarding the operator", call(t, n2, "GET", c.url+"/v1/services", nil, callerHeader, "operator"), http.StatusOK, "")
	wantStatus(t, "server forwarding agent h1", call(t, n2, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h1"}, callerHeader, "agent/h1"),
		http.StatusNoContent, "")
	wantStatus(t, "server forwarding agent h1 reporting as h2", call(t, n2, "POST", c.url+"/v1/agent/report", state.HostReport{Host: "h2"}, callerHeader, "agent/h1"),
		http.StatusForbidden, "forbidden")
	wantStatus(t, "server forwarding agent h1 joining", call(t, n2, "POST", c.url+"/v1/cluster/join",
		wire.JoinRequest{ID: "h1", RaftAddr: "127.0.0.1:9", APIAddr: "127.0.0.1:10"}, callerHeader, "agent/h1"), http.StatusForbidden, "forbidden")
	wantStatus(t, "two claims", call(t, n2, "GET", c.url+"/v1/services", nil, callerHeader, "operator", callerHeader, "agent/h1"),
		http.StatusForbidden, "forbidden")
	wantStatus(t, "malformed claim", call(t, n2, "GET", c.url+"/v1/services", nil, callerHeader, "root"), http.StatusForbidden, "forbidden")
}

// followerRaft is a raft node that follows n1.
type followerRaft struct{ leaderAddr string }

func (followerRaft) Apply(context.Context, []byte) (any, error) { return nil, ErrNotLeader }
func (followerRaft) IsLeader() bool                             { return false }
func (f followerRaft) Leader() (string, string)                 { return "n1", f.leaderAddr }
func (followerRaft) Barrier(context.Context) error              { return ErrNotLeader }
func (followerRaft) VerifyLeader(context.Context) error         { return ErrNotLeader }
func (followerRaft) ID() string                                 { return "n2" }

// TestFollowerForwardsTheCallersRole: a request to a follower reaches the
// leader with its caller's role, not the follower's: an agent's own
// requests pass, everything else it tries is refused on either side.
func TestFollowerForwardsTheCallersRole(t *testing.T) {
	c := mustStartTLSCluster(t)
	ctrl, err := New(Config{Raft: followerRaft{leaderAddr: c.node.Addr()}, Store: c.store, Resolver: RegistryResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	n2 := pki.NodeFiles(c.dir, "n2")
	serverTLS, err := pki.ServerConfig(n2.CA, n2.Cert, n2.Key)
	if err != nil {
		t.Fatal(err)
	}
	forwardTLS, err := pki.ClientConfig(n2.CA, n2.Cert, n2.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NewAPI(APIConfig{Controller: ctrl, Scheme: "https",
		Forward: &http.Client{Transport: &http.Transport{TLSClientConfig: forwardTLS}}}).Handler())
	srv.Listener = tls.NewListener(srv.Listener, serverTLS)
	srv.Start()
	t.Cleanup(srv.Close)
	follower := "https://" + srv.Listener.Addr().String()
	h1, op := c.client(t, "h1"), c.client(t, "operator")

	wantStatus(t, "agent h1 via the follower", call(t, h1, "POST", follower+"/v1/agent/report", state.HostReport{Host: "h1"}), http.StatusNoContent, "")
	wantStatus(t, "agent h1 reads its assignments via the follower", call(t, h1, "GET", follower+"/v1/agent/assignments?host=h1", nil), http.StatusOK, "")
	wantStatus(t, "agent h1 reports as h2 via the follower", call(t, h1, "POST", follower+"/v1/agent/report", state.HostReport{Host: "h2"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "agent h1 sends traffic via the follower", call(t, h1, "POST", follower+"/v1/agent/traffic", wire.TrafficReport{Host: "h1"}), http.StatusNoContent, "")
	wantStatus(t, "agent h1 sends traffic as h2 via the follower", call(t, h1, "POST", follower+"/v1/agent/traffic", wire.TrafficReport{Host: "h2"}), http.StatusForbidden, "forbidden")
	wantStatus(t, "agent h1 applies via the follower", call(t, h1, "POST", follower+"/v1/services", rolesSpec), http.StatusForbidden, "forbidden")
	wantStatus(t, "agent h1 claims operator via the follower", call(t, h1, "GET", follower+"/v1/services", nil, callerHeader, "operator"), http.StatusForbidden, "forbidden")
	wantStatus(t, "operator via the follower", call(t, op, "GET", follower+"/v1/services", nil), http.StatusOK, "")
	wantStatus(t, "operator reports as n2 via the follower", call(t, op, "POST", follower+"/v1/agent/report", state.HostReport{Host: "n2"}), http.StatusForbidden, "forbidden")
	if _, ok := c.store.View().Host("n2"); ok {
		t.Error("the operator's report through n2 was taken as n2's")
	}
	if _, ok := c.store.View().Host("h1"); !ok {
		t.Error("h1's report through the follower did not arrive")
	}
}

// TestCertificateWithoutRoleIsRefused: a certificate of the cluster CA
// made before roles existed is refused on every route with the fix.
func TestCertificateWithoutRoleIsRefused(t *testing.T) {
	c := mustStartTLSCluster(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: mustPool(t, filepath.Join(c.dir, pki.CACertFile)),
		Certificates: []tls.Certificate{mustLegacyClientCert(t, c.dir)},
	}}}
	for _, path := range []string{"/v1/health", "/v1/services", "/v1/agent/assignments?host=h1"} {
		got := call(t, hc, "GET", c.url+path, nil)
		wantStatus(t, "no role: "+path, got, http.StatusForbidden, "no_role")
		if !strings.Contains(got.Error, "re-issue") {
			t.Errorf("%s: %q should tell to re-issue the certificate", path, got.Error)
		}
	}
}

func mustPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("no CA")
	}
	return pool
}

// mustLegacyClientCert signs a client certificate like deployctl made
// before roles: ClientAuth, CN deployctl-client, no role URI.
func mustLegacyClientCert(t *testing.T, dir string) tls.Certificate {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: pki.ClientCommonName},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, key.Public(), ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}
