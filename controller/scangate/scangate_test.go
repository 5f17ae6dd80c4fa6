package scangate

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The digests of the testdata reports.
const (
	digestV1 = "sha256:f7e858c48d11d6cf3b5724c5c3a17a8deb436c5db7ccc9f481ed841010db528f"
	digestV2 = "sha256:e57cc57c7a300ae5526eb963d0b8288987003e6de118e28069c1c4142d21591b"
	day      = 24 * time.Hour
)

var (
	createdV1 = time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC)
	createdV2 = time.Date(2025, 3, 5, 7, 30, 0, 0, time.UTC)
)

func mustReport(t testing.TB, file string) *Report {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	report, err := ParseTrivy(data)
	if err != nil {
		t.Fatalf("ParseTrivy(%s): %v", file, err)
	}
	return &report
}

func TestParseTrivyReadsTheReport(t *testing.T) {
	report := mustReport(t, "trivy-webapp-v1.json")
	if report.Digest != digestV1 {
		t.Errorf("Digest = %q, want %q", report.Digest, digestV1)
	}
	if len(report.RepoDigests) != 2 || !strings.HasPrefix(report.RepoDigests[1], "mirror.internal:5000/team/webapp@") {
		t.Errorf("RepoDigests = %v, want both entries", report.RepoDigests)
	}
	if report.ImageID != "sha256:991e5b930fd9f8bfd9904b057b8860e4a9c3ba6d63c93f5fb3770bf0ab592f77" {
		t.Errorf("ImageID = %q", report.ImageID)
	}
	if !report.CreatedAt.Equal(createdV1) {
		t.Errorf("CreatedAt = %v, want %v", report.CreatedAt, createdV1)
	}
	if report.ArtifactName != "127.0.0.1:5000/webapp@"+digestV1 {
		t.Errorf("ArtifactName = %q", report.ArtifactName)
	}
	// openssl's CVE-2024-0001 is listed under two targets and kept once;
	// libssl3's is another package and kept. "medium" is upper-cased.
	want := []Finding{
		{ID: "CVE-2024-0001", Package: "openssl", Severity: "CRITICAL", InstalledVersion: "3.1.4-r5", FixedVersion: "3.1.4-r6", Title: "openssl: remote code execution in the TLS parser"},
		{ID: "CVE-2024-0001", Package: "libssl3", Severity: "CRITICAL", InstalledVersion: "3.1.4-r5", FixedVersion: "3.1.4-r6", Title: "openssl: remote code execution in the TLS parser"},
		{ID: "CVE-2024-0002", Package: "busybox", Severity: "HIGH", InstalledVersion: "1.36.1-r15", FixedVersion: "1.36.1-r16", Title: "busybox: heap overflow in awk"},
		{ID: "CVE-2024-0003", Package: "musl", Severity: "MEDIUM", InstalledVersion: "1.2.4-r2", Title: "musl: out-of-bounds read in iconv"},
		{ID: "CVE-2024-0004", Package: "zlib", Severity: "LOW", InstalledVersion: "1.3-r2", FixedVersion: "1.3.1-r0", Title: "zlib: integer overflow in inflate"},
		{ID: "CVE-2024-0005", Package: "ca-certificates", Severity: "UNKNOWN", InstalledVersion: "20240226-r0", Title: "ca-certificates: distrusted root still present"},
		{ID: "GHSA-4v7x-pqxf-cx7m", Package: "golang.org/x/net", Severity: "HIGH", InstalledVersion: "v0.17.0", FixedVersion: "0.23.0", Title: "net/http2: close connections when receiving too many headers"},
	}
	if !reflect.DeepEqual(report.Findings, want) {
		t.Errorf("Findings =\n%+v\nwant\n%+v", report.Findings, want)
	}
}

func TestParseTrivyCleanReport(t *testing.T) {
	report := mustReport(t, "trivy-webapp-v2-clean.json")
	if report.Digest != digestV2 || !report.CreatedAt.Equal(createdV2) || len(report.Findings) != 0 {
		t.Fatalf("report = %+v; want digest %s, created %v, no findings", report, digestV2, createdV2)
	}
}

func TestParseTrivyRefuses(t *testing.T) {
	fromFile := func(file string) string {
		data, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tests := []struct {
		name, data, want string
	}{
		{"empty", " \n", "empty"},
		{"not JSON", "{", "unexpected end"},
		{"schema v1", fromFile("trivy-schema-v1.json"), "schema v1"},
		{"not an image scan", fromFile("trivy-filesystem.json"), `ArtifactType "filesystem"`},
		{"no schema version", `{"ArtifactName": "x", "Results": []}`, "SchemaVersion 0"},
		{"future schema", `{"SchemaVersion": 3}`, "SchemaVersion 3"},
		{"bad CreatedAt", `{"SchemaVersion": 2, "CreatedAt": "yesterday"}`, "yesterday"},
		{"finding without ID", `{"SchemaVersion": 2, "Results": [{"Target": "os", "Vulnerabilities": [{"PkgName": "zlib", "Severity": "LOW"}]}]}`, "Results[0] (os).Vulnerabilities[0] has no VulnerabilityID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTrivy([]byte(tt.data))
			if !errors.Is(err, ErrBadReport) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseTrivy = %v; want ErrBadReport containing %q", err, tt.want)
			}
		})
	}
}

func TestParsePolicyDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"7d", 7 * day},
		{"2w", 14 * day},
		{"1d", day},
		{"0d", 0},
		{"0", 0},
		{"36h", 36 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{" 3d ", 3 * day},
	}
	for _, tt := range tests {
		got, err := ParsePolicyDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePolicyDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "d", "w", "-1h", "-7d", "7x", "1.5d", "7 d", "+7d", "seven days", "999999999999d", "99999999999w"} {
		if got, err := ParsePolicyDuration(in); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("ParsePolicyDuration(%q) = %v, %v; want ErrBadPolicy", in, got, err)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	valid := []Policy{
		{},
		{Mode: ModeOff},
		{Mode: ModeWarn, MaxSeverity: "medium"},
		{Mode: ModeEnforce, MaxSeverity: "CRITICAL", Ignore: []string{"CVE-2024-0001"}, MaxAge: 7 * day},
	}
	for _, p := range valid {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
	invalid := []struct {
		policy Policy
		want   string
	}{
		{Policy{Mode: "block"}, `scan.mode "block"`},
		{Policy{Mode: "Enforce"}, `scan.mode "Enforce"`},
		{Policy{Mode: ModeEnforce, MaxSeverity: "severe"}, `scan.max_severity "severe"`},
		{Policy{Mode: ModeEnforce, MaxAge: -time.Hour}, "negative"},
		{Policy{Mode: ModeEnforce, Ignore: []string{"CVE-1", " "}}, "scan.ignore[1] is empty"},
	}
	for _, tt := range invalid {
		err := tt.policy.Validate()
		if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v; want ErrBadPolicy containing %q", tt.policy, err, tt.want)
		}
	}
}

// finding IDs as "ID/package", in order.
func blockingIDs(findings []Finding) []string {
	var ids []string
	for _, f := range findings {
		ids = append(ids, f.ID+"/"+f.Package)
	}
	return ids
}

func TestEvaluate(t *testing.T) {
	// The checks below are about signed evidence; unsigned reports are
	// TestEvaluateEvidence's.
	v1 := attested(mustReport(t, "trivy-webapp-v1.json"))
	v2 := attested(mustReport(t, "trivy-webapp-v2-clean.json"))
	v2NoDate := *v2
	v2NoDate.CreatedAt = time.Time{}
	mirrored := attested(&Report{RepoDigests: []string{"other.example/webapp@" + digestV1, "127.0.0.1:5000/webapp@" + digestV2}, CreatedAt: createdV2})
	soonAfterV1, soonAfterV2 := createdV1.Add(2*day), createdV2.Add(2*day)

	criticalIDs := []string{"CVE-2024-0001/libssl3", "CVE-2024-0001/openssl"}
	highIDs := append(criticalIDs[:len(criticalIDs):len(criticalIDs)], "CVE-2024-0002/busybox", "GHSA-4v7x-pqxf-cx7m/golang.org/x/net")
	mediumIDs := append(highIDs[:len(highIDs):len(highIDs)], "CVE-2024-0003/musl")
	lowIDs := append(mediumIDs[:len(mediumIDs):len(mediumIDs)], "CVE-2024-0004/zlib")
	allIDs := append(lowIDs[:len(lowIDs):len(lowIDs)], "CVE-2024-0005/ca-certificates")

	enforce := func(maxSeverity string, ignore ...string) Policy {
		return Policy{Mode: ModeEnforce, MaxSeverity: maxSeverity, Ignore: ignore}
	}
	tests := []struct {
		name     string
		policy   Policy
		digest   string
		now      time.Time
		report   *Report
		allowed  bool
		wantErr  error // nil when allowed
		blocking []string
		warnings int
		// message are parts of Err() (refused) or of the warnings (allowed).
		message []string
	}{
		{name: "off without a scan", policy: Policy{Mode: ModeOff}, digest: digestV1, now: soonAfterV1, allowed: true},
		{name: "empty mode is off", policy: Policy{}, digest: digestV1, now: soonAfterV1, allowed: true},
		{name: "off ignores a bad report", policy: Policy{Mode: ModeOff, MaxAge: day}, digest: digestV2, now: createdV1.Add(100 * day), report: v1, allowed: true},

		{name: "enforce without a scan", policy: enforce("high"), digest: digestV1, now: soonAfterV1, wantErr: ErrNoScan, message: []string{digestV1, "trivy image", "scan.mode"}},
		{name: "warn without a scan", policy: Policy{Mode: ModeWarn}, digest: digestV1, now: soonAfterV1, allowed: true, warnings: 1, message: []string{"no vulnerability scan for " + digestV1}},

		{name: "enforce report of another digest", policy: enforce("critical"), digest: digestV2, now: soonAfterV1, report: v1, wantErr: ErrWrongDigest, message: []string{"127.0.0.1:5000/webapp@" + digestV1, "not " + digestV2}},
		{name: "warn report of another digest, findings too", policy: Policy{Mode: ModeWarn, MaxSeverity: "high"}, digest: digestV2, now: soonAfterV1, report: v1, allowed: true, warnings: 2, message: []string{"not " + digestV2, "4 findings at or above HIGH"}},
		{name: "any repo digest may match", policy: enforce("low"), digest: digestV2, now: soonAfterV2, report: mirrored, allowed: true},
		{name: "no pinned digest", policy: enforce("high"), digest: "", now: soonAfterV2, report: v2, wantErr: ErrWrongDigest, message: []string{"no pinned digest"}},
		{name: "pinned reference instead of digest", policy: enforce("low"), digest: "127.0.0.1:5000/webapp@" + digestV2, now: soonAfterV2, report: v2, allowed: true},

		{name: "enforce stale", policy: Policy{Mode: ModeEnforce, MaxAge: 7 * day}, digest: digestV2, now: createdV2.Add(8*day + 3*time.Hour), report: v2, wantErr: ErrStale, message: []string{digestV2, "8d3h old", "scan.max_age 7d", "rescan"}},
		{name: "warn stale", policy: Policy{Mode: ModeWarn, MaxAge: 7 * day}, digest: digestV2, now: createdV2.Add(8 * day), report: v2, allowed: true, warnings: 1, message: []string{"8d old"}},
		{name: "exactly max age is fresh", policy: Policy{Mode: ModeEnforce, MaxAge: 7 * day}, digest: digestV2, now: createdV2.Add(7 * day), report: v2, allowed: true},
		{name: "no age limit", policy: Policy{Mode: ModeEnforce}, digest: digestV2, now: createdV2.Add(400 * day), report: v2, allowed: true},
		{name: "no CreatedAt is stale under a limit", policy: Policy{Mode: ModeEnforce, MaxAge: 7 * day}, digest: digestV2, now: soonAfterV2, report: &v2NoDate, wantErr: ErrStale, message: []string{"no CreatedAt"}},
		{name: "stale is reported before findings", policy: Policy{Mode: ModeEnforce, MaxAge: day}, digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrStale},

		{name: "enforce high", policy: enforce("high"), digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrFindings, blocking: highIDs, message: []string{digestV1, "4 findings at or above HIGH", "fixed in 3.1.4-r6", "scan.ignore", "rebuild", "scan.mode: warn"}},
		{name: "default severity is high", policy: enforce(""), digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrFindings, blocking: highIDs},
		{name: "severity is case-insensitive", policy: enforce("High"), digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrFindings, blocking: highIDs},
		{name: "enforce critical", policy: enforce("CRITICAL"), digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrFindings, blocking: criticalIDs},
		{name: "enforce medium counts a lower-case severity", policy: enforce("medium"), digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrFindings, blocking: mediumIDs, message: []string{"no fix yet"}},
		{name: "enforce low", policy: enforce("low"), digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrFindings, blocking: lowIDs},
		{name: "enforce unknown counts everything", policy: enforce("unknown"), digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrFindings, blocking: allIDs},
		{name: "ignore is case-insensitive and covers every package", policy: enforce("high", "cve-2024-0001"), digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrFindings, blocking: highIDs[2:]},
		{name: "everything over the threshold ignored", policy: enforce("high", "CVE-2024-0001", "CVE-2024-0002", "GHSA-4v7x-pqxf-cx7m"), digest: digestV1, now: soonAfterV1, report: v1, allowed: true},
		{name: "warn findings", policy: Policy{Mode: ModeWarn, MaxSeverity: "critical"}, digest: digestV1, now: soonAfterV1, report: v1, allowed: true, warnings: 1, message: []string{"2 findings at or above CRITICAL", "CVE-2024-0001"}},
		{name: "warn everything at once", policy: Policy{Mode: ModeWarn, MaxAge: day}, digest: digestV2, now: soonAfterV1, report: v1, allowed: true, warnings: 3},
		{name: "clean report", policy: Policy{Mode: ModeEnforce, MaxSeverity: "unknown", MaxAge: 7 * day}, digest: digestV2, now: soonAfterV2, report: v2, allowed: true},

		{name: "bad mode", policy: Policy{Mode: "block"}, digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrBadPolicy, message: []string{digestV1, `scan.mode "block"`}},
		{name: "bad severity", policy: Policy{Mode: ModeWarn, MaxSeverity: "severe"}, digest: digestV1, now: soonAfterV1, report: v1, wantErr: ErrBadPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict := Evaluate(tt.policy, tt.digest, tt.now, tt.report)
			if verdict.Allowed != tt.allowed {
				t.Fatalf("Allowed = %v, want %v (reason %q)", verdict.Allowed, tt.allowed, verdict.Reason)
			}
			err := verdict.Err()
			switch {
			case tt.allowed && err != nil:
				t.Fatalf("Err = %v, want nil for an allowed verdict", err)
			case !tt.allowed && !errors.Is(err, tt.wantErr):
				t.Fatalf("Err = %v, want %v", err, tt.wantErr)
			}
			if got := blockingIDs(verdict.Blocking); !reflect.DeepEqual(got, tt.blocking) {
				t.Errorf("Blocking = %v, want %v", got, tt.blocking)
			}
			if len(verdict.Warnings) != tt.warnings {
				t.Errorf("Warnings = %q, want %d", verdict.Warnings, tt.warnings)
			}
			text := strings.Join(verdict.Warnings, "\n")
			if err != nil {
				text = err.Error()
			}
			for _, part := range tt.message {
				if !strings.Contains(text, part) {
					t.Errorf("message %q lacks %q", text, part)
				}
			}
			if verdict.Reason == "" {
				t.Error("Reason is empty")
			}
		})
	}
}

// TestErrNamesTheTopFiveFindings: a refusal names the five most severe
// findings in order and counts the rest.
func TestErrNamesTheTopFiveFindings(t *testing.T) {
	verdict := Evaluate(Policy{Mode: ModeEnforce, MaxSeverity: "low"}, digestV1, createdV1, attested(mustReport(t, "trivy-webapp-v1.json")))
	err := verdict.Err()
	if !errors.Is(err, ErrFindings) {
		t.Fatalf("Err = %v, want ErrFindings", err)
	}
	message := err.Error()
	previous := -1
	for _, part := range []string{"CVE-2024-0001 (CRITICAL, libssl3", "CVE-2024-0001 (CRITICAL, openssl", "CVE-2024-0002 (HIGH, busybox", "GHSA-4v7x-pqxf-cx7m (HIGH", "CVE-2024-0003 (MEDIUM, musl 1.2.4-r2, no fix yet)"} {
		at := strings.Index(message, part)
		if at < 0 {
			t.Fatalf("message %q lacks %q", message, part)
		}
		if at < previous {
			t.Fatalf("message %q: %q is out of severity order", message, part)
		}
		previous = at
	}
	if strings.Contains(message, "CVE-2024-0004") || !strings.Contains(message, "and 1 more") {
		t.Fatalf("message %q: want the sixth finding counted, not named", message)
	}
	if len(verdict.Blocking) != 6 {
		t.Fatalf("Blocking has %d findings, want all 6", len(verdict.Blocking))
	}
}

func TestErrOfAHandMadeRefusal(t *testing.T) {
	if err := (Verdict{Reason: "made up"}).Err(); !errors.Is(err, ErrBadPolicy) {
		t.Fatalf("Err = %v, want ErrBadPolicy", err)
	}
	if err := (Verdict{Allowed: true}).Err(); err != nil {
		t.Fatalf("Err of an allowed verdict = %v", err)
	}
}

// attested marks a copy of r as the report of a verified attestation.
func attested(r *Report) *Report {
	c := *r
	c.SignedBy = "key scanner.pub, cosign-v2 attestation"
	return &c
}

// Finding 8 of issue 16: a forged Trivy report with no results and the
// right digest passed scan.mode: enforce, and a sent report overrode a
// signed attestation.
func TestEvaluateEvidence(t *testing.T) {
	v1 := mustReport(t, "trivy-webapp-v1.json") // findings
	forged := &Report{RepoDigests: []string{"127.0.0.1:5000/webapp@" + digestV1}, Digest: digestV1, CreatedAt: createdV1}
	now := createdV1.Add(day)
	enforce := Policy{Mode: ModeEnforce, MaxAge: 7 * day}
	accepting := enforce
	accepting.AcceptUnsignedReports = true
	warn := Policy{Mode: ModeWarn}
	warnAccepting := Policy{Mode: ModeWarn, AcceptUnsignedReports: true}
	cleanV1 := attested(forged) // a signed clean scan of v1

	tests := []struct {
		name     string
		policy   Policy
		ev       Evidence
		wantErr  error // nil: allowed
		warnings int
		message  []string
	}{
		{name: "forged empty report, enforce", policy: enforce, ev: Evidence{Sent: forged, NoAttestation: "no vulnerability attestation is attached"},
			wantErr: ErrUnsignedReport, message: []string{"not signed", "no vulnerability attestation is attached", "cosign attest", "--type vuln", "trivy image --format cosign-vuln", "scan.accept_unsigned_reports: true"}},
		{name: "a report marked signed but sent still counts as unsigned", policy: enforce, ev: Evidence{Sent: attested(forged)}, wantErr: ErrUnsignedReport},
		{name: "forged empty report, policy accepts unsigned reports", policy: accepting, ev: Evidence{Sent: forged}},
		{name: "unsigned report with findings, policy accepts unsigned reports", policy: accepting, ev: Evidence{Sent: v1}, wantErr: ErrFindings},
		{name: "unsigned report, warn: judged, and said to be unsigned", policy: warn, ev: Evidence{Sent: v1}, warnings: 2, message: []string{"not signed", "4 findings at or above HIGH"}},
		{name: "unsigned report, warn accepting unsigned: no unsigned warning", policy: warnAccepting, ev: Evidence{Sent: v1}, warnings: 1, message: []string{"4 findings"}},
		{name: "attestation with findings wins over a clean report", policy: enforce, ev: Evidence{Attested: attested(v1), Sent: forged},
			wantErr: ErrFindings, message: []string{"CVE-2024-0001", "report sent with the apply was ignored", "key scanner.pub"}},
		{name: "attestation wins even when unsigned reports are accepted", policy: accepting, ev: Evidence{Attested: attested(v1), Sent: forged}, wantErr: ErrFindings},
		{name: "clean attestation, report with findings ignored", policy: enforce, ev: Evidence{Attested: cleanV1, Sent: v1}, warnings: 1, message: []string{"was ignored"}},
		{name: "clean attestation alone", policy: enforce, ev: Evidence{Attested: cleanV1}},
		{name: "nothing, enforce", policy: enforce, ev: Evidence{NoAttestation: "no trust rule covers the image"}, wantErr: ErrNoScan, message: []string{"no trust rule covers the image", "cosign attest", "scan.mode: off"}},
		{name: "nothing, enforce accepting unsigned: says a report would do", policy: accepting, ev: Evidence{}, wantErr: ErrNoScan, message: []string{"--scan-report"}},
		{name: "off ignores everything", policy: Policy{Mode: ModeOff}, ev: Evidence{Sent: v1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict := EvaluateEvidence(tt.policy, digestV1, now, tt.ev)
			err := verdict.Err()
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Err = %v, want %v", err, tt.wantErr)
			}
			if len(verdict.Warnings) != tt.warnings {
				t.Errorf("Warnings = %q, want %d", verdict.Warnings, tt.warnings)
			}
			text := strings.Join(verdict.Warnings, "\n")
			if err != nil {
				text = err.Error()
			}
			for _, part := range tt.message {
				if !strings.Contains(text, part) {
					t.Errorf("message %q lacks %q", text, part)
				}
			}
		})
	}
	// ErrUnsignedReport is a kind of ErrNoScan, so callers that map
	// ErrNoScan (the API's 422 "scan") need no change.
	if !errors.Is(ErrUnsignedReport, ErrNoScan) || errors.Is(ErrNoScan, ErrUnsignedReport) {
		t.Fatal("ErrUnsignedReport must match ErrNoScan, not the other way round")
	}
	// Evaluate reads provenance from the report: unsigned unless SignedBy.
	if err := Evaluate(enforce, digestV1, now, forged).Err(); !errors.Is(err, ErrUnsignedReport) {
		t.Fatalf("Evaluate of an unsigned report in enforce mode = %v, want ErrUnsignedReport", err)
	}
	if err := Evaluate(enforce, digestV1, now, cleanV1).Err(); err != nil {
		t.Fatalf("Evaluate of a signed clean report = %v", err)
	}
}
