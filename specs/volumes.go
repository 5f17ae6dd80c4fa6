package specs

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Volume modes, the optional third part of "HOST:CONTAINER[:ro|:rw]".
const (
	VolumeReadOnly  = "ro"
	VolumeReadWrite = "rw"
)

// ParseVolume reads one bind mount, "HOST:CONTAINER[:ro|:rw]", as in
// "/srv/web/static:/static:ro". Both paths must be absolute and clean
// (no "..", no "//", no trailing "/"), the container path must not be "/",
// and neither may hold a ':'. Without a mode the mount is read-write. Named
// volumes, SELinux labels (z, Z) and propagation modes are refused. Errors
// match ErrInvalidSpec. Whether the host path may be mounted is not checked
// here: that is the cluster policy's decision.
func ParseVolume(s string) (Volume, error) {
	const example = `write HOST:CONTAINER[:ro], like "/srv/web/static:/static:ro"`
	text := strings.TrimSpace(s)
	parts := strings.Split(text, ":")
	var v Volume
	switch len(parts) {
	case 2:
		v.HostPath, v.ContainerPath = parts[0], parts[1]
	case 3:
		v.HostPath, v.ContainerPath = parts[0], parts[1]
		switch parts[2] {
		case VolumeReadOnly:
			v.ReadOnly = true
		case VolumeReadWrite:
		default:
			return Volume{}, invalidValuef("%q: mode %q is not ro or rw (SELinux labels and propagation modes are not supported)", s, parts[2])
		}
	default:
		if len(parts) > 3 {
			return Volume{}, invalidValuef("%q has too many ':'; paths cannot contain ':'; %s", s, example)
		}
		return Volume{}, invalidValuef("%q is not a bind mount; give both the host and the container path; %s", s, example)
	}
	if msg := checkVolume(v); msg != "" {
		return Volume{}, invalidValuef("%q: %s", s, msg)
	}
	return v, nil
}

// checkVolume says what is wrong with a volume's paths, or "".
func checkVolume(v Volume) string {
	if msg := checkMountPath("host", v.HostPath); msg != "" {
		return msg
	}
	if msg := checkMountPath("container", v.ContainerPath); msg != "" {
		return msg
	}
	if v.ContainerPath == "/" {
		return "the container path cannot be /, which is the container's root filesystem; mount on a directory, like /data"
	}
	return ""
}

// checkMountPath checks one side of a bind mount: absolute and in the form
// path.Clean gives, so that the policy compares the path the engine will
// mount, not a spelling of it.
func checkMountPath(which, p string) string {
	switch {
	case p == "":
		return fmt.Sprintf("the %s path is empty", which)
	case strings.ContainsFunc(p, isControl):
		return fmt.Sprintf("the %s path contains a control character", which)
	case strings.Contains(p, ":"):
		return fmt.Sprintf("the %s path %q contains ':', which the HOST:CONTAINER form cannot hold", which, p)
	case which == "host" && !strings.Contains(p, "/"):
		return fmt.Sprintf("named volumes are not supported; the host path must be absolute, like /srv/%s", p)
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("the %s path %q is not absolute; start it with /", which, p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Sprintf("the %s path %q contains \"..\"; write the path it leads to", which, p)
	case path.Clean(p) != p:
		return fmt.Sprintf("write the %s path %q as %s", which, p, path.Clean(p))
	}
	return ""
}

// String writes the volume back in the spec's syntax: "HOST:CONTAINER",
// with ":ro" when read-only.
func (v Volume) String() string {
	s := v.HostPath + ":" + v.ContainerPath
	if v.ReadOnly {
		s += ":" + VolumeReadOnly
	}
	return s
}
