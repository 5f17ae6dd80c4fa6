package specs

import (
	"slices"
	"strings"
)

// CapAll stands for every capability, as in "cap_drop: [ALL]".
const CapAll = "ALL"

// Capabilities lists the names accepted in cap_add and cap_drop: ALL and the
// Linux capabilities of capabilities(7) up to CAP_CHECKPOINT_RESTORE (Linux
// 5.9), without their "CAP_" prefix. It returns a new slice on every call.
func Capabilities() []string {
	return []string{
		CapAll,
		"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID",
		"KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE",
		"NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
		"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT",
		"SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
		"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
		"AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE",
		"MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
		"PERFMON", "BPF", "CHECKPOINT_RESTORE",
	}
}

// CanonicalCapability is the form the spec stores: upper case, without the
// "CAP_" prefix ("cap_net_admin" -> "NET_ADMIN"). It does not check the name.
func CanonicalCapability(name string) string {
	upper := strings.ToUpper(strings.TrimSpace(name))
	return strings.TrimPrefix(upper, "CAP_")
}

// isCapability reports whether canonical is ALL or a Linux capability name.
func isCapability(canonical string) bool {
	return slices.Contains(Capabilities(), canonical)
}
