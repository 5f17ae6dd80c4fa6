package specs

import (
	"strings"
)

// The accepted YAML fields, section by section ("" is the top level). The
// parser checks keys against these lists, and the unknown-field suggestions
// search them.
func schemaFields(section string) []string {
	switch section {
	case "":
		return []string{"service", "image", "replicas", "command", "entrypoint", "env", "ports", "volumes",
			"resources", "healthcheck", "update", "placement", "security",
			"network_mode", "pid", "ipc", "userns_mode", "stop_grace_period", "ingress",
			"expose", "connects_to", "secrets"}
	case "resources":
		return []string{"cpus", "memory", "pids"}
	case "ingress":
		return []string{"listen", "port", "protocol", "host", "path", "tls"}
	case "ingress.tls":
		return []string{"cert", "key"}
	case "ingress.tls.cert", "ingress.tls.key":
		return []string{"name", "version"}
	case "expose":
		return []string{"port", "protocol"}
	case "connects_to":
		return []string{"service", "port"}
	case "secrets":
		return []string{"name", "target", "uid", "gid", "mode", "version"}
	case "healthcheck":
		return []string{"http", "tcp", "exec", "interval", "timeout", "retries", "start_period"}
	case "healthcheck.http":
		return []string{"path", "port"}
	case "healthcheck.tcp":
		return []string{"port"}
	case "update":
		return []string{"parallelism", "delay", "order", "monitor", "max_failure_ratio",
			"failure_action", "progress_deadline", "canary", "rollback_on"}
	case "update.canary":
		return []string{"weight", "duration"}
	case "update.rollback_on":
		return []string{"error_rate", "latency_p99", "min_requests"}
	case "placement":
		return []string{"constraints", "max_per_host"}
	case "security":
		return []string{"user", "allow_root", "allow_root_group", "read_only", "no_new_privileges", "cap_drop", "cap_add",
			"privileged", "seccomp", "apparmor"}
	}
	return nil
}

// schemaSection is the schema section of a field path: list indexes are
// left out, so the entries of "ingress[2]" are checked against "ingress".
func schemaSection(path string) string {
	if !strings.Contains(path, "[") {
		return path
	}
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if path[i] == '[' {
			for i < len(path) && path[i] != ']' {
				i++
			}
			continue
		}
		b.WriteByte(path[i])
	}
	return b.String()
}

func schemaSections() []string {
	return []string{"", "resources", "healthcheck", "healthcheck.http", "healthcheck.tcp", "update", "update.canary", "update.rollback_on",
		"placement", "security", "ingress", "ingress.tls", "expose", "connects_to"}
}

// composeAliases are Compose spellings of our fields that edit distance would
// not find.
func composeAlias(section, name string) (string, bool) {
	if section == "" && (name == "environment" || name == "environments") {
		return "env", true
	}
	if section == "healthcheck" && name == "test" {
		return "exec", true
	}
	if section == "placement" && name == "max_replicas_per_node" {
		return "max_per_host", true
	}
	switch {
	case section == "" && (name == "links" || name == "external_links" || name == "depends_on" ||
		name == "connections" || name == "dependencies" || name == "upstreams" || name == "calls"):
		return "connects_to", true
	case section == "" && (name == "exposed_ports" || name == "expose_ports" || name == "offers"):
		return "expose", true
	case section == "connects_to" && (name == "name" || name == "to" || name == "target"):
		return "service", true
	case (section == "connects_to" || section == "expose") && (name == "target_port" || name == "container_port"):
		return "port", true
	case section == "update.canary" && (name == "percent" || name == "percentage" || name == "traffic" || name == "share" || name == "split"):
		return "weight", true
	case section == "update.canary" && (name == "interval" || name == "period" || name == "bake" || name == "pause"):
		return "duration", true
	case section == "update.rollback_on" && (name == "p99" || name == "latency" || name == "max_latency"):
		return "latency_p99", true
	case section == "update.rollback_on" && (name == "errors" || name == "failure_rate" || name == "max_error_rate"):
		return "error_rate", true
	case section == "update" && (name == "rollback_if" || name == "analysis" || name == "thresholds"):
		return "rollback_on", true
	case section == "expose" && name == "proto":
		return "protocol", true
	case section == "" && name == "security_opt":
		return "security.seccomp or security.apparmor", true
	case section == "" && (name == "net" || name == "network"):
		return "network_mode", true
	case section == "" && name == "pid_mode":
		return "pid", true
	case section == "" && name == "ipc_mode":
		return "ipc", true
	case section == "" && name == "userns":
		return "userns_mode", true
	case section == "security" && (name == "seccomp_profile" || name == "security_opt"):
		return "seccomp", true
	case section == "security" && name == "apparmor_profile":
		return "apparmor", true
	}
	return "", false
}

// unknownFieldMessage says a key is not part of the schema and suggests the
// closest valid name: in the same section when one is within a small edit
// distance ("replicaz" -> "replicas"), else the same name in another section
// ("cpus" at the top level -> "resources.cpus"), else the list of valid names.
func unknownFieldMessage(section, name string) string {
	if alias, ok := composeAlias(section, name); ok {
		return "unknown field; did you mean " + alias + "?"
	}
	valid := schemaFields(section)
	if best, ok := closest(name, valid); ok {
		return "unknown field; did you mean " + best + "?"
	}
	for _, other := range schemaSections() {
		if other == section {
			continue
		}
		for _, f := range schemaFields(other) {
			if normalizeName(f) == normalizeName(name) {
				if other == "" {
					return "unknown field; did you mean " + f + " (at the top level)?"
				}
				return "unknown field; did you mean " + other + "." + f + "?"
			}
		}
	}
	return "unknown field; valid fields are " + strings.Join(valid, ", ")
}

// ClosestName returns the candidate a misspelt name most likely meant, by
// the rule the spec's unknown-field suggestions use (see closest), for the
// other formats deployctl reads strictly (the cluster policy). It reports
// false when no candidate is close enough to be a plausible typo.
func ClosestName(name string, candidates []string) (string, bool) {
	return closest(name, candidates)
}

// closest returns the candidate nearest to name by edit distance, compared
// case-insensitively and ignoring '_' and '-' so that "startPeriod" finds
// "start_period". It reports false when even the nearest is too far to be a
// plausible typo.
func closest(name string, candidates []string) (string, bool) {
	target := normalizeName(name)
	best, bestDistance := "", -1
	for _, c := range candidates {
		d := editDistance(target, normalizeName(c))
		if bestDistance < 0 || d < bestDistance {
			best, bestDistance = c, d
		}
	}
	if bestDistance < 0 {
		return "", false
	}
	// Two edits is a typo; more is another word. A short name must keep at
	// least one rune of its own, else "ab" would match any two-letter field.
	limit := min(2, len([]rune(target))-1)
	return best, bestDistance <= limit
}

func normalizeName(name string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(name))
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	previous := make([]int, len(rb)+1)
	current := make([]int, len(rb)+1)
	for j := range previous {
		previous[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		current[0] = i
		for j := 1; j <= len(rb); j++ {
			substitution := previous[j-1]
			if ra[i-1] != rb[j-1] {
				substitution++
			}
			current[j] = min(previous[j]+1, current[j-1]+1, substitution)
		}
		previous, current = current, previous
	}
	return previous[len(rb)]
}
