package registryhost

import "testing"

func TestIsLoopback(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1:5000": true, "127.1.2.3": true, "localhost:5000": true, "LOCALHOST": true,
		"[::1]:5000": true, "::1": true,
		"10.0.0.1:5000": false, "registry.example.com": false, "docker.io": false, "localhost.example.com:5000": false,
	}
	for in, want := range cases {
		if got := IsLoopback(in); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", in, got, want)
		}
	}
}
