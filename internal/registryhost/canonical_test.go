package registryhost

import (
	"errors"
	"slices"
	"testing"
)

func TestCanonical(t *testing.T) {
	cases := map[string]string{
		"registry.example.com":          "registry.example.com",
		"Registry.Example.COM":          "registry.example.com",
		"registry.example.com.":         "registry.example.com",
		"registry.example.com:443":      "registry.example.com",
		"registry.example.com:0443":     "registry.example.com",
		"registry.example.com.:443":     "registry.example.com",
		"registry.example.com:5000":     "registry.example.com:5000",
		"registry.example.com:05000":    "registry.example.com:5000",
		"localhost:5000":                "localhost:5000",
		"LOCALHOST:5000":                "localhost:5000",
		"localhost.:5000":               "localhost:5000",
		"127.0.0.1:5000":                "localhost:5000",
		"127.1.2.3:5000":                "localhost:5000",
		"[::1]:5000":                    "localhost:5000",
		"[0:0:0:0:0:0:0:1]:5000":        "localhost:5000",
		"[::ffff:127.0.0.1]:5000":       "localhost:5000",
		"localhost":                     "localhost",
		"localhost:443":                 "localhost",
		"localhost:80":                  "localhost:80",
		"0.0.0.0:5000":                  "localhost:5000",
		"[::]:5000":                     "localhost:5000",
		"1e100.net":                     "1e100.net",
		"123.example.com":               "123.example.com",
		"10.0.0.5:5000":                 "10.0.0.5:5000",
		"[2001:DB8:0:0::1]:5000":        "[2001:db8::1]:5000",
		"[2001:db8::1]":                 "[2001:db8::1]",
		"docker.io":                     DockerHub,
		"Docker.IO":                     DockerHub,
		"index.docker.io":               DockerHub,
		"index.docker.io:443":           DockerHub,
		"registry-1.docker.io":          DockerHub,
		"docker.io:5000":                "docker.io:5000",
		"localhost.example.com:5000":    "localhost.example.com:5000",
		"registry.example.com:65535":    "registry.example.com:65535",
		"xn--bcher-kva.example.com:443": "xn--bcher-kva.example.com",
	}
	for in, want := range cases {
		got, err := Canonical(in)
		if err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "https://registry.example.com", "registry.example.com/team", "user@registry.example.com",
		"registry.example.com:", "registry.example.com:0", "registry.example.com:65536", "registry.example.com:http",
		"registry.example.com:+5", "::1", "[::1", "[::1]5000", "[registry.example.com]:5000", "[fe80::1%eth0]:5000", ".", ":5000",
		"127.1:5000", "2130706433:5000", "0x7f.0.0.1:5000", "0177.0.0.1:5000", "127.000.000.001:5000", "0x7f000001"} {
		if got, err := Canonical(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("Canonical(%q) = %q, %v; want ErrBadName", bad, got, err)
		}
	}
}

func TestCanonicalRepository(t *testing.T) {
	cases := map[string]string{
		"nginx":                              "index.docker.io/library/nginx",
		"library/nginx":                      "index.docker.io/library/nginx",
		"docker.io/nginx":                    "index.docker.io/library/nginx",
		"docker.io/library/nginx":            "index.docker.io/library/nginx",
		"index.docker.io/library/nginx":      "index.docker.io/library/nginx",
		"registry-1.docker.io/nginx":         "index.docker.io/library/nginx",
		"Docker.io/nginx":                    "index.docker.io/library/nginx",
		"someone/app":                        "index.docker.io/someone/app",
		"LOCALHOST:5000/team/app":            "localhost:5000/team/app",
		"127.0.0.1:5000/team/app":            "localhost:5000/team/app",
		"[::1]:5000/team/app":                "localhost:5000/team/app",
		"localhost/team/app":                 "localhost/team/app",
		"LOCALHOST/team/app":                 "localhost/team/app",
		"registry.example.com:443/team/app":  "registry.example.com/team/app",
		"registry.example.com./team/x/app":   "registry.example.com/team/x/app",
		"registry.example.com:5000/team/app": "registry.example.com:5000/team/app",
	}
	for in, want := range cases {
		got, err := CanonicalRepository(in)
		if err != nil || got != want {
			t.Errorf("CanonicalRepository(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "localhost:5000/", "localhost:5000/team//app", "localhost:5000/team/../app", "localhost:5000/./app",
		"localhost:5000/team/App", "localhost:5000/team/app:v1", "localhost:5000/team/app@sha256:ab", "https://localhost:5000/app", "bad:port/app"} {
		if got, err := CanonicalRepository(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("CanonicalRepository(%q) = %q, %v; want ErrBadName", bad, got, err)
		}
	}
}

func TestSpellings(t *testing.T) {
	cases := map[string][]string{
		"registry.example.com":      {"registry.example.com", "registry.example.com:443"},
		"registry.example.com:5000": {"registry.example.com:5000"},
		"localhost":                 {"localhost", "localhost:443", "localhost:80"},
		"localhost:80":              {"localhost:80", "localhost", "localhost:443"},
		DockerHub: {DockerHub, "docker.io", "docker.io:443", DockerHub + ":443",
			"registry-1.docker.io", "registry-1.docker.io:443"},
	}
	for in, want := range cases {
		got := Spellings(in)
		if got[0] != want[0] || !sameSet(got, want) {
			t.Errorf("Spellings(%q) = %q; want %q, canonical first", in, got, want)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
