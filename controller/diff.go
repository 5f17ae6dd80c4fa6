package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
)

// Diff is a dry run of an apply (`deployctl diff`, POST
// /v1/services/diff): the same checks, the same resolution of the tag and
// the same admission (policy, signature, scan gate), then what the apply
// would change against the current revision, field by field, and whether
// its containers restart: the fingerprint decides, as it does for the
// rollout. Nothing is written.
func (c *Controller) Diff(ctx context.Context, req ApplyRequest) (wire.DiffOutcome, error) {
	if !c.Ready() {
		return wire.DiffOutcome{}, c.notLeader()
	}
	p, err := c.prepareApply(ctx, req)
	if err != nil {
		return wire.DiffOutcome{}, err
	}
	out := wire.DiffOutcome{Service: p.spec.Service, Exists: p.exists && p.cur.Number > 0, Revision: p.cur.Number, Unchanged: p.unchanged,
		Image: p.spec.Image, PinnedDigest: p.cur.Digest, ResolvedDigest: p.pin.Digest, Warnings: p.warnings}
	running := 0
	if out.Exists {
		for _, r := range p.view.ServiceReplicas(p.svc.Name) {
			if r.Desired == state.DesiredRunning {
				running++
			}
		}
		out.Changes = specChanges(&p.cur.Spec, p.spec)
	} else {
		out.Changes = specChanges(&specs.Spec{}, p.spec)
	}
	want := p.spec.Replicas
	out.Starts, out.Stops = max(want-running, 0), max(running-want, 0)
	if out.Exists && p.fp != p.cur.Fingerprint {
		out.Restart = true
		out.Restarts = min(running, want)
	}
	return out, nil
}

// containerFields are the spec's top-level fields left out of the
// fingerprint (FingerprintSecrets): changing them restarts nothing. The
// image text is replaced there by the pinned ref, which the digest lines
// show.
func containerField(field string) bool {
	top, _, _ := strings.Cut(field, ".")
	top, _, _ = strings.Cut(top, "[")
	return !slices.Contains([]string{"image", "replicas", "update", "ingress", "expose", "connects_to"}, top)
}

// specChanges lists the leaf fields that differ between two specs, named
// by their JSON paths (env.LOG_LEVEL, healthcheck.interval, ports[0].host_port).
func specChanges(old, new *specs.Spec) []wire.FieldChange {
	a, b := map[string]string{}, map[string]string{}
	flatten("", reflect.ValueOf(*old), a)
	flatten("", reflect.ValueOf(*new), b)
	var fields []string
	for k := range a {
		fields = append(fields, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			fields = append(fields, k)
		}
	}
	slices.Sort(fields)
	var out []wire.FieldChange
	for _, f := range fields {
		if a[f] != b[f] {
			out = append(out, wire.FieldChange{Field: f, Old: a[f], New: b[f], Restarts: containerField(f)})
		}
	}
	return out
}

// flatten writes every leaf of v under its path into out: scalars always,
// lists and maps when they have entries, pointers when set.
func flatten(path string, v reflect.Value, out map[string]string) {
	join := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		out[path] = time.Duration(v.Int()).String()
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			flatten(path, v.Elem(), out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			flatten(join(name), v.Field(i), out)
		}
	case reflect.Map:
		keys := v.MapKeys()
		for _, k := range keys {
			flatten(join(fmt.Sprint(k.Interface())), v.MapIndex(k), out)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			if v.Len() > 0 { // a file's content (a seccomp profile)
				sum := sha256.Sum256(v.Bytes())
				out[path] = fmt.Sprintf("%d bytes, sha256 %s", v.Len(), hex.EncodeToString(sum[:6]))
			}
			return
		}
		if k := v.Type().Elem().Kind(); k != reflect.Struct && k != reflect.Pointer {
			if v.Len() > 0 { // a list of words (command, cap_add): one value
				data, _ := json.Marshal(v.Interface())
				out[path] = string(data)
			}
			return
		}
		for i := range v.Len() {
			flatten(fmt.Sprintf("%s[%d]", path, i), v.Index(i), out)
		}
	default:
		// Zero values too: replicas 3 -> 0 is a change to 0, not a
		// removal; a field equal on both sides is not listed anyway.
		data, _ := json.Marshal(v.Interface())
		out[path] = string(data)
	}
}

func (a *API) diffService(w http.ResponseWriter, r *http.Request) {
	req, ok := a.readApply(w, r)
	if !ok {
		return
	}
	out, err := a.c.Diff(r.Context(), req)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
