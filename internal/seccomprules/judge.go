// Package seccomprules judges a seccomp profile against Docker's default
// profile: does it refuse, for a given container, everything the default
// refuses? The controller's policy check (controller/policy) and the CIS
// 5.22 audit check (internal/audit) both call Judge, so that apply time and
// run time agree on what "at least as strict as the default" means. It
// also carries libseccomp's syscall table (UnknownSyscalls, IsSyscall),
// which seccompprofile.Validate uses to refuse made-up names.
//
// It lives under internal/ because controller/ and deployer/ both use it
// and the controller must not import the agent.
// Pure functions: no I/O, no clock, no package-level state. See DESIGN.md.
package seccomprules

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	mobyseccomp "github.com/moby/profiles/seccomp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// Errors at the package border.
var (
	// ErrUnreadableProfile means the profile is not JSON the engine could
	// decode into a profile.
	ErrUnreadableProfile = errors.New("unreadable seccomp profile")
	// ErrUnsupportedPlatform means Docker's default profile, the yardstick,
	// is not built here (anything but Linux).
	ErrUnsupportedPlatform = errors.New("seccomp profiles can only be judged on Linux")
)

// All, in a list of syscalls a policy lets profiles allow beyond the
// default, stands for any profile at all (see Verdict.Except).
const All = "ALL"

// Finding is one syscall that a profile lets run where Docker's default
// refuses it.
type Finding struct {
	Syscall string `json:"syscall"`
	// Allowed says how the profile lets it run: "unconditionally" or
	// "when arg0 == 0x28".
	Allowed string `json:"allowed"`
	// Default says what Docker's default does: "refuses it", or "allows
	// it only when arg0 & 0x7e020000 == 0".
	Default string `json:"default"`
	// Hosts are the host architectures (moby's names: amd64, arm64, ...)
	// where this holds; empty means on every one.
	Hosts []string `json:"hosts,omitempty"`
}

// String renders "clone (allowed unconditionally; the default allows it
// only when ...)".
func (f Finding) String() string {
	s := fmt.Sprintf("%s (allowed %s; the default %s", f.Syscall, f.Allowed, f.Default)
	if len(f.Hosts) > 0 {
		s += "; on " + strings.Join(f.Hosts, ", ") + " hosts"
	}
	return s + ")"
}

// Verdict is how a profile is weaker than Docker's default for a
// container; the zero Verdict means it is not.
type Verdict struct {
	// DefaultAction is set when the profile's defaultAction does not
	// refuse: it says what it does. Every syscall the profile does not
	// list then runs, so no Findings are computed.
	DefaultAction string `json:"default_action,omitempty"`
	// Flags are filter flags that weaken the filter
	// (SECCOMP_FILTER_FLAG_SPEC_ALLOW turns off the speculative store
	// bypass mitigation the kernel applies to filtered processes).
	Flags []string `json:"flags,omitempty"`
	// Syscalls the profile lets run where the default refuses them,
	// sorted by name.
	Syscalls []Finding `json:"syscalls,omitempty"`
}

// Weaker reports whether the profile is weaker than the default.
func (v Verdict) Weaker() bool {
	return v.DefaultAction != "" || len(v.Flags) > 0 || len(v.Syscalls) > 0
}

// Except drops what a policy's list of syscalls allowed beyond the
// default lets through: the listed syscalls' findings; with All in the
// list, everything (a defaultAction that does not refuse and weakening
// flags are only accepted with All).
func (v Verdict) Except(allowed []string) Verdict {
	if slices.Contains(allowed, All) {
		return Verdict{}
	}
	out := Verdict{DefaultAction: v.DefaultAction, Flags: slices.Clone(v.Flags)}
	for _, f := range v.Syscalls {
		if !slices.Contains(allowed, f.Syscall) {
			out.Syscalls = append(out.Syscalls, f)
		}
	}
	return out
}

// SyscallNames are the names of v.Syscalls.
func (v Verdict) SyscallNames() []string {
	names := make([]string, len(v.Syscalls))
	for i, f := range v.Syscalls {
		names[i] = f.Syscall
	}
	return names
}

// maxDetailed bounds how many findings String explains one by one; the
// rest are only named.
const maxDetailed = 8

// String says in one line how the profile is weaker, or "" if it is not.
func (v Verdict) String() string {
	var parts []string
	if v.DefaultAction != "" {
		parts = append(parts, v.DefaultAction)
	}
	if len(v.Flags) > 0 {
		parts = append(parts, "flags "+strings.Join(v.Flags, ", ")+" turn off the speculative store bypass mitigation the default keeps")
	}
	if n := len(v.Syscalls); n > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "it allows %d syscall(s) Docker's default refuses: ", n)
		for i, f := range v.Syscalls {
			if i == maxDetailed {
				fmt.Fprintf(&b, "; and %s", strings.Join(v.SyscallNames()[maxDetailed:], ", "))
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(f.String())
		}
		parts = append(parts, b.String())
	}
	return strings.Join(parts, "; ")
}

// Judge compares profile (Docker's JSON format, decoded as the engine
// decodes it) with Docker's default profile (github.com/moby/profiles,
// the engine's own) for a container whose capability bounding set is each
// of capSets in turn (see ContainerCapabilities; none given means no
// capability), and says where the profile is weaker:
//
//   - its defaultAction does not refuse: only SCMP_ACT_ERRNO (with an
//     errno other than 0), SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS,
//     SCMP_ACT_KILL_THREAD and SCMP_ACT_TRAP keep the syscall from running;
//     SCMP_ACT_ALLOW, SCMP_ACT_LOG, SCMP_ACT_TRACE (a tracer may let it
//     run), SCMP_ACT_NOTIFY (an agent decides) and ERRNO with errno 0
//     (reports success) do not;
//   - it sets SECCOMP_FILTER_FLAG_SPEC_ALLOW, which the default does not;
//   - some syscall runs under it, for some arguments, that the default
//     refuses for those arguments.
//
// Rules are selected as the engine selects them (includes/excludes on
// capabilities, host architecture and kernel version), for every host
// architecture moby knows and every kernel version either profile
// distinguishes. A rule's arguments are read as runc applies them: ANDed,
// except that when two conditions test the same argument each condition is
// a rule of its own (ORed). The comparison is cautious, never generous:
//
//   - any rule of the profile that does not refuse (ALLOW, LOG, TRACE,
//     NOTIFY, an unknown action) lets its syscalls run; the profile's
//     refusing rules are not subtracted;
//   - the default lets a syscall run only through its allow rules, and not
//     at all where one of its own refusing rules names it too;
//   - a conditional allow of the profile passes only if each of its
//     argument conditions implies one whole condition set of a default
//     allow for the same syscall (same test, a narrower range or mask, or
//     an == whose value the default's test accepts); anything cleverer is
//     reported as weaker.
//
// Syscalls that no ABI of a host architecture has (libseccomp's table) are
// ignored on that architecture; names not in the table at all are ignored
// too (runc skips them; seccompprofile.Validate refuses them).
func Judge(profile []byte, capSets ...[]string) (Verdict, error) {
	var p mobyseccomp.Seccomp
	if err := json.Unmarshal(profile, &p); err != nil {
		return Verdict{}, fmt.Errorf("%w: %w", ErrUnreadableProfile, err)
	}
	defaults, err := dockerDefault()
	if err != nil {
		return Verdict{}, err
	}
	return judge(&p, defaults, capSets), nil
}

func judge(p, defaults *mobyseccomp.Seccomp, capSets [][]string) Verdict {
	var v Verdict
	if why := defaultActionWeakness(p); why != "" {
		v.DefaultAction = why
	}
	for _, flag := range p.Flags {
		if flag == rspec.LinuxSeccompFlagSpecAllow && !slices.Contains(defaults.Flags, flag) && !slices.Contains(v.Flags, string(flag)) {
			v.Flags = append(v.Flags, string(flag))
		}
	}
	if v.DefaultAction != "" {
		return v
	}
	if len(capSets) == 0 {
		capSets = [][]string{nil}
	}
	natives := nativeArches(defaults)
	kernels := kernelPoints(p, defaults)
	found := map[string]*Finding{}
	hosts := map[string][]string{}
	// Rule selection repeats across hosts and kernels: compare once per
	// distinct selection (a local cache, keyed by which rules of both
	// profiles are selected), then keep what the host's ABIs have.
	compared := map[string][]Finding{}
	for _, caps := range capSets {
		for _, n := range natives {
			for _, k := range kernels {
				pSel, dSel := selected(p, caps, n.name, k), selected(defaults, caps, n.name, k)
				key := string(pSel) + "|" + string(dSel)
				weaker, ok := compared[key]
				if !ok {
					weaker = compare(allowances(p, pSel, false), allowances(defaults, dSel, true))
					compared[key] = weaker
				}
				for _, f := range weaker {
					if syscallArchBits(f.Syscall)&n.abis == 0 {
						continue
					}
					if found[f.Syscall] == nil {
						first := f
						found[f.Syscall] = &first
					}
					if !slices.Contains(hosts[f.Syscall], n.name) {
						hosts[f.Syscall] = append(hosts[f.Syscall], n.name)
					}
				}
			}
		}
	}
	for _, name := range sortedKeys(found) {
		f := *found[name]
		if len(hosts[name]) < len(natives) {
			f.Hosts = hosts[name]
		}
		v.Syscalls = append(v.Syscalls, f)
	}
	return v
}

// compare lists, by name, what allowed lets run beyond refs.
func compare(allowed, refs map[string]*allowance) []Finding {
	var out []Finding
	for _, name := range sortedKeys(allowed) {
		if uncovered, ok := notCovered(allowed[name], refs[name]); !ok {
			out = append(out, Finding{Syscall: name, Allowed: uncovered, Default: describeDefault(refs[name])})
		}
	}
	return out
}

// defaultActionWeakness says why p's defaultAction does not refuse, or "".
func defaultActionWeakness(p *mobyseccomp.Seccomp) string {
	switch {
	case p.DefaultAction == "":
		return "defaultAction is missing, so the engine applies no filter (or refuses the profile)"
	case refuses(p.DefaultAction, p.DefaultErrnoRet):
		return ""
	case p.DefaultAction == rspec.ActErrno:
		return "defaultAction SCMP_ACT_ERRNO with defaultErrnoRet 0 makes every syscall the profile does not list report success without running, where Docker's default refuses them with EPERM"
	}
	return fmt.Sprintf("defaultAction %s lets every syscall the profile does not list run (or leaves it to a tracer or agent), where Docker's default refuses them with SCMP_ACT_ERRNO", p.DefaultAction)
}

// refuses reports whether an action keeps the syscall from running.
func refuses(action rspec.LinuxSeccompAction, errnoRet *uint) bool {
	switch action {
	case rspec.ActKill, rspec.ActKillProcess, rspec.ActKillThread, rspec.ActTrap:
		return true
	case rspec.ActErrno:
		return errnoRet == nil || *errnoRet != 0
	}
	return false
}

// kernelVersion orders moby's "<kernel>.<major>" versions.
type kernelVersion struct{ kernel, major uint64 }

func (k kernelVersion) atLeast(min *mobyseccomp.KernelVersion) bool {
	return k.kernel > min.Kernel || (k.kernel == min.Kernel && k.major >= min.Major)
}

// kernelPoints are the kernel versions at which rule selection can change:
// 0.0 (older than every minKernel) and each minKernel either profile names.
// Between two points every rule is in or out alike.
func kernelPoints(profiles ...*mobyseccomp.Seccomp) []kernelVersion {
	points := []kernelVersion{{0, 0}}
	add := func(f *mobyseccomp.Filter) {
		if f != nil && f.MinKernel != nil {
			k := kernelVersion{f.MinKernel.Kernel, f.MinKernel.Major}
			if !slices.Contains(points, k) {
				points = append(points, k)
			}
		}
	}
	for _, p := range profiles {
		for _, rule := range p.Syscalls {
			if rule != nil {
				add(rule.Includes)
				add(rule.Excludes)
			}
		}
	}
	sort.Slice(points, func(i, j int) bool {
		if points[i].kernel != points[j].kernel {
			return points[i].kernel < points[j].kernel
		}
		return points[i].major < points[j].major
	})
	return points
}

// applies selects a rule as moby's setupSeccomp does, for a container with
// caps on host architecture arch and kernel k.
func applies(rule *mobyseccomp.Syscall, caps []string, arch string, k kernelVersion) bool {
	if ex := rule.Excludes; ex != nil {
		if slices.Contains(ex.Arches, arch) {
			return false
		}
		for _, c := range ex.Caps {
			if slices.Contains(caps, c) {
				return false
			}
		}
		if ex.MinKernel != nil && k.atLeast(ex.MinKernel) {
			return false
		}
	}
	if in := rule.Includes; in != nil {
		if len(in.Arches) > 0 && !slices.Contains(in.Arches, arch) {
			return false
		}
		for _, c := range in.Caps {
			if !slices.Contains(caps, c) {
				return false
			}
		}
		if in.MinKernel != nil && !k.atLeast(in.MinKernel) {
			return false
		}
	}
	return true
}

// clause is a conjunction of argument conditions; empty means any
// arguments.
type clause []rspec.LinuxSeccompArg

// allowance is how a syscall may run: with any arguments, or when one of
// the clauses holds.
type allowance struct {
	any     bool
	clauses []clause
}

// selected marks, for each rule of p, whether the engine selects it for
// a container with caps on host architecture arch and kernel k ('1') or
// not ('0').
func selected(p *mobyseccomp.Seccomp, caps []string, arch string, k kernelVersion) []byte {
	sel := make([]byte, len(p.Syscalls))
	for i, rule := range p.Syscalls {
		sel[i] = '0'
		if rule != nil && applies(rule, caps, arch, k) {
			sel[i] = '1'
		}
	}
	return sel
}

// allowances collects, for the rules of p marked in sel, which syscalls
// may run and with which arguments. With refusalsWin, a syscall that a
// selected refusing rule names is dropped (used for the default, so that
// its allowance is never overstated).
func allowances(p *mobyseccomp.Seccomp, sel []byte, refusalsWin bool) map[string]*allowance {
	out := map[string]*allowance{}
	refused := map[string]bool{}
	for i, rule := range p.Syscalls {
		if sel[i] != '1' {
			continue
		}
		names := ruleNames(rule)
		if refuses(rule.Action, rule.ErrnoRet) {
			for _, name := range names {
				refused[name] = true
			}
			continue
		}
		clauses := ruleClauses(rule.Args)
		for _, name := range names {
			a := out[name]
			if a == nil {
				a = &allowance{}
				out[name] = a
			}
			for _, c := range clauses {
				if len(c) == 0 {
					a.any = true
				} else if !a.any {
					a.clauses = append(a.clauses, c)
				}
			}
			if a.any {
				a.clauses = nil
			}
		}
	}
	if refusalsWin {
		for name := range refused {
			delete(out, name)
		}
	}
	return out
}

// ruleClauses reads a rule's arguments as runc applies them: one clause
// with every condition, unless two conditions test the same argument, in
// which case runc adds each condition as a rule of its own.
func ruleClauses(args []rspec.LinuxSeccompArg) []clause {
	if len(args) == 0 {
		return []clause{{}}
	}
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
		if seen[a.Index] {
			repeated = true
		}
		seen[a.Index] = true
	}
	if !repeated {
		return []clause{slices.Clone(args)}
	}
	out := make([]clause, len(args))
	for i, a := range args {
		out[i] = clause{a}
	}
	return out
}

// notCovered reports whether everything a allows, ref allows too; if not,
// it says how a lets the syscall run beyond ref.
func notCovered(a, ref *allowance) (string, bool) {
	switch {
	case ref != nil && ref.any:
		return "", true
	case a.any:
		return "unconditionally", false
	}
	for _, c := range a.clauses {
		covered := ref != nil && slices.ContainsFunc(ref.clauses, func(r clause) bool { return clauseImplies(c, r) })
		if !covered {
			return "when " + describeClause(c), false
		}
	}
	return "", true
}

func describeDefault(ref *allowance) string {
	if ref == nil {
		return "refuses it"
	}
	parts := make([]string, len(ref.clauses))
	for i, c := range ref.clauses {
		parts[i] = describeClause(c)
	}
	return "allows it only when " + strings.Join(parts, " or ")
}

// clauseImplies reports whether every argument tuple that satisfies c
// satisfies r: each condition of r is implied by a condition of c on the
// same argument (or c can never hold).
func clauseImplies(c, r clause) bool {
	if slices.ContainsFunc(c, unsatisfiable) {
		return true
	}
	for _, want := range r {
		if !slices.ContainsFunc(c, func(have rspec.LinuxSeccompArg) bool {
			return have.Index == want.Index && condImplies(have, want)
		}) {
			return false
		}
	}
	return true
}

// interval is the set of values a range condition accepts; empty when
// lo > hi.
type interval struct{ lo, hi uint64 }

func rangeOf(a rspec.LinuxSeccompArg) (interval, bool) {
	const max = ^uint64(0)
	switch a.Op {
	case rspec.OpEqualTo:
		return interval{a.Value, a.Value}, true
	case rspec.OpLessThan:
		if a.Value == 0 {
			return interval{1, 0}, true
		}
		return interval{0, a.Value - 1}, true
	case rspec.OpLessEqual:
		return interval{0, a.Value}, true
	case rspec.OpGreaterThan:
		if a.Value == max {
			return interval{1, 0}, true
		}
		return interval{a.Value + 1, max}, true
	case rspec.OpGreaterEqual:
		return interval{a.Value, max}, true
	}
	return interval{}, false
}

func unsatisfiable(a rspec.LinuxSeccompArg) bool {
	if r, ok := rangeOf(a); ok {
		return r.lo > r.hi
	}
	// (x & mask) == datum cannot hold if datum has bits outside mask.
	return a.Op == rspec.OpMaskedEqual && a.ValueTwo&^a.Value != 0
}

// holds evaluates a condition for one argument value.
func holds(a rspec.LinuxSeccompArg, x uint64) bool {
	switch a.Op {
	case rspec.OpNotEqual:
		return x != a.Value
	case rspec.OpMaskedEqual:
		return x&a.Value == a.ValueTwo
	}
	if r, ok := rangeOf(a); ok {
		return r.lo <= x && x <= r.hi
	}
	return false
}

// condImplies reports whether every value accepted by have is accepted by
// want (both on the same argument).
func condImplies(have, want rspec.LinuxSeccompArg) bool {
	if have.Op == want.Op && have.Value == want.Value && have.ValueTwo == want.ValueTwo {
		return true
	}
	if unsatisfiable(have) {
		return true
	}
	if have.Op == rspec.OpEqualTo {
		return holds(want, have.Value)
	}
	hr, haveRange := rangeOf(have)
	if wr, ok := rangeOf(want); ok && haveRange {
		return wr.lo <= hr.lo && hr.hi <= wr.hi
	}
	switch {
	case have.Op == rspec.OpMaskedEqual && want.Op == rspec.OpMaskedEqual:
		// Every bit want tests, have tests too, with the same value.
		return want.Value&^have.Value == 0 && have.ValueTwo&want.Value == want.ValueTwo
	case want.Op == rspec.OpNotEqual && haveRange:
		return want.Value < hr.lo || want.Value > hr.hi
	case want.Op == rspec.OpNotEqual && have.Op == rspec.OpMaskedEqual:
		return !holds(have, want.Value)
	}
	return false
}

func describeClause(c clause) string {
	parts := make([]string, len(c))
	for i, a := range c {
		parts[i] = describeCond(a)
	}
	return strings.Join(parts, " and ")
}

func describeCond(a rspec.LinuxSeccompArg) string {
	op := map[rspec.LinuxSeccompOperator]string{
		rspec.OpEqualTo: "==", rspec.OpNotEqual: "!=", rspec.OpLessThan: "<", rspec.OpLessEqual: "<=",
		rspec.OpGreaterThan: ">", rspec.OpGreaterEqual: ">=",
	}
	if a.Op == rspec.OpMaskedEqual {
		return fmt.Sprintf("arg%d & %#x == %#x", a.Index, a.Value, a.ValueTwo)
	}
	symbol, ok := op[a.Op]
	if !ok {
		symbol = string(a.Op)
	}
	return fmt.Sprintf("arg%d %s %#x", a.Index, symbol, a.Value)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
