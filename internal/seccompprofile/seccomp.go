// Package seccompprofile prepares the seccomp profiles of deployctl services: a
// stricter built-in profile derived from Docker's default (Strict), a
// validator for profiles that users write (Validate), and the inline form
// that the Docker Engine API takes in HostConfig.SecurityOpt (Inline).
//
// Profiles are Docker's JSON format (the one of
// github.com/moby/profiles/seccomp: runtime-spec fields plus archMap and
// per-rule includes/excludes conditions), because the engine evaluates the
// conditions against the container's capabilities when it creates the
// container.
package seccompprofile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/internal/seccomprules"
	mobyseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Errors at the package border.
var (
	// ErrInvalidProfile means a profile is not one the engine would apply
	// as intended; the message names the problem.
	ErrInvalidProfile = errors.New("invalid seccomp profile")
	// ErrUnsupportedPlatform means Strict was called where moby's default
	// profile is not built (anything but Linux).
	ErrUnsupportedPlatform = errors.New("seccomp profile generation not supported on this platform")
)

// SecurityOptPrefix starts the HostConfig.SecurityOpt entry that carries a
// profile inline; the Docker CLI sends `--security-opt seccomp=FILE` the
// same way, with the file's compacted JSON after the '='.
const SecurityOptPrefix = "seccomp="

// MaxProfileBytes bounds a profile. The profile is stored in every revision
// in raft and sent with every container create; Docker's default is about
// 20 KiB indented.
const MaxProfileBytes = 256 << 10

// maxArgIndex is the highest syscall argument index (syscalls take at most
// six arguments).
const maxArgIndex = 5

// syscallName is what a syscall name looks like in libseccomp's table.
var syscallName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// ValidateOptions loosen Validate. The zero value is the strict default.
type ValidateOptions struct {
	// AllowPermissive accepts a profile that lets every syscall through
	// (defaultAction SCMP_ACT_ALLOW or SCMP_ACT_LOG and no rule that
	// refuses anything). Such a profile is `unconfined` in disguise, and
	// refused by default so that turning seccomp off is always visible as
	// `security.seccomp: unconfined` in the spec.
	AllowPermissive bool
}

// Validate checks a profile with the default options: see ValidateWith.
func Validate(profile []byte) error {
	return ValidateWith(profile, ValidateOptions{})
}

// ValidateWith parses profile as Docker's seccomp JSON and checks what the
// engine and runc would otherwise reject at container start, or silently
// apply differently from what the author meant:
//   - one JSON object, at most MaxProfileBytes, no unknown fields (a typo
//     such as "syscall" for "syscalls" would otherwise drop every rule);
//   - defaultAction and every rule's action are known seccomp actions, and
//     not SCMP_ACT_NOTIFY (it needs a seccomp agent, which Docker does not
//     run); errnoRet only with SCMP_ACT_ERRNO or SCMP_ACT_TRACE;
//   - architectures, archMap and flags are known, and architectures and
//     archMap are not both given (the engine refuses that);
//   - every rule names at least one syscall (in "names" or the legacy
//     "name", not both), every name looks like a syscall name, arguments
//     have an index 0-5 and a known operator, and conditions name
//     capabilities as CAP_*;
//   - every syscall name is in libseccomp's table for an architecture the
//     profile covers (internal/seccomprules.UnknownSyscalls): runc skips
//     names it does not know, so a rule for a misspelt or made-up name
//     does nothing while the profile looks confined;
//   - the profile confines something: a default that allows with no rule
//     that refuses is refused unless opts.AllowPermissive; a default that
//     refuses with no rule that allows is refused always (the container
//     could not even exec its process).
//
// Whether the profile is at least as strict as Docker's default is not
// checked here but by the cluster policy (internal/seccomprules.Judge),
// which knows the container's capabilities and what the policy allows.
func ValidateWith(profile []byte, opts ValidateOptions) error {
	parsed, err := parse(profile)
	if err != nil {
		return err
	}
	if err := checkTop(parsed); err != nil {
		return err
	}
	for i, rule := range parsed.Syscalls {
		if err := checkRule(i, rule); err != nil {
			return err
		}
	}
	if err := checkNames(parsed); err != nil {
		return err
	}
	return checkConfines(parsed, opts)
}

// Inline returns the HostConfig.SecurityOpt entry that applies profile:
// SecurityOptPrefix followed by the compacted JSON. It only checks that the
// profile is one JSON object; Validate is for apply time, where a person
// can fix the file, while Inline runs on the agent with a profile that was
// validated then and is stored in the revision.
func Inline(profile []byte) (string, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, profile); err != nil {
		return "", fmt.Errorf("%w: not valid JSON: %w", ErrInvalidProfile, err)
	}
	if compact.Len() == 0 || compact.Bytes()[0] != '{' {
		return "", fmt.Errorf("%w: not a JSON object", ErrInvalidProfile)
	}
	return SecurityOptPrefix + compact.String(), nil
}

// parse decodes exactly one JSON object into moby's profile type.
func parse(profile []byte) (*mobyseccomp.Seccomp, error) {
	if len(bytes.TrimSpace(profile)) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidProfile)
	}
	if len(profile) > MaxProfileBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than the limit of %d", ErrInvalidProfile, len(profile), MaxProfileBytes)
	}
	decoder := json.NewDecoder(bytes.NewReader(profile))
	decoder.DisallowUnknownFields()
	var parsed mobyseccomp.Seccomp
	if err := decoder.Decode(&parsed); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidProfile, err)
	}
	if _, err := decoder.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the profile's JSON object", ErrInvalidProfile)
	}
	return &parsed, nil
}

func checkTop(p *mobyseccomp.Seccomp) error {
	if p.DefaultAction == "" {
		return fmt.Errorf("%w: defaultAction is missing", ErrInvalidProfile)
	}
	if err := checkAction(p.DefaultAction); err != nil {
		return fmt.Errorf("%w: defaultAction: %w", ErrInvalidProfile, err)
	}
	if p.DefaultErrnoRet != nil && p.DefaultAction != specs.ActErrno && p.DefaultAction != specs.ActTrace {
		return fmt.Errorf("%w: defaultErrnoRet is set but defaultAction is %s; it only applies to %s and %s", ErrInvalidProfile, p.DefaultAction, specs.ActErrno, specs.ActTrace)
	}
	if p.ListenerPath != "" || p.ListenerMetadata != "" {
		return fmt.Errorf("%w: listenerPath/listenerMetadata need a seccomp agent, which the Docker Engine does not run", ErrInvalidProfile)
	}
	if len(p.Architectures) > 0 && len(p.ArchMap) > 0 {
		return fmt.Errorf("%w: both architectures and archMap are given; the engine accepts only one of them", ErrInvalidProfile)
	}
	for _, arch := range p.Architectures {
		if !slices.Contains(knownArches(), arch) {
			return fmt.Errorf("%w: architectures: unknown architecture %q", ErrInvalidProfile, arch)
		}
	}
	for i, entry := range p.ArchMap {
		if !slices.Contains(knownArches(), entry.Arch) {
			return fmt.Errorf("%w: archMap[%d]: unknown architecture %q", ErrInvalidProfile, i, entry.Arch)
		}
		for _, sub := range entry.SubArches {
			if !slices.Contains(knownArches(), sub) {
				return fmt.Errorf("%w: archMap[%d] (%s): unknown subArchitecture %q", ErrInvalidProfile, i, entry.Arch, sub)
			}
		}
	}
	for _, flag := range p.Flags {
		if !slices.Contains(knownFlags(), flag) {
			return fmt.Errorf("%w: flags: unknown flag %q", ErrInvalidProfile, flag)
		}
	}
	return nil
}

func checkRule(i int, rule *mobyseccomp.Syscall) error {
	if rule == nil {
		return fmt.Errorf("%w: syscalls[%d] is null", ErrInvalidProfile, i)
	}
	names, legacy := rule.Names, legacyName(rule)
	switch {
	case legacy != "" && len(rule.Names) > 0:
		return fmt.Errorf("%w: syscalls[%d] has both name and names; use names", ErrInvalidProfile, i)
	case legacy != "":
		names = []string{legacy}
	case len(rule.Names) == 0:
		return fmt.Errorf("%w: syscalls[%d] names no syscall", ErrInvalidProfile, i)
	}
	where := fmt.Sprintf("syscalls[%d] (%s)", i, strings.Join(names, ", "))
	for _, name := range names {
		if !syscallName.MatchString(name) {
			return fmt.Errorf("%w: syscalls[%d]: %q is not a syscall name", ErrInvalidProfile, i, name)
		}
	}
	if rule.Action == "" {
		return fmt.Errorf("%w: %s: action is missing", ErrInvalidProfile, where)
	}
	if err := checkAction(rule.Action); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidProfile, where, err)
	}
	if rule.ErrnoRet != nil && rule.Action != specs.ActErrno && rule.Action != specs.ActTrace {
		return fmt.Errorf("%w: %s: errnoRet is set but the action is %s; it only applies to %s and %s", ErrInvalidProfile, where, rule.Action, specs.ActErrno, specs.ActTrace)
	}
	for j, arg := range rule.Args {
		if arg.Index > maxArgIndex {
			return fmt.Errorf("%w: %s: args[%d]: index %d, syscalls have arguments 0 to %d", ErrInvalidProfile, where, j, arg.Index, maxArgIndex)
		}
		if !slices.Contains(knownOperators(), arg.Op) {
			return fmt.Errorf("%w: %s: args[%d]: unknown op %q", ErrInvalidProfile, where, j, arg.Op)
		}
	}
	if err := checkFilter(rule.Includes); err != nil {
		return fmt.Errorf("%w: %s: includes: %w", ErrInvalidProfile, where, err)
	}
	if err := checkFilter(rule.Excludes); err != nil {
		return fmt.Errorf("%w: %s: excludes: %w", ErrInvalidProfile, where, err)
	}
	return nil
}

// maxNamedUnknown bounds how many unknown names an error lists.
const maxNamedUnknown = 10

// checkNames refuses syscall names that libseccomp's table does not have
// for any architecture the profile covers, naming each with its rule and,
// where one is close, the name probably meant.
func checkNames(p *mobyseccomp.Seccomp) error {
	unknown := seccomprules.UnknownSyscalls(p)
	if len(unknown) == 0 {
		return nil
	}
	var parts []string
	for i, u := range unknown {
		if i == maxNamedUnknown {
			parts = append(parts, fmt.Sprintf("and %d more", len(unknown)-i))
			break
		}
		part := fmt.Sprintf("syscalls[%d]: %q", u.Rule, u.Name)
		if best, ok := seccomprules.ClosestSyscall(u.Name); ok && best != u.Name {
			part += fmt.Sprintf(" (did you mean %s?)", best)
		}
		parts = append(parts, part)
	}
	where := "any architecture"
	if len(p.Architectures) > 0 {
		where = "the profile's architectures (" + strings.Join(unknown[0].Arches, ", ") + ")"
	}
	return fmt.Errorf("%w: unknown syscall names, not in libseccomp's table for %s; runc ignores them, so these rules do nothing: %s; fix or remove them",
		ErrInvalidProfile, where, strings.Join(parts, ", "))
}

// legacyName is a rule's single "name" field, which moby deprecated in
// favour of "names" but the engine still applies: old profiles use it.
func legacyName(rule *mobyseccomp.Syscall) string {
	//lint:ignore SA1019 the engine still accepts "name", so the validator must read it
	return rule.Name
}

// checkFilter checks a rule condition's capability names; the engine
// compares them verbatim with the container's bounding set, so "sys_admin"
// would silently never match. Arches are libseccomp's native names
// ("amd64", "x32", ...), which the engine compares verbatim too, and are not
// checked: an unknown one only makes the rule never (includes) or always
// (excludes) apply.
func checkFilter(filter *mobyseccomp.Filter) error {
	if filter == nil {
		return nil
	}
	for _, capability := range filter.Caps {
		if !strings.HasPrefix(capability, "CAP_") || strings.ToUpper(capability) != capability {
			return fmt.Errorf("caps: %q is not a capability name (CAP_...)", capability)
		}
	}
	return nil
}

// checkConfines refuses profiles that confine nothing, or everything.
func checkConfines(p *mobyseccomp.Seccomp, opts ValidateOptions) error {
	var allowing, refusing int
	for _, rule := range p.Syscalls {
		if lets(rule.Action) {
			allowing++
		} else {
			refusing++
		}
	}
	if lets(p.DefaultAction) && refusing == 0 && !opts.AllowPermissive {
		return fmt.Errorf("%w: defaultAction %s with no rule that refuses a syscall lets every syscall through, the same as no seccomp filter; write security.seccomp: unconfined if that is what is meant", ErrInvalidProfile, p.DefaultAction)
	}
	if !lets(p.DefaultAction) && allowing == 0 {
		return fmt.Errorf("%w: defaultAction %s with no rule that allows a syscall refuses every syscall; the container could not even start its process", ErrInvalidProfile, p.DefaultAction)
	}
	return nil
}

func checkAction(action specs.LinuxSeccompAction) error {
	if action == specs.ActNotify {
		return fmt.Errorf("%s needs a seccomp agent, which the Docker Engine does not run", action)
	}
	if !slices.Contains(knownActions(), action) {
		return fmt.Errorf("unknown action %q", action)
	}
	return nil
}

// lets reports whether a rule with this action lets the syscall run.
func lets(action specs.LinuxSeccompAction) bool {
	return action == specs.ActAllow || action == specs.ActLog
}

func knownActions() []specs.LinuxSeccompAction {
	return []specs.LinuxSeccompAction{
		specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap,
		specs.ActErrno, specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify,
	}
}

func knownOperators() []specs.LinuxSeccompOperator {
	return []specs.LinuxSeccompOperator{
		specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
	}
}

func knownFlags() []specs.LinuxSeccompFlag {
	return []specs.LinuxSeccompFlag{
		"SECCOMP_FILTER_FLAG_TSYNC", // accepted by runc, not a runtime-spec constant
		specs.LinuxSeccompFlagLog,
		specs.LinuxSeccompFlagSpecAllow,
		specs.LinuxSeccompFlagWaitKillableRecv,
	}
}

func knownArches() []specs.Arch {
	return []specs.Arch{
		specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
		specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL,
		specs.ArchMIPSEL64, specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64,
		specs.ArchPPC64LE, specs.ArchS390, specs.ArchS390X, specs.ArchPARISC,
		specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64, specs.ArchM68K,
		specs.ArchSH, specs.ArchSHEB,
	}
}
