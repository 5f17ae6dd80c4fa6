package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes. They are part of the interface: scripts branch on them.
const (
	ExitOK         = 0 // done
	ExitError      = 1 // any other error (server unreachable, not found, refused image...)
	ExitUsage      = 2 // invalid spec or usage
	ExitRolledBack = 3 // the release failed and was rolled back
	ExitPaused     = 4 // the release failed and was paused, or its rollback failed
	ExitTimeout    = 5 // stopped waiting (timeout or Ctrl-C); the rollout goes on
	ExitConflict   = 6 // apply --if-revision N: the current revision is not N; nothing stored
)

const exitCodesHelp = `deployctl exits with:

  0  done: the release (or rollback) is healthy on every replica
  1  error: the server is unreachable, the service does not exist, the image
     cannot be resolved, or the revision was superseded by another apply
  2  invalid spec or usage: fix the file or the command line; nothing was stored
  3  the release failed its health checks, or its traffic breached
     update.rollback_on (error rate, p99 latency), and was rolled back
     automatically to the previous good revision (which is healthy again)
  4  the release failed and was paused (update.failure_action: pause), or it
     failed with nothing to roll back to, or its rollback failed: the service
     needs a human (see 'deployctl status' and 'deployctl history')
  5  stopped waiting: --timeout passed or you pressed Ctrl-C; the rollout goes
     on in the cluster ('deployctl status SVC' follows it)
  6  conflict: apply --if-revision N found another current revision (someone
     applied meanwhile); nothing was stored ('deployctl diff' shows what changed)

'deployctl diff FILE' exits as kubectl diff does: 0 no changes, 1 an apply
would change something, 2 the spec is invalid or the diff could not be made.
`

// exitError carries an exit code through cobra's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// isUsageError recognises cobra's own argument and flag errors.
func isUsageError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func newExitCodesTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "What deployctl's exit codes mean",
		Long:  exitCodesHelp,
	}
}
