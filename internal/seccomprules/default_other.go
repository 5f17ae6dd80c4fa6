//go:build !linux

package seccomprules

import (
	"fmt"

	mobyseccomp "github.com/moby/profiles/seccomp"
)

// dockerDefault is only available on Linux: moby's default profile is
// Linux-only Go source. The controller and the agents, which judge
// profiles, run on Linux.
func dockerDefault() (*mobyseccomp.Seccomp, error) {
	return nil, fmt.Errorf("%w: Docker's default seccomp profile is only built on Linux", ErrUnsupportedPlatform)
}
