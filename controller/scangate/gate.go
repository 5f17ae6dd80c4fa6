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

// Evaluate holds the report r (nil: no scan) of the image pinned at digest
// ("sha256:...", or a whole "repository@sha256:..." reference) against
// policy p at time now. In enforce mode the first failed check refuses, in
// this order: no report, report of another digest, stale report, findings.
// In warn mode every check runs and each failure is a warning. Mode off
// allows without looking at r.
func Evaluate(p Policy, digest string, now time.Time, r *Report) Verdict {
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

	if r == nil {
		problem := fmt.Sprintf("no vulnerability scan for %s; scan it (trivy image --format json <repository>@%s) and pass the report, or set scan.mode: off", digest, digest)
		if enforce {
			return Verdict{refusal: ErrNoScan, Reason: problem}
		}
		return Verdict{Allowed: true, Warnings: []string{problem}, Reason: "allowed with 1 warning: no scan"}
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
