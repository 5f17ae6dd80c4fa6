package deployer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/go-hclog"

	"github.com/deployctl/deployctl/deployer/proxy"
	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
)

// frame is one frame of the engine's multiplexed log stream.
func frame(stream byte, s string) []byte {
	hdr := make([]byte, 8)
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(s)))
	return append(hdr, s...)
}

func TestDemuxLogLines(t *testing.T) {
	var in bytes.Buffer
	in.Write(frame(1, "2026-12-05T20:00:00.000000001Z hello\n"))
	in.Write(frame(2, "2026-12-05T20:00:01Z oops: part"))
	in.Write(frame(1, "2026-12-05T20:00:02Z two\n2026-12-05T20:00:03Z three\r\n"))
	in.Write(frame(2, " two\n"))
	var got []wire.LogLine
	if err := demuxLogLines(&in, func(l wire.LogLine) error { got = append(got, l); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []wire.LogLine{
		{Time: time.Date(2026, 12, 5, 20, 0, 0, 1, time.UTC), Stream: "stdout", Text: "hello"},
		{Time: time.Date(2026, 12, 5, 20, 0, 2, 0, time.UTC), Stream: "stdout", Text: "two"},
		{Time: time.Date(2026, 12, 5, 20, 0, 3, 0, time.UTC), Stream: "stdout", Text: "three"},
		{Time: time.Date(2026, 12, 5, 20, 0, 1, 0, time.UTC), Stream: "stderr", Text: "oops: part two"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if !got[i].Time.Equal(want[i].Time) || got[i].Stream != want[i].Stream || got[i].Text != want[i].Text {
			t.Fatalf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// A cut stream is an error, not a silent end.
	cut := frame(1, "2026-12-05T20:00:00Z hello\n")
	if err := demuxLogLines(bytes.NewReader(cut[:12]), func(wire.LogLine) error { return nil }); err == nil {
		t.Fatal("a frame cut short was taken")
	}
}

type fakeLogReader struct {
	asked []string
}

func (f *fakeLogReader) ListManaged(ctx context.Context, hostID string) ([]container.Summary, error) {
	return []container.Summary{{ID: "cid1", Labels: map[string]string{LabelManaged: "true", LabelHost: hostID, LabelReplica: "r1"}}}, nil
}

func (f *fakeLogReader) ContainerLogs(ctx context.Context, id string, q wire.LogsQuery) (io.ReadCloser, error) {
	f.asked = append(f.asked, id)
	return io.NopCloser(bytes.NewReader(frame(1, "2026-12-05T20:00:00Z line of "+id+"\n"))), nil
}

// On the hop listener (mutual TLS with the cluster's certificates) the
// logs answer a server certificate only, for a replica of this host's
// containers; a proxied request never reaches them.
func TestLogsOnTheHopListener(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Nodes: []string{"n1"}, Agents: []string{"h1", "h2"}}); err != nil {
		t.Fatal(err)
	}
	cfgOf := func(name string) *http.Client {
		f := pki.NodeFiles(dir, name)
		cfg, err := pki.ProxyConfig(f.CA, f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	h1 := pki.NodeFiles(dir, "h1")
	serverTLS, err := pki.ProxyConfig(h1.CA, h1.Cert, h1.Key)
	if err != nil {
		t.Fatal(err)
	}
	reader := &fakeLogReader{}
	hops := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hop") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hopHandler(hops, &logsHandler{host: "h1", rt: reader, tls: true, log: hclog.NewNullLogger()})}
	go func() { _ = srv.Serve(tls.NewListener(ln, serverTLS)) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "https://" + ln.Addr().String()
	logsURL := func(replica string) string {
		return base + wire.AgentLogsPath + "?" + url.Values{"replica": {replica}, "tail": {"-1"}}.Encode()
	}
	get := func(c *http.Client, u string, hdr http.Header) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	server := cfgOf("n1")
	code, body := get(server, logsURL("r1"), nil)
	if code != http.StatusOK || !strings.Contains(body, `"text":"line of cid1"`) || !strings.Contains(body, `"replica":"r1"`) || !strings.Contains(body, `"host":"h1"`) {
		t.Fatalf("server asks for r1: %d %s", code, body)
	}
	if code, body := get(cfgOf("h2"), logsURL("r1"), nil); code != http.StatusForbidden || !strings.Contains(body, "only servers") {
		t.Fatalf("another host's agent asks: %d %s", code, body)
	}
	if code, _ := get(server, logsURL("r2"), nil); code != http.StatusNotFound {
		t.Fatalf("a replica without a container here: %d", code)
	}
	if code, _ := get(server, base+wire.AgentLogsPath, nil); code != http.StatusBadRequest {
		t.Fatalf("no replica: %d", code)
	}
	// A request another host's proxy forwards carries the hop headers: it
	// goes to the hop handler whatever its path.
	if code, body := get(server, logsURL("r1"), http.Header{proxy.HeaderHopService: {"web"}, proxy.HeaderHopPort: {"8080"}}); code != http.StatusOK || body != "hop" {
		t.Fatalf("a proxied request to the logs path: %d %q", code, body)
	}
	if len(reader.asked) != 1 || reader.asked[0] != "cid1" {
		t.Fatalf("the engine was asked for %v", reader.asked)
	}
}
