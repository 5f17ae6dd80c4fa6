package deployer

import (
	"errors"
	"testing"
)

// TestResolveUser follows the engine's rules (moby/sys/user GetExecUser)
// case by case.
func TestResolveUser(t *testing.T) {
	acc := ImageAccounts{
		Passwd: []byte("  \n# comment:x:7:7\nroot:x:0:0::/:/bin/sh\nadmin:x:0:10001::/:/bin/sh\napp:x:10001:10002::/:/bin/sh\napp:x:20001:20001::/:/bin/sh\nneg:x:-5:1::/:/bin/sh\nshort:x\n"),
		Group:  []byte("# root:x:5:\nroot:x:0:\nstaff:x:50:app\nnumbers:x:60:\n"),
	}
	tests := []struct {
		user    string
		acc     ImageAccounts
		want    Identity
		wantErr bool
	}{
		{"", ImageAccounts{}, Identity{UID: 0, GID: 0}, false},
		{"", acc, Identity{UID: 0, GID: 0}, false},
		{"0", ImageAccounts{}, Identity{UID: 0, GID: 0, DefaultGroup: true}, false},
		{"00", ImageAccounts{}, Identity{UID: 0, GID: 0, DefaultGroup: true}, false},
		{"+0", ImageAccounts{}, Identity{UID: 0, GID: 0, DefaultGroup: true}, false},
		{"admin", acc, Identity{UID: 0, GID: 10001}, false},
		{"app", acc, Identity{UID: 10001, GID: 10002}, false}, // first entry wins
		{"20001", acc, Identity{UID: 20001, GID: 20001}, false},
		{"10001", acc, Identity{UID: 10001, GID: 10002}, false}, // a number finds its entry's group
		{"30000", acc, Identity{UID: 30000, GID: 0, DefaultGroup: true}, false},
		{"app:staff", acc, Identity{UID: 10001, GID: 50}, false},
		{"app:0060", acc, Identity{UID: 10001, GID: 60}, false},
		{"app:70", acc, Identity{UID: 10001, GID: 70}, false},
		{"app:70:ignored", acc, Identity{UID: 10001, GID: 70}, false},
		{"short", acc, Identity{UID: 0, GID: 0}, false}, // missing fields read as 0
		{"root:root", acc, Identity{UID: 0, GID: 0}, false},
		{"# comment", acc, Identity{UID: 7, GID: 7}, false}, // passwd has no comments for the engine
		{"app:# root", acc, Identity{}, true},               // group files do
		{"ghost", acc, Identity{}, true},
		{"app", ImageAccounts{}, Identity{}, true},
		{"app:staff", ImageAccounts{Passwd: acc.Passwd}, Identity{}, true},
		{"neg", acc, Identity{}, true},
		{"-1", ImageAccounts{}, Identity{}, true},
		{"2147483648", ImageAccounts{}, Identity{}, true},
		{"10001:2147483648", ImageAccounts{}, Identity{}, true},
	}
	for _, tt := range tests {
		got, err := ResolveUser(tt.user, tt.acc)
		if tt.wantErr {
			if !errors.Is(err, ErrUnresolvedUser) {
				t.Errorf("ResolveUser(%q) = %+v, %v; want ErrUnresolvedUser", tt.user, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveUser(%q) = %+v, %v; want %+v", tt.user, got, err, tt.want)
		}
	}
}

func FuzzResolveUser(f *testing.F) {
	f.Add("admin:x", "admin:x:0:0::/:/bin/sh\n", "root:x:0:\n")
	f.Add("00", "", "")
	f.Fuzz(func(t *testing.T, user, passwd, group string) {
		id, err := ResolveUser(user, ImageAccounts{Passwd: []byte(passwd), Group: []byte(group)})
		if err != nil {
			return
		}
		if id.UID < 0 || id.UID > maxID || id.GID < 0 || id.GID > maxID {
			t.Fatalf("ResolveUser(%q) = %+v: out of range", user, id)
		}
	})
}
