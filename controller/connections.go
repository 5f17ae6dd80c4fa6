package controller

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Connections between services (issue 9, docs/networking.md): a spec's
// connects_to names the services it may call, and expose the ports it
// offers them. What a connection reaches is decided against the target's
// current revision, the policy's connections rule and the target's
// address, the same way for apply, status and the agents' feed.

// connectionCheck judges spec's connections against the services of view
// before it is stored (an apply, or a rollback restoring it):
//   - a connection to a service that does not exist yet (or is being
//     removed) is accepted with a warning: it resolves once that service is
//     applied;
//   - a connection to an existing service whose current revision does not
//     expose the port (or, for a bare name, exposes nothing) is refused
//     with ErrConflict, naming both services and the fix;
//   - services that connect to spec's service on a port spec does not
//     expose are named in a warning per port: their connections stop
//     resolving (the revision is stored all the same).
//
// The policy's connections rule is the policy check's (403).
func connectionCheck(view *state.Tables, spec *specs.Spec) (warnings []string, err error) {
	var refusals []string
	for i, c := range spec.ConnectsTo {
		field := fmt.Sprintf("connects_to[%d]", i)
		svc, ok := view.Service(c.Service)
		switch {
		case !ok:
			warnings = append(warnings, fmt.Sprintf("%s: service %s does not exist yet; the connection resolves once it is applied", field, c.Service))
			continue
		case svc.State == state.ServiceRemoving:
			warnings = append(warnings, fmt.Sprintf("%s: service %s is being removed; the connection resolves once %s is applied again", field, c.Service, c.Service))
			continue
		}
		rev, ok := view.Revision(svc.Name, svc.Current)
		if !ok {
			continue
		}
		switch {
		case c.Port != 0:
			if _, exposed := specs.ExposedPort(rev.Spec.Expose, c.Port); !exposed {
				refusals = append(refusals, fmt.Sprintf("%s: service %s connects to %s, but service %s does not expose port %d (%s); add port %d to the expose of %s and apply %s first, or connect to a port it exposes",
					field, spec.Service, c, c.Service, c.Port, exposedText(rev.Spec.Expose), c.Port, c.Service, c.Service))
			}
		case len(rev.Spec.Expose) == 0:
			refusals = append(refusals, fmt.Sprintf("%s: service %s connects to %s (every port it exposes), but service %s exposes no port; add expose: [PORT] to %s and apply it first, or remove the connection",
				field, spec.Service, c.Service, c.Service, c.Service))
		}
	}
	warnings = append(warnings, droppedCallers(view, spec)...)
	if len(refusals) > 0 {
		return warnings, fmt.Errorf("%w: %s", ErrConflict, strings.Join(refusals, "\n"))
	}
	return warnings, nil
}

// droppedCallers warns, per port, about the services whose current
// revision connects to spec's service on a port spec does not expose (0:
// connects by bare name while spec exposes nothing), naming each caller
// and its connects_to entry.
func droppedCallers(view *state.Tables, spec *specs.Spec) []string {
	callers := map[int][]string{}
	for _, other := range view.Services() {
		if other.Name == spec.Service || other.State == state.ServiceRemoving {
			continue
		}
		rev, ok := view.Revision(other.Name, other.Current)
		if !ok {
			continue
		}
		for j, c := range rev.Spec.ConnectsTo {
			if c.Service != spec.Service {
				continue
			}
			_, exposed := specs.ExposedPort(spec.Expose, c.Port)
			if (c.Port != 0 && !exposed) || (c.Port == 0 && len(spec.Expose) == 0) {
				callers[c.Port] = append(callers[c.Port], fmt.Sprintf("%s (connects_to[%d])", other.Name, j))
			}
		}
	}
	ports := make([]int, 0, len(callers))
	for port := range callers {
		ports = append(ports, port)
	}
	slices.Sort(ports)
	var out []string
	for _, port := range ports {
		names := callers[port]
		verb := "connects"
		if len(names) > 1 {
			verb = "connect"
		}
		if port == 0 {
			out = append(out, fmt.Sprintf("expose: %s exposes no port in this revision, but %s %s to %s (every port it exposes): those connections do not resolve until %s exposes a port again or the callers drop them",
				spec.Service, strings.Join(names, ", "), verb, spec.Service, spec.Service))
			continue
		}
		out = append(out, fmt.Sprintf("expose: %s does not expose port %d in this revision, but %s %s to it: those connections do not resolve until %s exposes %d again or the callers drop them",
			spec.Service, port, strings.Join(names, ", "), verb, spec.Service, port))
	}
	return out
}

// exposedText lists exposed ports for a message: "it exposes 8080/http,
// 5432/tcp" or "it exposes no port".
func exposedText(e []specs.Expose) string {
	if len(e) == 0 {
		return "it exposes no port"
	}
	parts := make([]string, len(e))
	for i, x := range e {
		parts[i] = strconv.Itoa(x.Port) + "/" + x.Protocol
	}
	return "it exposes " + strings.Join(parts, ", ")
}

// connectionJudge is the policy's connections rule for one state version.
// A stored policy that cannot be read denies every connection (fail
// closed), saying so.
type connectionJudge struct {
	pol *policy.Policy
	err error
}

// connectionJudgeOf reads the policy of t once, for every connection
// judged in that version.
func connectionJudgeOf(t *state.Tables) connectionJudge {
	pol, err := storedPolicy(t)
	return connectionJudge{pol: pol, err: err}
}

// denial says why the policy refuses from's connection to to, or "".
func (j connectionJudge) denial(from, to string) string {
	if j.err != nil {
		return fmt.Sprintf("the stored policy cannot be read (%v), so no connection is allowed; store it again (deployctl policy set)", j.err)
	}
	if d := j.pol.ConnectionDenial(from, to); d != "" {
		return fmt.Sprintf("%s; add %s to its from list (deployctl policy set)", d, from)
	}
	return ""
}

// connectionTarget is what one declared connection reaches in a state
// version: the target's address and ports, or why it reaches nothing.
type connectionTarget struct {
	vip    string
	ports  []specs.Expose
	reason string // "" when the connection resolves
}

// resolveConnection decides what service from's connection c reaches: the
// target must exist and not be being removed, the policy must allow the
// caller, the target's current revision must expose the port (for a bare
// name: some port; all of them are reached), and the target must have an
// address.
func resolveConnection(t *state.Tables, judge connectionJudge, from string, c specs.Connection) connectionTarget {
	svc, ok := t.Service(c.Service)
	switch {
	case !ok:
		return connectionTarget{reason: fmt.Sprintf("no such service: %s does not exist; the connection resolves once it is applied", c.Service)}
	case svc.State == state.ServiceRemoving:
		return connectionTarget{reason: fmt.Sprintf("service %s is being removed", c.Service)}
	}
	if denial := judge.denial(from, c.Service); denial != "" {
		return connectionTarget{reason: "denied by policy: " + denial}
	}
	rev, _ := t.Revision(svc.Name, svc.Current)
	var ports []specs.Expose
	if c.Port == 0 {
		ports = slices.Clone(rev.Spec.Expose)
		slices.SortFunc(ports, func(a, b specs.Expose) int { return cmp.Compare(a.Port, b.Port) })
	} else if e, ok := specs.ExposedPort(rev.Spec.Expose, c.Port); ok {
		ports = []specs.Expose{e}
	}
	switch {
	case len(ports) == 0 && c.Port == 0:
		return connectionTarget{reason: fmt.Sprintf("port not exposed: service %s exposes no port; add expose: [PORT] to %s", c.Service, c.Service)}
	case len(ports) == 0:
		return connectionTarget{reason: fmt.Sprintf("port not exposed: service %s does not expose port %d (%s)", c.Service, c.Port, exposedText(rev.Spec.Expose))}
	case svc.VIP == "":
		return connectionTarget{reason: fmt.Sprintf("service %s has no address yet: addresses are assigned once every server runs FSM version %d (upgrade the older servers)", c.Service, raftstore.CmdAssignAddresses.MinVersion())}
	}
	return connectionTarget{vip: svc.VIP, ports: ports}
}

// connectionStatuses is the status of each connection the current
// revision of from declares.
func connectionStatuses(t *state.Tables, judge connectionJudge, from string, conns []specs.Connection) []wire.ConnectionStatus {
	if len(conns) == 0 {
		return nil
	}
	out := make([]wire.ConnectionStatus, len(conns))
	for i, c := range conns {
		target := resolveConnection(t, judge, from, c)
		out[i] = wire.ConnectionStatus{Service: c.Service, Port: c.Port, Resolved: target.reason == "", Reason: target.reason,
			Address: target.vip, Ports: target.ports}
	}
	return out
}

// serviceAddresses lists every service that has an address, by name.
func serviceAddresses(t *state.Tables) []wire.ServiceAddress {
	out := []wire.ServiceAddress{}
	for _, svc := range t.Services() {
		if svc.VIP != "" {
			out = append(out, wire.ServiceAddress{Service: svc.Name, VIP: svc.VIP})
		}
	}
	return out
}

// resolvedConnections lists every service's resolved connections, one per
// target port, sorted by caller, target and port. A caller being removed
// has none: its replicas are stopping.
func resolvedConnections(t *state.Tables, judge connectionJudge) []wire.ServiceConnection {
	out := []wire.ServiceConnection{}
	for _, svc := range t.Services() {
		if svc.State == state.ServiceRemoving {
			continue
		}
		rev, ok := t.Revision(svc.Name, svc.Current)
		if !ok {
			continue
		}
		for _, c := range rev.Spec.ConnectsTo {
			target := resolveConnection(t, judge, svc.Name, c)
			for _, p := range target.ports {
				if target.reason == "" {
					out = append(out, wire.ServiceConnection{From: svc.Name, To: c.Service, Port: p.Port, Protocol: p.Protocol, VIP: target.vip})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b wire.ServiceConnection) int {
		return cmp.Or(strings.Compare(a.From, b.From), strings.Compare(a.To, b.To), cmp.Compare(a.Port, b.Port))
	})
	// A connection declared twice (by port and by bare name: refused by
	// Validate, but a Go-built spec may say so) is listed once.
	return slices.Compact(out)
}
