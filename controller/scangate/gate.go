package scangate

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// errorFindingsShown is how many findings a refusal names; the rest are
// counted. Verdict.Blocking has them all.
const errorFindingsShown = 5

// Verdict is the gate's answer for one digest.
type Verdict struct {
	// Allowed is false only in enforce mode (or for a bad policy).
	Allowed bool
	// Warnings are the checks that failed in warn mode, one sentence each,
	// naming the digest and the fix.
	Warnings []string
	// Blocking are the findings that refuse the digest, most severe first
	// (enforce mode only; warn mode reports them in Warnings).
	Blocking []Finding
	// Reason sums up the verdict for a person; for a refusal it names the
	// digest, the problem and the fix.
	Reason string

	// refusal is the sentinel that Err wraps when Allowed is false.
	refusal error
}

// Err is nil when the verdict allows; otherwise it wraps ErrNoScan,
// ErrWrongDigest, ErrStale, ErrFindings or ErrBadPolicy, with Reason as the
// message.
func (v Verdict) Err() error {
	if v.Allowed {
		return nil
	}
	if v.refusal == nil {
		// Only a Verdict built by hand gets here.
		return fmt.Errorf("%w: refusal without a cause (verdict not made by Evaluate): %s", ErrBadPolicy, v.Reason)
	}
	return fmt.Errorf("%w: %s", v.refusal, v.Reason)
}

// Evidence is what the gate has about a digest.
type Evidence struct {
	// Attested is the report of a cosign vulnerability attestation that a
	// trusted key verified (its SignedBy set); nil when there is none.
	Attested *Report
	// Sent is a report handed to the caller, e.g. with `deployctl apply
	// --scan-report`; nil when none was sent. It counts as unsigned
	// whatever its SignedBy says.
	Sent *Report
	// NoAttestation says why Attested is nil, for messages ("no trust
	// rule covers the image, so no attestation could be verified").
	NoAttestation string
}

// Evaluate holds the report r (nil: no scan) of the image pinned at digest
// ("sha256:...", or a whole "repository@sha256:..." reference) against
// policy p at time now. r counts as signed evidence when r.SignedBy is set,
// else as an unsigned report (see EvaluateEvidence).
func Evaluate(p Policy, digest string, now time.Time, r *Report) Verdict {
	switch {
	case r == nil:
		return EvaluateEvidence(p, digest, now, Evidence{})
	case r.SignedBy != "":
		return EvaluateEvidence(p, digest, now, Evidence{Attested: r})
	}
	return EvaluateEvidence(p, digest, now, Evidence{Sent: r})
}

// EvaluateEvidence judges the scan evidence of the image pinned at digest.
//
// A signed attestation always wins: when there is one, it alone is
// judged and a sent report is ignored (a warning, or a note in the
// refusal, says so). Without one, a sent report is unsigned: enforce mode
// refuses it (ErrUnsignedReport) unless p.AcceptUnsignedReports; warn mode
// judges it and warns that it is unsigned (not when the policy accepts
// unsigned reports). In enforce mode the first failed check refuses, in
// this order: no (admissible) report, report of another digest, stale
// report, findings. In warn mode every check runs and each failure is a
// warning. Mode off allows without looking at the evidence.
func EvaluateEvidence(p Policy, digest string, now time.Time, ev Evidence) Verdict {
	if _, afterAt, ok := strings.Cut(digest, "@"); ok {
		digest = afterAt
	}
	if problem := p.problem(); problem != "" {
		return Verdict{refusal: ErrBadPolicy, Reason: fmt.Sprintf("the scan policy for %s is invalid: %s", digest, problem)}
	}
	if p.Mode == "" || p.Mode == ModeOff {
		return Verdict{Allowed: true, Reason: "scan.mode is off"}
	}
	enforce := p.Mode == ModeEnforce
	var warnings []string
	note := ""
	r := ev.Attested
	switch {
	case r != nil && ev.Sent != nil:
		note = fmt.Sprintf("the scan report sent with the apply was ignored: the signed vulnerability attestation (%s) was judged instead", signedBy(r))
		warnings = append(warnings, note)
	case r == nil && ev.Sent != nil && !p.AcceptUnsignedReports:
		problem := unsignedProblem(digest, ev.NoAttestation)
		if enforce {
			return Verdict{refusal: ErrUnsignedReport, Reason: problem}
		}
		warnings = append(warnings, problem)
		r = ev.Sent
	case r == nil:
		r = ev.Sent
	}
	v := judge(p, digest, now, r, ev.NoAttestation, enforce, warnings)
	if !v.Allowed && note != "" {
		v.Reason += " (" + note + ")"
	}
	return v
}

// unsignedProblem explains why an unsigned report does not count in
// enforce mode, and the two ways out.
func unsignedProblem(digest, noAttestation string) string {
	why := ""
	if noAttestation != "" {
		why = " (" + noAttestation + ")"
	}
	return fmt.Sprintf("the scan report for %s is not signed, and scan.mode: enforce judges only signed scans%s: anyone who can call apply could have written it; "+
		"attach a signed vulnerability attestation (trivy image --format cosign-vuln --output vuln.json <repository>@%s, then cosign attest --key <key> --type vuln --predicate vuln.json <repository>@%s) "+
		"with a key of the image's trust rule, or, to trust reports sent with apply, set scan.accept_unsigned_reports: true in the policy (deployctl policy set)",
		digest, why, digest, digest)
}

func signedBy(r *Report) string {
	if r.SignedBy == "" {
		return "unsigned"
	}
	return r.SignedBy
}

// judge runs the checks on r (nil: no scan) after the evidence was chosen.
func judge(p Policy, digest string, now time.Time, r *Report, noAttestation string, enforce bool, warnings []string) Verdict {
	if r == nil {
		why := ""
		if noAttestation != "" {
			why = " (" + noAttestation + ")"
		}
		report := ""
		if p.AcceptUnsignedReports {
			report = fmt.Sprintf("send a report (trivy image --format json <repository>@%s, then deployctl apply --scan-report FILE), ", digest)
		}
		problem := fmt.Sprintf("no vulnerability scan for %s%s; %sattach a signed vulnerability attestation (trivy image --format cosign-vuln --output vuln.json <repository>@%s, then cosign attest --key <key> --type vuln --predicate vuln.json <repository>@%s) with a key of the image's trust rule, or set scan.mode: off",
			digest, why, report, digest, digest)
		if enforce {
			return Verdict{refusal: ErrNoScan, Reason: problem}
		}
		warnings = append(warnings, problem)
		return Verdict{Allowed: true, Warnings: warnings, Reason: "allowed with " + plural(len(warnings), "warning")}
	}
	if digest == "" || !r.belongsTo(digest) {
		problem := fmt.Sprintf("the scan report is for %s, not %s; scan the pinned digest (trivy image --format json <repository>@%s)", reportSubject(r), digestOrNone(digest), digestOrNone(digest))
		if enforce {
			return Verdict{refusal: ErrWrongDigest, Reason: problem}
		}
		warnings = append(warnings, problem)
	}
	if problem := staleness(p, digest, now, r); problem != "" {
		if enforce {
			return Verdict{refusal: ErrStale, Reason: problem}
		}
		warnings = append(warnings, problem)
	}
	counted := countedFindings(p, r.Findings)
	if len(counted) > 0 {
		problem := fmt.Sprintf("%s has %s at or above %s: %s; rebuild the image with the fixed versions, add the IDs that do not apply to scan.ignore, or set scan.mode: warn",
			digest, plural(len(counted), "finding"), p.thresholdName(), summarize(counted))
		if enforce {
			return Verdict{refusal: ErrFindings, Blocking: counted, Reason: problem}
		}
		warnings = append(warnings, problem)
	}
	if len(warnings) > 0 {
		return Verdict{Allowed: true, Warnings: warnings, Reason: "allowed with " + plural(len(warnings), "warning")}
	}
	return Verdict{Allowed: true, Reason: fmt.Sprintf("scan of %s has no findings at or above %s", digest, p.thresholdName())}
}

// staleness says why the report is too old for p, or "".
func staleness(p Policy, digest string, now time.Time, r *Report) string {
	if p.MaxAge == 0 {
		return ""
	}
	if r.CreatedAt.IsZero() {
		return fmt.Sprintf("the scan report of %s has no CreatedAt, so its age is unknown and scan.max_age is %s; rescan with a current Trivy", digest, formatAge(p.MaxAge))
	}
	age := now.Sub(r.CreatedAt)
	if age <= p.MaxAge {
		return ""
	}
	return fmt.Sprintf("the scan of %s is %s old (created %s), more than scan.max_age %s; rescan the image or raise scan.max_age",
		digest, formatAge(age), r.CreatedAt.UTC().Format(time.RFC3339), formatAge(p.MaxAge))
}

// countedFindings are the findings at or above the policy's severity and not
// ignored, most severe first, then by ID and package.
func countedFindings(p Policy, findings []Finding) []Finding {
	threshold := p.threshold()
	var counted []Finding
	for _, f := range findings {
		if findingRank(f.Severity) >= threshold && !p.ignores(f.ID) {
			counted = append(counted, f)
		}
	}
	slices.SortStableFunc(counted, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(findingRank(b.Severity), findingRank(a.Severity)),
			cmp.Compare(a.ID, b.ID),
			cmp.Compare(a.Package, b.Package),
		)
	})
	return counted
}

// summarize names the first errorFindingsShown findings and counts the rest.
func summarize(findings []Finding) string {
	shown := findings[:min(len(findings), errorFindingsShown)]
	parts := make([]string, len(shown))
	for i, f := range shown {
		fix := "no fix yet"
		if f.FixedVersion != "" {
			fix = "fixed in " + f.FixedVersion
		}
		parts[i] = fmt.Sprintf("%s (%s, %s %s, %s)", f.ID, f.Severity, f.Package, f.InstalledVersion, fix)
	}
	summary := strings.Join(parts, ", ")
	if rest := len(findings) - len(shown); rest > 0 {
		summary += fmt.Sprintf(" and %d more", rest)
	}
	return summary
}

// reportSubject names the image a report is about, for messages.
func reportSubject(r *Report) string {
	switch {
	case len(r.RepoDigests) > 0:
		return strings.Join(r.RepoDigests, ", ")
	case r.Digest != "":
		return r.Digest
	case r.ArtifactName != "":
		return r.ArtifactName + " (no repository digest in the report)"
	}
	return "an image without a repository digest"
}

func digestOrNone(digest string) string {
	if digest == "" {
		return "(no pinned digest given)"
	}
	return digest
}

// formatAge prints durations of a day or more in days and hours, which is
// how max_age is written.
func formatAge(d time.Duration) string {
	const day = 24 * time.Hour
	if d < day {
		return d.Round(time.Minute).String()
	}
	days, hours := d/day, (d%day)/time.Hour
	if hours == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, hours)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
