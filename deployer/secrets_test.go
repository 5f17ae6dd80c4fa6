package deployer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/deployctl/deployctl/internal/wire"
)

// A replica's secrets live in a tmpfs of its own, with the owner and mode
// asked for, and are gone with the tmpfs.
func TestSecretFilesInTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	s := newSecretFiles(t.TempDir(), "h1")
	t.Cleanup(func() { _ = s.remove("r1") })
	uid := 4321
	mounts, err := s.prepare("r1", "1000:2000", []wire.AgentSecret{
		{Name: "db", Target: "/run/secrets/db", Mode: 0o400, Value: []byte("pw-1")},
		{Name: "tok", Target: "/etc/app/tok", Mode: 0o440, UID: &uid, Value: []byte("tok-1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.replicaDir("r1")
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil || fs.Type != 0x01021994 {
		t.Fatalf("%s is not a tmpfs (type %x, %v)", dir, fs.Type, err)
	}
	want := []struct {
		target   string
		mode     os.FileMode
		uid, gid uint32
		value    string
	}{{"/run/secrets/db", 0o400, 1000, 2000, "pw-1"}, {"/etc/app/tok", 0o440, 4321, 2000, "tok-1"}}
	if len(mounts) != 2 {
		t.Fatalf("mounts %+v", mounts)
	}
	for i, w := range want {
		m := mounts[i]
		if m.Target != w.target || !m.ReadOnly || filepath.Dir(m.Source) != dir {
			t.Errorf("mount %d = %+v", i, m)
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		data, _ := os.ReadFile(m.Source)
		if fi.Mode().Perm() != w.mode || st.Uid != w.uid || st.Gid != w.gid || string(data) != w.value {
			t.Errorf("file %d: mode %o owner %d:%d value %q, want %+v", i, fi.Mode().Perm(), st.Uid, st.Gid, data, w)
		}
	}
	if got := s.replicas(); len(got) != 1 || got[0] != "r1" {
		t.Fatalf("replicas %v", got)
	}
	// Preparing again (a recreated container) replaces the files.
	if _, err := s.prepare("r1", "1000:2000", []wire.AgentSecret{{Name: "db", Target: "/run/secrets/db", Mode: 0o400, Value: []byte("pw-2")}}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("old files left: %v", entries)
	}
	if err := s.remove("r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", dir, err)
	}
	if _, _, err := containerIDs("app"); err == nil {
		t.Fatal("a user name was taken for ids")
	}
}
