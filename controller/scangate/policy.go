// Package scangate decides whether an image digest may be deployed given a
// vulnerability scan of it. deployctl does not scan: it consumes the JSON
// report of `trivy image --format json`, checks that the report is about
// the digest the revision pins and recent enough, and holds the findings
// against the service's scan policy (mode off, warn or enforce; a severity
// threshold; CVE IDs to ignore; a maximum report age).
//
// Everything here is pure: the caller reads the report, passes the clock
// and turns the Verdict into a refusal or a warning.
package scangate

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Errors at the package border. Verdict.Err wraps one of the first four
// (or ErrUnsignedReport, which matches ErrNoScan);
// ParseTrivy returns ErrBadReport, ParsePolicyDuration and Policy.Validate
// ErrBadPolicy.
var (
	// ErrNoScan means enforce mode and no report for the digest.
	ErrNoScan = errors.New("no vulnerability scan")
	// ErrStale means the report is older than the policy's max age.
	ErrStale = errors.New("vulnerability scan is stale")
	// ErrWrongDigest means the report is about another image.
	ErrWrongDigest = errors.New("vulnerability scan is for another digest")
	// ErrFindings means findings at or above the policy's severity that are
	// not ignored.
	ErrFindings = errors.New("vulnerability findings over the policy threshold")
	// ErrBadReport means the report could not be read as a Trivy v2 report.
	ErrBadReport = errors.New("bad vulnerability report")
	// ErrBadPolicy means the scan policy itself is invalid.
	ErrBadPolicy = errors.New("bad scan policy")
	// ErrUnsignedReport means enforce mode was given only an unsigned
	// report, and the policy does not accept unsigned reports. It matches
	// ErrNoScan too: there is no scan the gate may judge.
	ErrUnsignedReport error = &childError{msg: "no signed vulnerability scan", parent: ErrNoScan}
)

// childError is a sentinel that also matches a more general one.
type childError struct {
	msg    string
	parent error
}

func (e *childError) Error() string { return e.msg }
func (e *childError) Unwrap() error { return e.parent }

// Policy modes.
const (
	// ModeOff skips the gate: every digest is allowed, with or without a
	// report. The empty mode means off too, so that a spec without a scan
	// policy is not gated.
	ModeOff = "off"
	// ModeWarn evaluates everything but only warns.
	ModeWarn = "warn"
	// ModeEnforce refuses on any failed check.
	ModeEnforce = "enforce"
)

// Severities, lowest first, as Trivy spells them.
const (
	SeverityUnknown  = "UNKNOWN"
	SeverityLow      = "LOW"
	SeverityMedium   = "MEDIUM"
	SeverityHigh     = "HIGH"
	SeverityCritical = "CRITICAL"
)

// DefaultMaxSeverity is the threshold when Policy.MaxSeverity is empty.
const DefaultMaxSeverity = SeverityHigh

// Policy is a service's `scan:` block.
type Policy struct {
	// Mode is ModeOff ("" too), ModeWarn or ModeEnforce.
	Mode string
	// MaxSeverity is the lowest severity that counts (case-insensitive):
	// findings at or above it block (enforce) or warn (warn). Empty means
	// DefaultMaxSeverity.
	MaxSeverity string
	// Ignore lists vulnerability IDs (CVE-..., GHSA-..., case-insensitive)
	// that never count, e.g. accepted risks or false positives.
	Ignore []string
	// MaxAge is how old a report may be; 0 means no limit.
	MaxAge time.Duration
	// AcceptUnsignedReports lets enforce mode judge a report that no
	// trusted key signed (Report.SignedBy empty), such as a Trivy report
	// sent with `deployctl apply --scan-report`. Off by default: such a
	// report is only as trustworthy as whoever sent it, and an empty one
	// with the right digest would pass. Warn mode always reads unsigned
	// reports, and says when it did.
	AcceptUnsignedReports bool
}

// Validate checks the policy's values; errors wrap ErrBadPolicy.
func (p Policy) Validate() error {
	if problem := p.problem(); problem != "" {
		return fmt.Errorf("%w: %s", ErrBadPolicy, problem)
	}
	return nil
}

// problem says what is wrong with the policy, or "".
func (p Policy) problem() string {
	switch p.Mode {
	case "", ModeOff, ModeWarn, ModeEnforce:
	default:
		return fmt.Sprintf("scan.mode %q; use off, warn or enforce", p.Mode)
	}
	if p.MaxSeverity != "" && severityRank(p.MaxSeverity) < 0 {
		return fmt.Sprintf("scan.max_severity %q; use one of unknown, low, medium, high, critical", p.MaxSeverity)
	}
	if p.MaxAge < 0 {
		return fmt.Sprintf("scan.max_age %s is negative", p.MaxAge)
	}
	for i, id := range p.Ignore {
		if strings.TrimSpace(id) == "" {
			return fmt.Sprintf("scan.ignore[%d] is empty", i)
		}
	}
	return ""
}

// threshold is the rank of the policy's severity; Validate has passed.
func (p Policy) threshold() int {
	if p.MaxSeverity == "" {
		return severityRank(DefaultMaxSeverity)
	}
	return severityRank(p.MaxSeverity)
}

func (p Policy) thresholdName() string {
	if p.MaxSeverity == "" {
		return DefaultMaxSeverity
	}
	return strings.ToUpper(p.MaxSeverity)
}

func (p Policy) ignores(id string) bool {
	for _, ignored := range p.Ignore {
		if strings.EqualFold(strings.TrimSpace(ignored), id) {
			return true
		}
	}
	return false
}

// severityRank orders severities UNKNOWN < LOW < MEDIUM < HIGH < CRITICAL
// (0 to 4), case-insensitively; anything else is -1.
func severityRank(severity string) int {
	switch strings.ToUpper(strings.TrimSpace(severity)) {
	case SeverityUnknown:
		return 0
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	}
	return -1
}

// findingRank is a finding's severity rank; a severity Trivy does not use
// counts as UNKNOWN, so it still blocks under max_severity: unknown.
func findingRank(severity string) int {
	return max(severityRank(severity), 0)
}

// ParsePolicyDuration reads scan.max_age: any Go duration ("36h", "90m")
// or a whole number of days or weeks ("7d", "2w"), which Go durations lack.
// "0" means no limit. Negative, empty or overflowing values are errors
// wrapping ErrBadPolicy.
func ParsePolicyDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("%w: empty duration", ErrBadPolicy)
	}
	var unit time.Duration
	switch {
	case strings.HasSuffix(s, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(s, "w"):
		unit = 7 * 24 * time.Hour
	}
	if unit == 0 {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%w: %q: use a Go duration (36h) or days/weeks (7d, 2w): %w", ErrBadPolicy, s, err)
		}
		if d < 0 {
			return 0, fmt.Errorf("%w: %q is negative", ErrBadPolicy, s)
		}
		return d, nil
	}
	count, err := strconv.ParseUint(s[:len(s)-1], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%w: %q: want a whole number of days or weeks (7d, 2w)", ErrBadPolicy, s)
	}
	if count > uint64(math.MaxInt64/int64(unit)) {
		return 0, fmt.Errorf("%w: %q is too long", ErrBadPolicy, s)
	}
	return time.Duration(count) * unit, nil
}
