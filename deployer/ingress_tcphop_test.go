package deployer

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/pki"
	"github.com/deployctl/deployctl/internal/wire"
	"github.com/hashicorp/go-hclog"
)

// TestIngressRunnersTCPHop: two hosts' runners with the cluster's
// certificates. A tcp ingress port on h1, which has no replica, reaches
// h2's replica through h2's hop listener (mutual TLS); when h2's proxy
// stops, the connection spliced through its hop listener is closed too
// (the hop server's BaseContext), as its ingress ports' connections are.
func TestIngressRunnersTCPHop(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Nodes: []string{"n1"}, Agents: []string{"h1", "h2"}}); err != nil {
		t.Fatal(err)
	}
	hopTLS := func(host string) *tls.Config {
		f := pki.NodeFiles(dir, host)
		cfg, err := pki.ProxyConfig(f.CA, f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	replica, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	go func() {
		for {
			c, err := replica.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, "r2:"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	replicaPort := replica.Addr().(*net.TCPAddr).Port

	listen := freePort(t)
	h2Proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	src := &fixedIngress{table: wire.IngressTable{Index: 3,
		Routes:   []wire.IngressRoute{{Service: "db", Listen: listen, Protocol: "tcp", Port: replicaPort}},
		Backends: []wire.IngressBackend{{Service: "db", Replica: "r2", Host: "h2", ProxyAddr: h2Proxy, Ports: []int{replicaPort}}},
	}}
	start := func(host, ip, proxyAddr string) (*ingressRunner, context.CancelFunc) {
		cfg := hopTLS(host)
		g := newIngressRunner(IngressConfig{Source: src, ListenIP: ip, ProxyAddr: proxyAddr, ServerTLS: cfg, ClientTLS: cfg}, host, hclog.NewNullLogger())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { g.run(ctx); close(done) }()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return g, stop
	}
	// Both hosts open the ingress port: on two loopback addresses.
	_, _ = start("h1", "127.0.0.1", net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))))
	h2, stopH2 := start("h2", "127.0.0.2", h2Proxy)
	h2.setLocal([]localTarget{{service: "db", replica: "r2", container: "c2", ip: "127.0.0.1", ports: []int{replicaPort}, healthy: true}})

	var conn net.Conn
	var r *bufio.Reader
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(listen)))
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "hello\n")
			r = bufio.NewReader(c)
			if line, err := r.ReadString('\n'); err == nil && line == "r2:hello\n" {
				conn = c
				break
			}
			_ = c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("h1's ingress port never reached h2's replica: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer conn.Close()

	stopH2()
	if _, err := io.WriteString(conn, "again\n"); err == nil {
		if line, err := r.ReadString('\n'); err == nil {
			t.Fatalf("the connection through h2's hop listener outlived h2's proxy: %q", line)
		}
	}
}
