package pki

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// isReservedNodeName reports names whose files would collide with the CA's
// or the client's: node "ca" would write ca.pem, node "client" client.pem.
func isReservedNodeName(name string) bool {
	switch name {
	case "ca", "ca-key", "client", "client-key":
		return true
	}
	return false
}

// ValidateNodeName reports whether name can be a node name: a DNS name
// made of lower-case letters, digits, '-' and '.', because it becomes both
// a file name and a DNS SAN. Names that collide with other files of the
// directory or that look like IP addresses are refused too.
func ValidateNodeName(name string) error {
	if err := checkDNSName(name); err != nil {
		return fmt.Errorf("pki: node name %q: %w: %w", name, err, ErrBadName)
	}
	switch {
	case isReservedNodeName(name):
		return fmt.Errorf("pki: node name %q is reserved for the CA or client files: %w", name, ErrBadName)
	case strings.HasSuffix(name, "-key"):
		// Node "x-key" would write x-key.pem, the key file of node "x".
		return fmt.Errorf("pki: node name %q must not end in \"-key\" (it would clash with key files): %w", name, ErrBadName)
	case net.ParseIP(name) != nil:
		return fmt.Errorf("pki: node name %q is an IP address: name the node and pass its addresses as hosts: %w", name, ErrBadName)
	}
	return nil
}

// hostSANs splits hosts into IP and DNS subject alternative names. DNS
// names are lower-cased (certificate name matching is case-insensitive).
func hostSANs(hosts []string) (ips []net.IP, names []string, err error) {
	for _, host := range hosts {
		if ip := net.ParseIP(host); ip != nil {
			ips = append(ips, ip)
			continue
		}
		lower := strings.ToLower(host)
		if err := checkDNSName(lower); err != nil {
			return nil, nil, fmt.Errorf("pki: host %q is neither an IP address nor a DNS name: %w: %w", host, err, ErrBadName)
		}
		names = append(names, lower)
	}
	return ips, names, nil
}

// checkDNSName checks name against the host name rules (RFC 1123): at most
// 253 characters, dot-separated labels of 1 to 63 characters from
// [a-z0-9-] that neither start nor end with '-'. Wildcards are not
// accepted: a node certificate names concrete hosts.
func checkDNSName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > 253 {
		return errors.New("longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if label == "" {
			return errors.New("empty label (leading, trailing or doubled '.')")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("character %q not allowed (only a-z, 0-9, '-' and '.')", c)
			}
		}
	}
	return nil
}
