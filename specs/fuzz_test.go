package specs

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that it either returns a spec
// or a *ValidationError with problems, and that a spec it returns is valid,
// a fixed point of ApplyDefaults, cloned exactly, and still valid after a
// JSON round trip (the way the controller receives it).
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimalYAML))
	f.Add([]byte(fullYAML))
	for _, c := range invalidCases() {
		f.Add([]byte(c.document()))
	}
	f.Add([]byte("service: &s web\nimage: a:1\nenv: {A: *s}\ncommand: &c [x]\nentrypoint: *c\n"))
	f.Add([]byte(minimalYAML + "ports: [\"[::1]:80:80/udp\", \"0.0.0.0:81:81\"]\nhealthcheck: {exec: [true]}\n"))
	f.Add([]byte(isolationYAML))
	// Alias amplification (issue 16, finding 10): floods, nesting, cycles.
	f.Add([]byte(aliasFlood(40)))
	f.Add([]byte(billionLaughs(4, "command: *l1\n")))
	f.Add([]byte(minimalYAML + "command: &c [x, *c]\nenv: &e {A: *e}\n"))
	f.Add([]byte(minimalYAML + "env: {A: &a x}\ncommand: [*a, *a, *a]\nentrypoint: &l [*a, *a]\nhealthcheck: {exec: *l}\n"))
	f.Add([]byte(minimalYAML + "network_mode: bridge\nipc: host\nvolumes: [/a:/b:ro, /a:/c]\nsecurity: {seccomp: strict, apparmor: unconfined}\n"))

	f.Add([]byte(minimalYAML + "ingress:\n  - {listen: 80, port: 8080, host: \"*.Example.com\", path: /v1}\n  - {listen: 22, port: 22, protocol: TCP}\n  - {listen: 80, port: 1}\n"))
	for _, c := range ingressInvalidCases() {
		f.Add([]byte(c.document()))
	}
	f.Add([]byte(minimalYAML + "expose: [9090, {port: 5432, protocol: TCP}, 80]\nconnects_to: [db, {service: api, port: 8080}, auth]\n"))
	for _, c := range connectionInvalidCases() {
		f.Add([]byte(c.document()))
	}
	f.Add([]byte(exposedYAML + "update: {canary: {weight: 10%, duration: 30s}, rollback_on: {error_rate: 2%, latency_p99: 500ms, min_requests: 50}}\n"))
	for _, c := range trafficInvalidCases() {
		f.Add([]byte(c.document()))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := Parse(data)
		if err != nil {
			var verr *ValidationError
			if spec != nil || !errors.As(err, &verr) || !errors.Is(err, ErrInvalidSpec) || len(verr.Problems) == 0 {
				t.Fatalf("Parse error = %v (%T), spec %v; want a *ValidationError with problems and no spec", err, err, spec)
			}
			for _, p := range verr.Problems {
				if p.Message == "" || p.Line < 0 {
					t.Fatalf("malformed problem %+v", p)
				}
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("Parse accepted a spec that Validate refuses:\n%v", err)
		}
		clone := spec.Clone()
		if !reflect.DeepEqual(clone, spec) {
			t.Fatalf("Clone() = %+v, want %+v", clone, spec)
		}
		clone.ApplyDefaults()
		if !reflect.DeepEqual(clone, spec) {
			t.Fatalf("ApplyDefaults changed a parsed spec:\nbefore %+v\nafter  %+v", spec, clone)
		}
		clone.ApplyDefaults()
		if !reflect.DeepEqual(clone, spec) {
			t.Fatalf("ApplyDefaults is not idempotent")
		}
		encoded, err := json.Marshal(spec)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		// What is stored is bounded by the expansion limit, whatever the
		// aliases (JSON escapes a byte in at most 6; defaults add a little).
		if limit := 6*(MaxDecodedBytes+len(data)) + 4096; len(encoded) > limit {
			t.Fatalf("a %d-byte document became a %d-byte spec", len(data), len(encoded))
		}
		var decoded Spec
		if err := json.Unmarshal(encoded, &decoded); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", encoded, err)
		}
		if err := decoded.Validate(); err != nil {
			t.Fatalf("the JSON round trip of a parsed spec is invalid:\n%s\n%v", encoded, err)
		}
	})
}
