// Command syscallprobe is the program of the seccomp tests' container. It
// makes one syscall, named by its argument, and reports whether the
// seccomp filter let the call through:
//
//   - personality (the default, without an argument): personality(0xffffffff),
//     which only queries the execution domain. Docker's default profile
//     allows exactly this call for any user without any capability; the
//     strict profile removes personality.
//   - keyctl: keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1),
//     which creates the process's own keyring. Docker's default refuses
//     keyctl.
//   - userns: clone(CLONE_NEWUSER|SIGCHLD), a child in a new user
//     namespace that exits at once. Docker's default allows clone only
//     without namespace flags (unless the container has CAP_SYS_ADMIN).
//
// Exit status: 0 when the call ran, 10 when it was refused with EPERM, 11
// on any other error. The one line of output says the same and the uid, so
// that the test can check the container ran as a non-root user.
package main

import (
	"fmt"
	"os"
	"syscall"
)

// queryPersonality is personality(2)'s "return the current persona and
// change nothing" argument.
const queryPersonality = 0xffffffff

// keyctl(2) constants: KEYCTL_GET_KEYRING_ID and KEY_SPEC_PROCESS_KEYRING.
const (
	keyctlGetKeyringID    = 0
	keySpecProcessKeyring = ^uintptr(1) // -2
)

// Exit statuses the test reads.
const (
	exitAllowed = 0
	exitEPERM   = 10
	exitOther   = 11
)

func main() {
	call := "personality"
	if len(os.Args) > 1 {
		call = os.Args[1]
	}
	var result uintptr
	var errno syscall.Errno
	switch call {
	case "personality":
		result, _, errno = syscall.Syscall(syscall.SYS_PERSONALITY, queryPersonality, 0, 0)
	case "keyctl":
		result, _, errno = syscall.Syscall(syscall.SYS_KEYCTL, keyctlGetKeyringID, keySpecProcessKeyring, 1)
	case "userns":
		result, errno = cloneNewUser()
	default:
		fmt.Printf("unknown call %q\n", call)
		os.Exit(exitOther)
	}
	uid := os.Getuid()
	switch errno {
	case 0:
		fmt.Printf("%s allowed result=%#x uid=%d\n", call, result, uid)
		os.Exit(exitAllowed)
	case syscall.EPERM:
		fmt.Printf("%s refused EPERM uid=%d\n", call, uid)
		os.Exit(exitEPERM)
	default:
		fmt.Printf("%s failed errno=%d (%v) uid=%d\n", call, uintptr(errno), errno, uid)
		os.Exit(exitOther)
	}
}

// cloneNewUser forks a child into a new user namespace with the raw clone
// syscall (no new stack: the child runs on a copy of this one, as in a
// fork) and waits for it. The child only calls exit_group.
func cloneNewUser() (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.CLONE_NEWUSER|syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	if pid == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var status syscall.WaitStatus
	if _, err := syscall.Wait4(int(pid), &status, 0, nil); err != nil {
		if e, ok := err.(syscall.Errno); ok {
			return pid, e
		}
		return pid, syscall.EINVAL
	}
	return pid, 0
}
