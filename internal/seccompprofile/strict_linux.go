package seccompprofile

import (
	"encoding/json"
	"fmt"
	"slices"

	mobyseccomp "github.com/moby/profiles/seccomp"
)

// Strict returns Docker's default seccomp profile (the one of
// github.com/moby/profiles/seccomp, which the Docker Engine itself
// embeds) with the syscalls of StrictRemoved taken out, as indented JSON.
//
// A name is taken out of every rule that lets it through (SCMP_ACT_ALLOW or
// SCMP_ACT_LOG), whatever the rule's includes/excludes conditions: a
// capability-gated rule such as "mount if CAP_SYS_ADMIN" loses the name too,
// so adding the capability in the spec does not bring the syscall back. A
// rule left without names is dropped. Rules that refuse a name (an errno
// rule) keep it, so their errno stays what Docker chose. Everything else
// (default action and errno, architectures, arguments, conditions, order)
// is the default profile's.
//
// The profile is generated from moby's Go source rather than read from a
// file, so it is only available where that source builds: on Linux, where
// the agents and the engine run.
func Strict() ([]byte, error) {
	profile := mobyseccomp.DefaultProfile()
	removed := make(map[string]bool)
	for _, name := range StrictRemoved() {
		removed[name] = true
	}
	kept := make([]*mobyseccomp.Syscall, 0, len(profile.Syscalls))
	for _, rule := range profile.Syscalls {
		if !lets(rule.Action) {
			kept = append(kept, rule)
			continue
		}
		// DefaultProfile builds a fresh profile on every call, so the rule
		// is ours to change.
		rule.Names = slices.DeleteFunc(slices.Clone(rule.Names), func(name string) bool { return removed[name] })
		if len(rule.Names) > 0 {
			kept = append(kept, rule)
		}
	}
	profile.Syscalls = kept
	data, err := json.MarshalIndent(profile, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode strict seccomp profile: %w", err)
	}
	return append(data, '\n'), nil
}
