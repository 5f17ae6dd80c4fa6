package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// NodeHostsFile records, in a PKI directory, the extra names and addresses
// (the hosts) of every server node certificate issued there: those given
// to Init (--hosts) and to IssueNodeHosts. Re-issuing a node (rotation)
// starts from them, so a rotation never drops an address the node is
// reached at unless told to (issue 17).
const NodeHostsFile = "nodes.json"

// nodeHostsDoc is the content of NodeHostsFile.
type nodeHostsDoc struct {
	// Hosts maps a node name to its extra hosts, in the order issued
	// (IPs in canonical form, DNS names lower-cased).
	Hosts map[string][]string `json:"hosts"`
}

// HostChange says how a node certificate's hosts change when it is
// (re-)issued: Add are put on it, Remove taken off. Everything else the
// node had (recorded in NodeHostsFile, or on its current certificate in
// the directory) is kept.
type HostChange struct {
	Add, Remove []string
}

// alwaysNames are on every node certificate and cannot be removed.
func alwaysNames(node string) []string {
	return []string{node, "localhost", "127.0.0.1", "::1"}
}

// canonicalHost is the form hosts are compared and recorded in.
func canonicalHost(host string) string {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return strings.ToLower(host)
}

// readNodeHosts reads dir's NodeHostsFile; a missing file is an empty
// record (a directory made before it existed).
func readNodeHosts(dir string) (nodeHostsDoc, error) {
	doc := nodeHostsDoc{Hosts: map[string][]string{}}
	path := filepath.Join(dir, NodeHostsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return doc, fmt.Errorf("pki: read %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, fmt.Errorf("pki: %s: %w (fix or delete it: the names on each node's current certificate are kept anyway): %w", path, err, ErrBadFiles)
	}
	if doc.Hosts == nil {
		doc.Hosts = map[string][]string{}
	}
	return doc, nil
}

func (d nodeHostsDoc) encode() []byte {
	data, _ := json.MarshalIndent(d, "", "  ") // a map of string slices always encodes
	return append(data, '\n')
}

// certHosts are the extra hosts on the node certificate at path: its SANs
// but the node name and loopback. A missing or unreadable certificate has
// none (it is being replaced anyway).
func certHosts(path, node string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	certs, err := decodeCerts(data)
	if err != nil {
		return nil
	}
	var out []string
	for _, name := range certs[0].DNSNames {
		out = append(out, canonicalHost(name))
	}
	for _, ip := range certs[0].IPAddresses {
		out = append(out, ip.String())
	}
	return slices.DeleteFunc(out, func(h string) bool { return slices.Contains(alwaysNames(node), h) })
}

// nextHosts works out a node's hosts for its next certificate: what it had
// (recorded and on its current certificate), plus change.Add, minus
// change.Remove. Removing a host it does not have, or one every node
// certificate carries, is refused (ErrBadName) so that a typo never
// passes for a removal.
func nextHosts(node string, recorded, onCert []string, change HostChange) ([]string, error) {
	if _, _, err := hostSANs(change.Add); err != nil {
		return nil, err
	}
	var hosts []string
	for _, h := range slices.Concat(recorded, onCert, change.Add) {
		if h = canonicalHost(h); !slices.Contains(hosts, h) && !slices.Contains(alwaysNames(node), h) {
			hosts = append(hosts, h)
		}
	}
	for _, r := range change.Remove {
		c := canonicalHost(r)
		if slices.Contains(alwaysNames(node), c) {
			return nil, fmt.Errorf("pki: cannot remove %q: every node certificate names the node, localhost, 127.0.0.1 and ::1: %w", r, ErrBadName)
		}
		i := slices.Index(hosts, c)
		if i < 0 {
			return nil, fmt.Errorf("pki: cannot remove %q from node %s: it is not among its names (%s): %w", r, node, strings.Join(hosts, ", "), ErrBadName)
		}
		hosts = slices.Delete(hosts, i, i+1)
	}
	return hosts, nil
}
