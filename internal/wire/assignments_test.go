package wire

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/raftstore/state"
)

// TestAssignmentsDeltaAndWholeSet: the client asks for a delta from the
// set it holds, falls back to the whole set when the delta does not apply
// (another base), and takes the whole-set answer of a server that does not
// know form=delta.
func TestAssignmentsDeltaAndWholeSet(t *testing.T) {
	rev := state.Revision{Service: "web", Number: 1, Ref: "r@sha256:a", Fingerprint: "fp"}
	rep := func(id string, idx uint64) state.Replica {
		return state.Replica{ID: id, Service: "web", Revision: 1, Fingerprint: "fp", Host: "h1", Desired: state.DesiredRunning, ModifyIndex: idx}
	}
	var mu sync.Mutex
	var bases []string
	answers := []any{
		// 1: whole set at index 5.
		state.AssignmentDelta{Host: "h1", Index: 5, Revisions: []state.Revision{rev}, Replicas: []state.Replica{rep("r1", 5)}, IDs: []string{"r1"}},
		// 2: a delta from 5: r2 added, r1 unchanged.
		state.AssignmentDelta{Host: "h1", Index: 9, Base: 5, Revisions: []state.Revision{rev}, Replicas: []state.Replica{rep("r2", 9)}, IDs: []string{"r1", "r2"}},
		// 3: a delta from another base: refused by the client, which asks again with base 0.
		state.AssignmentDelta{Host: "h1", Index: 12, Base: 11, Replicas: []state.Replica{}, IDs: []string{"r1", "r2"}},
		// 4: the whole set it asked for.
		state.AssignmentDelta{Host: "h1", Index: 12, Revisions: []state.Revision{rev}, Replicas: []state.Replica{rep("r2", 9)}, IDs: []string{"r2"}},
		// 5: a server of an earlier release: the whole set, old form.
		state.AssignmentSet{Host: "h1", Index: 14, Assignments: []state.Assignment{{Replica: rep("r3", 14), Revision: rev}}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := len(bases)
		bases = append(bases, r.URL.Query().Get("base")+"/"+r.URL.Query().Get("index")+"/"+r.URL.Query().Get("form"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answers[n])
	}))
	defer srv.Close()
	c := NewClient([]string{srv.URL}, nil)
	ctx := context.Background()
	ids := func(s state.AssignmentSet) (out []string) {
		for _, a := range s.Assignments {
			out = append(out, a.Replica.ID+"@"+a.Revision.Ref)
		}
		return out
	}
	want := [][]string{{"r1@r@sha256:a"}, {"r1@r@sha256:a", "r2@r@sha256:a"}, {"r2@r@sha256:a"}, {"r3@r@sha256:a"}}
	var index uint64
	for i, w := range want {
		set, err := c.Assignments(ctx, "h1", index, time.Second)
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		if got := ids(set); len(got) != len(w) || func() bool {
			for j := range got {
				if got[j] != w[j] {
					return true
				}
			}
			return false
		}() {
			t.Fatalf("call %d: set %v, want %v", i+1, got, w)
		}
		index = set.Index
	}
	wantAsked := []string{"0/0/delta", "5/5/delta", "9/9/delta", "0/0/delta", "12/12/delta"}
	if len(bases) != len(wantAsked) {
		t.Fatalf("requests (base/index/form) %v, want %v", bases, wantAsked)
	}
	for i := range wantAsked {
		if bases[i] != wantAsked[i] {
			t.Fatalf("requests (base/index/form) %v, want %v", bases, wantAsked)
		}
	}
}
