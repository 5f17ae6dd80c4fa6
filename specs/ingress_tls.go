package specs

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// IngressTLS terminates TLS at the proxies on an http entry's listen port
// (issue 13, point 5): Cert names the secret holding the PEM certificate
// chain (leaf first), Key the secret holding its PEM private key. The
// values are stored with `deployctl secret create`; a revision pins their
// versions like those of secrets:, so rotating them is a new secret
// version and an apply.
type IngressTLS struct {
	Cert SecretRef `json:"cert"`
	Key  SecretRef `json:"key"`
}

// SecretRef names a secret and, optionally, one of its versions (0: the
// latest at apply; the revision pins the version either way).
type SecretRef struct {
	Name    string `json:"name"`
	Version int    `json:"version,omitempty"`
}

func (r SecretRef) String() string {
	if r.Version == 0 {
		return r.Name
	}
	return fmt.Sprintf("%s version %d", r.Name, r.Version)
}

// ingressTLS reads `tls: {cert: NAME | {name, version}, key: ...}`.
func (p *parser) ingressTLS(field string, n *yaml.Node) *IngressTLS {
	f := p.fields(field, n)
	if f == nil {
		return nil
	}
	out := &IngressTLS{}
	for key, dst := range map[string]*SecretRef{"cert": &out.Cert, "key": &out.Key} {
		if n, ok := f[key]; ok {
			*dst = p.secretRef(field+"."+key, n)
		}
	}
	return out
}

// secretRef reads a secret name, or {name, version}.
func (p *parser) secretRef(field string, n *yaml.Node) SecretRef {
	var ref SecretRef
	switch r := ResolveNode(n); {
	case r.Kind == yaml.ScalarNode:
		ref.Name, _ = p.Text(field, n)
	case r.Kind == yaml.MappingNode:
		f := p.fields(field, n)
		if v, ok := f["name"]; ok {
			ref.Name, _ = p.Text(field+".name", v)
		} else {
			p.Add(field+".name", n.Line, "required; name the secret, as `deployctl secret create NAME` stored it")
		}
		if v, ok := f["version"]; ok {
			if version, ok := p.integer(field+".version", v); ok {
				if version < 1 {
					p.Add(field+".version", v.Line, "%d is not a version; versions count from 1 (`deployctl secret inspect %s` lists them), or leave version out for the latest", version, ref.Name)
				}
				ref.Version = version
			}
		}
	default:
		p.Add(field, n.Line, "expected a secret name like shop-cert, or a mapping like {name: shop-cert, version: 2}; got %s", DescribeNode(n))
	}
	return ref
}

// ingressTLS checks the tls of every entry: http only, both secrets named
// with valid names and versions. Which listen ports and hosts may mix TLS
// is the collision rule's (collide).
func (v *validator) ingressTLS(entries []Ingress) {
	for i, in := range entries {
		if in.TLS == nil {
			continue
		}
		field := fmt.Sprintf("ingress[%d].tls", i)
		if in.Protocol == IngressTCP {
			v.addf(field, "a tcp entry passes its bytes through untouched, so the proxy cannot terminate TLS on it; remove tls (the service then terminates TLS itself), or write protocol: http")
			continue
		}
		for _, part := range []struct {
			key, what string
			ref       SecretRef
		}{{"cert", "PEM certificate (chain, leaf first)", in.TLS.Cert}, {"key", "PEM private key", in.TLS.Key}} {
			f := field + "." + part.key
			switch {
			case part.ref.Name == "" && part.ref.Version != 0:
				// {version: N} without a name: the parser said so.
			case part.ref.Name == "":
				v.addf(f, "required; name the secret holding the %s, like %s: shop-%s after `deployctl secret create shop-%s -f FILE`", part.what, part.key, part.key, part.key)
			case !isServiceName(part.ref.Name):
				v.addf(f, "%q is not a valid secret name; use 1 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (like shop-%s)", part.ref.Name, part.key)
			}
			if part.ref.Version < 0 {
				v.addf(f+".version", "%d is not a version; versions count from 1, or leave version out for the latest", part.ref.Version)
			}
		}
	}
}

// TLS collision reasons (collide): an http listen port is TLS for all of
// its entries or for none, and one host on it has one certificate.
const (
	whyTLSMixed     = "terminates TLS on a listen port that is plain http in"
	whyPlainMixed   = "is plain http on a listen port that terminates TLS in"
	whyAnotherCert  = "names other certificate or key secrets for the same host and listen port as"
	tlsCollisionFix = "give every http entry of a listen port tls or none, and one host one cert and key; or choose another listen port"
)

// collideTLS says why two http claims on one listen port cannot both hold
// because of TLS, or "". Names are compared, not versions: two services
// sharing a host rotate its certificate one apply at a time.
func collideTLS(a, b ingressUse) string {
	switch {
	case (a.tls == nil) != (b.tls == nil):
		if a.tls != nil {
			return whyTLSMixed
		}
		return whyPlainMixed
	case a.tls != nil && a.host == b.host && (a.tls.Cert.Name != b.tls.Cert.Name || a.tls.Key.Name != b.tls.Key.Name):
		return whyAnotherCert
	}
	return ""
}

func isTLSCollision(why string) bool {
	return why == whyTLSMixed || why == whyPlainMixed || why == whyAnotherCert
}
