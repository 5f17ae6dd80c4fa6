package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/specs"
	"go.yaml.in/yaml/v3"
)

// ConnectionRule says which services may declare a connection to Service
// (specs.Spec.ConnectsTo): only those in From. A service without a rule
// accepts any declared caller.
type ConnectionRule struct {
	Service string   `yaml:"service" json:"service"`
	From    []string `yaml:"from" json:"from"`
}

// connectionRule returns the rule for service to, if the policy has one.
func (p *Policy) connectionRule(to string) (ConnectionRule, bool) {
	for _, r := range p.Connections {
		if r.Service == to {
			return r, true
		}
	}
	return ConnectionRule{}, false
}

// ConnectionAllowed reports whether service from may declare a connection
// to service to: to has no connections entry, or its entry lists from. A
// nil policy is Default(), which has no entries.
func (p *Policy) ConnectionAllowed(from, to string) bool {
	if p == nil {
		return true
	}
	r, ok := p.connectionRule(to)
	return !ok || slices.Contains(r.From, from)
}

// ConnectionDenial says why the policy refuses from's connection to to,
// or "" when it allows it.
func (p *Policy) ConnectionDenial(from, to string) string {
	if p.ConnectionAllowed(from, to) {
		return ""
	}
	r, _ := p.connectionRule(to)
	return fmt.Sprintf("service %s accepts connections only from %s (the policy's connections entry for %s)", to, callers(r.From), to)
}

func callers(from []string) string {
	if len(from) == 0 {
		return "no service"
	}
	return strings.Join(from, ", ")
}

// connections refuses each connects_to entry whose target's connections
// entry does not list the spec's service.
func (c *checker) connections(s *specs.Spec) {
	for i, conn := range s.ConnectsTo {
		reason := c.policy.ConnectionDenial(s.Service, conn.Service)
		if reason == "" {
			continue
		}
		c.add(fmt.Sprintf("connects_to[%d]", i), RuleConnections,
			fmt.Sprintf("add %s to the from list of the connections entry for %s %s, or remove the connection to %s from the spec", s.Service, conn.Service, howToSet, conn.Service),
			"%s wants to connect to %s, but %s", s.Service, conn, reason)
	}
}

// connectionRules checks the connections entries: valid service names,
// one entry per service, each caller listed once, no service listed as
// its own caller.
func (v *validator) connectionRules(rules []ConnectionRule) {
	entry := map[string]int{}
	for i, r := range rules {
		field := fmt.Sprintf("connections[%d]", i)
		switch {
		case r.Service == "":
			v.addf(field+".service", "required; name the service whose callers this entry lists, like db")
		case !specs.IsServiceName(r.Service):
			v.addf(field+".service", "%q is not a service name; %s", r.Service, specs.ServiceNameRule)
		default:
			if j, dup := entry[r.Service]; dup {
				v.addf(field+".service", "%s already has an entry (connections[%d]); list every caller in one entry", r.Service, j)
			} else {
				entry[r.Service] = i
			}
		}
		if r.From == nil {
			v.addf(field+".from", "required; list the services that may connect to %s, like [web], or [] for none", r.Service)
		}
		listed := map[string]int{}
		for j, from := range r.From {
			item := fmt.Sprintf("%s.from[%d]", field, j)
			switch {
			case !specs.IsServiceName(from):
				v.addf(item, "%q is not a service name; %s", from, specs.ServiceNameRule)
			case from == r.Service:
				v.addf(item, "%s cannot connect to itself (its replicas reach each other on their own network); remove it", from)
			default:
				if k, dup := listed[from]; dup {
					v.addf(item, "%s is already listed (from[%d]); remove one", from, k)
				}
				listed[from] = j
			}
		}
	}
}

// connectionRules reads the connections list: entries {service, from}.
func (p *parser) connectionRules(path string, n *yaml.Node) []ConnectionRule {
	items, ok := p.Sequence(path, n)
	if !ok {
		return nil
	}
	rules := make([]ConnectionRule, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.Lines[field] = item.Line
		f := p.fieldsOf("connections", field, item)
		if n, ok := f["service"]; ok {
			rules[i].Service, _ = p.Text(field+".service", n)
		}
		if n, ok := f["from"]; ok {
			rules[i].From, _ = p.StringList(field+".from", n)
		}
	}
	return rules
}
