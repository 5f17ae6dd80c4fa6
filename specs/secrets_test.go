package specs

import (
	"strings"
	"testing"
)

func TestParseSecrets(t *testing.T) {
	spec, err := Parse([]byte(`service: web
image: 127.0.0.1:5000/web:1
secrets:
  - db-password
  - {name: api-token, target: /etc/app/token, uid: 1000, gid: 2000, mode: 0440, version: 3}
  - {name: tls-key, mode: "600"}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, target string
		mode         uint32
		version      int
	}{
		{"db-password", "/run/secrets/db-password", 0o400, 0},
		{"api-token", "/etc/app/token", 0o440, 3},
		{"tls-key", "/run/secrets/tls-key", 0o600, 0},
	}
	if len(spec.Secrets) != len(want) {
		t.Fatalf("secrets = %+v", spec.Secrets)
	}
	for i, w := range want {
		s := spec.Secrets[i]
		if s.Name != w.name || s.Target != w.target || s.Mode != w.mode || s.Version != w.version {
			t.Errorf("secrets[%d] = %+v, want %+v", i, s, w)
		}
	}
	if s := spec.Secrets[1]; s.UID == nil || *s.UID != 1000 || s.GID == nil || *s.GID != 2000 || spec.Secrets[0].UID != nil {
		t.Errorf("ids: %+v", spec.Secrets)
	}
	// A clone shares no id pointer.
	c := spec.Clone()
	*c.Secrets[1].UID = 7
	if *spec.Secrets[1].UID != 1000 {
		t.Error("Clone shares uid")
	}
	if err := spec.Validate(); err != nil {
		t.Fatalf("a parsed spec validates: %v", err)
	}
}

func TestParseSecretsProblems(t *testing.T) {
	_, err := Parse([]byte(`service: web
image: 127.0.0.1:5000/web:1
secrets:
  - DB_PASSWORD
  - {target: /run/secrets/x}
  - {name: a, target: relative/path}
  - {name: b, mode: 0999}
  - {name: c, version: 0}
  - {name: d, targte: /x}
  - {name: e, target: /proc/x}
  - a
  - {name: f, uid: -1}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`secrets[0].name: "DB_PASSWORD" is not a valid secret name`,
		"line 5: secrets[1].name: required",
		`secrets[2].target: "relative/path" is not a clean absolute file path`,
		`line 7: secrets[3].mode: "0999" is not a file mode`,
		"secrets[4].version: 0 is not a version",
		"secrets[5].targte",
		"secrets[6].target: /proc/x is a path the engine manages",
		"secrets[7].name: secret a is already listed as secrets[2]",
		"secrets[8].uid: -1 is not a uid",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestLooksLikeSecret(t *testing.T) {
	for name, want := range map[string]bool{
		"DB_PASSWORD": true, "password": true, "GITHUB_TOKEN": true, "CLIENT_SECRET": true, "API_KEY": true, "MYSQL_PASSWD": true,
		"LOG_LEVEL": false, "KEYBOARD": false, "PORT": false, "KEY_ID": false,
	} {
		if got := LooksLikeSecret(name); got != want {
			t.Errorf("LooksLikeSecret(%s) = %v, want %v", name, got, want)
		}
	}
}
