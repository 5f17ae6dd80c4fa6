package devimage

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/hashicorp/go-hclog"
)

const webappDir = "../../examples/webapp"

func mustBuildWebapp(t *testing.T) v1.Image {
	t.Helper()
	img, err := BuildGoImage(context.Background(), GoImageOptions{
		PackageDir:   webappDir,
		Env:          []string{"WEBAPP_VERSION=v1", "PORT=8080"},
		Labels:       map[string]string{"io.deployctl.test": "devimage"},
		ExposedPorts: []string{"8080/tcp"},
	})
	if err != nil {
		t.Fatalf("BuildGoImage: %v", err)
	}
	return img
}

func mustConfig(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("ConfigFile: %v", err)
	}
	return cfg
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	digest, err := img.Digest()
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return digest
}

func mustStartRegistry(t *testing.T) *Registry {
	t.Helper()
	reg, err := StartRegistry("127.0.0.1:0", hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

func TestBuildGoImage(t *testing.T) {
	img := mustBuildWebapp(t)

	t.Run("config", func(t *testing.T) {
		cfg := mustConfig(t, img)
		if cfg.OS != "linux" || cfg.Architecture == "" {
			t.Errorf("platform = %s/%s, want linux/<arch>", cfg.OS, cfg.Architecture)
		}
		if !slices.Equal(cfg.Config.Entrypoint, []string{"/app"}) {
			t.Errorf("Entrypoint = %q, want [/app]", cfg.Config.Entrypoint)
		}
		if cfg.Config.User != DefaultUser {
			t.Errorf("User = %q, want %q", cfg.Config.User, DefaultUser)
		}
		if !slices.Equal(cfg.Config.Env, []string{"WEBAPP_VERSION=v1", "PORT=8080"}) {
			t.Errorf("Env = %q", cfg.Config.Env)
		}
		if cfg.Config.Labels["io.deployctl.test"] != "devimage" {
			t.Errorf("Labels = %v", cfg.Config.Labels)
		}
		if _, ok := cfg.Config.ExposedPorts["8080/tcp"]; !ok || len(cfg.Config.ExposedPorts) != 1 {
			t.Errorf("ExposedPorts = %v, want 8080/tcp", cfg.Config.ExposedPorts)
		}
	})

	t.Run("one layer with /app and /tmp", func(t *testing.T) {
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("Layers = %d, %v; want one", len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		modes := map[string]int64{}
		sizes := map[string]int64{}
		tr := tar.NewReader(rc)
		for {
			header, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			modes[header.Name] = header.Mode
			sizes[header.Name] = header.Size
		}
		if modes["app"] != 0o755 || sizes["app"] == 0 {
			t.Errorf("app: mode %o size %d, want 0755 and a binary", modes["app"], sizes["app"])
		}
		if modes["tmp/"] != 0o1777 {
			t.Errorf("tmp/: mode %o, want 1777", modes["tmp/"])
		}
		if len(modes) != 2 {
			t.Errorf("layer entries = %v, want app and tmp/ only", modes)
		}
	})

	t.Run("same input gives the same digest", func(t *testing.T) {
		again := mustBuildWebapp(t)
		if got, want := mustDigest(t, again), mustDigest(t, img); got != want {
			t.Errorf("rebuild digest = %s, want %s", got, want)
		}
	})

	t.Run("custom user", func(t *testing.T) {
		custom, err := BuildGoImage(context.Background(), GoImageOptions{PackageDir: webappDir, User: "20002"})
		if err != nil {
			t.Fatal(err)
		}
		if got := mustConfig(t, custom).Config.User; got != "20002" {
			t.Errorf("User = %q, want 20002", got)
		}
	})
}

func TestBuildGoImageErrors(t *testing.T) {
	tests := []struct {
		name string
		dir  string
	}{
		{"no directory", ""},
		{"not a package", t.TempDir()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BuildGoImage(context.Background(), GoImageOptions{PackageDir: tt.dir})
			if !errors.Is(err, ErrBuild) {
				t.Errorf("err = %v, want ErrBuild", err)
			}
		})
	}
}

func TestWithEnv(t *testing.T) {
	img := mustBuildWebapp(t)
	broken, err := WithEnv(img, "WEBAPP_BROKEN=1")
	if err != nil {
		t.Fatalf("WithEnv: %v", err)
	}
	if mustDigest(t, broken) == mustDigest(t, img) {
		t.Error("variant has the digest of the original")
	}
	if got := mustConfig(t, broken).Config.Env; !slices.Equal(got, []string{"WEBAPP_VERSION=v1", "PORT=8080", "WEBAPP_BROKEN=1"}) {
		t.Errorf("variant Env = %q", got)
	}
	if got := mustConfig(t, img).Config.Env; slices.Contains(got, "WEBAPP_BROKEN=1") {
		t.Errorf("original Env changed: %q", got)
	}
}

func TestPushAndPullBack(t *testing.T) {
	reg := mustStartRegistry(t)
	img := mustBuildWebapp(t)
	ref := reg.Addr() + "/webapp:v1"

	digest, err := Push(context.Background(), ref, img)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if want := mustDigest(t, img).String(); digest != want {
		t.Errorf("Push digest = %s, want %s", digest, want)
	}
	pinned, err := PinnedRef(ref, digest)
	if err != nil {
		t.Fatal(err)
	}
	if want := reg.Addr() + "/webapp@" + digest; pinned != want {
		t.Errorf("PinnedRef = %s, want %s", pinned, want)
	}

	parsed, err := name.ParseReference(pinned, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(parsed, remote.WithContext(context.Background()))
	if err != nil {
		t.Fatalf("pull back %s: %v", pinned, err)
	}
	if got := mustDigest(t, pulled).String(); got != digest {
		t.Errorf("pulled digest = %s, want %s", got, digest)
	}
}

func TestPushToClosedRegistry(t *testing.T) {
	reg := mustStartRegistry(t)
	addr := reg.Addr()
	if err := reg.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/v2/"); err == nil {
		t.Fatal("registry still answers after Close")
	}
	_, err := Push(context.Background(), addr+"/webapp:v1", mustBuildWebapp(t))
	if !errors.Is(err, ErrPush) {
		t.Errorf("Push to a closed registry: %v, want ErrPush", err)
	}
}

func TestWithUserAndFiles(t *testing.T) {
	img := mustBuildWebapp(t)
	withUser, err := WithUser(img, "admin")
	if err != nil {
		t.Fatalf("WithUser: %v", err)
	}
	if got := mustConfig(t, withUser).Config.User; got != "admin" {
		t.Errorf("User = %q, want admin", got)
	}
	if got := mustConfig(t, img).Config.User; got != DefaultUser {
		t.Errorf("original User changed: %q", got)
	}
	passwd := []byte("admin:x:0:0::/:/app\n")
	withFiles, err := WithFiles(withUser, map[string]File{
		"/etc/passwd":     {Content: passwd},
		"/etc/alt/group":  {Content: []byte("root:x:0:\n"), Mode: 0o600},
		"/etc/group":      {Link: "alt/group"},
		"/nested/a/b/c/d": {Content: nil},
	})
	if err != nil {
		t.Fatalf("WithFiles: %v", err)
	}
	layers, err := withFiles.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("Layers = %d, %v; want 2", len(layers), err)
	}
	rc, err := layers[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	var order []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[hdr.Name] = hdr
		order = append(order, hdr.Name)
		if hdr.Name == "etc/passwd" {
			content, _ := io.ReadAll(tr)
			if string(content) != string(passwd) || hdr.Mode != 0o644 {
				t.Errorf("etc/passwd = %q mode %o", content, hdr.Mode)
			}
		}
	}
	if h := seen["etc/group"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "alt/group" {
		t.Errorf("etc/group = %+v, want a symlink to alt/group", h)
	}
	if h := seen["etc/alt/group"]; h == nil || h.Mode != 0o600 {
		t.Errorf("etc/alt/group = %+v, want mode 600", h)
	}
	// Every directory comes before what it holds.
	for i, name := range order {
		for dir := name; dir != "."; {
			dir = pathDir(dir)
			if dir == "." {
				break
			}
			if j := slices.Index(order, dir+"/"); j < 0 || j > i {
				t.Errorf("%s comes before its directory %s/ (order %q)", name, dir, order)
			}
		}
	}
	if _, err := WithFiles(img, map[string]File{"etc/passwd": {}}); err == nil {
		t.Error("WithFiles accepted a relative path")
	}
}

func pathDir(p string) string {
	p = strings.TrimSuffix(p, "/")
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return "."
}
