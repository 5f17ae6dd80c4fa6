package seccomprules

import (
	"slices"

	"github.com/deployctl/deployctl/specs"
	mobyseccomp "github.com/moby/profiles/seccomp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// IsSyscall reports whether name is a syscall of libseccomp's table on at
// least one architecture.
func IsSyscall(name string) bool {
	return syscallArchBits(name) != 0
}

// Syscalls lists every syscall name of libseccomp's table, sorted. The
// slice is new on every call.
func Syscalls() []string {
	return tableSyscalls()
}

// ClosestSyscall suggests a table name for a misspelt one ("keyctll" →
// "keyctl"), or reports false.
func ClosestSyscall(name string) (string, bool) {
	return specs.ClosestName(name, tableSyscalls())
}

// UnknownName is a syscall name of a profile's rule that none of the
// profile's architectures has.
type UnknownName struct {
	// Rule is the index of the rule in the profile's syscalls.
	Rule int
	Name string
	// Arches are the table's names of the architectures the profile
	// covers (all of them when the profile names none).
	Arches []string
}

// UnknownSyscalls lists the names of p's rules that are not in
// libseccomp's table for any architecture the profile covers: the ones its
// "architectures" lists, or every architecture of the table when it has
// none (with an archMap, or neither, the engine filters the host's native
// ABI plus, for a host listed in archMap, its sub-architectures; the host
// is not known here). runc silently skips such names, so a rule naming one
// does nothing: a profile whose refusals rest on a misspelt or made-up name
// only looks confined.
func UnknownSyscalls(p *mobyseccomp.Seccomp) []UnknownName {
	covered, arches := profileArchBits(p)
	var unknown []UnknownName
	for i, rule := range p.Syscalls {
		if rule == nil {
			continue
		}
		for _, name := range ruleNames(rule) {
			if syscallArchBits(name)&covered == 0 {
				unknown = append(unknown, UnknownName{Rule: i, Name: name, Arches: arches})
			}
		}
	}
	return unknown
}

// profileArchBits is the set of table architectures a profile covers, as
// bits and as names.
func profileArchBits(p *mobyseccomp.Seccomp) (uint64, []string) {
	var bits uint64
	for _, arch := range p.Architectures {
		bits |= archBit(arch)
	}
	if bits == 0 {
		bits = 1<<len(tableArches()) - 1
	}
	return bits, bitNames(bits)
}

// archBit is the table bit of a profile architecture (SCMP_ARCH_*): the
// little- and big-endian variants share a table column.
func archBit(arch rspec.Arch) uint64 {
	column, ok := map[rspec.Arch]string{
		rspec.ArchX86: "x86", rspec.ArchX86_64: "x86_64", rspec.ArchX32: "x32",
		rspec.ArchARM: "arm", rspec.ArchAARCH64: "aarch64", rspec.ArchLOONGARCH64: "loongarch64",
		rspec.ArchM68K: "m68k", rspec.ArchMIPS: "mips", rspec.ArchMIPSEL: "mips",
		rspec.ArchMIPS64: "mips64", rspec.ArchMIPSEL64: "mips64",
		rspec.ArchMIPS64N32: "mips64n32", rspec.ArchMIPSEL64N32: "mips64n32",
		rspec.ArchPARISC: "parisc", rspec.ArchPARISC64: "parisc64",
		rspec.ArchPPC: "ppc", rspec.ArchPPC64: "ppc64", rspec.ArchPPC64LE: "ppc64",
		rspec.ArchRISCV64: "riscv64", rspec.ArchS390: "s390", rspec.ArchS390X: "s390x",
		rspec.ArchSH: "sh", rspec.ArchSHEB: "sh",
	}[arch]
	if !ok {
		return 0
	}
	return 1 << slices.Index(tableArches(), column)
}

func bitNames(bits uint64) []string {
	var names []string
	for i, name := range tableArches() {
		if bits&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	return names
}

// ruleNames are the syscalls a rule names: names, and the legacy name
// (which moby turns into names; a rule with both makes the engine refuse
// the profile, so counting both is the cautious reading).
func ruleNames(rule *mobyseccomp.Syscall) []string {
	//lint:ignore SA1019 the engine still applies "name", so the judge must read it
	legacy := rule.Name
	if legacy == "" {
		return rule.Names
	}
	return append(slices.Clone(rule.Names), legacy)
}

// natives are the host architectures the engine evaluates a profile's
// includes/excludes "arches" against (moby's names for them, from
// GOARCH), each with the syscall ABIs a process on such a host can use:
// the native one and the sub-architectures Docker's default profile lists
// for it in archMap.
type native struct {
	name string
	abis uint64
}

// nativeArches is every host architecture moby knows (its goToNative
// table), in a fixed order.
func nativeArches(defaults *mobyseccomp.Seccomp) []native {
	seccompArch := []struct {
		name string
		arch rspec.Arch
	}{
		{"amd64", rspec.ArchX86_64}, {"arm64", rspec.ArchAARCH64}, {"x86", rspec.ArchX86},
		{"arm", rspec.ArchARM}, {"loongarch64", rspec.ArchLOONGARCH64}, {"mips64", rspec.ArchMIPS64},
		{"mips64n32", rspec.ArchMIPS64N32}, {"mipsel64", rspec.ArchMIPSEL64},
		{"mips3l64n32", rspec.ArchMIPSEL64N32}, {"mipsel", rspec.ArchMIPSEL}, {"ppc", rspec.ArchPPC},
		{"ppc64", rspec.ArchPPC64}, {"ppc64le", rspec.ArchPPC64LE}, {"riscv64", rspec.ArchRISCV64},
		{"s390", rspec.ArchS390}, {"s390x", rspec.ArchS390X},
	}
	out := make([]native, 0, len(seccompArch))
	for _, sa := range seccompArch {
		n := native{name: sa.name, abis: archBit(sa.arch)}
		for _, entry := range defaults.ArchMap {
			if entry.Arch == sa.arch {
				for _, sub := range entry.SubArches {
					n.abis |= archBit(sub)
				}
			}
		}
		out = append(out, n)
	}
	return out
}
