// Package firewall keeps a host's packet rules for service networks
// (docs/networking.md, issue 9): from a service's bridge, the host accepts
// only DNS to the bridge's gateway and the service's declared connections,
// each a service address and port (VIP:port, VIPs from 198.18.0.0/15) that
// a nat rule sends to the proxy's listener for it on the gateway; any other
// VIP:port is refused, and nothing is forwarded from one service bridge to
// another.
//
// The rules live in iptables chains of the agent's own (DEPLOYCTL-<id>-*),
// jumped to from INPUT, PREROUTING (nat) and DOCKER-USER (or FORWARD when
// Docker does not manage iptables). Apply loads the whole content of those
// chains with one iptables-restore --noflush per table, so every table
// changes atomically; Docker's chains and anyone else's rules are never
// flushed or edited. DESIGN.md says what each rule is for and why.
package firewall

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ServiceRange is where service addresses (VIPs) come from: RFC 2544's
// benchmarking range, never a real destination.
const ServiceRange = "198.18.0.0/15"

// Firewall is one agent's rules on one host. Its methods may be called from
// several goroutines; they run one at a time.
type Firewall struct {
	id  string
	cfg settings

	mu       sync.Mutex
	restores int // iptables-restore runs, for tests of idempotence
}

// Option changes how a Firewall runs its commands.
type Option func(*settings)

type settings struct {
	prefix []string // prepended to every command (ip netns exec NAME)
}

// WithNetns runs every iptables command inside the named network namespace
// (`ip netns exec NAME ...`): for tests, which build a stand-in host in a
// namespace of their own.
func WithNetns(name string) Option {
	return func(s *settings) { s.prefix = []string{"ip", "netns", "exec", name} }
}

// New returns the firewall of the agent whose id is id: 1 to 8 letters,
// digits or underscores (a hash of the host id, say), unique among the
// agents sharing the host's tables; the chain names carry it. New touches
// nothing: the rules already in place (an earlier run of the same agent)
// stay until Apply replaces them, so containers keep their rules while the
// agent restarts.
func New(id string, opts ...Option) (*Firewall, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	f := &Firewall{id: id}
	for _, o := range opts {
		o(&f.cfg)
	}
	return f, nil
}

func checkID(id string) error {
	if len(id) < 1 || len(id) > 8 || !onlyChars(id, "_") {
		return fmt.Errorf("firewall: id %q: want 1 to 8 letters, digits or underscores (chain names stop at %d characters)", id, maxChain)
	}
	return nil
}

// Apply makes the host's rules for the agent's service networks exactly r,
// replacing whatever the agent's chains held before (its own earlier Apply,
// or an earlier run's). Each table (filter, then nat) is loaded with one
// iptables-restore --noflush: no packet ever sees a table half old and half
// new. When the rules in place already are r, nothing is loaded, so calling
// Apply on every reconcile pass is cheap (two iptables-save runs).
//
// Apply a network before the first container starts on its bridge, and
// leave it out only once the last one is gone: a bridge not in r is not
// filtered at all.
//
// r is checked before anything is touched. On an error the table that
// failed is as it was (its restore is one transaction); when the nat table
// fails after the filter table was loaded, the next Apply finishes the job.
func (f *Firewall) Apply(ctx context.Context, r Rules) error {
	nets, err := normalize(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()

	// filter first: a new network's chains are in place before its DNAT
	// rules. The paths are in the nat table only (DESIGN.md, "Order and
	// atomicity").
	have, err := f.save(ctx, "filter")
	if err != nil {
		return err
	}
	filter, nat := build(f.id, nets, forwardHook(have))
	if err := f.load(ctx, plan(filter, have, f.id)); err != nil {
		return err
	}
	have, err = f.save(ctx, "nat")
	if err != nil {
		return err
	}
	return f.load(ctx, plan(nat, have, f.id))
}

// Close removes the agent's chains and the jumps to them. The agent does
// not call it when it stops: the rules must outlive a restart while the
// containers run. It is for tests and for taking a host out of service.
func (f *Firewall) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return remove(ctx, f, f.id)
}

// Remove removes the chains of the agent whose id is id, and the jumps to
// them from the built-in chains and DOCKER-USER, without a Firewall: the
// cleanup of a test run or of an agent that is gone. Nothing else is
// touched; when there is nothing of id's, nothing is loaded.
func Remove(ctx context.Context, id string, opts ...Option) error {
	f, err := New(id, opts...)
	if err != nil {
		return err
	}
	return remove(ctx, f, id)
}

func remove(ctx context.Context, f *Firewall, id string) error {
	for _, name := range []string{"nat", "filter"} {
		have, err := f.save(ctx, name)
		if err != nil {
			return err
		}
		if err := f.load(ctx, plan(table{name: name}, have, id)); err != nil {
			return err
		}
	}
	return nil
}

// save reads one table as iptables-save prints it.
func (f *Firewall) save(ctx context.Context, name string) (tableState, error) {
	out, err := f.run(ctx, "", "iptables-save", "-t", name)
	if err != nil {
		return tableState{}, err
	}
	return parseSave(out), nil
}

// load runs one iptables-restore --noflush with script; an empty script
// is nothing to do.
func (f *Firewall) load(ctx context.Context, script string) error {
	if script == "" {
		return nil
	}
	f.restores++
	_, err := f.run(ctx, script, "iptables-restore", "--noflush", "-w")
	if err != nil {
		return fmt.Errorf("%w%s", err, failedLine(err.Error(), script))
	}
	return nil
}

// failedLine quotes the line of script that iptables-restore's message
// names ("line 4 failed"), since the message alone does not show it.
func failedLine(msg, script string) string {
	lines := strings.Split(script, "\n")
	for rest := msg; ; {
		i := strings.Index(rest, "line ")
		if i < 0 {
			return ""
		}
		rest = rest[i+len("line "):]
		num, _, ok := strings.Cut(rest, " failed")
		if n, err := strconv.Atoi(num); ok && err == nil && n >= 1 && n <= len(lines) {
			return fmt.Sprintf(" (line %d: %q)", n, lines[n-1])
		}
	}
}

// run runs one command (after the namespace prefix, if any), with stdin
// when it is not empty, and returns its standard output. The error names
// the command and carries its standard error.
func (f *Firewall) run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	argv := append(append(slices.Clone(f.cfg.prefix), name), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("firewall: %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
