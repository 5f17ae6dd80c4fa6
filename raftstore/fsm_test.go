package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func mustEncode(t *testing.T, ct CommandType, cmd any) []byte {
	t.Helper()
	b, err := Encode(ct, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testRevision(svc, digest string) state.Revision {
	spec := specs.Spec{Service: svc, Image: "127.0.0.1:5000/" + svc + ":v1", Replicas: 2}
	return state.Revision{Service: svc, Spec: spec, Digest: digest, Ref: "127.0.0.1:5000/" + svc + "@" + digest, Fingerprint: "fp-" + digest, Cause: "apply"}
}

// testLog is a fixed command sequence exercising every command type.
func testLog(t *testing.T) [][]byte {
	t.Helper()
	return [][]byte{
		mustEncode(t, CmdHostReport, state.HostReportCmd{Now: t0, Report: state.HostReport{Host: "h1", Labels: map[string]string{"zone": "a"}}}),
		mustEncode(t, CmdApplyRevision, state.ApplyRevisionCmd{Now: t0, IdempotencyKey: "k1", ExpectCurrent: 0, Revision: testRevision("web", "sha256:aa")}),
		mustEncode(t, CmdRolloutStep, state.RolloutStepCmd{Now: t0.Add(time.Second), Service: "web", ExpectCurrent: 1, ExpectModifyIndex: 2,
			Create: []state.Replica{{ID: "r1", Service: "web", Slot: 0, Revision: 1, Fingerprint: "fp-sha256:aa", Host: "h1"}}}),
		mustEncode(t, CmdHostReport, state.HostReportCmd{Now: t0.Add(2 * time.Second), Report: state.HostReport{Host: "h1",
			Reports: []state.StatusReport{{ReplicaID: "r1", State: state.ReplicaHealthy, ContainerID: "c1"}}}}),
		mustEncode(t, CmdApplyRevision, state.ApplyRevisionCmd{Now: t0.Add(3 * time.Second), IdempotencyKey: "k2", ExpectCurrent: 1, Revision: testRevision("web", "sha256:bb")}),
		mustEncode(t, CmdApplyRevision, state.ApplyRevisionCmd{Now: t0.Add(3 * time.Second), Revision: testRevision("api", "sha256:cc")}),
		mustEncode(t, CmdDeleteService, state.DeleteServiceCmd{Now: t0.Add(4 * time.Second), Service: "api"}),
		mustEncode(t, CmdRegisterServer, state.RegisterServerCmd{Server: state.ServerInfo{ID: "n1", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2"}}),
		mustEncode(t, CmdSetPolicy, state.SetPolicyCmd{Now: t0.Add(5 * time.Second), JSON: []byte(`{"allow_root":true}`)}),
		mustEncode(t, CmdSetHostState, state.SetHostStateCmd{Now: t0.Add(6 * time.Second), Host: "h1", State: state.HostDown, ExpectSeenAt: t0.Add(2 * time.Second), LoseReplicas: true}),
	}
}

func applyAll(t *testing.T, f *FSM, entries [][]byte) []any {
	t.Helper()
	var out []any
	for i, e := range entries {
		out = append(out, f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: e}))
	}
	return out
}

func mustSnapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }
func (m *memSink) Close() error  { return nil }

func TestFSMAppliesEveryCommand(t *testing.T) {
	f := NewFSM(state.NewStore())
	res := applyAll(t, f, testLog(t))
	for i, r := range res {
		if err, ok := r.(error); ok {
			t.Fatalf("entry %d: %v", i+1, err)
		}
	}
	v := f.Store().View()
	web, ok := v.Service("web")
	if !ok || web.Current != 2 || web.State != state.ServiceDeploying {
		t.Fatalf("web = %+v, want current 2 deploying", web)
	}
	rev1, _ := v.Revision("web", 1)
	if rev1.State != state.RevisionSuperseded {
		t.Fatalf("revision 1 state %q, want superseded (applied over while in progress)", rev1.State)
	}
	early := NewFSM(state.NewStore())
	applyAll(t, early, testLog(t)[:4])
	r1, _ := early.Store().View().Replica("r1")
	if r1.Status.State != state.ReplicaHealthy || !r1.Status.HealthySince.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("replica r1 status %+v, want healthy since the report's leader time", r1.Status)
	}
	api, _ := v.Service("api")
	if api.State != state.ServiceRemoving {
		t.Fatalf("api state %q, want removing", api.State)
	}
	if got := v.HostIndex("h1"); got != 10 {
		t.Fatalf("host index %d, want 10 (losing the down host's replicas changed its assignments)", got)
	}
	if r, _ := v.Replica("r1"); r.Desired != state.DesiredStopped || r.Status.State != state.ReplicaLost {
		t.Fatalf("replica of the down host: %+v, want desired stopped and lost", r)
	}
	if p, ok := v.Policy(); !ok || p.Version != 1 || string(p.JSON) != `{"allow_root":true}` {
		t.Fatalf("policy %+v", p)
	}
	if srv, ok := v.Server("n1"); !ok || srv.APIAddr != "127.0.0.1:2" {
		t.Fatalf("server %+v", srv)
	}
}

// fatalCall is one call of the FSM's FatalFunc.
type fatalCall struct {
	index uint64
	typ   byte
	err   error
}

// recordingFSM is an FSM whose FatalFunc records instead of exiting.
func recordingFSM() (*FSM, *[]fatalCall) {
	var calls []fatalCall
	f := NewFSM(state.NewStore(), WithFatal(func(index uint64, typ byte, err error) {
		calls = append(calls, fatalCall{index, typ, err})
	}))
	return f, &calls
}

// An entry the FSM does not know or cannot decode is never skipped: the
// FSM calls its FatalFunc with the index and type, and changes nothing.
func TestFSMStopsOnUnknownOrUndecodableEntry(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		typ  byte
	}{
		{name: "empty entry", data: []byte{}, typ: 0},
		{name: "unknown type", data: []byte{0xEE, '{', '}'}, typ: 0xEE},
		{name: "undecodable body", data: append([]byte{byte(CmdApplyRevision)}, "not json"...), typ: byte(CmdApplyRevision)},
		{name: "wrong body shape", data: append([]byte{byte(CmdRolloutStep)}, `{"create":"x"}`...), typ: byte(CmdRolloutStep)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, calls := recordingFSM()
			res := f.Apply(&raft.Log{Index: 42, Type: raft.LogCommand, Data: tt.data})
			if len(*calls) != 1 {
				t.Fatalf("FatalFunc called %d times, want once", len(*calls))
			}
			c := (*calls)[0]
			if c.index != 42 || c.typ != tt.typ || !errors.Is(c.err, ErrUnknownCommand) {
				t.Fatalf("FatalFunc(%d, %d, %v), want (42, %d, ErrUnknownCommand)", c.index, c.typ, c.err, tt.typ)
			}
			if err, ok := res.(error); !ok || !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("Apply = %v, want ErrUnknownCommand", res)
			}
			if f.Store().View().Index() != 0 {
				t.Fatal("the entry changed the state")
			}
		})
	}
	// The store's own refusals are answers every server gives alike: not fatal.
	f, calls := recordingFSM()
	res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: mustEncode(t, CmdRegisterServer, state.RegisterServerCmd{})})
	if _, isErr := res.(error); !isErr || len(*calls) != 0 {
		t.Fatalf("a refused record: Apply = %v, fatal calls %d; want an error and no fatal call", res, len(*calls))
	}
}

// The default FatalFunc stops the process: exit status FatalExitCode, with
// the index and the type on stderr. Run in a child process.
func TestFSMExitsOnUnknownEntry(t *testing.T) {
	if os.Getenv("DEPLOYCTL_TEST_FSM_CHILD") == "1" {
		NewFSM(state.NewStore()).Apply(&raft.Log{Index: 42, Type: raft.LogCommand, Data: []byte{0xEE, '{', '}'}})
		fmt.Println("applied: the entry was skipped")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFSMExitsOnUnknownEntry$")
	cmd.Env = append(os.Environ(), "DEPLOYCTL_TEST_FSM_CHILD=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != FatalExitCode {
		t.Fatalf("child: %v, stdout %q; want exit status %d", err, out, FatalExitCode)
	}
	for _, want := range []string{"raft log entry 42", "command type 238"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q does not say %q", stderr.String(), want)
		}
	}
}

// The version gate: a command type newer than some server is refused by
// the leader, naming the servers to upgrade; commands every version knows
// pass without looking at the members.
func TestFSMVersionGate(t *testing.T) {
	const future = CommandType(99)
	f, _ := recordingFSM()
	f.minVersions = maps.Clone(f.minVersions)
	f.minVersions[future] = 2
	register := func(index uint64, id string, version int) {
		t.Helper()
		res := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: mustEncode(t, CmdRegisterServer,
			state.RegisterServerCmd{Server: state.ServerInfo{ID: id, RaftAddr: id + ":1", APIAddr: id + ":2", Version: version}})})
		if err, ok := res.(error); ok {
			t.Fatal(err)
		}
	}
	members := func() ([]string, error) { return []string{"n1", "n2", "n3"}, nil }
	cmd := []byte{byte(future), '{', '}'}

	register(1, "n1", 2)
	register(2, "n2", 0) // registered before versions were recorded
	err := f.Admit(cmd, members)
	if !errors.Is(err, ErrVersionGate) || !strings.Contains(err.Error(), "n2 (version 1)") || !strings.Contains(err.Error(), "n3 (not registered yet)") ||
		strings.Contains(err.Error(), "n1") {
		t.Fatalf("Admit = %v, want ErrVersionGate naming n2 and n3 only", err)
	}
	if errors.Is(err, ErrNotRegistered) {
		t.Fatalf("n2 is too old, not only unregistered: %v", err)
	}
	register(3, "n2", 2)
	// Only n3 is missing now: a wait may help, and the error says so.
	if err := f.Admit(cmd, members); !errors.Is(err, ErrNotRegistered) || !errors.Is(err, ErrVersionGate) {
		t.Fatalf("Admit with n3 unregistered = %v, want ErrNotRegistered", err)
	}
	register(4, "n3", 3)
	if err := f.Admit(cmd, members); err != nil {
		t.Fatalf("every server knows the command: %v", err)
	}

	noMembers := func() ([]string, error) { t.Fatal("members asked for a command every version knows"); return nil, nil }
	for ct, v := range minVersions {
		if v > 1 {
			continue
		}
		if err := f.Admit([]byte{byte(ct), '{', '}'}, noMembers); err != nil {
			t.Fatalf("%s: %v", ct, err)
		}
	}
	if err := f.Admit([]byte{0xEE}, noMembers); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("a type this leader does not know: %v, want ErrUnknownCommand", err)
	}
}

// Every command type has a MinVersion, and none above FSMVersion: a build
// must know every type it may write.
func TestEveryCommandHasAVersion(t *testing.T) {
	for ct := CommandType(1); ct < 0xFF; ct++ {
		v, ok := minVersions[ct]
		known := !strings.HasPrefix(ct.String(), "unknown(")
		if known != ok || v > FSMVersion {
			t.Errorf("%s: known %v, min version %d (registered %v), FSMVersion %d", ct, known, v, ok, FSMVersion)
		}
	}
}

func TestFSMGuardsAndIdempotency(t *testing.T) {
	f := NewFSM(state.NewStore())
	applyAll(t, f, testLog(t)[:2])
	// The same idempotency key again: the same revision, no new one.
	res := f.Apply(&raft.Log{Index: 10, Type: raft.LogCommand, Data: mustEncode(t, CmdApplyRevision,
		state.ApplyRevisionCmd{Now: t0, IdempotencyKey: "k1", Revision: testRevision("web", "sha256:zz")})})
	ar, ok := res.(state.ApplyResult)
	if !ok || ar.Revision != 1 || !ar.Repeated {
		t.Fatalf("repeated key: %v, want revision 1 repeated", res)
	}
	// A stale guard is refused.
	res = f.Apply(&raft.Log{Index: 11, Type: raft.LogCommand, Data: mustEncode(t, CmdApplyRevision,
		state.ApplyRevisionCmd{Now: t0, ExpectCurrent: 0, Revision: testRevision("web", "sha256:zz")})})
	if err, ok := res.(error); !ok || !errors.Is(err, state.ErrConflict) {
		t.Fatalf("stale ExpectCurrent: %v, want ErrConflict", res)
	}
	// A rollout step decided on an older service record is refused.
	res = f.Apply(&raft.Log{Index: 12, Type: raft.LogCommand, Data: mustEncode(t, CmdRolloutStep,
		state.RolloutStepCmd{Now: t0, Service: "web", ExpectCurrent: 1, ExpectModifyIndex: 1})})
	if err, ok := res.(error); !ok || !errors.Is(err, state.ErrConflict) {
		t.Fatalf("stale step: %v, want ErrConflict", res)
	}
	if got := len(f.Store().View().Revisions("web")); got != 1 {
		t.Fatalf("%d revisions, want 1", got)
	}
}

func TestFSMDeterministic(t *testing.T) {
	a, b := NewFSM(state.NewStore()), NewFSM(state.NewStore())
	applyAll(t, a, testLog(t))
	applyAll(t, b, testLog(t))
	if sa, sb := mustSnapshotBytes(t, a), mustSnapshotBytes(t, b); !bytes.Equal(sa, sb) {
		t.Fatalf("same log, different states:\n%s\n%s", sa, sb)
	}
}

func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	a := NewFSM(state.NewStore())
	applyAll(t, a, testLog(t))
	snap := mustSnapshotBytes(t, a)

	b := NewFSM(state.NewStore())
	if err := b.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if again := mustSnapshotBytes(t, b); !bytes.Equal(snap, again) {
		t.Fatalf("restore changed the state:\n%s\n%s", snap, again)
	}
	if b.Store().View().Index() != a.Store().View().Index() {
		t.Fatal("restore lost the index")
	}
	// The restored store keeps applying: indexes, guards and idempotency keys survived.
	res := b.Apply(&raft.Log{Index: 100, Type: raft.LogCommand, Data: mustEncode(t, CmdApplyRevision,
		state.ApplyRevisionCmd{Now: t0, IdempotencyKey: "k2", ExpectCurrent: 2, Revision: testRevision("web", "sha256:dd")})})
	if ar, ok := res.(state.ApplyResult); !ok || ar.Revision != 2 || !ar.Repeated {
		t.Fatalf("idempotency key after restore: %v, want revision 2 repeated", res)
	}
	if got := b.Store().View().Assignments("h1"); len(got.Assignments) != 1 || got.Assignments[0].Replica.ID != "r1" || got.Index != 10 {
		t.Fatalf("assignments after restore: %+v", got)
	}
}

func TestSnapshotIsCheapAndIsolated(t *testing.T) {
	f := NewFSM(state.NewStore())
	applyAll(t, f, testLog(t))
	snap, _ := f.Snapshot()
	before := mustSnapshotBytes(t, f)
	// Writes after the snapshot was taken do not leak into it.
	f.Apply(&raft.Log{Index: 50, Type: raft.LogCommand, Data: mustEncode(t, CmdHostReport,
		state.HostReportCmd{Now: t0, Report: state.HostReport{Host: "h2"}})})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.Bytes(), before) {
		t.Fatal("a snapshot saw a later write")
	}
}

func BenchmarkFSMSnapshot(b *testing.B) {
	f := NewFSM(state.NewStore())
	idx := uint64(1)
	for i := range 1000 {
		svc := fmt.Sprintf("svc-%d", i)
		data, _ := Encode(CmdApplyRevision, state.ApplyRevisionCmd{Now: t0, Revision: testRevision(svc, "sha256:aa")})
		f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
		idx++
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

// The gate runs in Node.Apply, before anything reaches the log: a command
// type newer than a member is refused there and never committed.
func TestNodeApplyRunsTheVersionGate(t *testing.T) {
	const future = CommandType(99)
	f, calls := recordingFSM()
	f.minVersions = maps.Clone(f.minVersions)
	f.minVersions[future] = 2
	cfg := testConfig("n1", t.TempDir(), f)
	cfg.Bootstrap = true
	n := mustOpen(t, cfg)
	mustWaitForLeader(t, n)
	ctx := boundedContext(t)
	register := func(version int) {
		t.Helper()
		if _, err := n.Apply(ctx, mustEncode(t, CmdRegisterServer, state.RegisterServerCmd{
			Server: state.ServerInfo{ID: "n1", RaftAddr: n.Addr(), APIAddr: "127.0.0.1:2", Version: version}})); err != nil {
			t.Fatal(err)
		}
	}
	register(1)
	before := f.Store().View().Index()
	if _, err := n.Apply(ctx, []byte{byte(future), '{', '}'}); !errors.Is(err, ErrVersionGate) {
		t.Fatalf("Apply = %v, want ErrVersionGate", err)
	}
	if f.Store().View().Index() != before || len(*calls) != 0 {
		t.Fatal("a gated command reached the FSM")
	}
	// Once every member says it knows the type, the leader writes it (this
	// test FSM does not know it, so its FatalFunc is called).
	register(2)
	if _, err := n.Apply(ctx, []byte{byte(future), '{', '}'}); !errors.Is(err, ErrUnknownCommand) || len(*calls) != 1 {
		t.Fatalf("Apply = %v with %d fatal calls, want the entry written and the FSM's fatal call", err, len(*calls))
	}
}
