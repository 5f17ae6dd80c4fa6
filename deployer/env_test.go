package deployer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/dockerclean"

	"github.com/deployctl/deployctl/internal/devimage"
	"github.com/deployctl/deployctl/internal/enginetest"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/raftstore/state"
	"github.com/deployctl/deployctl/specs"
	"github.com/docker/docker/client"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/hashicorp/go-hclog"
)

// labelTest marks every Docker object a test creates, with the test run's
// unique ID as value; cleanup removes exactly those.
const labelTest = "io.deployctl.test"

// waitLimit only guards against a hung test; no test asserts on time.
const waitLimit = 60 * time.Second

// dockerEnv is what the Docker tests share: a runtime, a raw client for
// checking and for cleanup and a registry with the webapp.
type dockerEnv struct {
	runID string
	rt    *DockerRuntime
	raw   *client.Client
	reg   *devimage.Registry
	// Pinned references (repository@sha256:...) of the webapp variants.
	goodRef, brokenRef, crashRef string
	// tagRef is the good image by tag: what the agent must refuse.
	tagRef string
}

func mustRunID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

// mustDockerEnv connects to the engine (skipping only when it is
// unreachable) and starts a registry with the webapp images. Everything
// tests create is removed in t.Cleanup, also on failure.
func mustDockerEnv(t testing.TB) *dockerEnv {
	t.Helper()
	ctx := context.Background()
	rt, err := NewDockerRuntime()
	if err != nil {
		t.Fatalf("NewDockerRuntime: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	if err := rt.Ping(ctx); err != nil {
		if errors.Is(err, ErrEngineUnavailable) {
			enginetest.Unavailable(t, err)
		}
		t.Fatalf("Ping: %v", err)
	}
	raw, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })

	env := &dockerEnv{runID: mustRunID(t), rt: rt, raw: raw}
	reg, err := devimage.StartRegistry("127.0.0.1:0", hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	env.reg = reg
	t.Cleanup(func() { _ = reg.Close() })
	t.Cleanup(func() { cleanupDocker(t, raw, env.runID, reg.Addr()) })

	img, err := devimage.BuildGoImage(ctx, devimage.GoImageOptions{
		PackageDir:   "../examples/webapp",
		Env:          []string{"PORT=8080", "WEBAPP_VERSION=v1"},
		Labels:       map[string]string{labelTest: env.runID},
		ExposedPorts: []string{"8080/tcp"},
	})
	if err != nil {
		t.Fatalf("BuildGoImage: %v", err)
	}
	env.goodRef = mustPush(t, reg.Addr()+"/webapp:v1", img)
	env.brokenRef = mustPush(t, reg.Addr()+"/webapp:broken", mustWithEnv(t, img, "WEBAPP_BROKEN=1"))
	env.crashRef = mustPush(t, reg.Addr()+"/webapp:crash", mustWithEnv(t, img, "WEBAPP_CRASH=1"))
	env.tagRef = reg.Addr() + "/webapp:v1"

	return env
}

// prefixFor is the --network prefix of a test host: each host on the
// shared engine needs its own (the networks carry the host's label).
func (env *dockerEnv) prefixFor(hostID string) string {
	sum := sha256.Sum256([]byte(hostID))
	return "dt-" + env.runID + "-" + hex.EncodeToString(sum[:4])
}

// plan is the network plan of a test host: its prefix, the default pool,
// the test label on every network.
func (env *dockerEnv) plan(hostID string) NetworkPlan {
	return NetworkPlan{Prefix: env.prefixFor(hostID), Pool: netip.MustParsePrefix(DefaultSubnetPool), Labels: map[string]string{labelTest: env.runID}}
}

// mustServiceNetwork ensures the network of service on hostID as the
// agent would.
func (env *dockerEnv) mustServiceNetwork(t testing.TB, hostID, service string) ServiceNetwork {
	t.Helper()
	n, err := env.rt.EnsureServiceNetwork(context.Background(), hostID, service, env.plan(hostID))
	if err != nil {
		t.Fatalf("EnsureServiceNetwork: %v", err)
	}
	return n
}

func mustWithEnv(t testing.TB, img v1.Image, env ...string) v1.Image {
	t.Helper()
	variant, err := devimage.WithEnv(img, env...)
	if err != nil {
		t.Fatalf("WithEnv: %v", err)
	}
	return variant
}

func mustPush(t testing.TB, ref string, img v1.Image) string {
	t.Helper()
	digest, err := devimage.Push(context.Background(), ref, img)
	if err != nil {
		t.Fatalf("Push %s: %v", ref, err)
	}
	pinned, err := devimage.PinnedRef(ref, digest)
	if err != nil {
		t.Fatal(err)
	}
	return pinned
}

// cleanupDocker removes the containers and networks labelled with runID and
// the images pulled from the test registries. It touches nothing else.
func cleanupDocker(t testing.TB, raw *client.Client, runID string, registries ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, err := range dockerclean.Labelled(ctx, raw, labelTest, runID, registries...) {
		t.Errorf("cleanup: %v", err)
	}
}

// cleanupImages removes the images labelled with runID or pulled from the
// test registries.
func cleanupImages(t testing.TB, raw *client.Client, runID string, registries ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, err := range dockerclean.Images(ctx, raw, labelTest, runID, registries...) {
		t.Errorf("cleanup: %v", err)
	}
}

// specOption changes a test spec.
type specOption func(*specs.Spec)

// testSpec is a hardened webapp spec with an HTTP check that probes fast.
func testSpec(opts ...specOption) specs.Spec {
	spec := specs.Spec{
		Service:  "web",
		Replicas: 1,
		Env:      map[string]string{"PORT": "8080"},
		Resources: specs.Resources{
			NanoCPUs:    250_000_000,
			MemoryBytes: 64 << 20,
			Pids:        64,
		},
		Healthcheck: specs.Healthcheck{
			HTTP:     &specs.HTTPCheck{Path: "/healthz", Port: 8080},
			Interval: 300 * time.Millisecond,
			Timeout:  time.Second,
			Retries:  2,
		},
		Security: specs.Security{
			ReadOnly:        true,
			NoNewPrivileges: true,
			CapDrop:         []string{"ALL"},
		},
		StopGracePeriod: 2 * time.Second,
	}
	for _, opt := range opts {
		opt(&spec)
	}
	return spec
}

// assignment is replica id of spec running ref at revision 1.
func assignment(id string, slot int, ref string, spec specs.Spec) state.Assignment {
	return state.Assignment{
		Replica: state.Replica{
			ID:          id,
			Service:     spec.Service,
			Slot:        slot,
			Revision:    1,
			Fingerprint: "fp-" + ref,
			Desired:     state.DesiredRunning,
		},
		Revision: state.Revision{
			Service:     spec.Service,
			Number:      1,
			Spec:        spec,
			Ref:         ref,
			Fingerprint: "fp-" + ref,
		},
	}
}

// waitUntil polls cond until it holds; it fails the test if waitLimit
// passes first (a hang guard, not a timing assertion).
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeController is an in-memory Controller: tests set the assignment set
// and read the reports.
type fakeController struct {
	mu      sync.Mutex
	set     state.AssignmentSet
	changed chan struct{} // closed and replaced at every change
	down    bool
	// refused counts calls refused while down.
	refused int
	reports []state.HostReport
	latest  map[string]state.StatusReport
	// traffic are the traffic reports received (not while down).
	traffic []wire.TrafficReport
}

func newFakeController(host string) *fakeController {
	return &fakeController{
		set:     state.AssignmentSet{Host: host, Index: 1},
		changed: make(chan struct{}),
		latest:  map[string]state.StatusReport{},
	}
}

var errControllerDown = errors.New("fake controller is down")

func (f *fakeController) Assignments(ctx context.Context, host string, afterIndex uint64, wait time.Duration) (state.AssignmentSet, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		f.mu.Lock()
		if err := f.refuseLocked(); err != nil {
			f.mu.Unlock()
			return state.AssignmentSet{}, err
		}
		set, changed := f.copySetLocked(), f.changed
		f.mu.Unlock()
		if set.Index > afterIndex {
			return set, nil
		}
		select {
		case <-ctx.Done():
			return state.AssignmentSet{}, ctx.Err()
		case <-timer.C:
			return set, nil
		case <-changed:
		}
	}
}

func (f *fakeController) Report(_ context.Context, r state.HostReport) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refuseLocked(); err != nil {
		return err
	}
	f.reports = append(f.reports, r)
	for _, sr := range r.Reports {
		f.latest[sr.ReplicaID] = sr
	}
	f.notifyLocked()
	return nil
}

func (f *fakeController) ReportTraffic(_ context.Context, r wire.TrafficReport) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refuseLocked(); err != nil {
		return err
	}
	f.traffic = append(f.traffic, r)
	f.notifyLocked()
	return nil
}

// refuseLocked counts and refuses a call while the controller is down.
func (f *fakeController) refuseLocked() error {
	if !f.down {
		return nil
	}
	f.refused++
	f.notifyLocked()
	return errControllerDown
}

func (f *fakeController) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeController) copySetLocked() state.AssignmentSet {
	set := f.set
	set.Assignments = append([]state.Assignment(nil), f.set.Assignments...)
	return set
}

// assign replaces the whole assignment set under a new index.
func (f *fakeController) assign(as ...state.Assignment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set.Index++
	f.set.Assignments = append([]state.Assignment(nil), as...)
	f.notifyLocked()
}

func (f *fakeController) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	f.notifyLocked()
}

// forgetReports drops what was reported so far (for an agent restart).
func (f *fakeController) forgetReports() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = nil
	f.latest = map[string]state.StatusReport{}
}

// history is every report of one replica in order.
func (f *fakeController) history(replicaID string) []state.StatusReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []state.StatusReport
	for _, r := range f.reports {
		for _, sr := range r.Reports {
			if sr.ReplicaID == replicaID {
				out = append(out, sr)
			}
		}
	}
	return out
}

// waitFor blocks until cond holds on the controller's view, failing the test
// after waitLimit (a hang guard).
func (f *fakeController) waitFor(t testing.TB, what string, cond func(f *fakeController) bool) {
	t.Helper()
	timeout := time.NewTimer(waitLimit)
	defer timeout.Stop()
	for {
		f.mu.Lock()
		ok := cond(f)
		changed := f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("gave up waiting for %s; latest reports: %+v", what, f.latest)
		}
	}
}

// waitState waits until the latest report of replicaID has state st and
// returns it.
func (f *fakeController) waitState(t testing.TB, replicaID, st string) state.StatusReport {
	t.Helper()
	var got state.StatusReport
	f.waitFor(t, replicaID+" "+st, func(f *fakeController) bool {
		got = f.latest[replicaID]
		return got.State == st
	})
	return got
}

func withHost(host string) client.Opt { return client.WithHost(host) }
