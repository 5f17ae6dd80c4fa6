package seccompprofile

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/deployctl/deployctl/internal/seccomprules"
	mobyseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func mustStrict(t testing.TB) []byte {
	t.Helper()
	profile, err := Strict()
	if err != nil {
		t.Fatalf("Strict: %v", err)
	}
	return profile
}

// mustDefaultJSON is Docker's default profile as the engine would read it
// from a file.
func mustDefaultJSON(t testing.TB) []byte {
	t.Helper()
	data, err := json.Marshal(mobyseccomp.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustParse(t testing.TB, data []byte) *mobyseccomp.Seccomp {
	t.Helper()
	var profile mobyseccomp.Seccomp
	if err := json.Unmarshal(data, &profile); err != nil {
		t.Fatalf("parse profile: %v", err)
	}
	return &profile
}

// ruleEntry is one syscall name in one rule: the name and the JSON of the
// rule without its names (action, arguments, conditions).
type ruleEntry struct {
	name string
	rule string
}

// entries counts the (name, rule) pairs of a profile.
func entries(t testing.TB, profile *mobyseccomp.Seccomp) map[ruleEntry]int {
	t.Helper()
	counts := map[ruleEntry]int{}
	for _, rule := range profile.Syscalls {
		rest := *rule
		rest.Names = nil
		data, err := json.Marshal(rest)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range rule.Names {
			counts[ruleEntry{name: name, rule: string(data)}]++
		}
	}
	return counts
}

// TestStrictDiffersFromDefaultOnlyByRemovedNames compares the two profiles
// name by name and rule by rule: every (name, rule) pair of the default is
// in Strict unless the name is removed and the rule lets it through, Strict
// has nothing the default lacks, and the rest of the profile is the same.
func TestStrictDiffersFromDefaultOnlyByRemovedNames(t *testing.T) {
	defaultProfile := mustParse(t, mustDefaultJSON(t))
	strictProfile := mustParse(t, mustStrict(t))
	removed := StrictRemoved()

	defaultEntries, strictEntries := entries(t, defaultProfile), entries(t, strictProfile)
	var dropped int
	for entry, count := range defaultEntries {
		var rule mobyseccomp.Syscall
		if err := json.Unmarshal([]byte(entry.rule), &rule); err != nil {
			t.Fatal(err)
		}
		want := count
		if slices.Contains(removed, entry.name) && lets(rule.Action) {
			want = 0
			dropped += count
		}
		if got := strictEntries[entry]; got != want {
			t.Errorf("%s in rule %s: %d times in Strict, want %d", entry.name, entry.rule, got, want)
		}
	}
	for entry := range strictEntries {
		if _, ok := defaultEntries[entry]; !ok {
			t.Errorf("Strict has %s in rule %s, which the default has not", entry.name, entry.rule)
		}
	}
	if dropped < len(removed) {
		t.Errorf("only %d (name, rule) pairs dropped for %d removed names", dropped, len(removed))
	}

	defaultTop, strictTop := *defaultProfile, *strictProfile
	defaultTop.Syscalls, strictTop.Syscalls = nil, nil
	defaultJSON, err := json.Marshal(defaultTop)
	if err != nil {
		t.Fatal(err)
	}
	strictJSON, err := json.Marshal(strictTop)
	if err != nil {
		t.Fatal(err)
	}
	if string(defaultJSON) != string(strictJSON) {
		t.Errorf("profiles differ outside the syscall rules:\ndefault %s\n strict %s", defaultJSON, strictJSON)
	}
}

// TestStrictRemovedAreAllowedByDefault keeps the documented list honest:
// every name must be one that the default lets through in some rule,
// conditional or not, or removing it would change nothing.
func TestStrictRemovedAreAllowedByDefault(t *testing.T) {
	allowed := map[string]bool{}
	for _, rule := range mobyseccomp.DefaultProfile().Syscalls {
		if lets(rule.Action) {
			for _, name := range rule.Names {
				allowed[name] = true
			}
		}
	}
	for _, name := range StrictRemoved() {
		if !allowed[name] {
			t.Errorf("%s is not allowed by Docker's default profile; drop it from the strict list", name)
		}
	}
}

// TestStrictAsTheEngineLoadsIt evaluates both profiles the way the engine
// does at container creation (conditions resolved against the container's
// bounding capabilities and this host's kernel): with no capabilities and
// with every capability the default mentions, Strict must let through
// exactly the default's syscalls minus the removed ones. The "every
// capability" case is what proves the capability-gated rules lost the names.
func TestStrictAsTheEngineLoadsIt(t *testing.T) {
	var everyCap []string
	for _, rule := range mobyseccomp.DefaultProfile().Syscalls {
		if rule.Includes != nil {
			for _, c := range rule.Includes.Caps {
				if !slices.Contains(everyCap, c) {
					everyCap = append(everyCap, c)
				}
			}
		}
	}
	if !slices.Contains(everyCap, "CAP_SYS_ADMIN") {
		t.Fatalf("expected CAP_SYS_ADMIN among the default's conditions, got %v", everyCap)
	}
	removed := StrictRemoved()
	defaultJSON, strictJSON := string(mustDefaultJSON(t)), string(mustStrict(t))
	for _, tc := range []struct {
		name string
		caps []string
	}{{"no capabilities", nil}, {"every capability", everyCap}} {
		t.Run(tc.name, func(t *testing.T) {
			container := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: tc.caps}}}
			defaultLoaded, err := mobyseccomp.LoadProfile(defaultJSON, container)
			if err != nil {
				t.Fatalf("load default: %v", err)
			}
			strictLoaded, err := mobyseccomp.LoadProfile(strictJSON, container)
			if err != nil {
				t.Fatalf("load strict: %v", err)
			}
			want := allowedNames(defaultLoaded)
			for _, name := range removed {
				delete(want, name)
			}
			got := allowedNames(strictLoaded)
			for name := range want {
				if !got[name] {
					t.Errorf("%s: allowed by the default, not removed, but not allowed by Strict", name)
				}
			}
			for name := range got {
				if !want[name] {
					t.Errorf("%s: allowed by Strict, want refused", name)
				}
			}
			if tc.caps != nil {
				for _, name := range []string{"mount", "unshare", "bpf", "ptrace"} {
					if !allowNamesInclude(defaultLoaded, name) {
						t.Errorf("with every capability the default should allow %s (test premise)", name)
					}
				}
			}
		})
	}
}

func allowedNames(profile *specs.LinuxSeccomp) map[string]bool {
	names := map[string]bool{}
	for _, rule := range profile.Syscalls {
		if lets(rule.Action) {
			for _, name := range rule.Names {
				names[name] = true
			}
		}
	}
	return names
}

func allowNamesInclude(profile *specs.LinuxSeccomp, name string) bool {
	return allowedNames(profile)[name]
}

func TestValidateAcceptsDockerDefaultAndStrict(t *testing.T) {
	if err := Validate(mustDefaultJSON(t)); err != nil {
		t.Errorf("Validate(Docker default): %v", err)
	}
	if err := Validate(mustStrict(t)); err != nil {
		t.Errorf("Validate(Strict): %v", err)
	}
}

// Strict is at least as strict as Docker's default for every capability
// set a service can have, by the judge the policy and the audit use.
func TestStrictIsNotWeakerThanTheDefault(t *testing.T) {
	capSets := [][]string{nil, seccomprules.ContainerCapabilities(nil, nil, false), seccomprules.ContainerCapabilities([]string{"ALL"}, nil, false)}
	for _, c := range []string{"SYS_ADMIN", "SYS_PTRACE", "SYS_CHROOT", "DAC_READ_SEARCH", "BPF", "PERFMON", "SYSLOG"} {
		capSets = append(capSets, seccomprules.ContainerCapabilities([]string{c}, []string{"ALL"}, false))
	}
	for _, caps := range capSets {
		v, err := seccomprules.Judge(mustStrict(t), caps)
		if err != nil {
			t.Fatal(err)
		}
		if v.Weaker() {
			t.Errorf("Strict with %v: %s", caps, v)
		}
	}
}

// TestPersonalityQueryAllowedByDefaultUnconditionally is the premise of the
// Docker test: the default lets personality(0xffffffff) through in a rule
// without conditions, so a non-root process with no capabilities may call
// it, and Strict has no rule for personality at all.
func TestPersonalityQueryAllowedByDefaultUnconditionally(t *testing.T) {
	var found bool
	for _, rule := range mobyseccomp.DefaultProfile().Syscalls {
		if !slices.Contains(rule.Names, "personality") || rule.Includes != nil || rule.Excludes != nil || rule.Action != specs.ActAllow {
			continue
		}
		for _, arg := range rule.Args {
			if arg.Index == 0 && arg.Op == specs.OpEqualTo && arg.Value == 0xffffffff {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("Docker's default profile has no unconditional allow rule for personality(0xffffffff)")
	}
	for _, rule := range mustParse(t, mustStrict(t)).Syscalls {
		if slices.Contains(rule.Names, "personality") {
			t.Fatalf("Strict still has a rule for personality: %+v", rule)
		}
	}
}
