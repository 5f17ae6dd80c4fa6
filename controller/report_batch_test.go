package controller

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/deployctl/deployctl/raftstore/state"
)

// reportNewHosts sends the first report of n new hosts at once and returns how
// many raft entries they took.
func reportNewHosts(t *testing.T, n *testNode, prefix string, hosts int) uint64 {
	t.Helper()
	before := n.store.View().Index()
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, hosts)
	for i := range hosts {
		wg.Go(func() {
			<-start
			errs <- n.ctrl.Report(context.Background(), state.HostReport{Host: fmt.Sprintf("%s%02d", prefix, i)})
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	view := n.store.View()
	for i := range hosts {
		if h, ok := view.Host(fmt.Sprintf("%s%02d", prefix, i)); !ok || h.State != state.HostReady {
			t.Fatalf("host %s%02d after its report: %+v (known %v)", prefix, i, h, ok)
		}
	}
	return view.Index() - before
}

// TestReportsShareRaftEntries: reports that arrive while a write is in
// flight go together in one entry (CmdHostReports), and each request
// returns once its own report is committed.
func TestReportsShareRaftEntries(t *testing.T) {
	n := mustStartNode(t)
	mustRegisterServer(t, n) // FSM version 5: the batch passes the gate
	if entries := reportNewHosts(t, n, "h", 50); entries >= 50 {
		t.Fatalf("50 concurrent reports took %d raft entries; want them batched", entries)
	}
}

// TestReportsWithoutBatchesBehindTheVersionGate: while a server of the
// cluster has not registered a version that knows CmdHostReports (here
// none has), reports are written one by one and every one lands.
func TestReportsWithoutBatchesBehindTheVersionGate(t *testing.T) {
	n := mustStartNode(t)
	if entries := reportNewHosts(t, n, "g", 20); entries < 20 {
		t.Fatalf("20 reports took %d raft entries behind the version gate; want one each", entries)
	}
}
