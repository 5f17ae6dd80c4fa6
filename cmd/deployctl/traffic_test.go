package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/traffic"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Issue 15: status shows the canary, the live figures of the release and
// of the other replicas, its thresholds and the evidence it still lacks;
// history has a TRAFFIC column; apply prints the missing evidence and asks
// again soon while it is missing.
func TestPrintTrafficAndCanary(t *testing.T) {
	rate := 0.02
	st := wire.ServiceStatus{
		Service: "web", Revision: 3, State: state.ServiceDeploying,
		Rollout: &state.Rollout{Revision: 3, State: state.RolloutInProgress, Canary: &state.CanaryState{Slots: []int{0}}},
		Traffic: &wire.TrafficStatus{Revision: 3, Live: true, Since: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
			New:        traffic.Summary{Requests: 12, Errors: 1, P50: 3 * time.Millisecond, P99: 812345 * time.Microsecond},
			Old:        &traffic.Summary{Requests: 1890, Errors: 2, P50: time.Millisecond, P99: 120 * time.Millisecond},
			RollbackOn: &specs.RollbackOn{ErrorRate: &rate, LatencyP99: 500 * time.Millisecond, MinRequests: 50},
			Waiting:    "waiting for traffic: 12 of 50 requests"},
	}
	var out bytes.Buffer
	printStatus(&out, st)
	for _, want := range []string{
		"canary:    slots 0: running\n",
		"traffic:   revision 3: 12 requests, 8.3 % errors, p50 3ms, p99 812ms (live, since ",
		"           other replicas: 1890 requests, 0.1 % errors, p50 1ms, p99 120ms\n",
		"judged:    rolls back on error rate > 2 % or p99 > 500ms, once 50 requests came\n",
		"           waiting for traffic: 12 of 50 requests\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
	if line, wait := trafficWait(st, 3); line != "waiting for traffic: 12 of 50 requests" || wait >= statusWait {
		t.Errorf("trafficWait = %q, %s; want the line and a short wait", line, wait)
	}
	st.Traffic.Waiting = ""
	if line, wait := trafficWait(st, 3); line != "" || wait != statusWait {
		t.Errorf("trafficWait with evidence = %q, %s", line, wait)
	}
	st.Rollout.Canary.EndedAt, st.Rollout.Canary.Ended = time.Now(), "promoted"
	if got := canaryStatusLine(st); got != "slots 0: ended: promoted" {
		t.Errorf("canary line %q", got)
	}
	if got := historyTraffic(&state.RevisionTraffic{New: traffic.Summary{Requests: 212, Errors: 66, P99: 812 * time.Millisecond}}); got != "212 requests, 31.1 % errors, p50 0s, p99 812ms" {
		t.Errorf("history column %q", got)
	}
	if got := historyTraffic(nil); got != "-" {
		t.Errorf("history column without figures %q", got)
	}
}
