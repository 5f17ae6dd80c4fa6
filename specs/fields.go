package specs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Fields lists every leaf of a spec under its JSON path (env.LOG_LEVEL,
// healthcheck.interval, ports[0].host_port) with its value as JSON
// (durations as "10s", a file's bytes as their size and hash): what `deployctl
// diff` and the dashboard's diff of two revisions compare.
func Fields(s *Spec) map[string]string {
	out := map[string]string{}
	if s != nil {
		flatten("", reflect.ValueOf(*s), out)
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
