package specs

import (
	"fmt"
	"strings"
)

// Constraint operators.
const (
	ConstraintEqual    = "=="
	ConstraintNotEqual = "!="
)

// Constraint keys that name the host itself instead of one of its labels.
// Two spellings are accepted: Swarm says node.id, deployctl says host.
const (
	ConstraintKeyNodeID = "node.id"
	ConstraintKeyHostID = "host.id"
)

// Constraint is one parsed placement constraint: Key Op Value.
type Constraint struct {
	Key, Op, Value string
}

// ParseConstraint reads "KEY == VALUE" or "KEY != VALUE"; the spaces around
// the operator are optional ("zone==a"). KEY is letters, digits and
// "_.-/"; VALUE is any non-empty text without another operator. Errors match
// ErrInvalidSpec.
func ParseConstraint(s string) (Constraint, error) {
	const example = `write KEY == VALUE or KEY != VALUE, like "zone == a" or "node.id != h3"`
	text := strings.TrimSpace(s)
	at := operatorIndex(text)
	if at < 0 {
		if strings.Contains(text, "=") {
			return Constraint{}, invalidValuef("%q has no operator; compare with == or != (a single = is not one); %s", s, example)
		}
		return Constraint{}, invalidValuef("%q has no operator; %s", s, example)
	}
	c := Constraint{
		Key:   strings.TrimSpace(text[:at]),
		Op:    text[at : at+2],
		Value: strings.TrimSpace(text[at+2:]),
	}
	switch {
	case c.Key == "":
		return Constraint{}, invalidValuef("%q has no key before %s; %s", s, c.Op, example)
	case !isConstraintKey(c.Key):
		return Constraint{}, invalidValuef("%q: key %q may only hold letters, digits and _ . - /; %s", s, c.Key, example)
	case c.Value == "":
		return Constraint{}, invalidValuef("%q has no value after %s; %s", s, c.Op, example)
	case strings.HasPrefix(c.Value, "=") || operatorIndex(c.Value) >= 0:
		return Constraint{}, invalidValuef("%q has more than one operator; a constraint compares one key with one value; %s", s, example)
	case strings.ContainsFunc(c.Value, isControl):
		return Constraint{}, invalidValuef("%q: the value contains a control character", s)
	}
	return c, nil
}

// operatorIndex returns where the first == or != of text starts, or -1.
func operatorIndex(text string) int {
	for i := 0; i+1 < len(text); i++ {
		if text[i+1] == '=' && (text[i] == '=' || text[i] == '!') {
			return i
		}
	}
	return -1
}

func isConstraintKey(key string) bool {
	for _, r := range key {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("_.-/", r) {
			return false
		}
	}
	return key != ""
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// String writes the constraint in canonical form, "key == value". Parse
// stores constraints this way, so that respacing one ("zone==a") does not
// change the revision's fingerprint and restart every replica.
func (c Constraint) String() string { return c.Key + " " + c.Op + " " + c.Value }

// IsHostID reports whether the constraint is on the host's ID rather than
// on one of its labels.
func (c Constraint) IsHostID() bool {
	return c.Key == ConstraintKeyNodeID || c.Key == ConstraintKeyHostID
}

// Matches reports whether a host with these labels and this ID satisfies
// the constraint. A label the host does not have is unequal to every value:
// "disk != hdd" holds on a host without a disk label, "zone == a" does not.
func (c Constraint) Matches(labels map[string]string, hostID string) bool {
	actual, present := labels[c.Key]
	if c.IsHostID() {
		actual, present = hostID, true
	}
	switch c.Op {
	case ConstraintEqual:
		return present && actual == c.Value
	case ConstraintNotEqual:
		return !present || actual != c.Value
	}
	return false
}

// canonicalConstraints rewrites the constraints that parse in canonical form
// and leaves the others as written, for Validate to report.
func canonicalConstraints(constraints []string) []string {
	for i, text := range constraints {
		if c, err := ParseConstraint(text); err == nil {
			constraints[i] = c.String()
		}
	}
	return constraints
}

func (v *validator) placement(p Placement) {
	// Keyed by the canonical key (host.id is node.id), so that two
	// constraints no host can satisfy together are caught.
	type seenConstraint struct {
		index int
		c     Constraint
	}
	seen := map[string][]seenConstraint{}
	for i, text := range p.Constraints {
		field := fmt.Sprintf("placement.constraints[%d]", i)
		c, err := ParseConstraint(text)
		if err != nil {
			v.addf(field, "%v", err)
			continue
		}
		if label, ok := strings.CutPrefix(c.Key, "node.labels."); ok {
			v.addf(field, "%q: write the label name alone, like %q; deployctl matches host labels by name, without Compose's node.labels. prefix", text, label+" "+c.Op+" "+c.Value)
			continue
		}
		key := c.Key
		if c.IsHostID() {
			key = ConstraintKeyNodeID
		}
		for _, earlier := range seen[key] {
			if msg := clash(earlier.c, c); msg != "" {
				v.addf(field, "%q %s constraints[%d] (%q)%s", text, msg, earlier.index, p.Constraints[earlier.index], clashFix(msg))
				break
			}
		}
		seen[key] = append(seen[key], seenConstraint{i, c})
	}
	if p.MaxPerHost < 0 {
		v.addf("placement.max_per_host", "%d is negative; use 0 for no limit, or 1 to run at most one replica per host", p.MaxPerHost)
	}
}

// clash says how constraint b relates to an earlier constraint a on the same
// key: "repeats", "contradicts", or "" when both can hold at once.
func clash(a, b Constraint) string {
	switch {
	case a.Op == b.Op && a.Value == b.Value:
		return "repeats"
	case a.Op == ConstraintEqual && b.Op == ConstraintEqual:
		return "contradicts" // a host has one value per key
	case a.Op != b.Op && a.Value == b.Value:
		return "contradicts"
	}
	return ""
}

func clashFix(msg string) string {
	if msg == "repeats" {
		return "; remove one"
	}
	return ": no host can satisfy both; keep one"
}
