package audit

import (
	"errors"
	"testing"
)

func status(uid, gid, groups string) []byte {
	return []byte("Name:\tapp\nUid:\t" + uid + "\nGid:\t" + gid + "\nGroups:\t" + groups + "\nNgid:\t0\n")
}

func TestParseProcessIDs(t *testing.T) {
	ids, err := ParseProcessIDs(status("10001\t10001\t10001\t10001", "10001\t10001\t10001\t10001", ""), nil, nil)
	if err != nil || ids.UIDs != [4]int64{10001, 10001, 10001, 10001} || ids.GIDs[0] != 10001 || ids.Groups != nil {
		t.Errorf("plain = %+v, %v", ids, err)
	}
	// A setuid-root binary: real uid 10001, effective and saved 0.
	ids, err = ParseProcessIDs(status("10001\t0\t0\t0", "10001\t10001\t10001\t10001", "10001 0"), nil, nil)
	if err != nil || ids.UIDs != [4]int64{10001, 0, 0, 0} || len(ids.Groups) != 2 {
		t.Errorf("setuid = %+v, %v", ids, err)
	}
	if r := RunningUser(ids, nil); r.Status != StatusWarn || r.ID != "4.1" {
		t.Errorf("RunningUser(setuid) = %+v, want warn at 4.1", r)
	}
	// userns-remap: host 165536 is 0 inside, 175537 is 10001 inside.
	uidMap := []byte("         0     165536      65536\n")
	ids, err = ParseProcessIDs(status("165536\t165536\t165536\t165536", "175537\t175537\t175537\t175537", ""), uidMap, uidMap)
	if err != nil || ids.UIDs[0] != 0 || ids.GIDs[0] != 10001 {
		t.Errorf("remapped = %+v, %v; want uid 0 gid 10001 inside", ids, err)
	}
	if r := RunningUser(ids, nil); r.Status != StatusWarn {
		t.Errorf("RunningUser(remapped root) = %+v, want warn", r)
	}
	// An id the map does not cover is not 0 inside.
	ids, err = ParseProcessIDs(status("5\t5\t5\t5", "5\t5\t5\t5", ""), uidMap, uidMap)
	if err != nil || ids.UIDs[0] != -1 {
		t.Errorf("unmapped = %+v, %v; want -1", ids, err)
	}
	for name, bad := range map[string][3][]byte{
		"no Uid":      {[]byte("Gid:\t1\t1\t1\t1\n"), nil, nil},
		"three ids":   {status("1\t1\t1", "1\t1\t1\t1", ""), nil, nil},
		"not numbers": {status("a\t1\t1\t1", "1\t1\t1\t1", ""), nil, nil},
		"bad group":   {status("1\t1\t1\t1", "1\t1\t1\t1", "x"), nil, nil},
		"bad map":     {status("1\t1\t1\t1", "1\t1\t1\t1", ""), []byte("0 1\n"), nil},
	} {
		if _, err := ParseProcessIDs(bad[0], bad[1], bad[2]); !errors.Is(err, ErrProcessStatus) {
			t.Errorf("%s: err = %v, want ErrProcessStatus", name, err)
		}
	}
}

func TestRunningUser(t *testing.T) {
	plain := ProcessIDs{UIDs: [4]int64{10001, 10001, 10001, 10001}, GIDs: [4]int64{10001, 10001, 10001, 10001}}
	if r := RunningUser(plain, nil); r.Status != StatusPass || r.Value != "uid 10001, gid 10001" {
		t.Errorf("plain = %+v", r)
	}
	group0 := plain
	group0.Groups = []int64{0}
	if r := RunningUser(group0, nil); r.Status != StatusWarn {
		t.Errorf("supplementary group 0 = %+v, want warn", r)
	}
	gid0 := plain
	gid0.GIDs = [4]int64{}
	if r := RunningUser(gid0, nil); r.Status != StatusWarn {
		t.Errorf("gid 0 = %+v, want warn", r)
	}
	if r := RunningUser(ProcessIDs{}, errors.New("exited")); r.Status != StatusInfo {
		t.Errorf("unreadable = %+v, want info", r)
	}
}

func TestUserDrift(t *testing.T) {
	ids := ProcessIDs{UIDs: [4]int64{10001, 10001, 10001, 10001}, GIDs: [4]int64{10001, 10001, 10001, 10001}}
	if d := UserDrift("10001:10001", ids); d != nil {
		t.Errorf("same = %+v", d)
	}
	if d := UserDrift("app", ids); d != nil {
		t.Errorf("not numeric = %+v, want nil", d)
	}
	ids.UIDs[1] = 0
	if d := UserDrift("10001:10001", ids); len(d) != 1 || d[0].Field != "Process.Uid:Gid" {
		t.Errorf("euid 0 = %+v, want one drift", d)
	}
}
