package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/deployctl/deployctl/specs"
)

// serverSettings are the server's flags bound to viper, which adds each
// flag's variable (serverEnvName) and the config file's key of the same
// name. It remembers where every value came from, so that a configuration
// error can name its source (issue 17).
type serverSettings struct {
	v     *viper.Viper
	flags *pflag.FlagSet
	// file is the config file read, fileLines the line of each of its
	// top-level keys.
	file      string
	fileLines map[string]int
}

// serverEnvName is the variable that sets a server flag: DEPLOYCTL_<FLAG>
// with dashes as underscores, except the TLS files: their variables are
// DEPLOYCTL_SERVER_TLS_*, because DEPLOYCTL_TLS_* configure the CLI alone
// and a shell set up for the CLI must not hand a server the operator's
// certificate (issue 17).
func serverEnvName(flag string) string {
	name := "DEPLOYCTL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	switch flag {
	case "tls-ca", "tls-cert", "tls-key":
		return strings.Replace(name, "DEPLOYCTL_", "DEPLOYCTL_SERVER_", 1)
	}
	return name
}

// bindEnvs binds every flag to its variable only: no AutomaticEnv, which
// would read DEPLOYCTL_TLS_CERT for tls-cert before any explicit binding.
func (s *serverSettings) bindEnvs() {
	s.flags.VisitAll(func(fl *pflag.Flag) { _ = s.v.BindEnv(fl.Name, serverEnvName(fl.Name)) })
}

// readFile reads the config file into viper and refuses keys that are no
// server flag, naming the file, the line and the closest valid key.
func (s *serverSettings) readFile(path string) error {
	s.file = path
	s.v.SetConfigFile(path)
	if err := s.v.ReadInConfig(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	// The file's own keys, without the flags' and variables' keys.
	own := viper.New()
	own.SetConfigFile(path)
	if err := own.ReadInConfig(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var valid []string
	s.flags.VisitAll(func(fl *pflag.Flag) {
		if fl.Name != "config" {
			valid = append(valid, fl.Name)
		}
	})
	s.fileLines = map[string]int{}
	var problems []string
	keys := make([]string, 0, len(own.AllSettings()))
	for k := range own.AllSettings() {
		keys = append(keys, k)
		s.fileLines[k] = keyLine(string(text), k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.fileLines[keys[i]] < s.fileLines[keys[j]] })
	for _, k := range keys {
		if s.flags.Lookup(k) != nil && k != "config" {
			continue
		}
		msg := fmt.Sprintf("%s: unknown key %q", s.where(k), k)
		if best, ok := specs.ClosestName(k, valid); ok {
			msg += "; did you mean " + best + "?"
		} else {
			msg += "; the keys are the server's flag names (deployctl server --help)"
		}
		problems = append(problems, msg)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// keyLine finds the line (from 1) where a top-level key is set in a YAML,
// TOML or JSON file; 0 when not found. viper lower-cases keys, so the
// match ignores case.
func keyLine(text, key string) int {
	re := regexp.MustCompile(`(?i)^\s*["']?` + regexp.QuoteMeta(key) + `["']?\s*[:=]`)
	for i, line := range strings.Split(text, "\n") {
		if re.MatchString(line) {
			return i + 1
		}
	}
	return 0
}

// where is "FILE:LINE" for a key of the config file.
func (s *serverSettings) where(key string) string {
	if line := s.fileLines[key]; line > 0 {
		return fmt.Sprintf("%s:%d", s.file, line)
	}
	return s.file
}

// source says where a key's value came from, by viper's precedence.
func (s *serverSettings) source(key string) string {
	if fl := s.flags.Lookup(key); fl != nil && fl.Changed {
		return "flag --" + key
	}
	if v := os.Getenv(serverEnvName(key)); v != "" {
		return "variable " + serverEnvName(key)
	}
	if _, ok := s.fileLines[key]; ok {
		return "config file " + s.where(key)
	}
	return "the default of --" + key
}

// sources records the source of every key for the checks made after
// loading (the TLS files, the secrets key).
func (s *serverSettings) sources() map[string]string {
	out := map[string]string{}
	s.flags.VisitAll(func(fl *pflag.Flag) { out[fl.Name] = s.source(fl.Name) })
	return out
}

// configError adds to err where the values of keys came from.
func configError(sources map[string]string, err error, keys ...string) error {
	if err == nil || len(keys) == 0 {
		return err
	}
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if src := sources[k]; src != "" {
			parts = append(parts, "--"+k+" from "+src)
		}
	}
	if len(parts) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(parts, "; "))
}
