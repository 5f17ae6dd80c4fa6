package specs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseIngressTLS(t *testing.T) {
	s := mustParse(t, minimalYAML+`ingress:
  - listen: 443
    port: 8080
    host: shop.example.com
    tls: {cert: shop-cert, key: shop-key}
  - listen: 443
    port: 8080
    host: shop.example.com
    path: /api
    tls:
      cert: {name: shop-cert, version: 2}
      key: {name: shop-key}
  - {listen: 80, port: 8080}
`)
	want := []IngressTLS{
		{Cert: SecretRef{Name: "shop-cert"}, Key: SecretRef{Name: "shop-key"}},
		{Cert: SecretRef{Name: "shop-cert", Version: 2}, Key: SecretRef{Name: "shop-key"}},
	}
	for i, w := range want {
		if got := s.Ingress[i].TLS; got == nil || *got != w {
			t.Errorf("ingress[%d].tls = %+v, want %+v", i, got, w)
		}
	}
	if s.Ingress[2].TLS != nil {
		t.Errorf("ingress[2].tls = %+v, want none", s.Ingress[2].TLS)
	}
	// Canonical: ApplyDefaults changes nothing; a clone is deep.
	before, _ := json.Marshal(s)
	c := s.Clone()
	c.ApplyDefaults()
	after, _ := json.Marshal(c)
	if string(before) != string(after) {
		t.Errorf("ApplyDefaults changed a parsed spec:\n%s\n%s", before, after)
	}
	c.Ingress[0].TLS.Cert.Name = "other"
	if s.Ingress[0].TLS.Cert.Name != "shop-cert" {
		t.Errorf("Clone shares an ingress entry's tls")
	}
	if !strings.Contains(string(before), `"tls":{"cert":{"name":"shop-cert"},"key":{"name":"shop-key"}}`) {
		t.Errorf("JSON of the tls entry: %s", before)
	}
	if body, _ := json.Marshal(s.Ingress[2]); strings.Contains(string(body), "tls") {
		t.Errorf("an entry without tls has %s", body)
	}
}

func TestParseIngressTLSInvalid(t *testing.T) {
	checkInvalidCases(t, []invalidCase{
		{"cert missing", "ingress:\n  - listen: 443\n    port: 80\n    tls: {key: k}\n", "ingress[0].tls.cert", 6, "required; name the secret holding the PEM certificate"},
		{"key missing", "ingress:\n  - listen: 443\n    port: 80\n    tls: {cert: c}\n", "ingress[0].tls.key", 6, "required; name the secret holding the PEM private key"},
		{"tls not a mapping", "ingress: [{listen: 443, port: 80, tls: true}]\n", "ingress[0].tls", 3, "expected a mapping of cert, key"},
		{"unknown tls key", "ingress: [{listen: 443, port: 80, tls: {cert: c, key: k, ca: x}}]\n", "ingress[0].tls.ca", 3, "cert, key"},
		{"bad cert name", "ingress: [{listen: 443, port: 80, tls: {cert: Shop_Cert, key: k}}]\n", "ingress[0].tls.cert", 3, "not a valid secret name"},
		{"version zero", "ingress: [{listen: 443, port: 80, tls: {cert: {name: c, version: 0}, key: k}}]\n", "ingress[0].tls.cert.version", 3, "versions count from 1"},
		{"ref without a name", "ingress: [{listen: 443, port: 80, tls: {cert: {version: 2}, key: k}}]\n", "ingress[0].tls.cert.name", 3, "required"},
		{"ref is a list", "ingress: [{listen: 443, port: 80, tls: {cert: [c], key: k}}]\n", "ingress[0].tls.cert", 3, "expected a secret name like shop-cert"},
		{"tls on tcp", "ingress: [{listen: 5432, port: 5432, protocol: tcp, tls: {cert: c, key: k}}]\n", "ingress[0].tls", 3, "a tcp entry passes its bytes through untouched"},
		{"tls and plain on one port", "ingress:\n  - {listen: 443, port: 80, host: a.example.com, tls: {cert: c, key: k}}\n  - {listen: 443, port: 80, host: b.example.com}\n",
			"ingress[1]", 5, "http listen 443 (host b.example.com, path /) is plain http on a listen port that terminates TLS in ingress[0] of this spec (https listen 443 (host a.example.com, path /)); give every http entry of a listen port tls or none"},
		{"one host, two certificates", "ingress:\n  - {listen: 443, port: 80, host: a.example.com, tls: {cert: c, key: k}}\n  - {listen: 443, port: 80, host: a.example.com, path: /api, tls: {cert: c2, key: k}}\n",
			"ingress[1]", 5, "names other certificate or key secrets for the same host and listen port as ingress[0]"},
	})
}

func TestParseIngressTLSAccepts(t *testing.T) {
	for _, doc := range []string{
		// One certificate per host on a port, and plain http on another port.
		"ingress:\n  - {listen: 443, port: 80, host: a.example.com, tls: {cert: a-cert, key: a-key}}\n  - {listen: 443, port: 80, host: b.example.com, tls: {cert: b-cert, key: b-key}}\n  - {listen: 80, port: 80}\n",
		// One secret holding both the chain and the key.
		"ingress: [{listen: 443, port: 80, tls: {cert: bundle, key: bundle}}]\n",
		// The same host, two paths, the same secrets at other versions.
		"ingress:\n  - {listen: 443, port: 80, host: a.example.com, tls: {cert: c, key: k}}\n  - {listen: 443, port: 80, host: a.example.com, path: /api, tls: {cert: {name: c, version: 1}, key: k}}\n",
	} {
		mustParse(t, minimalYAML+doc)
	}
}

func TestIngressTLSConflictsAcrossServices(t *testing.T) {
	web := spec(t, "web", "ingress: [{listen: 443, port: 8080, host: shop.example.com, tls: {cert: shop-cert, key: shop-key}}]\n")
	others := []*Spec{web}
	cases := []struct{ name, doc, message string }{
		{"plain on a TLS port", "ingress: [{listen: 443, port: 80, host: api.example.com}]\n", "is plain http on a listen port that terminates TLS in ingress[0] of service web"},
		{"TLS on the port, another certificate for the same host", "ingress: [{listen: 443, port: 80, host: shop.example.com, path: /api, tls: {cert: other-cert, key: shop-key}}]\n",
			"names other certificate or key secrets for the same host and listen port as ingress[0] of service web"},
		{"same host, same secrets", "ingress: [{listen: 443, port: 80, host: shop.example.com, path: /api, tls: {cert: {name: shop-cert, version: 3}, key: shop-key}}]\n", ""},
		{"another host, another certificate", "ingress: [{listen: 443, port: 80, host: api.example.com, tls: {cert: api-cert, key: api-key}}]\n", ""},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			problems := IngressConflicts(spec(t, "new", tt.doc), others)
			if tt.message == "" {
				if problems != nil {
					t.Fatalf("IngressConflicts = %v, want none", problems)
				}
				return
			}
			if len(problems) != 1 || problems[0].Field != "ingress[0]" || !strings.Contains(problems[0].Message, tt.message) ||
				!strings.Contains(problems[0].Message, "or change service web first") {
				t.Fatalf("IngressConflicts = %v\nwant one on ingress[0] containing %q", problems, tt.message)
			}
		})
	}
}
