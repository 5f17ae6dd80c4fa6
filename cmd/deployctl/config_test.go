package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// mustServerConfig parses args like the server command does.
func mustServerConfig(t *testing.T, args []string, configFile string) (serverConfig, error) {
	t.Helper()
	f := pflag.NewFlagSet("server", pflag.ContinueOnError)
	v := bindServerFlags(f)
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	return loadServerConfig(v, configFile)
}

// Precedence: flag > DEPLOYCTL_* variable > config file > default.
func TestServerConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "server.yaml")
	body := "dev: true\nhttp-addr: 127.0.0.1:1001\nraft-addr: 127.0.0.1:2001\nnetwork: from-file\nnode-id: file-node\nlabel: { zone: a }\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DEPLOYCTL_RAFT_ADDR", "127.0.0.1:2002")
	t.Setenv("DEPLOYCTL_NETWORK", "from-env")
	cfg, err := mustServerConfig(t, []string{"--network", "from-flag"}, file)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ field, got, want string }{
		{"network (flag beats env and file)", cfg.Network, "from-flag"},
		{"raft-addr (env beats file)", cfg.RaftAddr, "127.0.0.1:2002"},
		{"http-addr (file beats default)", cfg.HTTPAddr, "127.0.0.1:1001"},
		{"node-id (file)", cfg.NodeID, "file-node"},
		{"host-id (defaults to the node id)", cfg.HostID, "file-node"},
		{"log-level (default)", cfg.LogLevel, "info"},
		{"label from file", cfg.Labels["zone"], "a"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.field, c.got, c.want)
		}
	}
	if !cfg.Dev {
		t.Error("dev from the file was lost")
	}
}

func TestServerConfigRefusals(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "mutual TLS"},
		{[]string{"--tls-ca", "ca.pem"}, "go together"},
		{[]string{"--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c"}, "--data-dir"},
		{[]string{"--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c", "--data-dir", "d"}, "bootstrap-expect"},
		{[]string{"--dev", "--join", "127.0.0.1:1"}, "single node"},
		{[]string{"--dev", "--registry-addr", "10.1.1.1:5000"}, "loopback"},
		{[]string{"--dev", "--log-level", "loud"}, "log-level"},
		// A server's local agent speaks for the host named like the node.
		{[]string{"--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c", "--data-dir", "d", "--bootstrap-expect", "1",
			"--node-id", "n1", "--host-id", "h1"}, "--no-agent"},
	}
	for _, c := range cases {
		_, err := mustServerConfig(t, c.args, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one mentioning %q", c.args, err, c.want)
		}
	}
	if _, err := mustServerConfig(t, []string{"--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c", "--data-dir", "d", "--bootstrap-expect", "1",
		"--node-id", "n1", "--host-id", "h1", "--no-agent"}, ""); err != nil {
		t.Errorf("--host-id with --no-agent: %v", err)
	}
	if _, err := mustServerConfig(t, []string{"--dev"}, filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing config file was accepted")
	}
}
