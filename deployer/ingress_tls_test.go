package deployer

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/testca"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/hashicorp/go-hclog"
)

// fakeTLSSource answers the pairs it holds and counts the fetches.
type fakeTLSSource struct {
	pairs   []wire.IngressCertificate
	fetches int
}

func (f *fakeTLSSource) AgentIngressTLS(_ context.Context, host string) (wire.AgentIngressTLS, error) {
	f.fetches++
	out := wire.AgentIngressTLS{}
	for _, p := range f.pairs {
		// Copies: the runner clears the buffers it is given.
		out.Certificates = append(out.Certificates, wire.IngressCertificate{IngressTLSRef: p.IngressTLSRef,
			CertPEM: append([]byte(nil), p.CertPEM...), KeyPEM: append([]byte(nil), p.KeyPEM...)})
	}
	return out, nil
}

// The runner loads the pair a route names once, swaps to a new version's
// pair, and when a new pair does not parse keeps serving the old one and
// reports the problem on the port.
func TestIngressCertificatesSwapAndKeepOnFailure(t *testing.T) {
	ca, err := testca.New("test")
	if err != nil {
		t.Fatal(err)
	}
	v1, _ := ca.Issue("shop.example.com")
	v2, _ := ca.Issue("shop.example.com")
	ref := func(n int) wire.IngressTLSRef {
		return wire.IngressTLSRef{Cert: wire.SecretRef{Name: "c", Version: n}, Key: wire.SecretRef{Name: "k", Version: n}}
	}
	src := &fakeTLSSource{pairs: []wire.IngressCertificate{{IngressTLSRef: ref(1), CertPEM: v1.CertPEM, KeyPEM: v1.KeyPEM}}}
	g := newIngressRunner(IngressConfig{TLSSource: src, ListenIP: "127.0.0.1"}, "h1", hclog.NewNullLogger())
	route := func(n int) []wire.IngressRoute {
		return []wire.IngressRoute{{Service: "web", Listen: 443, Protocol: "http", Host: "shop.example.com", Path: "/", Port: 8080, TLS: ref(n)}}
	}
	served := func() *tls.Certificate {
		t.Helper()
		cert, err := g.tls.certs.ServerConfig(443).GetCertificate(&tls.ClientHelloInfo{ServerName: "shop.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	ctx := context.Background()
	g.syncCertificates(ctx, route(1))
	g.syncCertificates(ctx, route(1))
	first := served()
	if src.fetches != 1 || first.Leaf.SerialNumber.Cmp(v1.Serial) != 0 {
		t.Fatalf("after two syncs: %d fetches, serial %v (want 1 fetch, %v)", src.fetches, first.Leaf.SerialNumber, v1.Serial)
	}
	// A new version whose key is not its certificate's: the old one stays.
	src.pairs = append(src.pairs, wire.IngressCertificate{IngressTLSRef: ref(2), CertPEM: v2.CertPEM, KeyPEM: v1.KeyPEM})
	g.cluster = &wire.IngressTable{Routes: route(2)}
	g.syncCertificates(ctx, route(2))
	if served() != first {
		t.Fatalf("a pair that did not load replaced the one served")
	}
	problems := g.problems()
	if len(problems) != 1 || problems[0].Listen != 443 || !strings.Contains(problems[0].Error, "certificate c v2 with key k v2") {
		t.Fatalf("problems = %+v", problems)
	}
	// Fixed: the next sync swaps, and the problem is gone.
	src.pairs[1].KeyPEM = v2.KeyPEM
	g.syncCertificates(ctx, route(2))
	if got := served(); got.Leaf.SerialNumber.Cmp(v2.Serial) != 0 {
		t.Fatalf("after the fix: serial %v, want %v", got.Leaf.SerialNumber, v2.Serial)
	}
	if problems := g.problems(); len(problems) != 0 {
		t.Fatalf("problems after the fix: %+v", problems)
	}
	if _, ok := g.tls.loaded[ref(1)]; ok {
		t.Errorf("the pair no route names any more is still held in memory")
	}
}
