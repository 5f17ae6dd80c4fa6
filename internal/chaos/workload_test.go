package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/deployctl/deployctl/specs"
)

// fakeAPI is an in-memory /v1/services with optional, deliberate bugs, so
// the tests can show the checks pass a correct server and fail a broken one.
type fakeAPI struct {
	mu   sync.Mutex
	revs map[string][]fakeRev // service -> each revision
	// staleReads answers reads as of before the latest write.
	staleReads bool
	// loseAfter acknowledges but forgets every write past this many
	// revisions of a service (0: keep all).
	loseAfter int
	// firstCount answers reads with the first revision's replica count.
	firstCount bool
}

// fakeRev is one revision of the fake: its value and replica count.
type fakeRev struct{ value, replicas int }

func newFakeAPI() *fakeAPI { return &fakeAPI{revs: map[string][]fakeRev{}} }

func (f *fakeAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/services", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			var req wire.ApplyBody
			if err := json.Unmarshal(body, &req); err != nil {
				writeJSON(w, http.StatusBadRequest, wire.APIError{Error: err.Error(), Code: "bad_request"})
				return
			}
			body = []byte(req.SpecYAML)
		}
		spec, err := specs.Parse(body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, wire.APIError{Error: err.Error(), Code: "invalid_spec"})
			return
		}
		v, err := ValueOfImage(spec.Image)
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, wire.APIError{Error: err.Error(), Code: "image_unresolvable"})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		rev := len(f.revs[spec.Service]) + 1
		if f.loseAfter == 0 || rev <= f.loseAfter {
			f.revs[spec.Service] = append(f.revs[spec.Service], fakeRev{v, spec.Replicas})
		}
		writeJSON(w, http.StatusCreated, wire.ApplyOutcome{Service: spec.Service, Revision: rev})
	})
	mux.HandleFunc("POST /v1/services/{name}/scale", func(w http.ResponseWriter, r *http.Request) {
		var body wire.ScaleBody
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Replicas == nil {
			writeJSON(w, http.StatusBadRequest, wire.APIError{Error: "replicas: required", Code: "bad_request"})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		name := r.PathValue("name")
		revs := f.revs[name]
		if len(revs) == 0 {
			writeJSON(w, http.StatusNotFound, wire.APIError{Error: "not found", Code: "not_found"})
			return
		}
		cur := revs[len(revs)-1]
		if cur.replicas == *body.Replicas {
			writeJSON(w, http.StatusOK, wire.ApplyOutcome{Service: name, Revision: len(revs), Unchanged: true})
			return
		}
		f.revs[name] = append(revs, fakeRev{cur.value, *body.Replicas})
		writeJSON(w, http.StatusCreated, wire.ApplyOutcome{Service: name, Revision: len(revs) + 1})
	})
	mux.HandleFunc("GET /v1/services/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		revs := f.revs[r.PathValue("name")]
		if f.staleReads && len(revs) > 0 {
			revs = revs[:len(revs)-1]
		}
		if len(revs) == 0 {
			writeJSON(w, http.StatusNotFound, wire.APIError{Error: "not found", Code: "not_found"})
			return
		}
		cur := revs[len(revs)-1]
		replicas := cur.replicas
		if f.firstCount {
			replicas = revs[0].replicas
		}
		image := fmt.Sprintf("registry.invalid/chaos/app:w%d", cur.value)
		writeJSON(w, http.StatusOK, wire.ServiceStatus{Service: r.PathValue("name"), Revision: len(revs), Image: image,
			Replicas: wire.ReplicaCounts{Desired: replicas}})
	})
	return mux
}

func (f *fakeAPI) final() map[string][]Revision {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]Revision{}
	for svc, revs := range f.revs {
		for i, r := range revs {
			cause := "apply"
			if i > 0 && r.value == revs[i-1].value {
				cause = controller.ScaleCause(revs[i-1].replicas, r.replicas)
			}
			out[svc] = append(out[svc], Revision{Number: i + 1, Value: r.value, Replicas: r.replicas, Cause: cause})
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func mustServe(t *testing.T, f *fakeAPI) *wire.Client {
	t.Helper()
	srv := httptest.NewServer(f.handler())
	t.Cleanup(srv.Close)
	return wire.NewClient([]string{srv.URL}, nil)
}

func image(v int) string { return fmt.Sprintf("registry.invalid/chaos/app:w%d", v) }

func TestWorkloadAgainstACorrectServerPassesBothChecks(t *testing.T) {
	f := newFakeAPI()
	rec := NewRecorder()
	var clients []*wire.Client
	for range 4 {
		clients = append(clients, mustServe(t, f))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Workload{Clients: clients, Services: []string{"svc-0", "svc-1"}, Image: image, OpTimeout: 5 * time.Second, Seed: 1, Recorder: rec}.Run(ctx)
	}()
	// Run until the history is big enough to mean something, bounded.
	deadline := time.Now().Add(20 * time.Second)
	for rec.Stats().OkWrites < 50 || rec.Stats().Reads < 50 {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("workload too slow: %+v", rec.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	ops := rec.Operations()
	if err := CheckLinearizable(ops, time.Minute, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	rep := CheckFinal(ops, f.final())
	if err := rep.Err(); err != nil || rep.AcknowledgedWrites < 50 {
		t.Fatalf("final check: %v, %d acknowledged writes", err, rep.AcknowledgedWrites)
	}
	st := rec.Stats()
	if st.UnknownWrites != 0 || st.FailedWrites != 0 || st.ServicesWritten != 2 {
		t.Fatalf("stats against a healthy server: %+v", st)
	}
}

func TestChecksCatchABrokenServer(t *testing.T) {
	cases := []struct {
		name     string
		server   *fakeAPI
		wantLost int
	}{
		{"stale reads", &fakeAPI{revs: map[string][]fakeRev{}, staleReads: true}, 0},
		{"acknowledged write forgotten", &fakeAPI{revs: map[string][]fakeRev{}, loseAfter: 1}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustServe(t, tc.server)
			rec := NewRecorder()
			ctx := context.Background()
			for _, v := range []int{1, 2} {
				if out := Apply(ctx, rec, 0, c, "svc", image(v), v, 5*time.Second); out.Outcome != Ok || out.Revision != v {
					t.Fatalf("write %d: %+v", v, out)
				}
			}
			if _, err := ReadStatus(ctx, rec, 1, c, "svc", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			ops := rec.Operations()
			if err := CheckLinearizable(ops, time.Minute, t.TempDir()); !errors.Is(err, ErrNotLinearizable) {
				t.Fatalf("linearizability check: %v, want %v", err, ErrNotLinearizable)
			}
			rep := CheckFinal(ops, tc.server.final())
			if rep.Lost != tc.wantLost {
				t.Fatalf("final check %+v: want %d lost", rep, tc.wantLost)
			}
		})
	}
}

// Scales through the client against the fake: a correct server passes
// both checks; one whose reads show a replica count other than the
// current revision's fails the linearizability check.
func TestScalesAndReadsOfTheCount(t *testing.T) {
	for _, broken := range []bool{false, true} {
		f := newFakeAPI()
		f.firstCount = broken
		c := mustServe(t, f)
		rec := NewRecorder()
		ctx := context.Background()
		if out := Apply(ctx, rec, 0, c, "svc", image(1), 1, 5*time.Second); out.Outcome != Ok || out.Revision != 1 {
			t.Fatalf("write: %+v", out)
		}
		if out := DoScale(ctx, rec, 0, c, "svc", 3, 5*time.Second); out.Outcome != Ok || out.Revision != 2 || out.Unchanged {
			t.Fatalf("scale to 3: %+v", out)
		}
		if out := DoScale(ctx, rec, 1, c, "svc", 3, 5*time.Second); out.Outcome != Ok || out.Revision != 2 || !out.Unchanged {
			t.Fatalf("scale to 3 again: %+v, want unchanged", out)
		}
		if out := DoScale(ctx, rec, 1, c, "nope", 1, 5*time.Second); out.Outcome != NotFound {
			t.Fatalf("scale of a missing service: %+v", out)
		}
		read, err := ReadStatus(ctx, rec, 1, c, "svc", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ops := rec.Operations()
		err = CheckLinearizable(ops, time.Minute, t.TempDir())
		if broken != errors.Is(err, ErrNotLinearizable) || (!broken && err != nil) {
			t.Fatalf("server broken=%v, read %+v: check says %v", broken, read, err)
		}
		if rep := CheckFinal(ops, f.final()); rep.Err() != nil || rep.AcknowledgedScales != 1 {
			t.Fatalf("final check: %+v", rep)
		}
		if st := rec.Stats(); st.Scales != 3 || st.OkScales != 1 || st.UnchangedScales != 1 || st.OkWrites != 1 {
			t.Fatalf("stats %+v: want 3 scales, 1 ok, 1 unchanged, and 1 write", st)
		}
	}
}

func TestScaleOutcome(t *testing.T) {
	remote := func(code string) error {
		return &wire.RemoteError{Status: 400, APIError: wire.APIError{Error: code, Code: code}}
	}
	cases := []struct {
		err  error
		want Outcome
	}{
		{nil, Ok},
		{remote("not_found"), NotFound},
		{remote("conflict"), Failed},
		{remote("invalid_spec"), Failed},
		{remote("no_leader"), Unknown},
		{remote("internal"), Unknown},
		{context.DeadlineExceeded, Unknown},
	}
	for _, tc := range cases {
		if got := ScaleOutcome(wire.ApplyOutcome{Revision: 2, Unchanged: true}, tc.err); got.Outcome != tc.want || (tc.err == nil && (got.Revision != 2 || !got.Unchanged)) {
			t.Errorf("ScaleOutcome(%v) = %+v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestWriteOutcome(t *testing.T) {
	remote := func(code string) error {
		return fmt.Errorf("apply: %w", &wire.RemoteError{Status: 503, APIError: wire.APIError{Error: code, Code: code}})
	}
	cases := []struct {
		name string
		err  error
		want Outcome
	}{
		{"answered", nil, Ok},
		{"conflict rejected by the state machine", remote("conflict"), Failed},
		{"invalid spec", remote("invalid_spec"), Failed},
		{"image unresolvable", remote("image_unresolvable"), Failed},
		{"no leader until the deadline", fmt.Errorf("%w (last error: %v)", context.DeadlineExceeded, remote("no_leader")), Unknown},
		{"not leader", remote("not_leader"), Unknown},
		{"timeout answer", remote("timeout"), Unknown},
		{"internal error", remote("internal"), Unknown},
		{"unreachable", fmt.Errorf("%w: reset", wire.ErrUnreachable), Unknown},
		{"connection reset mid-answer", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := WriteOutcome(wire.ApplyOutcome{Revision: 3}, tc.err).Outcome; got != tc.want {
				t.Fatalf("WriteOutcome(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestSpecYAMLIsAValidSpecCarryingTheValue(t *testing.T) {
	spec, err := specs.Parse(SpecYAML("svc-1", image(42), 42))
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := ValueOfImage(spec.Image)
	if spec.Service != "svc-1" || spec.Replicas != 0 || spec.Env["X"] != "42" || spec.Update.FailureAction != specs.FailureActionPause || err != nil || v != 42 {
		t.Fatalf("spec %+v, value %d %v", spec, v, err)
	}
}
