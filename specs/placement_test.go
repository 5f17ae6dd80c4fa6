package specs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustParseConstraint(t *testing.T, s string) Constraint {
	t.Helper()
	c, err := ParseConstraint(s)
	if err != nil {
		t.Fatalf("ParseConstraint(%q): %v", s, err)
	}
	return c
}

func TestParseConstraint(t *testing.T) {
	tests := []struct {
		in   string
		want Constraint
	}{
		{"zone == a", Constraint{"zone", "==", "a"}},
		{"zone==a", Constraint{"zone", "==", "a"}},
		{"  disk!=  hdd ", Constraint{"disk", "!=", "hdd"}},
		{"node.id == h3", Constraint{"node.id", "==", "h3"}},
		{"host.id != h-1", Constraint{"host.id", "!=", "h-1"}},
		{"kubernetes.io/arch == arm64", Constraint{"kubernetes.io/arch", "==", "arm64"}},
		{"Rack_2 == row 3", Constraint{"Rack_2", "==", "row 3"}},
		{"tier == !cold", Constraint{"tier", "==", "!cold"}},
		{"region == eu=west", Constraint{"region", "==", "eu=west"}},
	}
	for _, tt := range tests {
		got := mustParseConstraint(t, tt.in)
		if got != tt.want {
			t.Errorf("ParseConstraint(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		// The canonical form parses back to the same constraint.
		if again := mustParseConstraint(t, got.String()); again != got {
			t.Errorf("ParseConstraint(%q) = %+v, want %+v (round trip of %q)", got.String(), again, got, tt.in)
		}
	}
}

func TestParseConstraintRefuses(t *testing.T) {
	tests := []struct{ in, message string }{
		{"", "has no operator"},
		{"zone", "has no operator"},
		{"zone = a", "a single = is not one"},
		{"zone ~= a", "has no operator"},
		{"zone~ == a", "key \"zone~\" may only hold"},
		{"== a", "has no key before =="},
		{"zone ==", "has no value after =="},
		{"zone !=   ", "has no value after !="},
		{"zone name == a", "may only hold letters"},
		{"zone == a == b", "more than one operator"},
		{"zone == a != b", "more than one operator"},
		{"zone === a", "more than one operator"},
		{"zone !== a", "more than one operator"},
		{"zone == a\tb", "control character"},
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.in)
		if err == nil {
			t.Errorf("ParseConstraint(%q) = %+v, want an error", tt.in, c)
			continue
		}
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ParseConstraint(%q) error %v does not match ErrInvalidSpec", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.message) {
			t.Errorf("ParseConstraint(%q) error = %q, want it to contain %q", tt.in, err, tt.message)
		}
		if tt.message != "control character" && !strings.Contains(err.Error(), `like "zone == a"`) {
			t.Errorf("ParseConstraint(%q) error = %q, want it to show an example", tt.in, err)
		}
	}
}

func TestConstraintMatches(t *testing.T) {
	labels := map[string]string{"zone": "a", "disk": "ssd", "empty": ""}
	tests := []struct {
		constraint string
		hostID     string
		want       bool
	}{
		{"zone == a", "h1", true},
		{"zone == b", "h1", false},
		{"zone != a", "h1", false},
		{"zone != b", "h1", true},
		{"disk != hdd", "h1", true},
		// A label the host does not have equals nothing and differs from everything.
		{"gpu == true", "h1", false},
		{"gpu != true", "h1", true},
		// An empty value is a value: the label is present.
		{"empty != x", "h1", true},
		{"node.id == h1", "h1", true},
		{"node.id == h2", "h1", false},
		{"node.id != h1", "h1", false},
		{"host.id == h1", "h1", true},
		{"host.id != h2", "h1", true},
		// Case matters, as in Docker labels.
		{"zone == A", "h1", false},
	}
	for _, tt := range tests {
		c := mustParseConstraint(t, tt.constraint)
		if got := c.Matches(labels, tt.hostID); got != tt.want {
			t.Errorf("%q.Matches(%v, %q) = %v, want %v", tt.constraint, labels, tt.hostID, got, tt.want)
		}
	}
	// A label named like the special key does not override the host's ID.
	c := mustParseConstraint(t, "node.id == h1")
	if !c.Matches(map[string]string{"node.id": "other"}, "h1") {
		t.Errorf("node.id compared the label instead of the host ID")
	}
	if got := (Constraint{"zone", "~=", "a"}).Matches(labels, "h1"); got {
		t.Errorf("a constraint with an unknown operator matched")
	}
	if !mustParseConstraint(t, "zone != a").Matches(nil, "h1") {
		t.Errorf("!= did not match a host without labels")
	}
}

// A spec built in Go may write a constraint without spaces: Validate takes
// it, and ApplyDefaults leaves it alone (it never changes a valid spec).
func TestValidateTakesConstraintsAsWritten(t *testing.T) {
	s := validGoSpec()
	s.Placement = Placement{Constraints: []string{"zone==a", "disk != hdd"}, MaxPerHost: 1}
	mustValidate(t, s)
	defaulted := s.Clone()
	defaulted.ApplyDefaults()
	if !reflect.DeepEqual(defaulted, s) {
		t.Errorf("ApplyDefaults changed the placement: %+v, want %+v", defaulted.Placement, s.Placement)
	}
}

// FuzzConstraintRoundTrip checks that ParseConstraint never panics, refuses
// with ErrInvalidSpec, and that what it accepts survives its canonical form.
func FuzzConstraintRoundTrip(f *testing.F) {
	for _, s := range []string{"zone == a", "disk!=hdd", "node.id == h3", "a === b", "== x", "k == v == w", "k = v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConstraint(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("ParseConstraint(%q) error %v does not match ErrInvalidSpec", s, err)
			}
			return
		}
		again, err := ParseConstraint(c.String())
		if err != nil || again != c {
			t.Fatalf("ParseConstraint(%q) = %+v, but its canonical form %q parses to %+v, %v", s, c, c.String(), again, err)
		}
	})
}
