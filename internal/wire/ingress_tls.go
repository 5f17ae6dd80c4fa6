package wire

import (
	"context"
	"net/http"
	"net/url"
)

// SecretRef names one version of a secret (never its value).
type SecretRef struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// IngressTLSRef is the certificate and key an https route is served with:
// the secret versions its service's current revision pins (issue 13,
// point 5). The zero value is a plain http route.
type IngressTLSRef struct {
	Cert SecretRef `json:"cert"`
	Key  SecretRef `json:"key"`
}

// IsZero reports a plain http route.
func (r IngressTLSRef) IsZero() bool { return r == IngressTLSRef{} }

// IngressCertificate is one certificate and key of the ingress routes,
// with their values (PEM): the answer of GET /v1/agent/secrets?ingress=1,
// to a host's agent, whose proxy serves every ingress route.
type IngressCertificate struct {
	IngressTLSRef
	CertPEM []byte `json:"cert_pem"`
	KeyPEM  []byte `json:"key_pem"`
}

// AgentIngressTLS is every certificate and key the current ingress routes
// name, one entry per distinct pair.
type AgentIngressTLS struct {
	Certificates []IngressCertificate `json:"certificates"`
}

// AgentIngressTLS fetches the certificates and keys of the ingress routes
// for host's proxy.
func (c *Client) AgentIngressTLS(ctx context.Context, host string) (AgentIngressTLS, error) {
	var out AgentIngressTLS
	q := url.Values{"host": {host}, "ingress": {"1"}}
	err := c.do(ctx, http.MethodGet, "/v1/agent/secrets?"+q.Encode(), nil, nil, &out)
	return out, err
}
