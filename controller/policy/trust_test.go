package policy

import (
	"encoding/json"
	"strings"
	"testing"
)

// The trust and scan settings of issue 16 (findings 7 and 8).
func TestParseTrustAndScanSettings(t *testing.T) {
	p := mustParse(t, `trust:
  - {match: "localhost:5000/**", keys: [ci.pub]}
require_signatures: true
scan: {mode: enforce, accept_unsigned_reports: true}
`)
	if !p.RequireSignatures || !p.Scan.AcceptUnsignedReports || p.Trust[0].Match != "localhost:5000/**" {
		t.Fatalf("parsed %+v", p)
	}
	if d := mustParse(t, "{}\n"); d.RequireSignatures || d.Scan.AcceptUnsignedReports {
		t.Fatalf("defaults %+v: both must be off", d)
	}
	// Stored as JSON and read back (the controller's path).
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Policy
	if err := json.Unmarshal(data, &back); err != nil || !back.RequireSignatures || !back.Scan.AcceptUnsignedReports {
		t.Fatalf("after JSON %+v, %v (%s)", back, err, data)
	}
	if !strings.Contains(string(data), `"require_signatures":true`) {
		t.Errorf("JSON key is not snake_case: %s", data)
	}
}

func TestParseTrustAndScanProblems(t *testing.T) {
	cases := []invalidPolicyCase{
		{"require_signatures without trust", "require_signatures: true\n", "require_signatures", 1, "no trust entries, so every image would be refused"},
		{"require_signatures not a bool", "require_signatures: [registry.example.com]\n", "require_signatures", 1, "expected true or false"},
		{"require_signatures alias", "require_signed: true\n", "require_signed", 1, "did you mean require_signatures?"},
		{"require_signatures in scan", "scan: {require_signatures: true}\n", "scan.require_signatures", 1, "did you mean require_signatures (at the top level)?"},
		{"accept_unsigned_reports not a bool", "scan: {mode: enforce, accept_unsigned_reports: yes}\n", "scan.accept_unsigned_reports", 1, "expected true or false"},
		{"accept_unsigned_reports typo", "scan: {accept_unsigned_report: true}\n", "scan.accept_unsigned_report", 1, "did you mean accept_unsigned_reports?"},
		{"accept_unsigned_reports at the top level", "accept_unsigned_reports: true\n", "accept_unsigned_reports", 1, "did you mean scan.accept_unsigned_reports?"},
		{"trust pattern without registry", "trust: [{match: 'team/*', keys: [k.pub]}]\n", "trust[0].match", 1, "not a registry"},
		{"trust pattern of a bare registry", "trust: [{match: 'localhost:5000', keys: [k.pub]}]\n", "trust[0].match", 1, "write localhost:5000/**"},
		{"trust ** inside a segment", "trust: [{match: 'localhost:5000/team**', keys: [k.pub]}]\n", "trust[0].match", 1, "whole segment"},
		{"trust pattern with a tag", "trust: [{match: 'localhost:5000/team/web:1', keys: [k.pub]}]\n", "trust[0].match", 1, "tag or digest"},
		{"trust pattern with dot dot", "trust: [{match: 'localhost:5000/team/../web', keys: [k.pub]}]\n", "trust[0].match", 1, `".."`},
		{"trust pattern upper case path", "trust: [{match: 'localhost:5000/Team/*', keys: [k.pub]}]\n", "trust[0].match", 1, "lower case"},
		{"registry with a bad port", "registries: ['registry.example.com:99999']\n", "registries[0]", 1, "port"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			problems := mustProblems(t, tt.yaml)
			if len(problems) != 1 {
				t.Fatalf("got %d problems, want 1:\n%s", len(problems), (&ValidationError{problems}).Error())
			}
			p := problems[0]
			if p.Field != tt.field || p.Line != tt.line || !strings.Contains(p.Message, tt.message) {
				t.Errorf("problem = %q\nwant field %q, line %d, message containing %q", p.String(), tt.field, tt.line, tt.message)
			}
		})
	}
}

// The registries check and the trust rules share one canonical form: every
// spelling of an allowed registry is allowed, and another registry is not.
func TestCheckRegistriesCanonical(t *testing.T) {
	p := Default()
	p.Registries = []string{"localhost:5000", "registry.example.com", "docker.io"}
	allowed := []string{
		"localhost:5000/web:1", "LOCALHOST:5000/web:1", "127.0.0.1:5000/web:1", "[::1]:5000/web:1", "localhost.:5000/web:1",
		"registry.example.com/web:1", "Registry.Example.COM:443/web:1", "registry.example.com./web:1",
		"nginx:1", "docker.io/library/nginx:1", "index.docker.io/library/nginx:1", "registry-1.docker.io/library/nginx:1",
	}
	for _, image := range allowed {
		s := mustSpec(t, "")
		s.Image = image
		if got := Check(p, s, ""); len(got) != 0 {
			t.Errorf("image %s: %s, want allowed", image, describeViolations(got))
		}
	}
	refused := []string{"localhost:5001/web:1", "registry.example.com:5000/web:1", "registry.example.com.evil.org/web:1", "10.0.0.5:5000/web:1"}
	for _, image := range refused {
		s := mustSpec(t, "")
		s.Image = image
		if got := Check(p, s, ""); len(got) != 1 || got[0].Rule != RuleRegistries {
			t.Errorf("image %s: %s, want a registries violation", image, describeViolations(got))
		}
	}
}

// An image whose registry has no canonical form is refused, not compared
// as written: ":5000" dials this machine, and "127.1" is 127.0.0.1 to the
// C resolver, yet neither reads as localhost.
func TestRegistryOfRefusesUncanonicalRegistries(t *testing.T) {
	for _, image := range []string{":5000/team/app:1", "127.1:5000/team/app:1", "2130706433:5000/team/app:1", "localhost:0/team/app:1"} {
		if got, err := RegistryOf(image); err == nil {
			t.Errorf("RegistryOf(%q) = %q, want an error", image, got)
		}
	}
}
