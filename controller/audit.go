package controller

import (
	"context"
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

func (a *API) postAudit(w http.ResponseWriter, r *http.Request) {
	var rep audit.HostAudit
	if !decodeJSON(w, r, &rep) {
		return
	}
	if !hostParam(w, "host", rep.Host) {
		return
	}
	a.c.RecordAudit(rep)
	w.WriteHeader(http.StatusNoContent)
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
