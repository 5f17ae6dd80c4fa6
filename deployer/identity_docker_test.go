package deployer

import (
	"context"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/audit"
	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// accountsPasswd maps admin to uid 0 under another name, app to 10001 and
// wheelie to 10002 with group root.
const accountsPasswd = "root:x:0:0:root:/root:/app\nadmin:x:0:10001::/:/app\napp:x:10001:10001::/:/app\nwheelie:x:10002:0::/:/app\n"

// accountsGroup makes app a member of a group with gid 0: the engine would
// add it as a supplementary group to a container started as "app"; started
// as the numeric uid:gid, it gets none (RunningUser checks Groups too).
const accountsGroup = "root:x:0:\napp:x:10001:\nstaff:x:0:app\n"

// rootImages are webapp variants whose user is root in disguise, or not.
type rootImages struct {
	user00, admin, adminLinked, ghost, app, plain10001, wheelie string
}

func mustRootImages(t *testing.T, env *dockerEnv) rootImages {
	t.Helper()
	img, err := devimage.BuildGoImage(context.Background(), devimage.GoImageOptions{
		PackageDir:   "../examples/webapp",
		Env:          []string{"PORT=8080"},
		Labels:       map[string]string{labelTest: env.runID},
		ExposedPorts: []string{"8080/tcp"},
	})
	if err != nil {
		t.Fatalf("BuildGoImage: %v", err)
	}
	accounts := map[string]devimage.File{
		"/etc/passwd": {Content: []byte(accountsPasswd)},
		"/etc/group":  {Content: []byte(accountsGroup)},
	}
	// /etc/passwd a symbolic link, as on images that keep it elsewhere.
	linked := map[string]devimage.File{
		"/etc/passwd":                {Link: "../var/lib/extrausers/passwd"},
		"/var/lib/extrausers/passwd": {Content: []byte(accountsPasswd)},
	}
	variant := func(tag, user string, files map[string]devimage.File) string {
		v := img
		if files != nil {
			if v, err = devimage.WithFiles(v, files); err != nil {
				t.Fatalf("WithFiles: %v", err)
			}
		}
		if v, err = devimage.WithUser(v, user); err != nil {
			t.Fatalf("WithUser: %v", err)
		}
		return mustPush(t, env.reg.Addr()+"/rootless:"+tag, v)
	}
	return rootImages{
		user00:      variant("user00", "00", nil),
		admin:       variant("admin", "admin", accounts),
		adminLinked: variant("admin-linked", "admin", linked),
		ghost:       variant("ghost", "ghost", accounts),
		app:         variant("app", "app", accounts),
		plain10001:  variant("plain", "10001", nil),
		wheelie:     variant("wheelie", "wheelie", accounts),
	}
}

// TestRootInDisguiseWithDocker is issue 16's finding 4 on the engine: an
// image whose USER is "00", or a name its /etc/passwd maps to uid 0, or a
// security.user naming such a user, ran as root without allow_root. The
// agent now resolves the user against the image's own files and refuses
// uid 0 (and gid 0) unless the spec allows it; what runs is checked by
// reading the process's ids from /proc.
func TestRootInDisguiseWithDocker(t *testing.T) {
	env := mustDockerEnv(t)
	images := mustRootImages(t, env)
	ctx := context.Background()

	refused := []struct {
		name, ref string
		opts      []specOption
		want      []string
	}{
		{"USER 00", images.user00, nil, []string{"uid 0", "allow_root"}},
		{"USER admin, admin is uid 0", images.admin, nil, []string{"\"admin\"", "uid 0 in the image's /etc/passwd", "allow_root"}},
		{"USER admin through a linked passwd", images.adminLinked, nil, []string{"uid 0 in the image's /etc/passwd", "allow_root"}},
		{"security.user admin", images.app, []specOption{func(s *specs.Spec) { s.Security.User = "admin" }}, []string{"security.user is \"admin\"", "allow_root"}},
		{"USER not in passwd", images.ghost, nil, []string{"\"ghost\" is not in the image's /etc/passwd"}},
		{"name without a passwd", images.plain10001, []specOption{func(s *specs.Spec) { s.Security.User = "app" }}, []string{"no /etc/passwd"}},
		{"primary group root", images.wheelie, nil, []string{"gid 0", "allow_root_group"}},
	}
	for _, tt := range refused {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			h := newAgentHarness(t, env)
			a := assignment(newReplicaID(t), 1, tt.ref, testSpec(tt.opts...))
			h.ctrl.assign(a)
			h.mustStartAgent(t)
			report := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaFailed)
			for _, word := range tt.want {
				if !strings.Contains(report.Message, word) {
					t.Errorf("failed message = %q, want it to contain %q", report.Message, word)
				}
			}
			if n := len(h.managed(t)); n != 0 {
				t.Errorf("managed containers = %d, want none", n)
			}
		})
	}

	runs := []struct {
		name, ref      string
		opts           []specOption
		wantUser       string
		wantUID, wantG int64
		wantAudit      string
	}{
		{"USER app (10001)", images.app, nil, "10001:10001", 10001, 10001, audit.StatusPass},
		// The engine alone would give gid 0 to a bare uid without a
		// passwd entry; the agent gives it its own group.
		{"USER 10001 gets gid 10001", images.plain10001, nil, "10001:10001", 10001, 10001, audit.StatusPass},
		// allow_root lets it run, and then it really is root: the refusals
		// above are about a real root, not a spelling.
		{"USER admin with allow_root", images.admin, []specOption{func(s *specs.Spec) { s.Security.AllowRoot = true }}, "0:10001", 0, 10001, audit.StatusWarn},
		{"USER 00 with allow_root", images.user00, []specOption{func(s *specs.Spec) { s.Security.AllowRoot = true }}, "0:0", 0, 0, audit.StatusWarn},
		{"wheelie with allow_root_group", images.wheelie, []specOption{func(s *specs.Spec) { s.Security.AllowRootGroup = true }}, "10002:0", 10002, 0, audit.StatusWarn},
	}
	for _, tt := range runs {
		t.Run("runs: "+tt.name, func(t *testing.T) {
			h := newAgentHarness(t, env)
			a := assignment(newReplicaID(t), 1, tt.ref, testSpec(tt.opts...))
			h.ctrl.assign(a)
			h.mustStartAgent(t)
			report := h.ctrl.waitState(t, a.Replica.ID, state.ReplicaHealthy)
			inspect := h.mustInspect(t, report.ContainerID)
			if inspect.Config.User != tt.wantUser {
				t.Errorf("Config.User = %q, want %q", inspect.Config.User, tt.wantUser)
			}
			ids, err := readProcessIDs(hostProcRoot, inspect)
			if err != nil {
				t.Fatalf("readProcessIDs: %v", err)
			}
			for i := range ids.UIDs {
				if ids.UIDs[i] != tt.wantUID || ids.GIDs[i] != tt.wantG {
					t.Fatalf("process ids = %+v, want uid %d gid %d", ids, tt.wantUID, tt.wantG)
				}
			}
			if got := audit.RunningUser(ids, nil); got.Status != tt.wantAudit {
				t.Errorf("audit 4.1 = %+v, want %s", got, tt.wantAudit)
			}
			if drift := audit.UserDrift(inspect.Config.User, ids); drift != nil {
				t.Errorf("user drift = %+v, want none", drift)
			}
		})
	}

	t.Run("reading the accounts leaves no container behind", func(t *testing.T) {
		if err := env.rt.Pull(ctx, images.admin); err != nil {
			t.Fatal(err)
		}
		if _, err := env.rt.ImageAccounts(ctx, images.admin, "identity-test"); err != nil {
			t.Fatal(err)
		}
		list, err := env.raw.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", LabelAccounts+"=true"), filters.Arg("label", labelTest+"="+env.runID))})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 0 {
			t.Errorf("%d accounts containers left", len(list))
		}
	})

	t.Run("accounts of the linked passwd are read through the link", func(t *testing.T) {
		if err := env.rt.Pull(ctx, images.adminLinked); err != nil {
			t.Fatal(err)
		}
		acc, err := env.rt.ImageAccounts(ctx, images.adminLinked, "identity-test")
		if err != nil {
			t.Fatal(err)
		}
		if string(acc.Passwd) != accountsPasswd || acc.Group != nil {
			t.Errorf("accounts = %q / %q, want the linked passwd and no group file", acc.Passwd, acc.Group)
		}
	})
}
