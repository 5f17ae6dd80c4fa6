package policy

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that it returns either a
// policy or a *ValidationError with problems, and that a policy it returns
// is valid, cloned exactly and still valid after a JSON round trip (the
// way the controller stores it).
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullPolicyYAML))
	f.Add([]byte("{}\n"))
	f.Add([]byte("connections:\n  - {service: db, from: [web, admin]}\n  - {service: vault, from: []}\n"))
	for _, c := range invalidPolicyCases() {
		f.Add([]byte(c.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			var verr *ValidationError
			if p != nil || !errors.As(err, &verr) || !errors.Is(err, ErrInvalidPolicy) || len(verr.Problems) == 0 {
				t.Fatalf("Parse error = %v (%T), policy %v; want a *ValidationError with problems and no policy", err, err, p)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted a policy that Validate refuses:\n%v", err)
		}
		if c := p.Clone(); !reflect.DeepEqual(c, p) {
			t.Fatalf("Clone() = %+v, want %+v", c, p)
		}
		encoded, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		var decoded Policy
		if err := json.Unmarshal(encoded, &decoded); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", encoded, err)
		}
		if err := decoded.Validate(); err != nil {
			t.Fatalf("the JSON round trip of a parsed policy is invalid:\n%s\n%v", encoded, err)
		}
	})
}
