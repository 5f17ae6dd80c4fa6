package seccompprofile

// removal is one syscall that Strict takes out of Docker's default profile
// and why an ordinary service does not need it.
type removal struct {
	name   string
	reason string
}

// strictRemovals is the documented list behind Strict. Every name is
// allowed by Docker's default profile, unconditionally or when the container
// holds a capability (a test checks that, so the list cannot drift into
// names that remove nothing). Names the default already refuses (keyctl,
// add_key, request_key, userfaultfd, io_uring_*, pivot_root, kexec_load,
// ...) are not listed: removing them would change nothing.
//
// It is a function rather than a package variable so that no caller can
// change the list that Strict uses.
func strictRemovals() []removal {
	return []removal{
		// Debugging and reading other processes. On kernels >= 4.8 the
		// default allows ptrace and process_vm_* without any capability.
		{"ptrace", "debugging other processes; a service does not attach to others"},
		{"process_vm_readv", "reads another process's memory"},
		{"process_vm_writev", "writes another process's memory"},
		{"kcmp", "compares kernel resources of other processes (CAP_SYS_PTRACE)"},
		{"pidfd_getfd", "steals a file descriptor from another process (CAP_SYS_PTRACE)"},
		{"process_madvise", "advises on another process's memory (CAP_SYS_PTRACE)"},
		// Execution domain: allowed by the default for a few fixed values,
		// among them ASLR-disabling ones; nothing a service needs.
		{"personality", "changes the execution domain (e.g. turns off ASLR with ADDR_NO_RANDOMIZE)"},
		// Namespaces and mounts (CAP_SYS_ADMIN in the default).
		{"unshare", "creates namespaces, a common first step of container escapes"},
		{"setns", "joins other namespaces"},
		{"mount", "mounts file systems"},
		{"umount", "unmounts file systems"},
		{"umount2", "unmounts file systems"},
		{"mount_setattr", "changes mount properties (new mount API)"},
		{"move_mount", "moves mounts (new mount API)"},
		{"open_tree", "clones mount trees (new mount API)"},
		{"fsopen", "opens a file system context (new mount API)"},
		{"fsconfig", "configures a file system context (new mount API)"},
		{"fsmount", "creates a mount from a file system context (new mount API)"},
		{"fspick", "reconfigures an existing mount (new mount API)"},
		{"chroot", "changes the root directory (CAP_SYS_CHROOT)"},
		{"name_to_handle_at", "file handles; with open_by_handle_at the basis of the 'shocker' escape"},
		{"open_by_handle_at", "opens files by handle, bypassing path lookup (CAP_DAC_READ_SEARCH)"},
		// Kernel observability and tracing.
		{"bpf", "loads eBPF programs (CAP_SYS_ADMIN or CAP_BPF)"},
		{"perf_event_open", "kernel performance events, a frequent exploit surface (CAP_SYS_ADMIN or CAP_PERFMON)"},
		{"lookup_dcookie", "kernel profiling support (CAP_SYS_ADMIN)"},
		{"fanotify_init", "file system wide monitoring (CAP_SYS_ADMIN)"},
		{"syslog", "reads the kernel log, which leaks kernel addresses (CAP_SYS_ADMIN or CAP_SYSLOG)"},
		// Host administration.
		{"acct", "process accounting for the host (CAP_SYS_PACCT)"},
		{"quotactl", "disk quotas (CAP_SYS_ADMIN)"},
		{"quotactl_fd", "disk quotas (CAP_SYS_ADMIN)"},
		{"vhangup", "hangs up the terminal (CAP_SYS_TTY_CONFIG)"},
		{"init_module", "loads kernel modules (CAP_SYS_MODULE)"},
		{"finit_module", "loads kernel modules (CAP_SYS_MODULE)"},
		{"delete_module", "unloads kernel modules (CAP_SYS_MODULE)"},
		{"iopl", "raw I/O port access (CAP_SYS_RAWIO)"},
		{"ioperm", "raw I/O port access (CAP_SYS_RAWIO)"},
		{"reboot", "reboots the host or loads a new kernel (CAP_SYS_BOOT)"},
	}
}

// StrictRemoved returns the names of the syscalls that Strict takes out of
// Docker's default profile, in the documented order. The slice is new on
// every call.
func StrictRemoved() []string {
	removals := strictRemovals()
	names := make([]string, len(removals))
	for i, r := range removals {
		names[i] = r.name
	}
	return names
}

// StrictRemovedReasons returns, for every name of StrictRemoved, why an
// ordinary service does not need it: for `deployctl` to explain a refusal.
// The map is new on every call.
func StrictRemovedReasons() map[string]string {
	removals := strictRemovals()
	reasons := make(map[string]string, len(removals))
	for _, r := range removals {
		reasons[r.name] = r.reason
	}
	return reasons
}
