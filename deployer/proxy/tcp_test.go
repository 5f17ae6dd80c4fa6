package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer answers each line with its name and the line.
type echoServer struct {
	name     string
	ln       net.Listener
	accepted atomic.Int64
}

func startEcho(t *testing.T, name string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{name: name, ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, name+":"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return e
}

func (e *echoServer) target() DesiredTarget {
	return DesiredTarget{TargetKey: TargetKey{Service: "db", ID: e.name, Addr: e.ln.Addr().String()}, Healthy: true}
}

var dbRoute = Route{Listen: 5432, Protocol: TCP, Service: "db"}

func startTCPProxy(t *testing.T, tb *Table) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.ServeTCP(ctx, 5432, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeTCP: %v", err)
		}
	})
	return ln.Addr().String()
}

type lineConn struct {
	net.Conn
	r *bufio.Reader
}

func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return &lineConn{Conn: c, r: bufio.NewReader(c)}
}

func (c *lineConn) ask(line string) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	answer, err := c.r.ReadString('\n')
	return strings.TrimSuffix(answer, "\n"), err
}

func TestTCPPassThroughAndDrain(t *testing.T) {
	a := startEcho(t, "a")
	tb := NewTable(nil)
	addr := startTCPProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{dbRoute}, Targets: []DesiredTarget{a.target()}})

	conn := dialLine(t, addr)
	defer conn.Close()
	for _, msg := range []string{"hello", "again"} {
		if got, err := conn.ask(msg); err != nil || got != "a:"+msg {
			t.Fatalf("ask %q = %q, %v", msg, got, err)
		}
	}
	// Replace a by b: new connections go to b at once, the open one keeps
	// working, and Drain waits for it.
	b := startEcho(t, "b")
	tb.Apply(Desired{Routes: []Route{dbRoute}, Targets: []DesiredTarget{b.target()}})
	fresh := dialLine(t, addr)
	if got, err := fresh.ask("new"); err != nil || got != "b:new" {
		t.Fatalf("a new connection during the drain: %q, %v; want b", got, err)
	}
	_ = fresh.Close()
	drained := make(chan error, 1)
	go func() { drained <- tb.Drain(context.Background(), a.target().TargetKey) }()
	if got, err := conn.ask("still"); err != nil || got != "a:still" {
		t.Fatalf("the open connection while draining: %q, %v", got, err)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a connection open", err)
	case <-time.After(100 * time.Millisecond):
	}
	_ = conn.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the connection closed")
	}
	if got := a.accepted.Load(); got != 1 {
		t.Errorf("a accepted %d connections, want 1", got)
	}
}

func TestTCPDrainDeadlineAndNoTarget(t *testing.T) {
	a := startEcho(t, "a")
	tb := NewTable(nil)
	addr := startTCPProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{dbRoute}, Targets: []DesiredTarget{a.target()}})
	conn := dialLine(t, addr)
	defer conn.Close()
	if _, err := conn.ask("x"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := tb.Drain(ctx, a.target().TargetKey); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a connection open past the deadline = %v", err)
	}
	// No healthy target: a new connection is closed at once.
	c := dialLine(t, addr)
	defer c.Close()
	if _, err := c.ask("y"); err == nil {
		t.Fatal("a connection without a healthy target was answered")
	}
}

func TestTCPRetriesRefusedDial(t *testing.T) {
	a := startEcho(t, "a")
	dead := DesiredTarget{TargetKey: TargetKey{Service: "db", ID: "dead", Addr: refusedAddr(t)}, Healthy: true}
	tb := NewTable(nil)
	addr := startTCPProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{dbRoute}, Targets: []DesiredTarget{dead, a.target()}})
	for range 30 {
		c := dialLine(t, addr)
		got, err := c.ask("x")
		_ = c.Close()
		if err != nil || got != "a:x" {
			t.Fatalf("through a refusing target: %q, %v", got, err)
		}
	}
}

// Half-close passes through: a client that shuts its write side still
// reads the whole answer.
func TestTCPHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		body, _ := io.ReadAll(c) // until the client's half-close
		_, _ = io.WriteString(c, strings.ToUpper(string(body)))
	}()
	tb := NewTable(nil)
	addr := startTCPProxy(t, tb)
	tb.Apply(Desired{Routes: []Route{dbRoute}, Targets: []DesiredTarget{{TargetKey: TargetKey{Service: "db", ID: "u", Addr: ln.Addr().String()}, Healthy: true}}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "shout")
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "SHOUT" {
		t.Fatalf("answer after half-close: %q, %v", got, err)
	}
}

func TestServeTCPStopClosesConnections(t *testing.T) {
	a := startEcho(t, "a")
	tb := NewTable(nil)
	tb.Apply(Desired{Routes: []Route{dbRoute}, Targets: []DesiredTarget{a.target()}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.ServeTCP(ctx, 5432, ln) }()
	conn := dialLine(t, ln.Addr().String())
	defer conn.Close()
	if _, err := conn.ask("x"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeTCP did not return with a connection open")
	}
	if _, err := conn.ask("y"); err == nil {
		t.Fatal("a connection survived ServeTCP's end")
	}
	if n := tb.InFlight(a.target().TargetKey); n != 0 {
		t.Fatalf("%d connections in flight after ServeTCP returned", n)
	}
}
