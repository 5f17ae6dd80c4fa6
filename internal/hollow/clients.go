package hollow

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
)

// TLSClients gives each hollow host a client that presents its own agent
// certificate (role agent/HOST), as a real agent-only host does:
//
//   - HOST.pem and HOST-key.pem in dir (made by `deployctl tls add-node
//     HOST --role agent`) when they exist;
//   - otherwise a certificate issued in memory from the CA in dir
//     (ca.pem, ca-key.pem: the directory `tls init` wrote), never written
//     to disk.
//
// The servers check a report's host against its certificate for hollow
// hosts exactly as for real ones; no certificate speaks for more than one
// host. Running hollow hosts from the CA key needs what issuing agent
// certificates needs anyway: the CA key (see DESIGN.md).
func TLSClients(dir string, servers []string) func(hostID string) (Controller, error) {
	var ca *pki.Authority
	var caErr error
	return func(hostID string) (Controller, error) {
		files := pki.NodeFiles(dir, hostID)
		if exists(files.Cert) && exists(files.Key) {
			cfg, err := pki.ClientConfig(files.CA, files.Cert, files.Key)
			if err != nil {
				return nil, err
			}
			return wire.NewTLSClient(servers, cfg), nil
		}
		if ca == nil && caErr == nil {
			ca, caErr = pki.LoadAuthority(dir)
		}
		if caErr != nil {
			return nil, fmt.Errorf("no %s in %s, and no CA key to issue one: %w", files.Cert, dir, caErr)
		}
		cfg, err := ca.AgentClientConfig(hostID)
		if err != nil {
			return nil, err
		}
		return wire.NewTLSClient(servers, cfg), nil
	}
}

// PlainClients gives every host a client over plain http (a dev server
// without TLS); they share one connection pool sized for the fleet.
func PlainClients(servers []string, hosts int) func(hostID string) (Controller, error) {
	transport := &http.Transport{MaxIdleConns: 2 * hosts, MaxIdleConnsPerHost: 2 * hosts, IdleConnTimeout: 90 * time.Second}
	c := wire.NewClient(servers, &http.Client{Transport: transport})
	return func(string) (Controller, error) { return c, nil }
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
