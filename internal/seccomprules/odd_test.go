package seccomprules

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	mobyseccomp "github.com/moby/profiles/seccomp"
)

// oddProfiles are profiles no one should write; Judge must answer for each
// without panicking, and never call a profile with a non-refusing default
// "not weaker".
func oddProfiles() []string {
	many := make([]string, 0, 5000)
	for i := range 5000 {
		many = append(many, fmt.Sprintf(`{"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":%d,"value":%d,"op":"SCMP_CMP_EQ"},{"index":0,"value":%d,"op":"SCMP_CMP_MASKED_EQ","valueTwo":7}]}`, i%9, i, i))
	}
	huge := `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[` + strings.Join(many, ",") + `]}`
	return []string{
		``, `null`, `{}`, `[]`, `"x"`, `42`, `{"defaultAction":null}`,
		`{"syscalls":null}`, `{"syscalls":[null]}`, `{"syscalls":[{}]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[null,{},{"names":[]},{"names":[""]},{"name":"keyctl","action":"SCMP_ACT_ALLOW"}]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":0}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":99,"value":1,"op":"SCMP_CMP_WHAT"}]}]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_GT"},{"index":0,"value":0,"op":"SCMP_CMP_LT"}]}]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"255.255","caps":["CAP_X"],"arches":["nowhere"]},"excludes":{"minKernel":"1.0"}}]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"x"}}]}`,
		`{"defaultAction":"SCMP_ACT_KILL_PROCESS","flags":["SECCOMP_FILTER_FLAG_SPEC_ALLOW","SECCOMP_FILTER_FLAG_SPEC_ALLOW","x"]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_NOPE","subArchitectures":null}],"architectures":["SCMP_ARCH_X86_64"]}`,
		`{"DEFAULTACTION":"SCMP_ACT_ALLOW"}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","defaultAction":"SCMP_ACT_ALLOW"}`,
		huge,
	}
}

func TestJudgeOddProfiles(t *testing.T) {
	mustDefault(t)
	for i, profile := range oddProfiles() {
		name := profile
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(fmt.Sprintf("%d %s", i, name), func(t *testing.T) {
			start := time.Now()
			v, err := Judge([]byte(profile), nil, ContainerCapabilities(nil, nil, false))
			if err != nil {
				if !errors.Is(err, ErrUnreadableProfile) {
					t.Fatalf("error %v is not ErrUnreadableProfile", err)
				}
				return
			}
			_ = v.String()
			checkDefaultActionInvariant(t, []byte(profile), v)
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}

// FuzzJudge: whatever the bytes, Judge returns (no panic), and a verdict
// that is not weaker comes only with a refusing default action.
func FuzzJudge(f *testing.F) {
	for _, p := range oddProfiles()[:len(oddProfiles())-1] {
		f.Add([]byte(p))
	}
	f.Add([]byte(reviewProfile))
	f.Fuzz(func(t *testing.T, profile []byte) {
		v, err := Judge(profile)
		if errors.Is(err, ErrUnsupportedPlatform) {
			t.Skip(err)
		}
		if err != nil {
			return
		}
		_ = v.String()
		checkDefaultActionInvariant(t, profile, v)
	})
}

// checkDefaultActionInvariant: a verdict without a DefaultAction finding
// belongs to a profile whose default action, as the engine decodes it,
// refuses.
func checkDefaultActionInvariant(t *testing.T, profile []byte, v Verdict) {
	t.Helper()
	var p mobyseccomp.Seccomp
	if err := json.Unmarshal(profile, &p); err != nil {
		t.Fatalf("Judge read a profile json.Unmarshal refuses: %v", err)
	}
	if v.DefaultAction == "" && !refuses(p.DefaultAction, p.DefaultErrnoRet) {
		t.Fatalf("defaultAction %q (errno %v) passed: %+v", p.DefaultAction, p.DefaultErrnoRet, v)
	}
}
