// Package wire is the /v1/ API as both of its sides see it: the request
// and response bodies (types.go), the Client the CLI and the agents use
// (client.go), and the error codes, each with its HTTP status and sentinel
// error, in one table the server (controller.API) and the client read
// (errors.go). A code or a body therefore cannot exist on one side only.
// It imports the record packages (specs, raftstore/state, policy...) and
// nothing that serves.
package wire

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/deployctl/deployctl/controller/policy"
	"github.com/deployctl/deployctl/controller/scangate"
	"github.com/deployctl/deployctl/controller/signature"
	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/raftstore"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Sentinel errors of the API. The controller re-exports those it returns
// (controller.ErrNotFound is ErrNotFound); an error answer decoded by the
// client matches the sentinel of its code with errors.Is.
var (
	ErrBadRequest           = errors.New("bad request")
	ErrTooLarge             = errors.New("request body too large")
	ErrUnsupportedMediaType = errors.New("unsupported content type")
	ErrInvalidSpec          = errors.New("invalid spec")
	ErrBadProfile           = errors.New("invalid seccomp profile")
	ErrInvalidPolicy        = errors.New("invalid policy")
	ErrForbidden            = errors.New("forbidden")
	ErrNoRole               = errors.New("the client certificate carries no role")
	ErrUnauthenticated      = errors.New("unauthenticated")
	ErrSignature            = errors.New("image signature check failed")
	ErrScan                 = errors.New("vulnerability scan gate refused the image")
	ErrImageUnresolvable    = errors.New("image cannot be resolved")
	ErrNoRollbackTarget     = errors.New("no revision to roll back to")
	ErrNotFound             = errors.New("not found")
	ErrConflict             = errors.New("conflict")
	// ErrRevisionConflict: an apply guarded by the revision it expects
	// (apply --if-revision N) found another current revision; nothing
	// was stored.
	ErrRevisionConflict = errors.New("the service is not at the expected revision")
	ErrNotLeader        = errors.New("this server is not the leader")
	ErrNoLeader         = errors.New("no leader: the cluster has no quorum right now")
	ErrNotReady         = errors.New("the controller is catching up with the raft log; retry shortly")
	ErrNotClustered     = errors.New("this server does not manage membership")
	ErrTimeout          = errors.New("the server timed out")
	ErrInternal         = errors.New("internal server error")
	// ErrSecretsKey: the server cannot seal or open secrets (no
	// key-encryption key, or another one than the secret was sealed with).
	ErrSecretsKey = errors.New("the server cannot open secrets")
	// ErrSealed: the server runs with --autolock and has not been given
	// the key-encryption key (deployctl cluster unlock).
	ErrSealed = errors.New("the server is sealed")
	// ErrWrongKey: a key given to unlock or rotate is not one the
	// cluster can use.
	ErrWrongKey = errors.New("not the cluster's key-encryption key")
)

// Error codes: the "code" of an error body.
const (
	CodeBadRequest        = "bad_request"
	CodeTooLarge          = "too_large"
	CodeUnsupportedMedia  = "unsupported_media_type"
	CodeInvalidSpec       = "invalid_spec"
	CodeInvalidPolicy     = "invalid_policy"
	CodeForbidden         = "forbidden"
	CodeNoRole            = "no_role"
	CodeUnauthenticated   = "unauthenticated"
	CodeDenied            = "denied"
	CodeSignature         = "signature"
	CodeScan              = "scan"
	CodeRegistry          = "registry"
	CodeImageUnresolvable = "image_unresolvable"
	CodeNoRollbackTarget  = "no_rollback_target"
	CodeNotFound          = "not_found"
	CodeVersionGate       = "version_gate"
	CodeConflict          = "conflict"
	CodeRevisionConflict  = "revision_conflict"
	CodeNotLeader         = "not_leader"
	CodeNoLeader          = "no_leader"
	CodeNotReady          = "not_ready"
	CodeNotClustered      = "not_clustered"
	CodeTimeout           = "timeout"
	CodeInternal          = "internal"
	CodeSecretsKey        = "secrets_key"
	CodeSealed            = "sealed"
	CodeWrongKey          = "wrong_key"
)

// ErrorCode is one row of the table.
type ErrorCode struct {
	Code   string
	Status int
	// Err is the sentinel: the server answers Code for an error that
	// matches it, and the client's RemoteError unwraps to it.
	Err error
	// Also are further sentinels (of packages the controller calls) the
	// server answers Code for; the client gives back Err for them.
	Also []error
}

// matches reports whether err is one of the row's sentinels.
func (c ErrorCode) matches(err error) bool {
	if errors.Is(err, c.Err) {
		return true
	}
	for _, s := range c.Also {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// codes is the table, in the order the server tries it: the first row an
// error matches gives its code (a refused signature that wraps a timeout
// is a signature error). Never written after init.
var codes = [...]ErrorCode{
	{Code: CodeBadRequest, Status: http.StatusBadRequest, Err: ErrBadRequest},
	{Code: CodeTooLarge, Status: http.StatusRequestEntityTooLarge, Err: ErrTooLarge},
	{Code: CodeUnsupportedMedia, Status: http.StatusUnsupportedMediaType, Err: ErrUnsupportedMediaType},
	{Code: CodeUnauthenticated, Status: http.StatusUnauthorized, Err: ErrUnauthenticated},
	{Code: CodeForbidden, Status: http.StatusForbidden, Err: ErrForbidden},
	// A certificate issued before roles: re-issue it from the same CA.
	{Code: CodeNoRole, Status: http.StatusForbidden, Err: ErrNoRole},
	{Code: CodeDenied, Status: http.StatusForbidden, Err: policy.ErrDenied},
	{Code: CodeInvalidPolicy, Status: http.StatusBadRequest, Err: ErrInvalidPolicy, Also: []error{policy.ErrInvalidPolicy}},
	{Code: CodeSignature, Status: http.StatusUnprocessableEntity, Err: ErrSignature, Also: []error{
		signature.ErrUnsigned, signature.ErrBadSignature, signature.ErrDigestMismatch, signature.ErrUntrustedKey, signature.ErrBadKey}},
	{Code: CodeScan, Status: http.StatusUnprocessableEntity, Err: ErrScan, Also: []error{
		scangate.ErrNoScan, scangate.ErrStale, scangate.ErrWrongDigest, scangate.ErrFindings, scangate.ErrBadReport, scangate.ErrBadPolicy}},
	{Code: CodeRegistry, Status: http.StatusBadGateway, Err: signature.ErrRegistry},
	{Code: CodeInvalidSpec, Status: http.StatusBadRequest, Err: ErrInvalidSpec, Also: []error{specs.ErrInvalidSpec, ErrBadProfile}},
	{Code: CodeImageUnresolvable, Status: http.StatusUnprocessableEntity, Err: ErrImageUnresolvable},
	{Code: CodeNoRollbackTarget, Status: http.StatusUnprocessableEntity, Err: ErrNoRollbackTarget},
	{Code: CodeNotFound, Status: http.StatusNotFound, Err: ErrNotFound, Also: []error{state.ErrNotFound}},
	// A server of the cluster runs an older version: retrying will not
	// help until it is upgraded, so not a 503.
	{Code: CodeVersionGate, Status: http.StatusConflict, Err: raftstore.ErrVersionGate},
	{Code: CodeRevisionConflict, Status: http.StatusConflict, Err: ErrRevisionConflict},
	{Code: CodeConflict, Status: http.StatusConflict, Err: ErrConflict, Also: []error{state.ErrConflict, state.ErrRemoving}},
	{Code: CodeNotLeader, Status: http.StatusServiceUnavailable, Err: ErrNotLeader, Also: []error{raftstore.ErrNotLeader}},
	{Code: CodeNoLeader, Status: http.StatusServiceUnavailable, Err: ErrNoLeader, Also: []error{raftstore.ErrNoLeader, raftstore.ErrClosed}},
	{Code: CodeNotReady, Status: http.StatusServiceUnavailable, Err: ErrNotReady},
	{Code: CodeNotClustered, Status: http.StatusNotImplemented, Err: ErrNotClustered},
	// No key-encryption key, or not the one a secret was sealed with:
	// the operator copies the cluster's key file (docs/secrets.md).
	{Code: CodeSecretsKey, Status: http.StatusServiceUnavailable, Err: ErrSecretsKey, Also: []error{secretbox.ErrWrongKey, secretbox.ErrCorrupt}},
	// --autolock and not unlocked yet: another server may serve.
	{Code: CodeSealed, Status: http.StatusServiceUnavailable, Err: ErrSealed},
	// A key given to unlock or rotate that the cluster cannot use (or
	// a key file that does not parse).
	{Code: CodeWrongKey, Status: http.StatusForbidden, Err: ErrWrongKey, Also: []error{secretbox.ErrKeyFile}},
	{Code: CodeTimeout, Status: http.StatusGatewayTimeout, Err: ErrTimeout, Also: []error{
		raftstore.ErrTimeout, context.DeadlineExceeded, context.Canceled}},
	{Code: CodeInternal, Status: http.StatusInternalServerError, Err: ErrInternal},
}

// Codes returns the table (a copy), in match order.
func Codes() []ErrorCode { return append([]ErrorCode(nil), codes[:]...) }

// internalRow is the row of an error no other row matches.
const internalRow = len(codes) - 1

// Classify returns the row the server answers err with: the first that
// matches, or internal.
func Classify(err error) ErrorCode {
	for _, c := range codes {
		if c.matches(err) {
			return c
		}
	}
	return codes[internalRow]
}

// Lookup returns the row of a code.
func Lookup(code string) (ErrorCode, bool) {
	for _, c := range codes {
		if c.Code == code {
			return c, true
		}
	}
	return ErrorCode{}, false
}

// APIError is the JSON body of every error answer.
type APIError struct {
	Error      string             `json:"error"`
	Code       string             `json:"code"`
	Problems   []specs.Problem    `json:"problems,omitempty"`
	Violations []policy.Violation `json:"violations,omitempty"`
	Leader     string             `json:"leader,omitempty"`
}

// Body builds the error body the server writes for err, with the status:
// the row's code, the problems of an invalid spec or policy, the
// violations of a denial.
func Body(err error) (int, APIError) {
	row := Classify(err)
	out := APIError{Error: err.Error(), Code: row.Code}
	var ve *specs.ValidationError
	var pve *policy.ValidationError
	var denied *policy.DeniedError
	switch {
	case errors.As(err, &denied) && row.Code == CodeDenied:
		out.Violations = denied.Violations
	case errors.As(err, &pve) && row.Code == CodeInvalidPolicy:
		out.Problems = pve.Problems
	case errors.As(err, &ve) && row.Code == CodeInvalidSpec:
		out.Problems = ve.Problems
	}
	return row.Status, out
}

// RemoteError is an error answer from the API, as the client decoded it.
// It unwraps to the sentinel of its code.
type RemoteError struct {
	Status int
	APIError
}

func (e *RemoteError) Error() string {
	if len(e.Problems) > 0 {
		var b strings.Builder
		if e.Code == CodeInvalidPolicy {
			b.WriteString("invalid policy:")
		} else {
			b.WriteString("invalid spec:")
		}
		for _, p := range e.Problems {
			b.WriteString("\n  " + p.String())
		}
		return b.String()
	}
	return e.APIError.Error
}

// Unwrap maps the answer's code back onto its sentinel through the table,
// so callers test errors.Is(err, controller.ErrNotFound) on either side.
// An answer without a known code (a proxy's page) unwraps to nothing.
func (e *RemoteError) Unwrap() error {
	if c, ok := Lookup(e.Code); ok {
		return c.Err
	}
	return nil
}
