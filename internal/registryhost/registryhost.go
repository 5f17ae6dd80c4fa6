// Package registryhost answers one question about a registry address:
// whether it is on this machine. Registries on loopback are spoken to over
// plain HTTP, as the Docker Engine does by default (127.0.0.0/8 is an
// insecure registry); every other registry needs TLS.
package registryhost

import (
	"net"
	"strings"
)

// IsLoopback reports whether a registry host ("host" or "host:port") is
// localhost or a loopback address (127.0.0.0/8, ::1).
func IsLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
