package raftstore

// The backup file of `deployctl snapshot save` (issue 17): the leader's
// state at one applied index, framed so that a truncated or altered file
// is refused before anything is restored from it.
//
//	DEPLOYCTL-SNAPSHOT 1\n
//	{"fsm_version":3,"index":1234,...}\n     BackupMeta, one JSON line
//	{...state, as raft snapshots hold it...}  state.Tables.WriteTo
//	sha256 <64 hex digits>\n                  of every byte before this line
//
// The trailer comes last so the leader can stream the state without
// holding a copy: a transfer cut short lacks it, and any changed byte
// (header, metadata or state) breaks it.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// backupMagic starts every backup file; the number is the framing's
// version, raised only if the framing itself changes.
const backupMagic = "DEPLOYCTL-SNAPSHOT 1\n"

// backupTrailerPrefix starts the last line.
const backupTrailerPrefix = "sha256 "

// ErrBadBackup: a backup file is not one, is truncated, or fails its
// checksum. Nothing is restored from such a file.
var ErrBadBackup = errors.New("not a usable deployctl snapshot")

// BackupMeta describes a backup: which state it holds and where it came
// from. It is informative except FSMVersion, which restore checks.
type BackupMeta struct {
	// FSMVersion is the command set of the build that wrote it: a build
	// with a lower version may not understand the state (restore refuses).
	FSMVersion int `json:"fsm_version"`
	// Index is the raft index of the last entry the state holds; Term
	// the leader's term when it was taken.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// Node is the server that wrote it (the leader then).
	Node    string    `json:"node"`
	Created time.Time `json:"created"`
}

// WriteBackup writes the backup of one state version to w, hashing as
// it goes. tables is immutable, so writes go on meanwhile.
func WriteBackup(w io.Writer, meta BackupMeta, tables *state.Tables) error {
	sum := sha256.New()
	out := io.MultiWriter(w, sum)
	line, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("encode snapshot metadata: %w", err)
	}
	if _, err := io.WriteString(out, backupMagic+string(line)+"\n"); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	if _, err := tables.WriteTo(out); err != nil {
		return fmt.Errorf("write snapshot state: %w", err)
	}
	if _, err := io.WriteString(w, backupTrailerPrefix+hex.EncodeToString(sum.Sum(nil))+"\n"); err != nil {
		return fmt.Errorf("write snapshot checksum: %w", err)
	}
	return nil
}

// Backup is a verified backup file: its metadata and the state's bytes.
type Backup struct {
	Meta  BackupMeta
	State []byte
	// SHA256 is the file's checksum as its trailer gives it (verified).
	SHA256 string
}

// ReadBackupFile reads and verifies the backup at path (see ReadBackup).
func ReadBackupFile(path string) (*Backup, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	b, err := ReadBackup(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// ReadBackup reads a whole backup and verifies it: the header, the
// checksum over everything before the trailer, then the metadata. Errors
// wrap ErrBadBackup and say what is wrong (truncated, corrupt, not a
// snapshot).
func ReadBackup(r io.Reader) (*Backup, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	if !bytes.HasPrefix(data, []byte(backupMagic)) {
		if len(data) < len(backupMagic) && bytes.HasPrefix([]byte(backupMagic), data) {
			return nil, fmt.Errorf("%w: the file is truncated (%d bytes, not even its header)", ErrBadBackup, len(data))
		}
		return nil, fmt.Errorf("%w: it does not start with %q (is it a file written by `deployctl snapshot save`?)", ErrBadBackup, strings.TrimSpace(backupMagic))
	}
	body, trailer, ok := splitTrailer(data)
	if !ok {
		return nil, fmt.Errorf("%w: the file is truncated (%d bytes): its checksum line is missing, so the transfer or copy did not finish; take the snapshot again", ErrBadBackup, len(data))
	}
	want, err := hex.DecodeString(trailer)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("%w: the checksum line is damaged (%q)", ErrBadBackup, clipText(trailer))
	}
	got := sha256.Sum256(body)
	if !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("%w: the file is corrupt: its content has SHA-256 %x, its checksum line says %x", ErrBadBackup, got, want)
	}
	rest := body[len(backupMagic):]
	line, stateBytes, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no metadata line", ErrBadBackup)
	}
	var meta BackupMeta
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&meta); err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrBadBackup, err)
	}
	return &Backup{Meta: meta, State: stateBytes, SHA256: trailer}, nil
}

// splitTrailer cuts data into what the checksum covers and the checksum's
// hex digits; ok is false when the last line is not a checksum line.
func splitTrailer(data []byte) (body []byte, sum string, ok bool) {
	if !bytes.HasSuffix(data, []byte("\n")) {
		return nil, "", false
	}
	i := bytes.LastIndexByte(data[:len(data)-1], '\n')
	if i < 0 {
		return nil, "", false
	}
	last := string(data[i+1 : len(data)-1])
	digits, ok := strings.CutPrefix(last, backupTrailerPrefix)
	if !ok {
		return nil, "", false
	}
	return data[:i+1], digits, true
}

func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Decode restores the backup's state into a new store (checking that it
// decodes, and that this build knows its FSM version).
func (b *Backup) Decode() (*state.Store, error) {
	if b.Meta.FSMVersion > FSMVersion {
		return nil, fmt.Errorf("%w: it was written with FSM version %d and this deployctl knows version %d: restore it with the deployctl release the cluster ran (or a newer one)",
			ErrBadBackup, b.Meta.FSMVersion, FSMVersion)
	}
	store := state.NewStore()
	if err := store.Restore(bytes.NewReader(b.State)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	return store, nil
}
