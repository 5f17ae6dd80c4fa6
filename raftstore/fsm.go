package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

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
	}
	return fmt.Sprintf("unknown(%d)", byte(c))
}

// ErrUnknownCommand is returned (as the apply response) for a log entry
// whose type byte this build does not know. It is refused loudly rather
// than skipped, since skipping would let nodes' states diverge.
var ErrUnknownCommand = errors.New("unknown raft command")

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
}

// NewFSM returns an FSM over a store.
func NewFSM(store *state.Store) *FSM { return &FSM{store: store} }

// Store is the state the FSM applies to.
func (f *FSM) Store() *state.Store { return f.store }

// Apply dispatches one log entry. The response is the command's result or
// an error; raft hands it back to the node that proposed the entry.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if len(l.Data) == 0 {
		return fmt.Errorf("%w: empty entry at index %d", ErrUnknownCommand, l.Index)
	}
	t, body := CommandType(l.Data[0]), l.Data[1:]
	switch t {
	case CmdApplyRevision:
		var c state.ApplyRevisionCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		res, err := f.store.ApplyRevision(l.Index, c)
		if err != nil {
			return err
		}
		return res
	case CmdRolloutStep:
		var c state.RolloutStepCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyRolloutStep(l.Index, c)
	case CmdHostReport:
		var c state.HostReportCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyHostReport(l.Index, c)
	case CmdDeleteService:
		var c state.DeleteServiceCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyDeleteService(l.Index, c)
	case CmdRegisterServer:
		var c state.RegisterServerCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyRegisterServer(l.Index, c)
	case CmdDeregisterServer:
		var c state.DeregisterServerCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplyDeregisterServer(l.Index, c)
	case CmdSetHostState:
		var c state.SetHostStateCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		return f.store.ApplySetHostState(l.Index, c)
	case CmdSetPolicy:
		var c state.SetPolicyCmd
		if err := decode(t, body, &c); err != nil {
			return err
		}
		v, err := f.store.ApplySetPolicy(l.Index, c)
		if err != nil {
			return err
		}
		return v
	}
	return fmt.Errorf("%w: type byte %d at index %d (is this node older than the leader?)", ErrUnknownCommand, byte(t), l.Index)
}

func decode(t CommandType, body []byte, into any) error {
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("decode %s: %w", t, err)
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
