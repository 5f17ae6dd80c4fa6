package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/deployctl/deployctl/raftstore/state"
)

// CommandType is the first byte of every raft log entry this FSM applies.
// Values are never reused: an old log must decode the same way forever.
type CommandType byte

// The commands. Append only.
const (
	CmdApplyRevision    CommandType = 1
	CmdRolloutStep      CommandType = 2
	CmdHostReport       CommandType = 3
	CmdDeleteService    CommandType = 4
	CmdRegisterServer   CommandType = 5
	CmdDeregisterServer CommandType = 6
	CmdSetHostState     CommandType = 7
	CmdSetPolicy        CommandType = 8
	// CmdAssignAddresses turns service addresses on (FSM version 2):
	// from then on the FSM gives every service one (state.AssignAddressesCmd).
	CmdAssignAddresses CommandType = 9
	// CmdPutSecret and CmdDeleteSecret add and remove sealed secret
	// versions (FSM version 3, issue 13: state.PutSecretCmd,
	// state.DeleteSecretCmd).
	CmdPutSecret    CommandType = 10
	CmdDeleteSecret CommandType = 11
	// CmdRotateSecretsKey re-wraps every secret's data key under a new
	// key-encryption key (FSM version 4: state.RotateSecretsKeyCmd).
	CmdRotateSecretsKey CommandType = 12
	// CmdSetHostAvailability and CmdRemoveHost drain, activate and forget
	// hosts (FSM version 4, issue 17: state.SetHostAvailabilityCmd,
	// state.RemoveHostCmd).
	CmdSetHostAvailability CommandType = 13
	CmdRemoveHost          CommandType = 14
	// CmdRecordEvents appends events the log carries nowhere else (a
	// leader elected, an apply refused) to the event ring (FSM version 4,
	// issue 10: state.RecordEventsCmd). The other events are derived from
	// the commands above as they are applied.
	CmdRecordEvents CommandType = 15
)

func (c CommandType) String() string {
	switch c {
	case CmdApplyRevision:
		return "apply-revision"
	case CmdRolloutStep:
		return "rollout-step"
	case CmdHostReport:
		return "host-report"
	case CmdDeleteService:
		return "delete-service"
	case CmdRegisterServer:
		return "register-server"
	case CmdDeregisterServer:
		return "deregister-server"
	case CmdSetHostState:
		return "set-host-state"
	case CmdSetPolicy:
		return "set-policy"
	case CmdAssignAddresses:
		return "assign-addresses"
	case CmdPutSecret:
		return "put-secret"
	case CmdDeleteSecret:
		return "delete-secret"
	case CmdRotateSecretsKey:
		return "rotate-secrets-key"
	case CmdSetHostAvailability:
		return "set-host-availability"
	case CmdRemoveHost:
		return "remove-host"
	case CmdRecordEvents:
		return "record-events"
	}
	return fmt.Sprintf("unknown(%d)", byte(c))
}

// FSMVersion is the command set this build's FSM knows: every command
// type whose MinVersion is at most FSMVersion. A server advertises it when
// it joins (state.ServerInfo.Version). Raise it, and give the new command
// types that MinVersion, in the release that adds them (see DESIGN.md,
// "Adding a command type").
//
// Version 2 adds CmdAssignAddresses (service addresses, issue 9);
// version 3 CmdPutSecret and CmdDeleteSecret (secrets, issue 13);
// version 4 CmdRotateSecretsKey (key-encryption key rotation),
// CmdSetHostAvailability and CmdRemoveHost (hosts, issue 17) and
// CmdRecordEvents (events, issue 10).
const FSMVersion = 4

// minVersions is the FSM version that first knows each command type. Every
// type of FSMVersion 1 is known by every server that records versions, and
// by those before them (a registered server without a version is 1).
var minVersions = map[CommandType]int{
	CmdApplyRevision: 1, CmdRolloutStep: 1, CmdHostReport: 1, CmdDeleteService: 1,
	CmdRegisterServer: 1, CmdDeregisterServer: 1, CmdSetHostState: 1, CmdSetPolicy: 1,
	CmdAssignAddresses: 2,
	CmdPutSecret:       3, CmdDeleteSecret: 3,
	CmdRotateSecretsKey:    4,
	CmdSetHostAvailability: 4, CmdRemoveHost: 4,
	CmdRecordEvents: 4,
}

// MinVersion is the FSM version that first knows the command type (0 for
// a type this build does not know): the leader writes it only once every
// server has registered at least that version.
func (c CommandType) MinVersion() int { return minVersions[c] }

// ErrUnknownCommand names a log entry whose type byte this build does not
// know, or whose body does not decode. The FSM never skips such an entry:
// it calls its FatalFunc, which stops the server (see NewFSM).
var ErrUnknownCommand = errors.New("unknown raft command")

// ErrVersionGate is returned by the leader for a command that some server
// of the cluster is too old to apply: writing it would stop that server.
var ErrVersionGate = errors.New("a server of the cluster is too old for this command")

// ErrNotRegistered is a version gate refusal (it matches ErrVersionGate
// too) whose only cause is servers that have not registered their
// version yet: a server that just started registers within a second or
// so, so the caller may wait a bounded time and try again.
var ErrNotRegistered = errors.New("a server of the cluster has not registered its version yet")

// FatalExitCode is the exit status of a server stopped by ExitOnFatal.
const FatalExitCode = 70

// FatalFunc is called by the FSM with a committed entry it cannot apply:
// its raft index, its type byte, and why. Every server applies the same
// log, so skipping the entry would leave this server's state different
// from the others' for good; the only safe answer is to stop. Production
// uses ExitOnFatal. A test may record the call and return: Apply then
// returns the error and changes nothing.
type FatalFunc func(index uint64, typ byte, err error)

// ExitOnFatal writes the entry's index, type and error to w and exits the
// process with FatalExitCode. An operator restarts the server with a build
// that knows the command (an upgrade), never with the entry skipped.
func ExitOnFatal(w io.Writer) FatalFunc {
	return func(index uint64, typ byte, err error) {
		fmt.Fprintf(w, "FATAL: raft log entry %d (command type %d, %s) cannot be applied: %v; "+
			"this server stops rather than skip it: run a deployctl version that knows the command\n",
			index, typ, CommandType(typ), err)
		os.Exit(FatalExitCode)
	}
}

// Encode frames a command: one type byte, then its JSON body.
func Encode(t CommandType, cmd any) ([]byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return append([]byte{byte(t)}, body...), nil
}

// FSM applies committed commands to the state store.
type FSM struct {
	store *state.Store
	fatal FatalFunc
	// minVersions is the package table; tests add future command types.
	minVersions map[CommandType]int
	// metrics times each command applied (nil: not timed).
	metrics *Metrics
}

// FSMOption changes an FSM built by NewFSM.
type FSMOption func(*FSM)

// WithFatal sets what the FSM calls with an entry it cannot apply; the
// default is ExitOnFatal(os.Stderr).
func WithFatal(fn FatalFunc) FSMOption { return func(f *FSM) { f.fatal = fn } }

// NewFSM returns an FSM over a store. An entry it cannot decode or does not
// know stops the process (ExitOnFatal) unless WithFatal says otherwise.
func NewFSM(store *state.Store, opts ...FSMOption) *FSM {
	f := &FSM{store: store, fatal: ExitOnFatal(os.Stderr), minVersions: minVersions}
	for _, opt := range opts {
		opt(f)
	}
	return f
}

// stop hands an entry that cannot be applied to the FatalFunc; if that
// returns (a test), the error is the entry's response.
func (f *FSM) stop(l *raft.Log, typ byte, err error) error {
	f.fatal(l.Index, typ, err)
	return err
}

// Admit is the leader's version gate, run before a command is proposed: a
// command type whose MinVersion is above 1 is refused while any
// member of the raft configuration (members) has not registered a version
// at least that high. Commands every version knows pass without a look.
func (f *FSM) Admit(data []byte, members func() ([]string, error)) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty command", ErrUnknownCommand)
	}
	t := CommandType(data[0])
	need, known := f.minVersions[t]
	if !known {
		return fmt.Errorf("%w: this server does not know command type %d", ErrUnknownCommand, data[0])
	}
	if need <= 1 {
		return nil
	}
	ids, err := members()
	if err != nil {
		return fmt.Errorf("version gate for %s: %w", t, err)
	}
	view := f.store.View()
	var old []string
	tooOld := false
	for _, id := range ids {
		srv, ok := view.Server(id)
		switch {
		case !ok:
			old = append(old, id+" (not registered yet)")
		case max(srv.Version, 1) < need:
			old = append(old, fmt.Sprintf("%s (version %d)", id, max(srv.Version, 1)))
			tooOld = true
		}
	}
	if len(old) > 0 && !tooOld {
		return fmt.Errorf("%w: %w: %s needs FSM version %d on every server; waiting for %s",
			ErrVersionGate, ErrNotRegistered, t, need, strings.Join(old, ", "))
	}
	if len(old) > 0 {
		return fmt.Errorf("%w: %s needs FSM version %d on every server; upgrade %s first",
			ErrVersionGate, t, need, strings.Join(old, ", "))
	}
	return nil
}

// Store is the state the FSM applies to.
func (f *FSM) Store() *state.Store { return f.store }

// Apply dispatches one log entry. The response is the command's result or
// an error; raft hands it back to the node that proposed the entry.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if len(l.Data) == 0 {
		return f.stop(l, 0, fmt.Errorf("%w: empty entry at index %d", ErrUnknownCommand, l.Index))
	}
	t, body := CommandType(l.Data[0]), l.Data[1:]
	start := time.Now()
	res := f.apply(l.Index, t, body)
	f.metrics.observeApply(t, time.Since(start))
	var bad *undecodable
	if err, ok := res.(error); ok && errors.As(err, &bad) {
		return f.stop(l, byte(t), fmt.Errorf("%w: %s at index %d: %w", ErrUnknownCommand, t, l.Index, bad.err))
	}
	return res
}

// undecodable marks an entry whose body does not decode: fatal, unlike the
// store's answers (a conflict, a bad record), which every server gives alike.
type undecodable struct{ err error }

func (u *undecodable) Error() string { return u.err.Error() }

// apply dispatches one command; an unknown type or an undecodable body
// comes back as *undecodable.
func (f *FSM) apply(index uint64, t CommandType, body []byte) any {
	switch t {
	case CmdApplyRevision:
		var c state.ApplyRevisionCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		res, err := f.store.ApplyRevision(index, c)
		if err != nil {
			return err
		}
		return res
	case CmdRolloutStep:
		var c state.RolloutStepCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyRolloutStep(index, c)
	case CmdHostReport:
		var c state.HostReportCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyHostReport(index, c)
	case CmdDeleteService:
		var c state.DeleteServiceCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyDeleteService(index, c)
	case CmdRegisterServer:
		var c state.RegisterServerCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyRegisterServer(index, c)
	case CmdDeregisterServer:
		var c state.DeregisterServerCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyDeregisterServer(index, c)
	case CmdSetHostState:
		var c state.SetHostStateCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplySetHostState(index, c)
	case CmdSetPolicy:
		var c state.SetPolicyCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		v, err := f.store.ApplySetPolicy(index, c)
		if err != nil {
			return err
		}
		return v
	case CmdAssignAddresses:
		var c state.AssignAddressesCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyAssignAddresses(index, c)
	case CmdPutSecret:
		var c state.PutSecretCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyPutSecret(index, c)
	case CmdDeleteSecret:
		var c state.DeleteSecretCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyDeleteSecret(index, c)
	case CmdRotateSecretsKey:
		var c state.RotateSecretsKeyCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyRotateSecretsKey(index, c)
	case CmdSetHostAvailability:
		var c state.SetHostAvailabilityCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplySetHostAvailability(index, c)
	case CmdRemoveHost:
		var c state.RemoveHostCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyRemoveHost(index, c)
	case CmdRecordEvents:
		var c state.RecordEventsCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyRecordEvents(index, c)
	}
	return &undecodable{fmt.Errorf("type byte %d is not a command this server knows (is it older than the leader?)", byte(t))}
}

func decode(t CommandType, body []byte, into any) error {
	if err := json.Unmarshal(body, into); err != nil {
		return &undecodable{fmt.Errorf("decode %s: %w", t, err)}
	}
	return nil
}

// Snapshot captures the current immutable state version; persisting it
// later does not block writes.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{tables: f.store.View()}, nil
}

// Restore replaces the state with a snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.store.Restore(rc)
}

type fsmSnapshot struct {
	tables *state.Tables
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.tables.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
