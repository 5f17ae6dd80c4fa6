package seccomprules

import (
	"slices"
	"strings"

	"github.com/deployctl/deployctl/specs"
)

// engineDefaultCapabilities are the capabilities the Docker Engine gives a
// container that drops none (moby's oci/caps/defaults.go).
func engineDefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

func allCapabilities() []string {
	var all []string
	for _, c := range specs.Capabilities() {
		if c != specs.CapAll {
			all = append(all, "CAP_"+c)
		}
	}
	return all
}

// engineCapability spells a cap_add/cap_drop entry as the engine compares
// it with a profile's includes/excludes: "CAP_SYS_ADMIN", or "ALL".
func engineCapability(name string) string {
	canonical := specs.CanonicalCapability(name)
	if canonical == specs.CapAll {
		return canonical
	}
	return "CAP_" + canonical
}

// ContainerCapabilities is the capability bounding set the engine gives a
// container created with these CapAdd, CapDrop and Privileged, as moby's
// caps.TweakCapabilities computes it: every capability when privileged;
// the engine's defaults when neither list is given; with ALL in add, every
// capability but the dropped ones; with ALL in drop, exactly the added
// ones; else the defaults minus the dropped plus the added. Names come out
// as CAP_*, sorted, without duplicates. This set is what a profile's
// includes/excludes "caps" are evaluated against.
func ContainerCapabilities(add, drop []string, privileged bool) []string {
	var caps []string
	normalize := func(list []string) []string {
		out := make([]string, len(list))
		for i, c := range list {
			out[i] = engineCapability(c)
		}
		return out
	}
	adds, drops := normalize(add), normalize(drop)
	switch {
	case privileged:
		caps = allCapabilities()
	case len(adds) == 0 && len(drops) == 0:
		caps = engineDefaultCapabilities()
	case slices.Contains(adds, specs.CapAll):
		for _, c := range allCapabilities() {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
	case slices.Contains(drops, specs.CapAll):
		caps = adds
	default:
		for _, c := range engineDefaultCapabilities() {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
		caps = append(caps, adds...)
	}
	caps = slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return !strings.HasPrefix(c, "CAP_") })
	slices.Sort(caps)
	return slices.Compact(caps)
}
