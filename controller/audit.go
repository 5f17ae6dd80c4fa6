package controller

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/deployctl/deployctl/deployer/audit"
)

// HostAuditRecord is a host's latest audit, as the leader received it.
type HostAuditRecord struct {
	audit.HostAudit
	ReceivedAt time.Time `json:"received_at"`
}

// AuditReport is `deployctl audit -o json`.
type AuditReport struct {
	Benchmark string            `json:"benchmark"`
	Hosts     []HostAuditRecord `json:"hosts"`
	Warnings  int               `json:"warnings"`
}

// RecordAudit keeps an agent's audit in the leader's memory. Audits are
// observations, not intent: they never reach raft, and after an election
// the new leader has them again within one audit interval (15 s).
func (c *Controller) RecordAudit(a audit.HostAudit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.audits == nil {
		c.audits = map[string]HostAuditRecord{}
	}
	c.audits[a.Host] = HostAuditRecord{HostAudit: a, ReceivedAt: c.cfg.Now()}
}

// Audits returns the latest audit of every host that sent one.
func (c *Controller) Audits() AuditReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := AuditReport{Benchmark: audit.Benchmark, Hosts: []HostAuditRecord{}}
	for _, r := range c.audits {
		out.Hosts = append(out.Hosts, r)
		out.Warnings += r.Warnings()
	}
	sort.Slice(out.Hosts, func(i, j int) bool { return out.Hosts[i].Host < out.Hosts[j].Host })
	return out
}

// Limits of one host's audit. The body is bounded by maxBody (1 MiB) like
// every request; these bound what the leader keeps in memory per host. A
// host runs far fewer containers than maxAuditContainers, and the CIS
// section 5 audit has a few dozen checks per container.
const (
	maxAuditContainers = 512
	maxAuditResults    = 128 // per container
	maxAuditDrift      = 128 // per container
)

func (a *API) postAudit(w http.ResponseWriter, r *http.Request) {
	var rep audit.HostAudit
	if !decodeJSON(w, r, &rep) {
		return
	}
	if !hostParam(w, "host", rep.Host) {
		return
	}
	// A host's audit is that host's word: only its own certificate may
	// send it (an empty audit for someone else's host would hide it).
	if !speaksFor(w, r, rep.Host) {
		return
	}
	if err := checkAuditSize(rep); err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
		return
	}
	a.c.RecordAudit(rep)
	w.WriteHeader(http.StatusNoContent)
}

func checkAuditSize(rep audit.HostAudit) error {
	if len(rep.Containers) > maxAuditContainers {
		return fmt.Errorf("containers: %d entries, at most %d per host", len(rep.Containers), maxAuditContainers)
	}
	for i, c := range rep.Containers {
		if len(c.Results) > maxAuditResults {
			return fmt.Errorf("containers[%d].results: %d entries, at most %d", i, len(c.Results), maxAuditResults)
		}
		if len(c.Drift) > maxAuditDrift {
			return fmt.Errorf("containers[%d].drift: %d entries, at most %d", i, len(c.Drift), maxAuditDrift)
		}
	}
	return nil
}

func (a *API) getAudit(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.c.Audits())
}

// Audit sends an agent's audit.
func (c *Client) Audit(ctx context.Context, a audit.HostAudit) error {
	return c.postJSON(ctx, "/v1/agent/audit", a, nil)
}

// AuditReport reads every host's latest audit.
func (c *Client) AuditReport(ctx context.Context) (AuditReport, error) {
	var out AuditReport
	err := c.do(ctx, http.MethodGet, "/v1/audit", nil, nil, &out)
	return out, err
}
