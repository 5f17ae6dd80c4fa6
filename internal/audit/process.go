package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrProcessStatus means a process's status or id map could not be read
// as the kernel writes it.
var ErrProcessStatus = errors.New("unreadable process status")

// RunningUserControl is the control RunningUser judges: CIS Docker
// Benchmark section 4.1, judged by the ids the container's main process
// really has rather than by the configured User, which a name in the
// image's /etc/passwd or a spelling like "00" can make mean root.
var RunningUserControl = Control{ID: "4.1", Title: "Ensure that a user for the container has been created", Field: "/proc/<State.Pid>/status Uid, Gid, Groups"}

// ProcessIDs are the ids of a process as its container sees them: real,
// effective, saved and file-system uid and gid, and the supplementary
// groups.
type ProcessIDs struct {
	UIDs   [4]int64 `json:"uids"`
	GIDs   [4]int64 `json:"gids"`
	Groups []int64  `json:"groups,omitempty"`
}

// ParseProcessIDs reads the Uid, Gid and Groups lines of /proc/<pid>/status
// and maps each id into the container's user namespace with the process's
// uid_map and gid_map (/proc/<pid>/uid_map, read from the host: "inside
// outside count" lines). Empty maps mean the ids are the host's, as
// without userns-remap; an id the map does not cover stays as read and
// cannot be 0 inside.
func ParseProcessIDs(status, uidMap, gidMap []byte) (ProcessIDs, error) {
	var ids ProcessIDs
	var haveUID, haveGID bool
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		var err error
		switch key {
		case "Uid":
			haveUID = true
			err = parseFour(fields, &ids.UIDs)
		case "Gid":
			haveGID = true
			err = parseFour(fields, &ids.GIDs)
		case "Groups":
			for _, f := range fields {
				n, perr := strconv.ParseInt(f, 10, 64)
				if perr != nil {
					err = perr
					break
				}
				ids.Groups = append(ids.Groups, n)
			}
		}
		if err != nil {
			return ProcessIDs{}, fmt.Errorf("%w: %s line: %w", ErrProcessStatus, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return ProcessIDs{}, fmt.Errorf("%w: %w", ErrProcessStatus, err)
	}
	if !haveUID || !haveGID {
		return ProcessIDs{}, fmt.Errorf("%w: no Uid or Gid line", ErrProcessStatus)
	}
	um, err := parseIDMap(uidMap)
	if err != nil {
		return ProcessIDs{}, fmt.Errorf("%w: uid_map: %w", ErrProcessStatus, err)
	}
	gm, err := parseIDMap(gidMap)
	if err != nil {
		return ProcessIDs{}, fmt.Errorf("%w: gid_map: %w", ErrProcessStatus, err)
	}
	for i := range ids.UIDs {
		ids.UIDs[i] = um.inside(ids.UIDs[i])
		ids.GIDs[i] = gm.inside(ids.GIDs[i])
	}
	for i := range ids.Groups {
		ids.Groups[i] = gm.inside(ids.Groups[i])
	}
	return ids, nil
}

func parseFour(fields []string, dst *[4]int64) error {
	if len(fields) != 4 {
		return fmt.Errorf("%d ids, want 4", len(fields))
	}
	for i, f := range fields {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return err
		}
		dst[i] = n
	}
	return nil
}

type idRange struct{ inside, outside, count int64 }

type idMap []idRange

func parseIDMap(data []byte) (idMap, error) {
	var m idMap
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("line %q: want inside, outside and count", line)
		}
		var r idRange
		for i, dst := range []*int64{&r.inside, &r.outside, &r.count} {
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", line, err)
			}
			*dst = n
		}
		m = append(m, r)
	}
	return m, nil
}

// inside maps a host id into the namespace; with no map it is unchanged.
// An id outside every range is unmapped inside (the overflow id), which is
// never 0: it is returned as -1.
func (m idMap) inside(id int64) int64 {
	if len(m) == 0 {
		return id
	}
	for _, r := range m {
		if id >= r.outside && id < r.outside+r.count {
			return id - r.outside + r.inside
		}
	}
	return -1
}

// RunningUser judges the running main process's ids (RunningUserControl):
// warn when any of its uids is 0 (root, also a setuid-root effective or
// saved uid) or any of its gids or supplementary groups is 0, pass
// otherwise; info when the ids could not be read (err), e.g. the process
// has exited.
func RunningUser(ids ProcessIDs, err error) Result {
	r := Result{ID: RunningUserControl.ID, Title: RunningUserControl.Title, Field: RunningUserControl.Field}
	if err != nil {
		r.Status, r.Value = StatusInfo, "cannot read the process's ids: "+err.Error()
		return r
	}
	r.Value = fmt.Sprintf("uid %s, gid %s", joinIDs(ids.UIDs[:]), joinIDs(ids.GIDs[:]))
	if len(ids.Groups) > 0 {
		r.Value += ", groups " + joinIDs(ids.Groups)
	}
	r.Status = StatusPass
	for _, id := range append(append(ids.UIDs[:], ids.GIDs[:]...), ids.Groups...) {
		if id == 0 {
			r.Status = StatusWarn
		}
	}
	return r
}

// joinIDs writes ids as "a/b/c/d", or one number when they are all equal.
func joinIDs(ids []int64) string {
	same := true
	for _, id := range ids {
		same = same && id == ids[0]
	}
	if same && len(ids) == 4 {
		return strconv.FormatInt(ids[0], 10)
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10)
	}
	sep := "/"
	if len(ids) != 4 {
		sep = ","
	}
	return strings.Join(parts, sep)
}

// UserDrift compares the running process's real uid and gid with the
// numeric "uid:gid" the container was created with (deployer makes User
// numeric), as a Drift named "Process.Uid:Gid"; nil when they agree or
// want is not numeric.
func UserDrift(want string, ids ProcessIDs) []Drift {
	uidText, gidText, ok := strings.Cut(want, ":")
	uid, uerr := strconv.ParseInt(uidText, 10, 64)
	gid, gerr := strconv.ParseInt(gidText, 10, 64)
	if !ok || uerr != nil || gerr != nil {
		return nil
	}
	if ids.UIDs[0] == uid && ids.UIDs[1] == uid && ids.GIDs[0] == gid && ids.GIDs[1] == gid {
		return nil
	}
	got := fmt.Sprintf("uid %s, gid %s", joinIDs(ids.UIDs[:]), joinIDs(ids.GIDs[:]))
	return []Drift{{Field: "Process.Uid:Gid", Want: want, Got: got}}
}
