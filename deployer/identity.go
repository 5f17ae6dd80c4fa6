package deployer

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnresolvedUser means the container's user names a user or group that
// the image's /etc/passwd or /etc/group does not have (or the image has no
// such file), or an id out of range: the engine would refuse to start it,
// and deployctl cannot tell whether it would be root.
var ErrUnresolvedUser = errors.New("cannot resolve the container's user")

// MaxAccountsFileSize bounds what is read of an image's /etc/passwd or
// /etc/group: real ones are a few KiB.
const MaxAccountsFileSize = 1 << 20

// maxID is the largest uid or gid the engine (runc, moby/sys/user) accepts.
const maxID = 1<<31 - 1

// ImageAccounts are an image's /etc/passwd and /etc/group, which the engine
// reads to turn the container's user into ids when it starts it. A nil
// file means the image has none.
type ImageAccounts struct {
	Passwd []byte
	Group  []byte
}

// Identity is who a container runs as: what the engine computes from the
// user string and the image's account files.
type Identity struct {
	UID int
	GID int
	// DefaultGroup says no source named the group: the user is a number
	// with no /etc/passwd entry and no group was given, so the engine
	// would use gid 0. ContainerOptions gives such a container gid = uid.
	DefaultGroup bool
}

// ResolveUser computes the ids a "user[:group]" string (the spec's
// security.user or the image's USER; "" is the engine's default, root)
// stands for in an image, following the engine's rules (moby/sys/user
// GetExecUser, used by moby and runc): a part that strconv.Atoi reads is
// always an id ("00", "+0" are 0) and looked up only to find the user's
// group; a name is looked up, the first entry wins, and a name no entry
// has is an error; fields after the second ':' are ignored; a passwd entry
// whose id does not parse stands for 0, as the engine reads it.
// Supplementary groups are not computed: the container is started with
// the numeric "uid:gid" resolved here, which the engine gives none.
func ResolveUser(user string, acc ImageAccounts) (Identity, error) {
	userArg, groupArg, _ := strings.Cut(user, ":")
	groupArg, _, _ = strings.Cut(groupArg, ":")
	uidArg, uidErr := strconv.Atoi(userArg)
	gidArg, gidErr := strconv.Atoi(groupArg)

	var id Identity
	entry, found := lookupPasswd(acc.Passwd, func(e passwdEntry) bool {
		switch {
		case userArg == "":
			return e.uid == 0
		case uidErr == nil:
			return e.uid == uidArg
		}
		return e.name == userArg
	})
	switch {
	case found:
		id.UID, id.GID = entry.uid, entry.gid
	case userArg == "":
		// No user and no passwd entry for uid 0: the engine's default.
	case uidErr != nil:
		if acc.Passwd == nil {
			return Identity{}, fmt.Errorf("%w: user %q is a name and the image has no /etc/passwd to look it up in", ErrUnresolvedUser, userArg)
		}
		return Identity{}, fmt.Errorf("%w: user %q is not in the image's /etc/passwd", ErrUnresolvedUser, userArg)
	default:
		id.UID = uidArg
		id.DefaultGroup = groupArg == ""
	}
	if groupArg != "" {
		group, found := lookupGroup(acc.Group, func(e groupEntry) bool {
			if gidErr == nil {
				return e.gid == gidArg
			}
			return e.name == groupArg
		})
		switch {
		case found:
			id.GID = group.gid
		case gidErr != nil && acc.Group == nil:
			return Identity{}, fmt.Errorf("%w: group %q is a name and the image has no /etc/group to look it up in", ErrUnresolvedUser, groupArg)
		case gidErr != nil:
			return Identity{}, fmt.Errorf("%w: group %q is not in the image's /etc/group", ErrUnresolvedUser, groupArg)
		default:
			id.GID = gidArg
		}
	}
	if id.UID < 0 || id.UID > maxID || id.GID < 0 || id.GID > maxID {
		return Identity{}, fmt.Errorf("%w: %q resolves to uid %d, gid %d; ids must be in 0-%d", ErrUnresolvedUser, user, id.UID, id.GID, maxID)
	}
	return id, nil
}

type passwdEntry struct {
	name     string
	uid, gid int
}

type groupEntry struct {
	name string
	gid  int
}

// lookupPasswd returns the first entry of an /etc/passwd that match
// accepts. Lines are read as the engine reads them: trimmed, blank ones
// skipped, "name:password:uid:gid:...", a number that does not parse is 0.
func lookupPasswd(file []byte, match func(passwdEntry) bool) (passwdEntry, bool) {
	for _, line := range bytes.Split(file, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		f := strings.Split(string(line), ":")
		e := passwdEntry{name: f[0], uid: atoiField(f, 2), gid: atoiField(f, 3)}
		if match(e) {
			return e, true
		}
	}
	return passwdEntry{}, false
}

// lookupGroup is lookupPasswd for /etc/group ("name:password:gid:users"),
// where the engine also skips comment lines.
func lookupGroup(file []byte, match func(groupEntry) bool) (groupEntry, bool) {
	for _, line := range bytes.Split(file, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := strings.Split(string(line), ":")
		e := groupEntry{name: f[0], gid: atoiField(f, 2)}
		if match(e) {
			return e, true
		}
	}
	return groupEntry{}, false
}

func atoiField(fields []string, i int) int {
	if i >= len(fields) {
		return 0
	}
	n, _ := strconv.Atoi(fields[i])
	return n
}
