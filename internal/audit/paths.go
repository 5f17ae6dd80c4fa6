package audit

import (
	"path"
	"strings"
)

// sensitiveHostDirs are the host directories CIS 5.6 names besides "/".
// Mounting one of them (or anything inside it) gives the container the
// host's boot files, devices, configuration, libraries, kernel interfaces or
// binaries.
func sensitiveHostDirs() []string {
	return []string{"/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"}
}

// engineSocketDirs are the host directories that hold the engine's API
// socket in a default installation: mounting one of them exposes the socket
// as surely as mounting the socket itself.
func engineSocketDirs() []string {
	return []string{"/", "/var", "/var/run", "/run"}
}

// engineSocketName is the file name of the engine's API socket.
const engineSocketName = "docker.sock"

// SensitiveHostDirs lists the host directories that CIS 5.6 says must never
// be mounted, "/" included.
func SensitiveHostDirs() []string {
	return append([]string{"/"}, sensitiveHostDirs()...)
}

// IsSensitiveHostPath reports whether mounting host path p into a container
// exposes a CIS 5.6 directory: p is "/" itself or lies in /boot, /dev,
// /etc, /lib, /proc, /sys or /usr (after cleaning, so "/tmp/../etc" counts).
// Only absolute paths are host paths; a relative one (a named volume) is
// never sensitive. Symlinks on the host are not followed: this is a pure
// function of the text.
func IsSensitiveHostPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	p = path.Clean(p)
	if p == "/" {
		return true
	}
	for _, dir := range sensitiveHostDirs() {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// ExposesEngineSocket reports whether mounting host path p gives the
// container the engine's API socket (CIS 5.32): p names docker.sock
// anywhere, or is a directory that holds the socket in a default
// installation ("/", "/var", "/var/run", "/run"). Whoever reaches the socket
// controls the engine, and through it the host.
func ExposesEngineSocket(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	p = path.Clean(p)
	if strings.Contains(p, engineSocketName) {
		return true
	}
	for _, dir := range engineSocketDirs() {
		if p == dir {
			return true
		}
	}
	return false
}
