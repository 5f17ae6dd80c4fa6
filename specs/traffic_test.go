package specs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exposedYAML is a service that proxies send requests to, as
// update.rollback_on requires.
const exposedYAML = minimalYAML + "expose: [8080]\n"

func TestParseCanaryAndRollbackOn(t *testing.T) {
	s := mustParse(t, exposedYAML+`update:
  canary: { weight: 10%, duration: 30s }
  rollback_on: { error_rate: 2%, latency_p99: 500ms, min_requests: 80 }
`)
	if got, want := s.Update.Canary, (&Canary{Weight: 0.1, Duration: 30 * time.Second}); !reflect.DeepEqual(got, want) {
		t.Errorf("canary = %+v, want %+v", got, want)
	}
	r := s.Update.RollbackOn
	if r == nil || r.ErrorRate == nil || *r.ErrorRate != 0.02 || r.LatencyP99 != 500*time.Millisecond || r.MinRequests != 80 {
		t.Fatalf("rollback_on = %+v", r)
	}
}

// Percentages may be written as a fraction too (as max_failure_ratio is),
// min_requests defaults, and either threshold alone is enough.
func TestParseTrafficSpellingsAndDefaults(t *testing.T) {
	tests := []struct {
		yaml        string
		weight      float64
		errorRate   *float64
		latency     time.Duration
		minRequests int
	}{
		{"update: {canary: {weight: 0.25, duration: 1m}, rollback_on: {error_rate: 0.5 %}}\n", 0.25, ptr(0.005), 0, DefaultRollbackMinRequests},
		{"update: {canary: {weight: \"12.5%\", duration: 1m}, rollback_on: {latency_p99: 1s}}\n", 0.125, nil, time.Second, DefaultRollbackMinRequests},
		{"update: {canary: {weight: 1%, duration: 1m}, rollback_on: {error_rate: 0, min_requests: 1}}\n", 0.01, ptr(0.0), 0, 1},
	}
	for _, tt := range tests {
		s := mustParse(t, exposedYAML+tt.yaml)
		if s.Update.Canary.Weight != tt.weight {
			t.Errorf("%s: weight = %v, want %v", tt.yaml, s.Update.Canary.Weight, tt.weight)
		}
		r := s.Update.RollbackOn
		if !reflect.DeepEqual(r.ErrorRate, tt.errorRate) || r.LatencyP99 != tt.latency || r.MinRequests != tt.minRequests {
			t.Errorf("%s: rollback_on = {%v %v %d}, want {%v %v %d}", tt.yaml, deref(r.ErrorRate), r.LatencyP99, r.MinRequests, deref(tt.errorRate), tt.latency, tt.minRequests)
		}
	}
}

func ptr(f float64) *float64 { return &f }

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

func trafficInvalidCases() []invalidCase {
	return []invalidCase{
		{"canary not a mapping", "update:\n  canary: 10%\n", "update.canary", 4, "expected a mapping of weight, duration"},
		{"canary without weight", "update:\n  canary: {duration: 30s}\n", "update.canary.weight", 4, "required; write the share of the service's requests the canary gets, like 10%"},
		{"canary without duration", "update:\n  canary: {weight: 10%}\n", "update.canary.duration", 4, "required; write how long the canary runs"},
		{"weight without percent sign", "update:\n  canary: {weight: 10, duration: 30s}\n", "update.canary.weight", 4, "write 10% for 10 percent (or the fraction 0.1)"},
		{"weight is a word", "update:\n  canary: {weight: half, duration: 30s}\n", "update.canary.weight", 4, `"half" is not a percentage`},
		{"weight 100%", "update:\n  canary: {weight: 100%, duration: 30s}\n", "update.canary.weight", 4, "100% must be above 0% and below 100%"},
		{"weight 0%", "update:\n  canary: {weight: 0%, duration: 30s}\n", "update.canary.weight", 4, "must be above 0%"},
		{"weight NaN", "update:\n  canary: {weight: NaN%, duration: 30s}\n", "update.canary.weight", 4, "is not a percentage"},
		{"weight negative", "update:\n  canary: {weight: -5%, duration: 30s}\n", "update.canary.weight", 4, "-5% must be above 0%"},
		{"duration zero", "update:\n  canary: {weight: 10%, duration: 0s}\n", "update.canary.duration", 4, "must be greater than 0 (e.g. 30s)"},
		{"duration without unit", "update:\n  canary: {weight: 10%, duration: 30}\n", "update.canary.duration", 4, "write a duration like 30s"},
		{"canary typo", "update:\n  canary: {weight: 10%, duration: 30s, percent: 5}\n", "update.canary.percent", 4, "did you mean weight?"},
		{"no threshold", "expose: [80]\nupdate:\n  rollback_on: {min_requests: 10}\n", "update.rollback_on", 5, "names no threshold; set error_rate, latency_p99 or both"},
		{"error rate 100%", "expose: [80]\nupdate:\n  rollback_on: {error_rate: 100%}\n", "update.rollback_on.error_rate", 5, "below 100%"},
		{"error rate as a whole number", "expose: [80]\nupdate:\n  rollback_on: {error_rate: 2}\n", "update.rollback_on.error_rate", 5, "write 2% for 2 percent"},
		{"latency zero", "expose: [80]\nupdate:\n  rollback_on: {latency_p99: 0s}\n", "update.rollback_on.latency_p99", 5, "must be greater than 0 (e.g. 500ms)"},
		{"latency not a duration", "expose: [80]\nupdate:\n  rollback_on: {latency_p99: fast}\n", "update.rollback_on.latency_p99", 5, "is not a duration"},
		{"min requests zero", "expose: [80]\nupdate:\n  rollback_on: {error_rate: 2%, min_requests: 0}\n", "update.rollback_on.min_requests", 5, "0 must be between 1 and 10000000"},
		{"min requests huge", "expose: [80]\nupdate:\n  rollback_on: {error_rate: 2%, min_requests: 20000000}\n", "update.rollback_on.min_requests", 5, "must be between 1 and"},
		{"p99 alias", "expose: [80]\nupdate:\n  rollback_on: {error_rate: 2%, p99: 1s}\n", "update.rollback_on.p99", 5, "did you mean latency_p99?"},
		{"rollback_on without traffic", "update:\n  rollback_on: {error_rate: 2%}\n", "update.rollback_on", 4, "no proxy sends it requests"},
	}
}

func TestParseTrafficProblems(t *testing.T) {
	checkInvalidCases(t, trafficInvalidCases())
}

// The traffic settings are update settings: absent, the spec's JSON is
// what it was (the fingerprints of stored revisions hash it); present,
// they survive JSON, Clone and ApplyDefaults unchanged, and Clone shares
// nothing with the original.
func TestTrafficSettingsJSONAndClone(t *testing.T) {
	if got := mustJSON(t, mustParse(t, minimalYAML)); strings.Contains(got, "canary") || strings.Contains(got, "rollback_on") {
		t.Errorf("a spec without traffic settings has them in its JSON: %s", got)
	}
	s := mustParse(t, exposedYAML+"update: {canary: {weight: 5%, duration: 1m}, rollback_on: {error_rate: 1%, latency_p99: 250ms}}\n")
	var decoded Spec
	if err := json.Unmarshal([]byte(mustJSON(t, s)), &decoded); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&decoded, s) {
		t.Errorf("after a JSON round trip\n got %+v\nwant %+v", decoded.Update, s.Update)
	}
	c := s.Clone()
	c.ApplyDefaults()
	if !reflect.DeepEqual(c, s) {
		t.Errorf("Clone+ApplyDefaults changed the spec: %+v", c.Update)
	}
	*c.Update.RollbackOn.ErrorRate = 0.5
	c.Update.Canary.Weight = 0.5
	if *s.Update.RollbackOn.ErrorRate != 0.01 || s.Update.Canary.Weight != 0.05 {
		t.Errorf("Clone shares the traffic settings with the original")
	}
}

// A spec built in Go gets min_requests from ApplyDefaults, as every field
// whose zero Validate refuses.
func TestApplyDefaultsFillsMinRequests(t *testing.T) {
	s := mustParse(t, exposedYAML)
	s.Update.RollbackOn = &RollbackOn{LatencyP99: time.Second}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "min_requests") {
		t.Fatalf("Validate = %v, want a min_requests problem", err)
	}
	s.ApplyDefaults()
	if s.Update.RollbackOn.MinRequests != DefaultRollbackMinRequests {
		t.Fatalf("min_requests = %d, want %d", s.Update.RollbackOn.MinRequests, DefaultRollbackMinRequests)
	}
	mustValidate(t, s)
}
