package signature

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Finding 7 of issue 16: a rule for localhost:5000/team/* let
// LOCALHOST:5000/team/app and localhost:5000/team/x/app through unsigned.
// Every spelling of a covered repository must match its rule.
func TestMatchRuleSpellings(t *testing.T) {
	rules := []TrustRule{
		{Match: "localhost:5000/team/*", Keys: []Key{{Name: "team"}}},
		{Match: "localhost:5000/deep/**", Keys: []Key{{Name: "deep"}}},
		{Match: "registry.example.com/team/*", Keys: []Key{{Name: "example"}}},
		{Match: "docker.io/nginx", Keys: []Key{{Name: "nginx"}}},
		{Match: "docker.io/acme/*", Keys: []Key{{Name: "acme"}}},
		{Match: "[2001:db8::1]:5000/v6/*", Keys: []Key{{Name: "v6"}}},
	}
	tests := []struct {
		repository string
		want       string // key name of the matching rule, "" for none
	}{
		{"localhost:5000/team/app", "team"},
		{"LOCALHOST:5000/team/app", "team"},
		{"LocalHost:5000/team/app", "team"},
		{"localhost.:5000/team/app", "team"},
		{"localhost:05000/team/app", "team"},
		{"127.0.0.1:5000/team/app", "team"},
		{"127.0.0.2:5000/team/app", "team"},
		{"[::1]:5000/team/app", "team"},
		{"[0:0:0:0:0:0:0:1]:5000/team/app", "team"},
		{"[::ffff:127.0.0.1]:5000/team/app", "team"},
		{"localhost:5001/team/app", ""}, // another port is another registry
		// "*" stays within one segment (the second half of the finding is
		// closed by "**" and require_signatures, see below).
		{"localhost:5000/team/x/app", ""},
		{"localhost:5000/deep/app", "deep"},
		{"localhost:5000/deep/x/y/app", "deep"},
		{"LOCALHOST:5000/deep/x/app", "deep"},
		{"localhost:5000/deep", "deep"}, // "**" matches zero segments too
		{"localhost:5000/deeper/app", ""},
		{"registry.example.com/team/app", "example"},
		{"REGISTRY.EXAMPLE.COM/team/app", "example"},
		{"registry.example.com./team/app", "example"},
		{"registry.example.com:443/team/app", "example"},
		{"Registry.Example.Com.:0443/team/app", "example"},
		{"registry.example.com:5000/team/app", ""},
		{"registry.example.com.evil.org/team/app", ""},
		{"nginx", "nginx"},
		{"library/nginx", "nginx"},
		{"docker.io/nginx", "nginx"},
		{"docker.io/library/nginx", "nginx"},
		{"index.docker.io/library/nginx", "nginx"},
		{"Index.Docker.IO/library/nginx", "nginx"},
		{"registry-1.docker.io/library/nginx", "nginx"},
		{"docker.io:443/library/nginx", "nginx"},
		{"acme/web", "acme"},
		{"index.docker.io/acme/web", "acme"},
		{"[2001:db8::1]:5000/v6/app", "v6"},
		{"[2001:DB8:0::1]:5000/v6/app", "v6"},
	}
	for _, tt := range tests {
		repo, err := parseRepository(tt.repository)
		if err != nil {
			t.Errorf("parseRepository(%s): %v", tt.repository, err)
			continue
		}
		rule, ok, err := matchRule(rules, repo)
		got := ""
		if ok {
			got = rule.Keys[0].Name
		}
		if err != nil || got != tt.want {
			t.Errorf("matchRule(%s) = %q, %v; want %q", tt.repository, got, err, tt.want)
		}
	}
}

// Patterns are canonicalised like images: a rule may be written in any
// spelling and still covers every spelling of the image.
func TestMatchPatternSpellings(t *testing.T) {
	tests := []struct {
		match, repository string
		want              bool
	}{
		{"LOCALHOST:5000/team/*", "127.0.0.1:5000/team/app", true},
		{"127.0.0.1:5000/team/*", "localhost:5000/team/app", true},
		{"[::1]:5000/team/*", "localhost:5000/team/app", true},
		{"Registry.Example.com.:443/team/*", "registry.example.com/team/app", true},
		{"index.docker.io/library/*", "nginx", true},
		{"docker.io/*", "nginx", true}, // docker.io/* is library/*, as Docker reads docker.io/nginx
		{"docker.io/*", "acme/web", false},
		{"docker.io/**", "acme/web", true},
		{"docker.io/**", "nginx", true},
		{"registry-1.docker.io/**", "acme/web", true},
		// Globs in the registry are matched against every spelling.
		{"localhost:*/team/*", "localhost/team/app", true},
		{"127.0.0.1:*/team/*", "localhost:5000/team/app", true},
		{"*.example.com/**", "REGISTRY.EXAMPLE.COM:443/a/b", true},
		{"*.example.com/**", "registry.example.com:5000/a/b", false},
		{"*.example.com:*/**", "registry.example.com:5000/a/b", true},
		{"*/team/app", "registry.example.com/team/app", true},
		{"**", "registry.example.com/any/depth/app", true},
		{"**/app", "registry.example.com/any/depth/app", true},
		{"**/app", "registry.example.com/any/depth/api", false},
		{"registry.example.com/**/api", "registry.example.com/team/web/api", true},
		{"registry.example.com/**/api", "registry.example.com/api", true},
		{"registry.example.com/**/**/api", "registry.example.com/a/b/c/api", true},
		{"registry.example.com/team/w?b", "registry.example.com/team/web", true},
		{"registry.example.com/team/[a-m]*", "registry.example.com/team/web", false},
		{"localhost/team/*", "localhost:80/team/app", true}, // a loopback registry without port is also tried on :80
		{"localhost:80/team/*", "localhost/team/app", true},
		{"registry.example.com:80/team/*", "registry.example.com/team/app", false},
	}
	for _, tt := range tests {
		repo, err := parseRepository(tt.repository)
		if err != nil {
			t.Errorf("parseRepository(%s): %v", tt.repository, err)
			continue
		}
		_, ok, err := matchRule([]TrustRule{{Match: tt.match, Keys: []Key{{Name: "k"}}}}, repo)
		if err != nil || ok != tt.want {
			t.Errorf("%q matches %q = %v, %v; want %v", tt.match, tt.repository, ok, err, tt.want)
		}
	}
}

func TestValidateMatch(t *testing.T) {
	for _, good := range []string{"registry.example.com/team/*", "registry.example.com/team/**", "**", "**/web", "*/team/web",
		"localhost:*/x", "[::1]:5000/x", "[2001:db8::1]:*/x", "docker.io/nginx", "registry.example.com/**/api"} {
		if err := ValidateMatch(good); err != nil {
			t.Errorf("ValidateMatch(%q) = %v", good, err)
		}
	}
	bad := map[string]string{
		"":                                 "empty",
		"registry.example.com":             "registry.example.com/**",
		"registry.example.com/":            "registry.example.com/**",
		"team/web":                         "not a registry",
		"nginx/*":                          "docker.io/nginx/*",
		"registry.example.com/team//web":   "empty segment",
		"registry.example.com/team/../web": `".."`,
		"registry.example.com/team/a**":    "whole segment",
		"**.example.com/x":                 "whole segment",
		"registry.example.com/Team/*":      "lower case",
		"registry.example.com/team/web:v1": "tag or digest",
		"registry.example.com/team/[":      "not a valid pattern",
		"registry.example.com:99999/x":     "port",
		"registry.example.com:/x":          "port",
		"[::1/x":                           "unclosed",
		"https://registry.example.com/x":   "",
	}
	for match, want := range bad {
		err := ValidateMatch(match)
		if !errors.Is(err, ErrBadRule) || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateMatch(%q) = %v; want ErrBadRule mentioning %q", match, err, want)
		}
	}
}

// With RequireMatch, an image no rule covers is refused before any
// request (127.0.0.1:1 has no registry), naming how it was read and the
// rule that would cover it.
func TestVerifyRequireMatch(t *testing.T) {
	key := mustECDSASigner(t, "release.pub").key
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, rules := range [][]TrustRule{nil, {{Match: "localhost:5000/team/*", Keys: []Key{key}}}} {
		v := &Verifier{Rules: rules, RequireMatch: true}
		got, err := v.Verify(context.Background(), "127.0.0.1:1/team/x/app", digest)
		if !errors.Is(err, ErrUnsigned) || !got.Required {
			t.Fatalf("Verify = %+v, %v; want a required ErrUnsigned", got, err)
		}
		for _, want := range []string{"localhost:1/team/x/app", `"localhost:1/**"`, "require_signatures"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}
	// Without it, the same image passes unchecked.
	v := &Verifier{Rules: []TrustRule{{Match: "localhost:5000/team/*", Keys: []Key{key}}}}
	if got, err := v.Verify(context.Background(), "127.0.0.1:1/team/x/app", digest); err != nil || got.Required {
		t.Fatalf("Verify without RequireMatch = %+v, %v", got, err)
	}
}

// Against a real registry: a rule written as localhost:PORT/team/* refuses
// the unsigned image under every spelling that reaches the registry, and
// a "**" rule covers nested repositories.
func TestVerifyRefusesUnsignedUnderEverySpelling(t *testing.T) {
	release := mustECDSASigner(t, "release.pub")
	host := mustRegistry(t, true)
	_, port, _ := strings.Cut(host, ":")
	flat := mustRepo(t, host+"/team/app")
	nested := mustRepo(t, host+"/team/x/app")
	flatDigest := mustPushRandomImage(t, flat, "v1").Digest.String()
	nestedDigest := mustPushRandomImage(t, nested, "v1").Digest.String()
	rules := []TrustRule{
		{Match: fmt.Sprintf("localhost:%s/team/*", port), Keys: []Key{release.key}},
		{Match: fmt.Sprintf("localhost:%s/team/**", port), Keys: []Key{release.key}},
	}
	v := &Verifier{Rules: rules}
	for _, spelling := range []string{"localhost", "LOCALHOST", "LocalHost", "127.0.0.1"} {
		for repoPath, digest := range map[string]string{"team/app": flatDigest, "team/x/app": nestedDigest} {
			repository := spelling + ":" + port + "/" + repoPath
			got, err := v.Verify(context.Background(), repository, digest)
			if !errors.Is(err, ErrUnsigned) || !got.Required {
				t.Errorf("Verify(%s) = %+v, %v; want ErrUnsigned", repository, got, err)
			}
		}
	}
	// Signed: accepted under any spelling, since the signature is on the digest.
	mustWriteCosignV2(t, nested, mustHash(t, nestedDigest), signedLayer(t, release, simpleSigningPayload(nested, mustHash(t, nestedDigest), simpleSigningType)))
	if got, err := v.Verify(context.Background(), "LOCALHOST:"+port+"/team/x/app", nestedDigest); err != nil || got.KeyName != "release.pub" {
		t.Fatalf("signed nested image = %+v, %v", got, err)
	}
}

func mustHash(t *testing.T, digest string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(digest)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
