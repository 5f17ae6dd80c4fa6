package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
)

// Drift is one field where a container, as the engine reports it, differs
// from the create options of its revision.
type Drift struct {
	// Field is the Engine API field, with a key in brackets for map and
	// list entries: "HostConfig.Memory", "Config.Env[PORT]".
	Field string `json:"field"`
	Want  string `json:"want"`
	Got   string `json:"got"`
}

// unset is how a missing value reads in a Drift.
const unset = "(unset)"

// DetectDrift compares the fields deployctl sets in its create options (want
// and wantHost, as deployer.ContainerOptions builds them for the replica's
// revision) with what the engine reports for container c. Either option
// struct may be nil to skip its fields. The result is in a fixed order, nil
// when nothing drifted.
//
// The engine merges the image's config into the container's: so Env,
// Labels and ExposedPorts drift only when an entry deployctl set is missing
// or different (entries from the image are expected), and Cmd, Entrypoint,
// Healthcheck and StopTimeout are compared only when deployctl set them.
// Engine defaults that the options leave empty (IpcMode "" vs "private")
// are not drift. What can drift on a running container is what `docker
// update` changes (limits, restart policy); every other field drifts only
// when the container was replaced behind deployctl's back. The networks
// the container is attached to (`docker network connect`) are
// NetworkDrift's: which network it is matters, not only its name.
func DetectDrift(c container.InspectResponse, want *container.Config, wantHost *container.HostConfig) []Drift {
	var got container.Config
	if c.Config != nil {
		got = *c.Config
	}
	var gotHost container.HostConfig
	if c.ContainerJSONBase != nil && c.HostConfig != nil {
		gotHost = *c.HostConfig
	}
	var d drifts
	if want != nil {
		d.config(*want, got)
	}
	if wantHost != nil {
		d.hostConfig(*wantHost, gotHost)
	}
	return d
}

// drifts collects Drift entries.
type drifts []Drift

// add records field when want and got differ.
func (d *drifts) add(field, want, got string) {
	if want != got {
		*d = append(*d, Drift{Field: field, Want: want, Got: got})
	}
}

// list compares two lists as sets (order is not configuration).
func (d *drifts) list(field string, want, got []string) {
	d.add(field, setText(want), setText(got))
}

// subset records every key of want whose value in got is missing or
// different, as field[key].
func (d *drifts) subset(field string, want, got map[string]string) {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		gotValue, ok := got[k]
		if !ok {
			gotValue = unset
		}
		d.add(field+"["+k+"]", want[k], gotValue)
	}
}

func (d *drifts) config(want, got container.Config) {
	d.add("Config.Image", want.Image, got.Image)
	d.add("Config.User", want.User, got.User)
	d.subset("Config.Env", envMap(want.Env), envMap(got.Env))
	if want.Cmd != nil {
		d.add("Config.Cmd", fmt.Sprintf("%q", []string(want.Cmd)), fmt.Sprintf("%q", []string(got.Cmd)))
	}
	if want.Entrypoint != nil {
		d.add("Config.Entrypoint", fmt.Sprintf("%q", []string(want.Entrypoint)), fmt.Sprintf("%q", []string(got.Entrypoint)))
	}
	d.subset("Config.Labels", want.Labels, got.Labels)
	wantPorts, gotPorts := map[string]string{}, map[string]string{}
	for port := range want.ExposedPorts {
		wantPorts[string(port)] = "exposed"
	}
	for port := range got.ExposedPorts {
		gotPorts[string(port)] = "exposed"
	}
	d.subset("Config.ExposedPorts", wantPorts, gotPorts)
	if want.Healthcheck != nil {
		d.add("Config.Healthcheck", healthText(want.Healthcheck), healthText(got.Healthcheck))
	}
	if want.StopTimeout != nil {
		d.add("Config.StopTimeout", intPtrText(want.StopTimeout), intPtrText(got.StopTimeout))
	}
}

func (d *drifts) hostConfig(want, got container.HostConfig) {
	d.add("HostConfig.Privileged", strconv.FormatBool(want.Privileged), strconv.FormatBool(got.Privileged))
	d.add("HostConfig.ReadonlyRootfs", strconv.FormatBool(want.ReadonlyRootfs), strconv.FormatBool(got.ReadonlyRootfs))
	d.list("HostConfig.CapDrop", capNames(want.CapDrop), capNames(got.CapDrop))
	d.list("HostConfig.CapAdd", capNames(want.CapAdd), capNames(got.CapAdd))
	d.list("HostConfig.SecurityOpt", securityOptTexts(want.SecurityOpt), securityOptTexts(got.SecurityOpt))
	d.list("HostConfig.Tmpfs", mapLines(want.Tmpfs), mapLines(got.Tmpfs))
	d.list("HostConfig.Binds", want.Binds, got.Binds)
	d.list("HostConfig.Devices", deviceLines(want.Devices), deviceLines(got.Devices))
	d.add("HostConfig.Memory", strconv.FormatInt(want.Memory, 10), strconv.FormatInt(got.Memory, 10))
	// An engine without swap accounting stores -1 ("memory limited without
	// swap") for every container: that is the engine's answer to the
	// request, not a change since.
	if !(got.MemorySwap == -1 && want.MemorySwap > 0) {
		d.add("HostConfig.MemorySwap", strconv.FormatInt(want.MemorySwap, 10), strconv.FormatInt(got.MemorySwap, 10))
	}
	d.add("HostConfig.NanoCpus", strconv.FormatInt(want.NanoCPUs, 10), strconv.FormatInt(got.NanoCPUs, 10))
	d.add("HostConfig.CpuShares", strconv.FormatInt(want.CPUShares, 10), strconv.FormatInt(got.CPUShares, 10))
	d.add("HostConfig.PidsLimit", pidsText(want.PidsLimit), pidsText(got.PidsLimit))
	d.add("HostConfig.RestartPolicy", restartText(want.RestartPolicy), restartText(got.RestartPolicy))
	d.add("HostConfig.NetworkMode", string(want.NetworkMode), string(got.NetworkMode))
	d.add("HostConfig.PidMode", string(want.PidMode), string(got.PidMode))
	d.add("HostConfig.UTSMode", string(want.UTSMode), string(got.UTSMode))
	d.add("HostConfig.UsernsMode", string(want.UsernsMode), string(got.UsernsMode))
	// The engine fills an empty IpcMode with its default ("private", or
	// "shareable" on engines configured so); any other value is a choice.
	if want.IpcMode != "" || (got.IpcMode != "" && got.IpcMode != "private" && got.IpcMode != "shareable") {
		d.add("HostConfig.IpcMode", string(want.IpcMode), string(got.IpcMode))
	}
	if want.CgroupnsMode != "" {
		d.add("HostConfig.CgroupnsMode", string(want.CgroupnsMode), string(got.CgroupnsMode))
	}
	d.list("HostConfig.PortBindings", bindings(want.PortBindings), bindings(got.PortBindings))
}

// envMap reads KEY=value lines; a line without '=' is a key with no value.
func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, line := range env {
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

func setText(list []string) string {
	sorted := slices.Clone(list)
	sort.Strings(sorted)
	return "[" + strings.Join(sorted, " ") + "]"
}

func capNames(caps []string) []string {
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = capName(c)
	}
	return out
}

// securityOptTexts keeps every entry but replaces an inline seccomp profile
// (kilobytes of JSON) by its size and hash, so a Drift stays readable and
// still tells two profiles apart.
func securityOptTexts(opts []string) []string {
	out := make([]string, len(opts))
	for i, opt := range opts {
		key, value := securityOpt(opt)
		if key == "seccomp" && value != "unconfined" && len(value) > 64 {
			sum := sha256.Sum256([]byte(value))
			opt = fmt.Sprintf("seccomp=<profile %d bytes sha256:%s>", len(value), hex.EncodeToString(sum[:6]))
		}
		out[i] = opt
	}
	return out
}

func mapLines(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func deviceLines(devices []container.DeviceMapping) []string {
	out := make([]string, 0, len(devices))
	for _, dev := range devices {
		out = append(out, dev.PathOnHost+":"+dev.PathInContainer+":"+dev.CgroupPermissions)
	}
	return out
}

// pidsText reads a PidsLimit; nil, 0 and -1 all mean unlimited.
func pidsText(limit *int64) string {
	if limit == nil || *limit <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(*limit, 10)
}

func restartText(p container.RestartPolicy) string {
	return fmt.Sprintf("%s:%d", p.Name, p.MaximumRetryCount)
}

func intPtrText(p *int) string {
	if p == nil {
		return unset
	}
	return strconv.Itoa(*p)
}

func healthText(h *container.HealthConfig) string {
	if h == nil {
		return unset
	}
	return fmt.Sprintf("%q interval %s timeout %s start_period %s retries %d", h.Test, h.Interval, h.Timeout, h.StartPeriod, h.Retries)
}
