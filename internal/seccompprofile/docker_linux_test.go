package seccompprofile

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/internal/enginetest"
	"github.com/deployctl/deployctl/internal/seccomprules"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/hashicorp/go-hclog"
)

// labelTest marks every Docker object this test creates, with the run's
// unique ID as value; cleanup removes exactly those.
const labelTest = "io.deployctl.test"

// dockerLimit only guards against a hung engine; nothing asserts on time.
const dockerLimit = 2 * time.Minute

// Exit statuses of testdata/syscallprobe.
const (
	probeAllowed = 0
	probeEPERM   = 10
)

// probeUser is the non-root user the probe runs as.
const probeUser = "10001:10001"

func mustRunID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

// mustDockerClient connects to the engine; the test is skipped only when
// the engine cannot be reached at all.
func mustDockerClient(t testing.TB, ctx context.Context) *client.Client {
	t.Helper()
	raw, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	if _, err := raw.Ping(ctx); err != nil {
		if client.IsErrConnectionFailed(err) {
			enginetest.Unavailable(t, err)
		}
		t.Fatalf("docker ping: %v", err)
	}
	return raw
}

// mustProbeImage builds testdata/syscallprobe, pushes it to a fresh
// loopback registry, pulls it into the engine by digest and returns the
// pinned reference. The registry and every pulled image go in t.Cleanup.
func mustProbeImage(t *testing.T, ctx context.Context, raw *client.Client, runID string) string {
	t.Helper()
	reg, err := devimage.StartRegistry("127.0.0.1:0", hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	// Registered after the registry's Close, so it runs before it.
	t.Cleanup(func() { removeImagesFrom(t, raw, reg.Addr()) })

	img, err := devimage.BuildGoImage(ctx, devimage.GoImageOptions{
		PackageDir: "testdata/syscallprobe",
		User:       probeUser,
		Labels:     map[string]string{labelTest: runID},
	})
	if err != nil {
		t.Fatalf("BuildGoImage: %v", err)
	}
	ref := reg.Addr() + "/syscallprobe:" + runID
	digest, err := devimage.Push(ctx, ref, img)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	pinned, err := devimage.PinnedRef(ref, digest)
	if err != nil {
		t.Fatal(err)
	}
	progress, err := raw.ImagePull(ctx, pinned, image.PullOptions{})
	if err != nil {
		t.Fatalf("pull %s: %v", pinned, err)
	}
	defer progress.Close()
	if _, err := io.Copy(io.Discard, progress); err != nil {
		t.Fatalf("pull %s: %v", pinned, err)
	}
	return pinned
}

// removeContainers removes the containers labelled with runID, and only
// those.
func removeContainers(t testing.TB, raw *client.Client, runID string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	byLabel := filters.NewArgs(filters.Arg("label", labelTest+"="+runID))
	containers, err := raw.ContainerList(ctx, container.ListOptions{All: true, Filters: byLabel})
	if err != nil {
		t.Errorf("cleanup: list containers: %v", err)
		return
	}
	for _, c := range containers {
		if err := raw.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("cleanup: remove container %s: %v", c.ID, err)
		}
	}
}

// removeImagesFrom removes the images pulled from the test registry, and
// only those: their RepoDigests start with the registry's address.
func removeImagesFrom(t testing.TB, raw *client.Client, registryAddr string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	images, err := raw.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		t.Errorf("cleanup: list images: %v", err)
		return
	}
	for _, img := range images {
		fromRegistry := false
		for _, repoDigest := range img.RepoDigests {
			if strings.HasPrefix(repoDigest, registryAddr+"/") {
				fromRegistry = true
			}
		}
		if !fromRegistry {
			continue
		}
		if _, err := raw.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("cleanup: remove image %s: %v", img.ID, err)
		}
	}
}

// probeRun is what one run of the probe container ended with.
type probeRun struct {
	exitCode int64
	output   string
}

// runProbe runs the probe once, hardened as deployctl runs services (no
// capabilities, non-root, read-only root, no new privileges, no network),
// with extraSecurityOpt added to the security options, and waits for it to
// exit.
func runProbe(t *testing.T, ctx context.Context, raw *client.Client, runID, ref string, extraSecurityOpt ...string) probeRun {
	t.Helper()
	return runProbeCall(t, ctx, raw, runID, ref, "", extraSecurityOpt...)
}

// runProbeCall is runProbe with the syscall to make (see
// testdata/syscallprobe; "" for its default, personality).
func runProbeCall(t *testing.T, ctx context.Context, raw *client.Client, runID, ref, call string, extraSecurityOpt ...string) probeRun {
	t.Helper()
	cfg := &container.Config{
		Image:  ref,
		User:   probeUser,
		Labels: map[string]string{labelTest: runID},
	}
	if call != "" {
		cfg.Cmd = []string{call}
	}
	hostCfg := &container.HostConfig{
		NetworkMode:    "none",
		CapDrop:        []string{"ALL"},
		ReadonlyRootfs: true,
		SecurityOpt:    append([]string{"no-new-privileges"}, extraSecurityOpt...),
	}
	created, err := raw.ContainerCreate(ctx, cfg, hostCfg, nil, nil, "")
	if err != nil {
		t.Fatalf("create probe container: %v", err)
	}
	if err := raw.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start probe container: %v", err)
	}
	// not-running returns at once if the probe has already exited.
	waitResult, waitErr := raw.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	var exitCode int64
	select {
	case result := <-waitResult:
		if result.Error != nil {
			t.Fatalf("wait for probe: %s", result.Error.Message)
		}
		exitCode = result.StatusCode
	case err := <-waitErr:
		t.Fatalf("wait for probe: %v", err)
	}
	logs, err := raw.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("probe logs: %v", err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		t.Fatalf("read probe logs: %v", err)
	}
	return probeRun{exitCode: exitCode, output: strings.TrimSpace(stdout.String() + stderr.String())}
}

// TestStrictProfileInTheEngine runs a non-root, capability-less program
// that calls personality(0xffffffff) twice in a real Docker Engine: with the
// engine's default profile the call runs; with Inline(Strict()) the filter
// refuses it with EPERM. This proves the engine accepts the inline profile
// and applies it.
func TestStrictProfileInTheEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerLimit)
	defer cancel()
	raw := mustDockerClient(t, ctx)
	runID := mustRunID(t)
	t.Cleanup(func() { removeContainers(t, raw, runID) })
	ref := mustProbeImage(t, ctx, raw, runID)

	strictOpt, err := Inline(mustStrict(t))
	if err != nil {
		t.Fatalf("Inline(Strict()): %v", err)
	}
	tests := []struct {
		name        string
		securityOpt []string
		wantExit    int64
		wantOutput  string
	}{
		{name: "engine default profile", wantExit: probeAllowed, wantOutput: "personality allowed"},
		{name: "strict profile inline", securityOpt: []string{strictOpt}, wantExit: probeEPERM, wantOutput: "personality refused EPERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := runProbe(t, ctx, raw, runID, ref, tt.securityOpt...)
			if run.exitCode != tt.wantExit || !strings.Contains(run.output, tt.wantOutput) {
				t.Fatalf("probe exited %d with %q; want %d with %q", run.exitCode, run.output, tt.wantExit, tt.wantOutput)
			}
			if !strings.Contains(run.output, "uid=10001") {
				t.Fatalf("probe output %q: want it to run as uid 10001", run.output)
			}
		})
	}
}

// TestJudgeAgreesWithTheEngine is issue 16 finding 5 on a real engine: a
// non-root, capability-less container calls keyctl and clone with
// CLONE_NEWUSER under several profiles. Wherever the engine lets such a
// call run although Docker's default refuses it, the judge that the policy
// and the audit use (internal/seccomprules.Judge) must call the profile
// weaker and name the syscall (or the default action); where the engine
// refuses both, the profile must not be called weaker. The review's own
// profile (allow everything, refuse a made-up syscall) is the first case.
func TestJudgeAgreesWithTheEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerLimit)
	defer cancel()
	raw := mustDockerClient(t, ctx)
	runID := mustRunID(t)
	t.Cleanup(func() { removeContainers(t, raw, runID) })
	ref := mustProbeImage(t, ctx, raw, runID)

	withRule := func(rule string) []byte {
		var p map[string]any
		if err := json.Unmarshal(mustDefaultJSON(t), &p); err != nil {
			t.Fatal(err)
		}
		var r any
		if err := json.Unmarshal([]byte(rule), &r); err != nil {
			t.Fatal(err)
		}
		p["syscalls"] = append(p["syscalls"].([]any), r)
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	review := []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]}`)
	if err := Validate(review); err == nil || !strings.Contains(err.Error(), "not_a_syscall") {
		t.Fatalf("Validate(review profile) = %v, want the made-up name refused", err)
	}
	tests := []struct {
		name    string
		profile []byte // nil: the engine's own default
		// allowed: what the engine lets run, by syscall the probe makes.
		keyctl, userns bool
	}{
		{name: "review profile", profile: review, keyctl: true, userns: true},
		{name: "engine default"},
		{name: "Docker's default inline", profile: mustDefaultJSON(t)},
		{name: "strict", profile: mustStrict(t)},
		{name: "default plus keyctl", profile: withRule(`{"names": ["keyctl"], "action": "SCMP_ACT_ALLOW"}`), keyctl: true},
		{name: "default plus clone with any flags", profile: withRule(`{"names": ["clone"], "action": "SCMP_ACT_ALLOW"}`), userns: true},
		// runc ORs two conditions on the same argument: clone without
		// CLONE_NEWNS, or without CLONE_NEWUTS, lets CLONE_NEWUSER through.
		{name: "default plus clone masked twice on arg0", profile: withRule(`{"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["s390", "s390x"]},
			"args": [{"index": 0, "value": 131072, "op": "SCMP_CMP_MASKED_EQ"}, {"index": 0, "value": 67108864, "op": "SCMP_CMP_MASKED_EQ"}]}`), userns: true},
	}
	caps := seccomprules.ContainerCapabilities(nil, []string{"ALL"}, false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []string
			judged := mustDefaultJSON(t)
			if tt.profile != nil {
				opt, err := Inline(tt.profile)
				if err != nil {
					t.Fatal(err)
				}
				opts, judged = []string{opt}, tt.profile
			}
			verdict, err := seccomprules.Judge(judged, caps)
			if err != nil {
				t.Fatal(err)
			}
			for _, call := range []struct {
				name, syscall string
				allowed       bool
			}{{"keyctl", "keyctl", tt.keyctl}, {"userns", "clone", tt.userns}} {
				run := runProbeCall(t, ctx, raw, runID, ref, call.name, opts...)
				wantExit := int64(probeEPERM)
				if call.allowed {
					wantExit = probeAllowed
				}
				if run.exitCode != wantExit || !strings.Contains(run.output, "uid=10001") {
					t.Fatalf("%s: probe exited %d with %q; want %d as uid 10001", call.name, run.exitCode, run.output, wantExit)
				}
				flagged := verdict.DefaultAction != "" || slices.Contains(verdict.SyscallNames(), call.syscall)
				if flagged != call.allowed {
					t.Errorf("%s runs in the engine: %v; the judge flags it: %v (%s)", call.syscall, call.allowed, flagged, verdict)
				}
			}
			if weaker := tt.keyctl || tt.userns; verdict.Weaker() != weaker {
				t.Errorf("Weaker() = %v, want %v: %s", verdict.Weaker(), weaker, verdict)
			}
		})
	}
}
