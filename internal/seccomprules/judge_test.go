package seccomprules

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	mobyseccomp "github.com/moby/profiles/seccomp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// reviewProfile is the profile of issue 16 finding 5: everything allowed,
// one rule for a syscall that does not exist.
const reviewProfile = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]}`

func mustDefault(t testing.TB) *mobyseccomp.Seccomp {
	t.Helper()
	p, err := dockerDefault()
	if err != nil {
		t.Skip(err)
	}
	return p
}

func mustJSON(t testing.TB, p *mobyseccomp.Seccomp) []byte {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustJudge(t testing.TB, profile []byte, capSets ...[]string) Verdict {
	t.Helper()
	v, err := Judge(profile, capSets...)
	if err != nil {
		t.Fatalf("Judge: %v", err)
	}
	return v
}

// capSetsToTry are the bounding sets the default's rules distinguish:
// none, the engine's defaults, each capability a default rule mentions
// alone, and every capability.
func capSetsToTry(t testing.TB) [][]string {
	sets := [][]string{nil, engineDefaultCapabilities(), allCapabilities()}
	for _, rule := range mustDefault(t).Syscalls {
		for _, f := range []*mobyseccomp.Filter{rule.Includes, rule.Excludes} {
			if f != nil {
				for _, c := range f.Caps {
					sets = append(sets, []string{c})
				}
			}
		}
	}
	return sets
}

// withRule returns Docker's default with one more rule appended.
func withRule(t testing.TB, rule *mobyseccomp.Syscall) []byte {
	p := mustDefault(t)
	p.Syscalls = append(p.Syscalls, rule)
	return mustJSON(t, p)
}

func allow(names ...string) *mobyseccomp.Syscall {
	return &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: names, Action: rspec.ActAllow}}
}

func allowWhen(name string, args ...rspec.LinuxSeccompArg) *mobyseccomp.Syscall {
	r := allow(name)
	r.Args = args
	return r
}

// cloneWhen is a conditional clone rule for hosts other than s390, where
// clone's flags are its second argument (the default has a rule each).
func cloneWhen(args ...rspec.LinuxSeccompArg) *mobyseccomp.Syscall {
	r := allowWhen("clone", args...)
	r.Excludes = &mobyseccomp.Filter{Arches: []string{"s390", "s390x"}}
	return r
}

func arg0(op rspec.LinuxSeccompOperator, value uint64) rspec.LinuxSeccompArg {
	return rspec.LinuxSeccompArg{Index: 0, Op: op, Value: value}
}

// legacyNamed is an allow rule with the deprecated single "name" (which
// the engine still applies) besides names.
func legacyNamed(name string, names ...string) *mobyseccomp.Syscall {
	r := allow(names...)
	//lint:ignore SA1019 the engine still applies "name", so the judge must read it
	r.Name = name
	return r
}

// cloneNamespaceFlags is the mask of Docker's default clone rule: every
// CLONE_NEW* flag.
const cloneNamespaceFlags = 0x7E020000

func TestReviewProfileIsWeaker(t *testing.T) {
	mustDefault(t)
	v := mustJudge(t, []byte(reviewProfile))
	if !v.Weaker() || !strings.Contains(v.DefaultAction, "SCMP_ACT_ALLOW") {
		t.Fatalf("review profile: %+v", v)
	}
	var p mobyseccomp.Seccomp
	if err := json.Unmarshal([]byte(reviewProfile), &p); err != nil {
		t.Fatal(err)
	}
	unknown := UnknownSyscalls(&p)
	if len(unknown) != 1 || unknown[0].Name != "not_a_syscall" || unknown[0].Rule != 0 {
		t.Fatalf("UnknownSyscalls = %+v", unknown)
	}
}

func TestDefaultAndStrictLikeProfilesAreNotWeaker(t *testing.T) {
	data := mustJSON(t, mustDefault(t))
	for _, caps := range capSetsToTry(t) {
		if v := mustJudge(t, data, caps); v.Weaker() {
			t.Errorf("the default with caps %v: %s", caps, v)
		}
	}
	// Taking names out of allow rules only makes a profile stricter.
	p := mustDefault(t)
	for _, rule := range p.Syscalls {
		rule.Names = slices.DeleteFunc(rule.Names, func(n string) bool { return n == "ptrace" || n == "personality" || n == "clone" })
	}
	for _, caps := range capSetsToTry(t) {
		if v := mustJudge(t, mustJSON(t, p), caps); v.Weaker() {
			t.Errorf("default minus names, caps %v: %s", caps, v)
		}
	}
}

// The default's allowance is read from its allow rules only where none of
// its own refusing rules selects the same syscall; this checks that the
// cautious reading is exact for the default moby ships.
func TestDefaultAllowAndRefuseNeverOverlap(t *testing.T) {
	d := mustDefault(t)
	for _, caps := range capSetsToTry(t) {
		for _, n := range nativeArches(d) {
			for _, k := range kernelPoints(d) {
				sel := selected(d, caps, n.name, k)
				loose, strict := allowances(d, sel, false), allowances(d, sel, true)
				if len(loose) != len(strict) {
					for name := range loose {
						if strict[name] == nil {
							t.Errorf("caps %v on %s, kernel %v: %s is both allowed and refused", caps, n.name, k, name)
						}
					}
				}
			}
		}
	}
}

func TestEveryDefaultNameIsInTheTable(t *testing.T) {
	for _, rule := range mustDefault(t).Syscalls {
		for _, name := range ruleNames(rule) {
			if !IsSyscall(name) {
				t.Errorf("%s is in Docker's default but not in libseccomp's table", name)
			}
		}
	}
	if len(UnknownSyscalls(mustDefault(t))) != 0 {
		t.Errorf("UnknownSyscalls(default) = %+v", UnknownSyscalls(mustDefault(t)))
	}
	names := Syscalls()
	if !slices.IsSorted(names) || len(names) < 400 {
		t.Fatalf("Syscalls(): %d names, sorted %v", len(names), slices.IsSorted(names))
	}
	for _, name := range names {
		if !IsSyscall(name) {
			t.Errorf("%s listed but has no architecture", name)
		}
	}
	if IsSyscall("not_a_syscall") || IsSyscall("") {
		t.Error("made-up names are syscalls")
	}
	if best, ok := ClosestSyscall("keyctll"); !ok || best != "keyctl" {
		t.Errorf("ClosestSyscall(keyctll) = %q, %v", best, ok)
	}
}

func TestUnknownSyscallsPerArchitecture(t *testing.T) {
	// arch_prctl is x86-only; arm_fadvise64_64 is arm-only.
	p := &mobyseccomp.Seccomp{
		LinuxSeccomp: rspec.LinuxSeccomp{Architectures: []rspec.Arch{rspec.ArchX86_64, rspec.ArchX86, rspec.ArchX32}},
		Syscalls:     []*mobyseccomp.Syscall{allow("read", "arch_prctl", "arm_fadvise64_64")},
	}
	got := UnknownSyscalls(p)
	if len(got) != 1 || got[0].Name != "arm_fadvise64_64" || !slices.Equal(got[0].Arches, []string{"x86", "x86_64", "x32"}) {
		t.Fatalf("UnknownSyscalls = %+v", got)
	}
	p.Architectures = nil
	if got := UnknownSyscalls(p); len(got) != 0 {
		t.Fatalf("without architectures every table architecture counts: %+v", got)
	}
	// With an archMap, a host it does not list filters its native ABI:
	// every architecture counts.
	p.ArchMap = []mobyseccomp.Architecture{{Arch: rspec.ArchAARCH64, SubArches: []rspec.Arch{rspec.ArchARM}}}
	if got := UnknownSyscalls(p); len(got) != 0 {
		t.Fatalf("archMap aarch64+arm: %+v", got)
	}
}

func TestWeakerThanTheDefault(t *testing.T) {
	mustDefault(t)
	sysAdmin := []string{"CAP_SYS_ADMIN"}
	tests := []struct {
		name    string
		rule    *mobyseccomp.Syscall
		caps    []string
		weaker  []string // syscalls reported
		allowed string   // Finding.Allowed of the first
	}{
		{name: "keyctl allowed", rule: allow("keyctl"), weaker: []string{"keyctl"}, allowed: "unconditionally"},
		{name: "keyctl and add_key, legacy name field", rule: legacyNamed("add_key", "keyctl"), weaker: []string{"add_key", "keyctl"}},
		{name: "keyctl logged counts as allowed", rule: &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: []string{"keyctl"}, Action: rspec.ActLog}}, weaker: []string{"keyctl"}},
		{name: "keyctl traced counts as allowed", rule: &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: []string{"keyctl"}, Action: rspec.ActTrace}}, weaker: []string{"keyctl"}},
		{name: "keyctl errno 0 counts as allowed", rule: &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: []string{"keyctl"}, Action: rspec.ActErrno, ErrnoRet: new(uint)}}, weaker: []string{"keyctl"}},
		{name: "keyctl refused", rule: &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: []string{"keyctl"}, Action: rspec.ActKillProcess}}},
		{name: "clone unconditional", rule: allow("clone"), weaker: []string{"clone"}, allowed: "unconditionally"},
		{name: "clone unconditional with CAP_SYS_ADMIN is the default's", rule: allow("clone"), caps: sysAdmin},
		{name: "mount without CAP_SYS_ADMIN", rule: allow("mount"), weaker: []string{"mount"}},
		{name: "mount with CAP_SYS_ADMIN is the default's", rule: allow("mount"), caps: sysAdmin},
		{name: "mount if CAP_SYS_ADMIN, container without", rule: &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: []string{"mount"}, Action: rspec.ActAllow}, Includes: &mobyseccomp.Filter{Caps: sysAdmin}}},
		{name: "clone with CLONE_NEWUSER only masked", rule: cloneWhen(rspec.LinuxSeccompArg{Op: rspec.OpMaskedEqual, Value: 0x10000000}),
			weaker: []string{"clone"}, allowed: "when arg0 & 0x10000000 == 0x0"},
		{name: "clone with a wider mask is stricter", rule: cloneWhen(rspec.LinuxSeccompArg{Op: rspec.OpMaskedEqual, Value: cloneNamespaceFlags | 0x100})},
		{name: "clone with two masks on arg0 is ORed by runc", rule: cloneWhen(rspec.LinuxSeccompArg{Op: rspec.OpMaskedEqual, Value: cloneNamespaceFlags},
			rspec.LinuxSeccompArg{Op: rspec.OpMaskedEqual, Value: 0x1}), weaker: []string{"clone"}},
		{name: "clone with the default's mask plus another argument", rule: cloneWhen(rspec.LinuxSeccompArg{Op: rspec.OpMaskedEqual, Value: cloneNamespaceFlags},
			rspec.LinuxSeccompArg{Index: 2, Op: rspec.OpEqualTo, Value: 0})},
		{name: "clone with exact flags the default accepts", rule: cloneWhen(arg0(rspec.OpEqualTo, 0x3d0f00))},
		{name: "clone with exact CLONE_NEWUSER", rule: cloneWhen(arg0(rspec.OpEqualTo, 0x10000000|0x11)), weaker: []string{"clone"}},
		{name: "socket AF_INET", rule: allowWhen("socket", arg0(rspec.OpEqualTo, 2))},
		{name: "socket AF_INET or AF_UNIX as a range", rule: allowWhen("socket", arg0(rspec.OpLessEqual, 2))},
		{name: "socket AF_VSOCK", rule: allowWhen("socket", arg0(rspec.OpEqualTo, 40)), weaker: []string{"socket"}, allowed: "when arg0 == 0x28"},
		{name: "socket below 4", rule: allowWhen("socket", arg0(rspec.OpLessThan, 4)), weaker: []string{"socket"}},
		{name: "socket any family", rule: allow("socket"), weaker: []string{"socket"}},
		{name: "clone flags tested in arg0 on s390, where they are arg1", rule: allowWhen("clone", rspec.LinuxSeccompArg{Op: rspec.OpMaskedEqual, Value: cloneNamespaceFlags}),
			weaker: []string{"clone"}},
		{name: "socket never (unsatisfiable)", rule: allowWhen("socket", arg0(rspec.OpLessThan, 0))},
		{name: "personality query", rule: allowWhen("personality", arg0(rspec.OpEqualTo, 0xffffffff))},
		{name: "personality ADDR_NO_RANDOMIZE", rule: allowWhen("personality", arg0(rspec.OpEqualTo, 0x0040000)), weaker: []string{"personality"}},
		{name: "personality not 0", rule: allowWhen("personality", arg0(rspec.OpNotEqual, 0)), weaker: []string{"personality"}},
		{name: "ptrace on every kernel", rule: allow("ptrace"), weaker: []string{"ptrace"}},
		{name: "ptrace from 4.8 is the default's", rule: &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: []string{"ptrace"}, Action: rspec.ActAllow},
			Includes: &mobyseccomp.Filter{MinKernel: &mobyseccomp.KernelVersion{Kernel: 4, Major: 8}}}},
		{name: "ptrace from 4.7", rule: &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: []string{"ptrace"}, Action: rspec.ActAllow},
			Includes: &mobyseccomp.Filter{MinKernel: &mobyseccomp.KernelVersion{Kernel: 4, Major: 7}}}, weaker: []string{"ptrace"}},
		{name: "unknown names are ignored (runc skips them)", rule: allow("not_a_syscall")},
		{name: "an unknown action counts as allowed", rule: &mobyseccomp.Syscall{LinuxSyscall: rspec.LinuxSyscall{Names: []string{"bpf"}, Action: "SCMP_ACT_WHATEVER"}}, weaker: []string{"bpf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := mustJudge(t, withRule(t, tt.rule), tt.caps)
			if got := v.SyscallNames(); !slices.Equal(got, tt.weaker) && !(len(got) == 0 && len(tt.weaker) == 0) {
				t.Fatalf("weaker syscalls %v, want %v: %s", got, tt.weaker, v)
			}
			if v.DefaultAction != "" || len(v.Flags) > 0 {
				t.Fatalf("unexpected: %+v", v)
			}
			if tt.allowed != "" && v.Syscalls[0].Allowed != tt.allowed {
				t.Fatalf("Allowed = %q, want %q", v.Syscalls[0].Allowed, tt.allowed)
			}
			if len(tt.weaker) > 0 && !strings.Contains(v.String(), tt.weaker[0]) {
				t.Fatalf("String() %q does not name %s", v.String(), tt.weaker[0])
			}
		})
	}
}

func TestFindingExplainsTheDefault(t *testing.T) {
	v := mustJudge(t, withRule(t, allow("clone")))
	f := v.Syscalls[0]
	// Weaker on every host: on s390 the default's rule tests arg1.
	if f.Syscall != "clone" || f.Allowed != "unconditionally" || len(f.Hosts) != 0 || !strings.Contains(f.Default, "& 0x7e020000 == 0x0") {
		t.Fatalf("finding: %+v", f)
	}
	// arch_prctl exists on x86 too, where the default does not allow it.
	p := mustDefault(t)
	for _, rule := range p.Syscalls {
		if slices.Contains(rule.Names, "arch_prctl") {
			rule.Includes = nil
		}
	}
	v = mustJudge(t, mustJSON(t, p))
	if len(v.Syscalls) != 1 || v.Syscalls[0].Syscall != "arch_prctl" || !slices.Equal(v.Syscalls[0].Hosts, []string{"x86"}) {
		t.Fatalf("arch_prctl without includes: %+v", v)
	}
	if !strings.Contains(v.String(), "on x86 hosts") {
		t.Fatalf("String() = %q", v.String())
	}
}

func TestDefaultActionsAndFlags(t *testing.T) {
	mustDefault(t)
	zero := uint(0)
	for _, tt := range []struct {
		action rspec.LinuxSeccompAction
		errno  *uint
		weaker bool
	}{
		{rspec.ActErrno, nil, false}, {rspec.ActKill, nil, false}, {rspec.ActKillProcess, nil, false},
		{rspec.ActKillThread, nil, false}, {rspec.ActTrap, nil, false},
		{rspec.ActAllow, nil, true}, {rspec.ActLog, nil, true}, {rspec.ActTrace, nil, true},
		{rspec.ActNotify, nil, true}, {rspec.ActErrno, &zero, true}, {"", nil, true}, {"SCMP_ACT_NOPE", nil, true},
	} {
		p := mustDefault(t)
		p.DefaultAction, p.DefaultErrnoRet = tt.action, tt.errno
		v := mustJudge(t, mustJSON(t, p))
		if (v.DefaultAction != "") != tt.weaker {
			t.Errorf("defaultAction %q errno %v: %+v", tt.action, tt.errno, v)
		}
		if tt.weaker && len(v.Syscalls) != 0 {
			t.Errorf("defaultAction %q: findings computed anyway", tt.action)
		}
	}
	p := mustDefault(t)
	p.Flags = []rspec.LinuxSeccompFlag{rspec.LinuxSeccompFlagLog, rspec.LinuxSeccompFlagSpecAllow}
	v := mustJudge(t, mustJSON(t, p))
	if !slices.Equal(v.Flags, []string{string(rspec.LinuxSeccompFlagSpecAllow)}) {
		t.Fatalf("flags: %+v", v)
	}
}

func TestExcept(t *testing.T) {
	v := Verdict{Syscalls: []Finding{{Syscall: "clone"}, {Syscall: "keyctl"}}}
	if got := v.Except([]string{"keyctl"}); !slices.Equal(got.SyscallNames(), []string{"clone"}) {
		t.Fatalf("Except(keyctl) = %+v", got)
	}
	if got := v.Except([]string{"clone", "keyctl"}); got.Weaker() {
		t.Fatalf("Except(both) = %+v", got)
	}
	withDefault := Verdict{DefaultAction: "allows", Flags: []string{"x"}}
	if got := withDefault.Except([]string{"keyctl"}); !got.Weaker() {
		t.Fatal("a syscall list does not accept a default action that allows")
	}
	if got := withDefault.Except([]string{All}); got.Weaker() {
		t.Fatal("ALL accepts everything")
	}
}

func TestContainerCapabilities(t *testing.T) {
	defaults := ContainerCapabilities(nil, nil, false)
	for _, tt := range []struct {
		add, drop  []string
		privileged bool
		want       []string
	}{
		{drop: []string{"ALL"}, want: nil},
		{add: []string{"net_bind_service"}, drop: []string{"all"}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{add: []string{"CAP_SYS_ADMIN"}, drop: []string{"ALL"}, want: []string{"CAP_SYS_ADMIN"}},
		{drop: []string{"CHOWN"}, want: slices.DeleteFunc(slices.Clone(defaults), func(c string) bool { return c == "CAP_CHOWN" })},
		{add: []string{"ALL"}, drop: []string{"SYS_ADMIN"}, want: slices.DeleteFunc(allCapabilities(), func(c string) bool { return c == "CAP_SYS_ADMIN" })},
		{privileged: true, drop: []string{"ALL"}, want: allCapabilities()},
	} {
		got := ContainerCapabilities(tt.add, tt.drop, tt.privileged)
		want := slices.Clone(tt.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("ContainerCapabilities(%v, %v, %v) = %v, want %v", tt.add, tt.drop, tt.privileged, got, want)
		}
	}
	if len(defaults) != 14 || !slices.Contains(defaults, "CAP_SYS_CHROOT") {
		t.Fatalf("engine defaults: %v", defaults)
	}
}
