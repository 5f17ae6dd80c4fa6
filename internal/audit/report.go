package audit

// ContainerAudit is the audit of one running replica.
type ContainerAudit struct {
	ContainerID string   `json:"container_id"`
	ReplicaID   string   `json:"replica_id"`
	Service     string   `json:"service"`
	Revision    int      `json:"revision"`
	Results     []Result `json:"results"`
	// Drift lists where the container differs from what its revision asks.
	Drift []Drift `json:"drift,omitempty"`
}

// HostAudit is one agent's audit of every replica it runs.
type HostAudit struct {
	Host      string `json:"host"`
	Benchmark string `json:"benchmark"`
	// Engine is what the host's engine enforces (userns-remap, AppArmor...).
	Engine     EngineInfo       `json:"engine"`
	Containers []ContainerAudit `json:"containers"`
}

// Warnings counts the checks that warn and the drifted fields.
func (h HostAudit) Warnings() int {
	n := 0
	for _, c := range h.Containers {
		n += len(c.Drift)
		for _, r := range c.Results {
			if r.Status == StatusWarn {
				n++
			}
		}
	}
	return n
}
