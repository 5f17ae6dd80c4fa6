package controller

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/wire"
)

// Issue 16 finding 5 at the API, for a client that skips the CLI's own
// check: the review's profile (allow everything, refuse a made-up syscall)
// is a bad request; profiles weaker than Docker's default are denied by
// the policy, naming allow_seccomp_syscalls; nothing reaches raft.
func TestAPIRefusesSeccompProfilesWeakerThanDefault(t *testing.T) {
	n := mustStartNode(t)
	const spec = "service: web\nimage: registry.example.com/team/web:1\nsecurity: {seccomp: ./profile.json}\n"
	cases := []struct {
		name, profile  string
		status         int
		code, mentions string
	}{
		{"review profile", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]}`,
			400, "invalid_spec", `"not_a_syscall"`},
		{"allows by default", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}`,
			403, "denied", "defaultAction SCMP_ACT_ALLOW"},
		{"allows keyctl", `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", "execve", "exit_group", "keyctl"], "action": "SCMP_ACT_ALLOW"}]}`,
			403, "denied", "keyctl (allowed unconditionally; the default refuses it)"},
		{"allows clone with CLONE_NEWUSER", `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", "execve", "exit_group", "clone"], "action": "SCMP_ACT_ALLOW"}]}`,
			403, "denied", "clone (allowed unconditionally; the default allows it only when arg0 & 0x7e020000 == 0x0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, err := json.Marshal(wire.ApplyBody{SpecYAML: spec, SeccompProfile: []byte(c.profile)})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Post(n.api.URL+"/v1/services", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e wire.APIError
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status || e.Code != c.code || !strings.Contains(e.Error, c.mentions) {
				t.Fatalf("%d %+v; want %d %s mentioning %q", resp.StatusCode, e, c.status, c.code, c.mentions)
			}
			if c.status == 403 && (len(e.Violations) != 1 || e.Violations[0].Rule != policy.RuleAllowSeccompSyscalls || e.Violations[0].Field != "security.seccomp") {
				t.Fatalf("violations %+v, want one %s on security.seccomp", e.Violations, policy.RuleAllowSeccompSyscalls)
			}
		})
	}
	if n.store.View().Index() > 2 {
		t.Fatalf("refused applies wrote to raft (index %d)", n.store.View().Index())
	}
}
