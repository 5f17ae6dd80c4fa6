package controller

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/wire"
)

// RecordAudit keeps an agent's audit in the leader's memory. Audits are
// observations, not intent: they never reach raft, and after an election
// the new leader has them again within one audit interval (15 s).
func (c *Controller) RecordAudit(a audit.HostAudit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.audits == nil {
		c.audits = map[string]wire.HostAuditRecord{}
	}
	c.audits[a.Host] = wire.HostAuditRecord{HostAudit: a, ReceivedAt: c.cfg.Now()}
}

// Audits returns the latest audit of every host that sent one.
func (c *Controller) Audits() wire.AuditReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := wire.AuditReport{Benchmark: audit.Benchmark, Hosts: []wire.HostAuditRecord{}}
	for _, r := range c.audits {
		out.Hosts = append(out.Hosts, r)
		out.Warnings += r.Warnings()
	}
	sort.Slice(out.Hosts, func(i, j int) bool { return out.Hosts[i].Host < out.Hosts[j].Host })
	out.Specs = envSecretFindings(c.cfg.Store.View())
	out.Warnings += len(out.Specs)
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
