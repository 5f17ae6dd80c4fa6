package scangate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// trivySchemaVersion is the report layout ParseTrivy reads: Trivy's JSON
// since v0.20 (an object with SchemaVersion 2; v1 was a bare array).
const trivySchemaVersion = 2

// Finding is one vulnerability in one package.
type Finding struct {
	// ID is the vulnerability ID (CVE-..., GHSA-..., ...).
	ID      string
	Package string
	// Severity is upper case as Trivy writes it: UNKNOWN, LOW, MEDIUM,
	// HIGH or CRITICAL.
	Severity         string
	InstalledVersion string
	// FixedVersion is empty when no fix is published.
	FixedVersion string
	Title        string
}

// Report is what the gate reads of a scan.
type Report struct {
	// Digest is the manifest digest ("sha256:...") of the first
	// RepoDigests entry: the image the report is about.
	Digest string
	// RepoDigests are all "repository@sha256:..." names of the scanned
	// image; the report belongs to a digest if any of them ends with it.
	RepoDigests []string
	// ImageID is the image's config digest. It is not a manifest digest
	// and is never compared with a pinned digest.
	ImageID      string
	CreatedAt    time.Time
	ArtifactName string
	// Findings are deduplicated: Trivy lists a package once per target
	// (layer, lock file) it was found in.
	Findings []Finding
	// SignedBy says what vouches for the report: set by the caller when
	// the report is the scanner.result of a cosign vulnerability
	// attestation that a trusted key verified (e.g. "key scanner.pub,
	// cosign-v2 attestation registry/repo@sha256:..."). Empty means an
	// unsigned report (ParseTrivy never sets it): whoever sent it could
	// have written it, so enforce mode judges it only under
	// Policy.AcceptUnsignedReports.
	SignedBy string
}

// trivyReport is the part of Trivy's JSON schema v2 that the gate reads.
type trivyReport struct {
	SchemaVersion int       `json:"SchemaVersion"`
	CreatedAt     time.Time `json:"CreatedAt"`
	ArtifactName  string    `json:"ArtifactName"`
	ArtifactType  string    `json:"ArtifactType"`
	Metadata      struct {
		ImageID     string   `json:"ImageID"`
		RepoDigests []string `json:"RepoDigests"`
	} `json:"Metadata"`
	Results []struct {
		Target          string `json:"Target"`
		Vulnerabilities []struct {
			VulnerabilityID  string `json:"VulnerabilityID"`
			PkgName          string `json:"PkgName"`
			Severity         string `json:"Severity"`
			InstalledVersion string `json:"InstalledVersion"`
			FixedVersion     string `json:"FixedVersion"`
			Title            string `json:"Title"`
		} `json:"Vulnerabilities"`
	} `json:"Results"`
}

// ParseTrivy reads the JSON of `trivy image --format json` (schema v2).
// Errors wrap ErrBadReport and say what is wrong. CreatedAt may be absent
// (old Trivy versions): a report without it is stale under any max age.
func ParseTrivy(data []byte) (Report, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return Report{}, fmt.Errorf("%w: empty", ErrBadReport)
	}
	if trimmed[0] == '[' {
		return Report{}, fmt.Errorf("%w: a bare JSON array is Trivy's schema v1; scan with a Trivy of v0.20 or later", ErrBadReport)
	}
	var raw trivyReport
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrBadReport, err)
	}
	if raw.SchemaVersion != trivySchemaVersion {
		return Report{}, fmt.Errorf("%w: SchemaVersion %d, want %d (trivy image --format json)", ErrBadReport, raw.SchemaVersion, trivySchemaVersion)
	}
	if raw.ArtifactType != "" && raw.ArtifactType != "container_image" {
		return Report{}, fmt.Errorf("%w: ArtifactType %q is not a container image; scan with trivy image", ErrBadReport, raw.ArtifactType)
	}
	report := Report{
		RepoDigests:  append([]string(nil), raw.Metadata.RepoDigests...),
		ImageID:      raw.Metadata.ImageID,
		CreatedAt:    raw.CreatedAt,
		ArtifactName: raw.ArtifactName,
	}
	for _, repoDigest := range report.RepoDigests {
		if _, digest, ok := strings.Cut(repoDigest, "@"); ok {
			report.Digest = digest
			break
		}
	}
	type findingKey struct{ id, pkg, installed string }
	seen := map[findingKey]bool{}
	for i, result := range raw.Results {
		for j, v := range result.Vulnerabilities {
			if v.VulnerabilityID == "" {
				return Report{}, fmt.Errorf("%w: Results[%d] (%s).Vulnerabilities[%d] has no VulnerabilityID", ErrBadReport, i, result.Target, j)
			}
			key := findingKey{v.VulnerabilityID, v.PkgName, v.InstalledVersion}
			if seen[key] {
				continue
			}
			seen[key] = true
			report.Findings = append(report.Findings, Finding{
				ID:               v.VulnerabilityID,
				Package:          v.PkgName,
				Severity:         strings.ToUpper(strings.TrimSpace(v.Severity)),
				InstalledVersion: v.InstalledVersion,
				FixedVersion:     v.FixedVersion,
				Title:            v.Title,
			})
		}
	}
	return report, nil
}

// belongsTo reports whether the report is about digest.
func (r *Report) belongsTo(digest string) bool {
	for _, repoDigest := range r.RepoDigests {
		if strings.HasSuffix(repoDigest, "@"+digest) {
			return true
		}
	}
	// A Report built by hand may carry only Digest.
	return len(r.RepoDigests) == 0 && r.Digest == digest
}
