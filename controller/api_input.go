package controller

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/specs"
)

// Content types the API reads. A JSON endpoint takes application/json
// (parameters such as charset=utf-8 are allowed) and nothing else: every
// client deployctl ships sends it, and refusing a missing one keeps a form
// post from a browser from being read as JSON. Apply also takes the spec
// as plain YAML; a YAML body may come without a Content-Type (curl
// --data-binary with -H 'Content-Type:').
const mediaJSON = "application/json"

var yamlMediaTypes = []string{"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}

// requestMediaType returns the media type of the request's Content-Type,
// lower case without parameters; "" when there is none. A header that does
// not parse is a 415.
func requestMediaType(w http.ResponseWriter, r *http.Request) (string, bool) {
	ct := r.Header.Get("Content-Type")
	if strings.TrimSpace(ct) == "" {
		return "", true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		writeError(w, http.StatusUnsupportedMediaType, wire.CodeUnsupportedMedia,
			fmt.Sprintf("Content-Type %s cannot be parsed (%v); send Content-Type: %s", clip(ct), err, mediaJSON))
		return "", false
	}
	return mt, true
}

// unsupportedMedia answers a 415 naming what the endpoint accepts.
func unsupportedMedia(w http.ResponseWriter, got string, accepted ...string) {
	if got == "" {
		got = "no Content-Type"
	} else {
		got = "Content-Type " + clip(got)
	}
	writeError(w, http.StatusUnsupportedMediaType, wire.CodeUnsupportedMedia,
		fmt.Sprintf("%s: this endpoint accepts Content-Type %s", got, strings.Join(accepted, ", ")))
}

// readBody reads a bounded body; an oversized one is a 413.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("request body over %d bytes; a spec with its files fits in 1 MiB", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, "reading body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

// decodeJSON reads a JSON body (Content-Type application/json) into into.
func decodeJSON(w http.ResponseWriter, r *http.Request, into any) bool {
	return readJSON(w, r, into, false)
}

// readJSON reads a JSON body into into; with optional an empty body (of
// any content type) leaves into as it is.
func readJSON(w http.ResponseWriter, r *http.Request, into any, optional bool) bool {
	mt, ok := requestMediaType(w, r)
	if !ok {
		return false
	}
	body, ok := readBody(w, r)
	if !ok {
		return false
	}
	if optional && len(body) == 0 {
		return true
	}
	if mt != mediaJSON {
		unsupportedMedia(w, r.Header.Get("Content-Type"), mediaJSON)
		return false
	}
	if err := unmarshalStrict(body, into); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
		return false
	}
	return true
}

// unmarshalStrict decodes exactly one JSON value with no unknown fields,
// and says what is wrong and where in words.
func unmarshalStrict(body []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("malformed JSON body: trailing data after the JSON value at byte %d; send one object", dec.InputOffset())
	}
	return nil
}

func describeJSONError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var b64 base64.CorruptInputError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("malformed JSON body: the body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON body: it ends in the middle of a value")
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON body: at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &b64):
		// encoding/json does not say which field: name the file fields.
		return fmt.Errorf("malformed JSON body: a file field (seccomp_profile, scan_report) is not base64 (bad byte %d); send the file's bytes base64-encoded", int64(b64))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the body"
		}
		what := typ.Value
		if what == "number" {
			what = "this number"
		}
		return fmt.Errorf("malformed JSON body: field %q: %s is not a valid %s (out of range or of the wrong type)", field, what, jsonType(typ.Type.String()))
	}
	// Unknown fields and the rest: encoding/json names the field.
	return fmt.Errorf("malformed JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func jsonType(goType string) string {
	switch goType {
	case "int", "int64", "int32", "uint", "uint64", "uint32", "uint16", "uint8", "int16", "int8":
		return "integer (" + goType + ")"
	case "float64", "float32":
		return "number"
	case "string":
		return "string"
	case "bool":
		return "boolean"
	}
	if strings.HasPrefix(goType, "[]") {
		return "array"
	}
	return "object (" + goType + ")"
}

// pathService returns the {name} of the path when it is a valid service
// name; a name no service can have ("..", "a/b" sent as %2F, NUL, upper
// case, unicode, 300 characters) is a 400 that says how names are spelled.
func pathService(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !specs.IsServiceName(name) {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest,
			fmt.Sprintf("service name %s in the path is not valid; %s", clip(strconv.Quote(name)), specs.ServiceNameRule))
		return "", false
	}
	return name, true
}

// validHostID reports whether a host id is usable: 1 to 253 printable
// ASCII characters without spaces (host names, node ids).
func validHostID(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// maxIdempotencyKey bounds the Idempotency-Key header: the key is stored
// in raft with the request (the client sends 32 hex digits).
const maxIdempotencyKey = 128

// idempotencyKey returns the request's Idempotency-Key (optional): 1 to
// 128 printable ASCII characters without spaces.
func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.Header.Get("Idempotency-Key")
	if key != "" && (len(key) > maxIdempotencyKey || !validHostID(key)) {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest,
			fmt.Sprintf("Idempotency-Key %s: use 1 to %d printable ASCII characters without spaces (a random hex string)", clip(strconv.Quote(key)), maxIdempotencyKey))
		return "", false
	}
	return key, true
}

// serviceWriteParams reads what every write to one service (rollback,
// scale, refresh) carries outside its body: the service name in the path
// and the Idempotency-Key.
func serviceWriteParams(w http.ResponseWriter, r *http.Request) (name, key string, ok bool) {
	if name, ok = pathService(w, r); !ok {
		return "", "", false
	}
	if key, ok = idempotencyKey(w, r); !ok {
		return "", "", false
	}
	return name, key, true
}

// hostParam checks a host id read from a request.
func hostParam(w http.ResponseWriter, field, host string) bool {
	if host == "" {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, field+": required; the host id the agent runs with (--host-id)")
		return false
	}
	if !validHostID(host) {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest,
			fmt.Sprintf("%s: %s is not a valid host id; use 1 to 253 printable ASCII characters without spaces", field, clip(strconv.Quote(host))))
		return false
	}
	return true
}

// blockingParams reads ?index=N&wait=D of a blocking query.
func blockingParams(w http.ResponseWriter, r *http.Request) (uint64, time.Duration, bool) {
	var index uint64
	var wait time.Duration
	var err error
	q := r.URL.Query()
	if s := q.Get("index"); s != "" {
		if index, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("index: %s is not an integer from 0 to %d; send the index of the last answer", clip(strconv.Quote(s)), uint64(1<<64-1)))
			return 0, 0, false
		}
	}
	if s := q.Get("wait"); s != "" {
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("wait: %s is not a duration; want one such as 30s (at most %s is used)", clip(strconv.Quote(s)), maxWait))
			return 0, 0, false
		}
	}
	return index, min(wait, maxWait), true
}

// uintParam reads an optional unsigned query parameter (0 when absent).
func uintParam(w http.ResponseWriter, r *http.Request, name string) (uint64, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("%s: %s is not an integer from 0 to %d", name, clip(strconv.Quote(s)), uint64(1<<64-1)))
		return 0, false
	}
	return v, true
}

// clip shortens what a client sent before it is echoed in an error.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:max], len(s))
}
