package wire

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// MaxSecretSize bounds one secret value (issue 13): a TLS chain or a
// keytab fits; a file system does not.
const MaxSecretSize = 500 << 10

// SecretVersionInfo is what the API tells of one version: never its value.
type SecretVersionInfo struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	Size      int       `json:"size"`
	// KeyID is the key-encryption key its data key is wrapped with.
	KeyID string `json:"key_id,omitempty"`
}

// SecretInfo is a secret as `secret ls` and `secret inspect` show it. Uses
// (inspect only) are the revisions pinning one of its versions, and which
// of them keep a version from being removed.
type SecretInfo struct {
	Name     string              `json:"name"`
	Latest   int                 `json:"latest"`
	Versions []SecretVersionInfo `json:"versions"`
	Uses     []state.SecretUse   `json:"uses,omitempty"`
}

// OutdatedSecret is a secret whose latest version is newer than the
// version a service's current revision pins.
type OutdatedSecret struct {
	Name   string `json:"name"`
	Pinned int    `json:"pinned"`
	Latest int    `json:"latest"`
}

// SpecFinding is an audit finding about a service's current spec.
type SpecFinding struct {
	Service  string `json:"service"`
	Revision int    `json:"revision"`
	Field    string `json:"field"`
	Message  string `json:"message"`
	Fix      string `json:"fix"`
}

// SecretCreated answers `secret create`.
type SecretCreated struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Size    int    `json:"size"`
}

// AgentSecret is one secret file of one replica, with its value: the only
// answer of the API that carries a value (GET /v1/agent/secrets, to the
// agent of the replica's host). UID and GID nil mean the container's user.
type AgentSecret struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Target  string `json:"target"`
	UID     *int   `json:"uid,omitempty"`
	GID     *int   `json:"gid,omitempty"`
	Mode    uint32 `json:"mode"`
	Value   []byte `json:"value"`
}

// AgentSecrets is a replica's secret files.
type AgentSecrets struct {
	Replica string        `json:"replica"`
	Secrets []AgentSecret `json:"secrets"`
}

// CreateSecret stores value as the next version of secret name.
func (c *Client) CreateSecret(ctx context.Context, name string, value []byte) (SecretCreated, error) {
	h := http.Header{"Content-Type": {"application/octet-stream"}, "Idempotency-Key": {NewID()}}
	var out SecretCreated
	err := c.retryWrite(ctx, func() error {
		return c.do(ctx, http.MethodPost, "/v1/secrets/"+url.PathEscape(name), h, value, &out)
	})
	return out, err
}

// Secrets lists every secret (no values).
func (c *Client) Secrets(ctx context.Context) ([]SecretInfo, error) {
	var out []SecretInfo
	err := c.do(ctx, http.MethodGet, "/v1/secrets", nil, nil, &out)
	return out, err
}

// Secret describes one secret and its uses (no value).
func (c *Client) Secret(ctx context.Context, name string) (SecretInfo, error) {
	var out SecretInfo
	err := c.do(ctx, http.MethodGet, "/v1/secrets/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// RemoveSecret removes one version of a secret (version 0: all of them).
func (c *Client) RemoveSecret(ctx context.Context, name string, version int) error {
	path := "/v1/secrets/" + url.PathEscape(name)
	if version != 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	return c.retryWrite(ctx, func() error { return c.do(ctx, http.MethodDelete, path, nil, nil, nil) })
}

// AgentSecrets fetches the secret files of a replica assigned to host.
func (c *Client) AgentSecrets(ctx context.Context, host, replica string) (AgentSecrets, error) {
	var out AgentSecrets
	q := url.Values{"host": {host}, "replica": {replica}}
	err := c.do(ctx, http.MethodGet, "/v1/agent/secrets?"+q.Encode(), nil, nil, &out)
	return out, err
}

// UnlockRequest gives a server the cluster's key-encryption key: the
// content of a key file (`deployctl secret key generate`), over the
// cluster's mutual TLS, from the operator.
type UnlockRequest struct {
	Key string `json:"key"`
}

// UnlockResult answers an unlock: the server now serves secrets with the
// key KeyID. KeyFile is set when the server keeps its key in a file and
// wrote the new key there (after a rotation).
type UnlockResult struct {
	Node    string `json:"node"`
	KeyID   string `json:"key_id"`
	Already bool   `json:"already,omitempty"`
	KeyFile string `json:"key_file,omitempty"`
}

// RotateKeyRequest gives the leader the new key-encryption key.
type RotateKeyRequest struct {
	NewKey string `json:"new_key"`
}

// RotateKeyResult answers a rotation: every stored version (Versions of
// them) is wrapped with NewKeyID now.
type RotateKeyResult struct {
	Leader   string `json:"leader"`
	OldKeyID string `json:"old_key_id"`
	NewKeyID string `json:"new_key_id"`
	Versions int    `json:"versions"`
}

// Unlock gives the key to the server this client names first (unlock is
// answered by the server itself, never forwarded).
func (c *Client) Unlock(ctx context.Context, keyFile []byte) (UnlockResult, error) {
	var out UnlockResult
	body, err := json.Marshal(UnlockRequest{Key: string(keyFile)})
	if err != nil {
		return out, err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	err = c.do(ctx, http.MethodPost, "/v1/cluster/unlock", h, body, &out)
	return out, err
}

// RotateSecretsKey re-wraps every secret under the new key (on the leader).
func (c *Client) RotateSecretsKey(ctx context.Context, keyFile []byte) (RotateKeyResult, error) {
	var out RotateKeyResult
	body, err := json.Marshal(RotateKeyRequest{NewKey: string(keyFile)})
	if err != nil {
		return out, err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	err = c.retryWrite(ctx, func() error { return c.do(ctx, http.MethodPost, "/v1/cluster/secrets-key", h, body, &out) })
	return out, err
}
