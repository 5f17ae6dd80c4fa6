//go:build !linux

package seccompprofile

import "fmt"

// Strict is only built on Linux: moby's default profile, which it derives
// from, is Linux-only Go source. On other systems it reports
// ErrUnsupportedPlatform; the agents that resolve `security.seccomp:
// strict` run on Linux.
func Strict() ([]byte, error) {
	return nil, fmt.Errorf("%w: the strict seccomp profile is generated on Linux only", ErrUnsupportedPlatform)
}
