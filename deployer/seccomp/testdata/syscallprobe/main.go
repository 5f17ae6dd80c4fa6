// Command syscallprobe is the program of the seccomp tests' container. It
// asks the kernel for its execution domain with personality(0xffffffff),
// which only queries and changes nothing, and reports whether the seccomp
// filter let the call through. Docker's default profile allows exactly this
// call for any user without any capability; the strict profile removes
// personality, so the filter answers EPERM.
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

// Exit statuses the test reads.
const (
	exitAllowed = 0
	exitEPERM   = 10
	exitOther   = 11
)

func main() {
	persona, _, errno := syscall.Syscall(syscall.SYS_PERSONALITY, queryPersonality, 0, 0)
	uid := os.Getuid()
	switch errno {
	case 0:
		fmt.Printf("personality allowed persona=%#x uid=%d\n", persona, uid)
		os.Exit(exitAllowed)
	case syscall.EPERM:
		fmt.Printf("personality refused EPERM uid=%d\n", uid)
		os.Exit(exitEPERM)
	default:
		fmt.Printf("personality failed errno=%d (%v) uid=%d\n", uintptr(errno), errno, uid)
		os.Exit(exitOther)
	}
}
