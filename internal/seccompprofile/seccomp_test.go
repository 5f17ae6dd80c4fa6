package seccompprofile

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// minimalProfile is an allow-list profile small enough to read in a test:
// it refuses by default and allows a few syscalls.
const minimalProfile = `{
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 1,
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
  "syscalls": [
    {"names": ["read", "write", "exit_group", "execve"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
  ]
}`

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name    string
		profile string
		opts    ValidateOptions
	}{
		{name: "allow list", profile: minimalProfile},
		{
			name:    "block list: allow by default, refuse some",
			profile: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace", "personality"], "action": "SCMP_ACT_ERRNO"}]}`,
		},
		{
			name:    "legacy name field",
			profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"}]}`,
		},
		{
			name:    "archMap with conditions",
			profile: `{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}], "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"], "minKernel": "4.8"}}]}`,
		},
		{
			name:    "permissive when explicitly allowed",
			profile: `{"defaultAction": "SCMP_ACT_ALLOW"}`,
			opts:    ValidateOptions{AllowPermissive: true},
		},
		{
			name:    "log everything when explicitly allowed",
			profile: `{"defaultAction": "SCMP_ACT_LOG", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`,
			opts:    ValidateOptions{AllowPermissive: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateWith([]byte(tt.profile), tt.opts); err != nil {
				t.Fatalf("ValidateWith: %v", err)
			}
		})
	}
}

func TestValidateRefuses(t *testing.T) {
	tests := []struct {
		name    string
		profile string
		// want is a part of the message that names the problem.
		want string
	}{
		{name: "empty", profile: "  \n", want: "empty"},
		{name: "not JSON", profile: `defaultAction: SCMP_ACT_ERRNO`, want: "invalid character"},
		{name: "array", profile: `[]`, want: "cannot unmarshal array"},
		{name: "trailing data", profile: minimalProfile + `{}`, want: "data after"},
		{name: "unknown field (typo)", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscall": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: `unknown field "syscall"`},
		{name: "no defaultAction", profile: `{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: "defaultAction is missing"},
		{name: "unknown defaultAction", profile: `{"defaultAction": "SCMP_ACT_DENY", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: `unknown action "SCMP_ACT_DENY"`},
		{name: "notify default", profile: `{"defaultAction": "SCMP_ACT_NOTIFY", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: "seccomp agent"},
		{name: "defaultErrnoRet with allow", profile: `{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1, "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}`, want: "defaultErrnoRet is set"},
		{name: "listener", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: "listenerPath"},
		{name: "unknown architecture", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: `unknown architecture "SCMP_ARCH_Z80"`},
		{name: "unknown subarchitecture", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["x86"]}], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: `unknown subArchitecture "x86"`},
		{name: "architectures and archMap", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: "both architectures and archMap"},
		{name: "unknown flag", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_FAST"], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: `unknown flag "SECCOMP_FILTER_FLAG_FAST"`},
		{name: "rule without names", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": [], "action": "SCMP_ACT_ALLOW"}]}`, want: "syscalls[1] names no syscall"},
		{name: "null rule", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [null]}`, want: "syscalls[0] is null"},
		{name: "name and names", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}`, want: "both name and names"},
		{name: "not a syscall name", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "Write "], "action": "SCMP_ACT_ALLOW"}]}`, want: `"Write " is not a syscall name`},
		{name: "rule without action", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}`, want: "syscalls[0] (read): action is missing"},
		{name: "unknown rule action", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write"], "action": "ALLOW"}]}`, want: `syscalls[0] (read, write): unknown action "ALLOW"`},
		{name: "errnoRet with allow", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}`, want: "errnoRet is set"},
		{name: "argument index", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}`, want: "index 6"},
		{name: "argument operator", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "EQ"}]}]}`, want: `unknown op "EQ"`},
		{name: "capability name", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["sys_admin"]}}]}`, want: `includes: caps: "sys_admin"`},
		{name: "bad minKernel", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}`, want: "invalid kernel version"},
		{name: "unconfined in disguise", profile: `{"defaultAction": "SCMP_ACT_ALLOW"}`, want: "security.seccomp: unconfined"},
		{name: "unconfined in disguise with allow rules", profile: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, want: "lets every syscall through"},
		{name: "log everything", profile: `{"defaultAction": "SCMP_ACT_LOG", "syscalls": []}`, want: "lets every syscall through"},
		{name: "refuses everything", profile: `{"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}`, want: "could not even start"},
		// Issue 16 finding 5: a rule for a syscall that does not exist
		// made an allow-everything profile look confined.
		{name: "review profile: made-up syscall", profile: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]}`,
			want: `unknown syscall names, not in libseccomp's table for any architecture; runc ignores them, so these rules do nothing: syscalls[0]: "not_a_syscall"`},
		{name: "misspelt syscall", profile: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["keyctll", "ptrace"], "action": "SCMP_ACT_ERRNO"}]}`,
			want: `syscalls[0]: "keyctll" (did you mean keyctl?)`},
		{name: "legacy name unknown", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"name": "clone4", "action": "SCMP_ACT_ALLOW"}]}`,
			want: `syscalls[1]: "clone4"`},
		{name: "syscall of another architecture", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["read", "arch_prctl"], "action": "SCMP_ACT_ALLOW"}]}`,
			want: `the profile's architectures (aarch64); runc ignores them, so these rules do nothing: syscalls[0]: "arch_prctl"`},
		{name: "too large", profile: `{"defaultAction": "SCMP_ACT_ERRNO", "comment": "` + strings.Repeat("x", MaxProfileBytes) + `"}`, want: "more than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate([]byte(tt.profile))
			if !errors.Is(err, ErrInvalidProfile) {
				t.Fatalf("Validate = %v, want ErrInvalidProfile", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestInlineCompactsAndKeepsContent(t *testing.T) {
	opt, err := Inline([]byte(minimalProfile))
	if err != nil {
		t.Fatalf("Inline: %v", err)
	}
	body, ok := strings.CutPrefix(opt, "seccomp=")
	if !ok {
		t.Fatalf("Inline = %q, want the seccomp= prefix", opt)
	}
	if strings.ContainsAny(body, "\n\t") || strings.Contains(body, ": ") {
		t.Fatalf("Inline body is not compact: %q", body)
	}
	var got, want any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("Inline body is not JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(minimalProfile), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Inline changed the profile:\n got %v\nwant %v", got, want)
	}
	// The compact form is what the Docker CLI sends for a profile file.
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(minimalProfile)); err != nil {
		t.Fatal(err)
	}
	if body != compact.String() {
		t.Fatalf("Inline body = %q, want json.Compact's %q", body, compact.String())
	}
}

func TestInlineRefuses(t *testing.T) {
	for _, profile := range []string{"", "{", `["SCMP_ACT_ALLOW"]`, `"seccomp=unconfined"`, "unconfined"} {
		t.Run(profile, func(t *testing.T) {
			if opt, err := Inline([]byte(profile)); !errors.Is(err, ErrInvalidProfile) {
				t.Fatalf("Inline(%q) = %q, %v; want ErrInvalidProfile", profile, opt, err)
			}
		})
	}
}

func TestStrictRemovedIsFreshEveryCall(t *testing.T) {
	first := StrictRemoved()
	if len(first) == 0 {
		t.Fatal("StrictRemoved is empty")
	}
	want := first[0]
	first[0] = "read"
	if got := StrictRemoved()[0]; got != want {
		t.Fatalf("changing a returned slice changed the next call: got %q, want %q", got, want)
	}
	reasons := StrictRemovedReasons()
	seen := map[string]bool{}
	for _, name := range StrictRemoved() {
		if seen[name] {
			t.Errorf("%s is listed twice", name)
		}
		seen[name] = true
		if reasons[name] == "" {
			t.Errorf("%s has no documented reason", name)
		}
	}
	if len(reasons) != len(seen) {
		t.Errorf("StrictRemovedReasons has %d entries, StrictRemoved %d names", len(reasons), len(seen))
	}
}
