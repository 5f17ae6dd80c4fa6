package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
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
		// --autolock keeps the key off the disk.
		{[]string{"--dev", "--autolock", "--secrets-key-file", "/tmp/k"}, "drop --secrets-key-file"},
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

// --dev has no TLS and no authentication: it listens on loopback only
// unless --dev-listen-any says the operator means it (issue 16, finding 12).
func TestDevListensOnLoopbackOnly(t *testing.T) {
	refused := [][]string{
		{"--dev", "--http-addr", "0.0.0.0:7070"},
		{"--dev", "--http-addr", ":7070"},
		{"--dev", "--http-addr", "[::]:7070"},
		{"--dev", "--http-addr", "10.0.0.1:7070"},
		{"--dev", "--http-addr", "myhost.example:7070"},
		{"--dev", "--raft-addr", "0.0.0.0:7071"},
		{"--dev", "--raft-addr", ":7071"},
		{"--dev", "--registry-addr", "10.1.1.1:5000"},
		{"--dev", "--registry-addr", ":5000"},
	}
	for _, args := range refused {
		_, err := mustServerConfig(t, args, "")
		if err == nil || !strings.Contains(err.Error(), args[1]) || !strings.Contains(err.Error(), "--dev-listen-any") {
			t.Errorf("%v: err %v, want a refusal naming %s and --dev-listen-any", args, err, args[1])
		}
		withFlag, err := mustServerConfig(t, append(slices.Clone(args), "--dev-listen-any"), "")
		if err != nil || !withFlag.DevListenAny {
			t.Errorf("%v --dev-listen-any: err %v, want accepted", args, err)
		}
	}
	// The variable and the config file count like the flag.
	t.Run("env", func(t *testing.T) {
		t.Setenv("DEPLOYCTL_HTTP_ADDR", "0.0.0.0:7070")
		if _, err := mustServerConfig(t, []string{"--dev"}, ""); err == nil {
			t.Error("DEPLOYCTL_HTTP_ADDR=0.0.0.0:7070 under --dev was accepted")
		}
		t.Setenv("DEPLOYCTL_DEV_LISTEN_ANY", "true")
		if _, err := mustServerConfig(t, []string{"--dev"}, ""); err != nil {
			t.Errorf("with DEPLOYCTL_DEV_LISTEN_ANY=true: %v", err)
		}
	})
	for _, args := range [][]string{
		{"--dev"},
		{"--dev", "--http-addr", "127.0.0.2:7070", "--raft-addr", "[::1]:7071", "--registry-addr", "localhost:5000"},
	} {
		if _, err := mustServerConfig(t, args, ""); err != nil {
			t.Errorf("%v: %v, want accepted", args, err)
		}
	}
	if _, err := mustServerConfig(t, []string{"--dev-listen-any", "--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c", "--data-dir", "d", "--bootstrap-expect", "1"}, ""); err == nil ||
		!strings.Contains(err.Error(), "--dev only") {
		t.Errorf("--dev-listen-any outside --dev: err %v, want refused", err)
	}
}

// --insecure-registry is repeatable and checked (issue 16, finding 11).
func TestServerConfigInsecureRegistries(t *testing.T) {
	cfg, err := mustServerConfig(t, []string{"--dev", "--insecure-registry", "registry.lan:5000", "--insecure-registry", "10.0.0.7:5000"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.InsecureRegistries, []string{"registry.lan:5000", "10.0.0.7:5000"}) {
		t.Errorf("insecure registries %v", cfg.InsecureRegistries)
	}
	if _, err := mustServerConfig(t, []string{"--dev", "--insecure-registry", "http://registry.lan:5000"}, ""); err == nil ||
		!strings.Contains(err.Error(), "--insecure-registry") {
		t.Errorf("a URL as insecure registry: err %v, want refused", err)
	}
}

// --subnet-pool: default, flag, DEPLOYCTL_SUBNET_POOL, the config file
// key, and refusals that name the flag.
func TestServerConfigSubnetPool(t *testing.T) {
	cfg, err := mustServerConfig(t, []string{"--dev"}, "")
	if err != nil || cfg.SubnetPool.String() != "10.240.0.0/16" {
		t.Errorf("default subnet pool %s, %v; want 10.240.0.0/16", cfg.SubnetPool, err)
	}
	file := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(file, []byte("dev: true\nsubnet-pool: 10.50.0.0/16\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := mustServerConfig(t, nil, file); err != nil || cfg.SubnetPool.String() != "10.50.0.0/16" {
		t.Errorf("subnet pool from the file %s, %v", cfg.SubnetPool, err)
	}
	t.Setenv("DEPLOYCTL_SUBNET_POOL", "10.60.0.0/20")
	if cfg, err := mustServerConfig(t, nil, file); err != nil || cfg.SubnetPool.String() != "10.60.0.0/20" {
		t.Errorf("subnet pool from the environment %s, %v", cfg.SubnetPool, err)
	}
	if cfg, err := mustServerConfig(t, []string{"--subnet-pool", "172.30.0.0/24"}, file); err != nil || cfg.SubnetPool.String() != "172.30.0.0/24" {
		t.Errorf("subnet pool from the flag %s, %v", cfg.SubnetPool, err)
	}
	for _, pool := range []string{"10.0.0.0/7", "10.240.0.0/25", "10.240.1.0/16", "fd00::/48", "10.240.0.0", "banana"} {
		_, err := mustServerConfig(t, []string{"--dev", "--subnet-pool", pool}, "")
		if err == nil || !strings.HasPrefix(err.Error(), "--subnet-pool") {
			t.Errorf("--subnet-pool %s: err %v, want a refusal naming --subnet-pool", pool, err)
		}
	}
}

// The agent reads --subnet-pool (or DEPLOYCTL_SUBNET_POOL) and refuses a
// bad one before it starts, naming the flag.
func TestAgentSubnetPoolRefused(t *testing.T) {
	for _, args := range [][]string{
		{"agent", "--servers", "127.0.0.1:1", "--host-id", "h1", "--subnet-pool", "10.0.0.0/7"},
		{"agent", "--servers", "127.0.0.1:1", "--host-id", "h1", "--subnet-pool", "10.240.1.0/16"},
	} {
		root := newRootCmd()
		root.SetArgs(args)
		err := root.Execute()
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != ExitUsage || !strings.HasPrefix(ee.err.Error(), "--subnet-pool") {
			t.Errorf("%v: %v, want a usage error naming --subnet-pool", args, err)
		}
	}
	t.Setenv("DEPLOYCTL_SUBNET_POOL", "fd00::/48")
	root := newRootCmd()
	root.SetArgs([]string{"agent", "--servers", "127.0.0.1:1", "--host-id", "h1"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--subnet-pool") {
		t.Errorf("DEPLOYCTL_SUBNET_POOL=fd00::/48: %v, want refused", err)
	}
}

// --pprof-addr is off by default and takes loopback addresses only: the
// profiler has no authentication.
func TestPprofAddrLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:6060", "[::1]:0", "localhost:6060"} {
		if err := checkPprofAddr(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:6060", ":6060", "10.0.0.1:6060", "6060"} {
		err := checkPprofAddr(bad)
		if err == nil || !strings.Contains(err.Error(), "--pprof-addr") {
			t.Errorf("%q: %v, want an error naming --pprof-addr", bad, err)
		}
	}
}
