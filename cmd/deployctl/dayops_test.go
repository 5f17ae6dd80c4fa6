package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsServerArgs are the flags of a TLS server that passes the checks.
func tlsServerArgs(extra ...string) []string {
	return append([]string{"--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c", "--data-dir", "d", "--bootstrap-expect", "1", "--node-id", "n1"}, extra...)
}

func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// Issue 17: "joins:" in the config file was ignored silently. Unknown keys
// are refused with the file, the line and the closest key, in each format
// viper reads.
func TestServerConfigRefusesUnknownKeys(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"server.yaml", "node-id: n1\ndata-dir: /d\nbootstrap-expect: 3\njoins: [10.0.0.2:7070]\n", "server.yaml:4: unknown key \"joins\"; did you mean join?"},
		{"server.toml", "node-id = \"n1\"\nlog_level = \"info\"\n", "server.toml:2: unknown key \"log_level\"; did you mean log-level?"},
		{"server.json", "{\n  \"node-id\": \"n1\",\n  \"tls-certs\": \"n1.pem\"\n}\n", "server.json:3: unknown key \"tls-certs\"; did you mean tls-cert?"},
		{"far.yaml", "dev: true\nfrobnicate: 1\n", "far.yaml:2: unknown key \"frobnicate\"; the keys are the server's flag names"},
	}
	for _, c := range cases {
		file := writeConfig(t, c.name, c.body)
		_, err := mustServerConfig(t, nil, file)
		if err == nil || !strings.Contains(err.Error(), filepath.Dir(file)) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// Nested values (labels) are not keys of their own.
	file := writeConfig(t, "ok.yaml", "dev: true\nlabel:\n  zone: a\n  rack: r1\n")
	if cfg, err := mustServerConfig(t, nil, file); err != nil || cfg.Labels["rack"] != "r1" {
		t.Errorf("labels in the file: %v, %v", cfg.Labels, err)
	}
}

// Issue 17: the CLI's DEPLOYCTL_TLS_* configured servers too. The server
// reads DEPLOYCTL_SERVER_TLS_* (or flags, or the file) only.
func TestServerIgnoresCLITLSVariables(t *testing.T) {
	t.Setenv("DEPLOYCTL_TLS_CA", "cli-ca.pem")
	t.Setenv("DEPLOYCTL_TLS_CERT", "client.pem")
	t.Setenv("DEPLOYCTL_TLS_KEY", "client-key.pem")
	args := []string{"--data-dir", "d", "--bootstrap-expect", "1", "--node-id", "n1"}
	if _, err := mustServerConfig(t, args, ""); err == nil || !strings.Contains(err.Error(), "needs mutual TLS") {
		t.Errorf("only DEPLOYCTL_TLS_* set: %v, want the server to see no TLS files", err)
	}
	t.Setenv("DEPLOYCTL_SERVER_TLS_CA", "ca.pem")
	t.Setenv("DEPLOYCTL_SERVER_TLS_CERT", "n1.pem")
	t.Setenv("DEPLOYCTL_SERVER_TLS_KEY", "n1-key.pem")
	cfg, err := mustServerConfig(t, args, "")
	if err != nil || cfg.TLS != (tlsFiles{CA: "ca.pem", Cert: "n1.pem", Key: "n1-key.pem"}) {
		t.Fatalf("DEPLOYCTL_SERVER_TLS_*: %+v, %v", cfg.TLS, err)
	}
	if cfg.Sources["tls-cert"] != "variable DEPLOYCTL_SERVER_TLS_CERT" {
		t.Errorf("source of tls-cert %q", cfg.Sources["tls-cert"])
	}
	// The flag still wins.
	if cfg, err := mustServerConfig(t, append(args, "--tls-cert", "other.pem"), ""); err != nil || cfg.TLS.Cert != "other.pem" {
		t.Errorf("--tls-cert over the variable: %+v, %v", cfg.TLS, err)
	}
}

func TestBootstrapExpectNeedsJoin(t *testing.T) {
	_, err := mustServerConfig(t, tlsServerArgs("--bootstrap-expect", "3"), "")
	if err == nil || !strings.Contains(err.Error(), "--bootstrap-expect 3 needs --join") || !strings.Contains(err.Error(), "--bootstrap-expect from flag --bootstrap-expect") {
		t.Errorf("--bootstrap-expect 3 alone: %v, want refused naming --join and the flag", err)
	}
	if _, err := mustServerConfig(t, tlsServerArgs("--bootstrap-expect", "3", "--join", "127.0.0.1:1,127.0.0.1:2"), ""); err != nil {
		t.Errorf("--bootstrap-expect 3 with --join: %v", err)
	}
}

// Every configuration error names where the value came from: flag,
// variable, or file and line.
func TestConfigErrorsNameTheirSource(t *testing.T) {
	if _, err := mustServerConfig(t, []string{"--dev", "--log-level", "loud"}, ""); err == nil || !strings.Contains(err.Error(), "--log-level from flag --log-level") {
		t.Errorf("flag: %v", err)
	}
	file := writeConfig(t, "server.yaml", "dev: true\n\nsubnet-pool: 10.0.0.0/7\n")
	if _, err := mustServerConfig(t, nil, file); err == nil || !strings.Contains(err.Error(), "--subnet-pool from config file "+file+":3") {
		t.Errorf("file: %v", err)
	}
	t.Setenv("DEPLOYCTL_LOG_LEVEL", "loud")
	if _, err := mustServerConfig(t, []string{"--dev"}, ""); err == nil || !strings.Contains(err.Error(), "--log-level from variable DEPLOYCTL_LOG_LEVEL") {
		t.Errorf("variable: %v", err)
	}
}

// --leader-wait and DEPLOYCTL_LEADER_WAIT: a bad value is a usage error
// naming its source; the flag beats the variable.
func TestLeaderWaitSources(t *testing.T) {
	run := func(args ...string) error {
		root := newRootCmd()
		root.SetArgs(append(args, "services"))
		return root.Execute()
	}
	for _, c := range []struct {
		env  string
		args []string
		want string
	}{
		{"soon", nil, "DEPLOYCTL_LEADER_WAIT=\"soon\""},
		{"", []string{"--leader-wait", "0s"}, "--leader-wait 0s"},
	} {
		t.Run(c.want, func(t *testing.T) {
			t.Setenv("DEPLOYCTL_LEADER_WAIT", c.env)
			err := run(append([]string{"--addr", "127.0.0.1:1"}, c.args...)...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != ExitUsage || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v: %v, want a usage error naming %s", c.args, err, c.want)
			}
		})
	}
	t.Setenv("DEPLOYCTL_LEADER_WAIT", "3s")
	g := &globals{}
	root := newRootCmd()
	bindLeaderWait(root.Flags(), g)
	if g.leaderWait != 3*time.Second {
		t.Errorf("DEPLOYCTL_LEADER_WAIT=3s: %s", g.leaderWait)
	}
	if err := root.Flags().Parse([]string{"--leader-wait", "2s"}); err != nil || g.leaderWait != 2*time.Second || g.checkLeaderWait() != nil {
		t.Errorf("--leader-wait over the variable: %s, %v", g.leaderWait, err)
	}
}
