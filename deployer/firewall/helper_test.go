//go:build linux

package firewall

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary is also the small program the kernel tests run inside
// their namespaces (`ip netns exec NS <test binary>`): with
// DCFW_HELPER=serve it listens, with dial it tries addresses once, with
// probe it tries them until its stdin closes. Arguments come in
// DCFW_ARGS, space separated: "tcp:ADDR:PORT" or "udp:ADDR:PORT", and for
// serve "=tag" after each.
func TestMain(m *testing.M) {
	if mode := os.Getenv("DCFW_HELPER"); mode != "" {
		os.Exit(helper(mode, strings.Fields(os.Getenv("DCFW_ARGS"))))
	}
	os.Exit(m.Run())
}

func helper(mode string, args []string) int {
	var err error
	switch mode {
	case "serve":
		err = serve(args)
	case "dial":
		out := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, a := range args {
			wg.Go(func() {
				r := dialOnce(a, 1500*time.Millisecond)
				mu.Lock()
				out[a] = r
				mu.Unlock()
			})
		}
		wg.Wait()
		err = json.NewEncoder(os.Stdout).Encode(out)
	case "probe":
		err = probe(args)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// serve listens on every address, says "ready" on stdout, answers each
// TCP connection and each UDP datagram with its tag, and exits when stdin
// closes.
func serve(args []string) error {
	for _, a := range args {
		spec, tag, ok := strings.Cut(a, "=")
		network, address, ok2 := strings.Cut(spec, ":")
		if !ok || !ok2 {
			return fmt.Errorf("serve %q: want proto:addr:port=tag", a)
		}
		switch network {
		case "tcp":
			ln, err := net.Listen("tcp4", address)
			if err != nil {
				return err
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_, _ = io.WriteString(c, tag+"\n")
					c.Close()
				}
			}()
		case "udp":
			pc, err := net.ListenPacket("udp4", address)
			if err != nil {
				return err
			}
			go func() {
				buf := make([]byte, 512)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = pc.WriteTo([]byte(tag), from)
				}
			}()
		default:
			return fmt.Errorf("serve %q: tcp or udp", a)
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// dialOnce tries one "proto:addr:port" and says what happened: "ok:<tag>"
// (the server answered), "refused" (a TCP reset or an ICMP port
// unreachable), "timeout" (dropped), "unreachable" (ICMP host or net
// unreachable), or "error:<text>".
func dialOnce(spec string, timeout time.Duration) string {
	network, address, _ := strings.Cut(spec, ":")
	c, err := net.DialTimeout(network+"4", address, timeout)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if network == "udp" {
		if _, err := c.Write([]byte("?")); err != nil {
			return classify(err)
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return classify(err)
		}
		return "ok:" + string(buf[:n])
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return classify(err)
	}
	return "ok:" + strings.TrimSpace(line)
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error:" + err.Error()
}

// probe dials every address in turn, over and over, until stdin closes,
// then prints how often each outcome came (a JSON object per address).
func probe(args []string) error {
	counts := map[string]map[string]int{}
	for _, a := range args {
		counts[a] = map[string]int{}
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	fmt.Println("ready")
	for {
		select {
		case <-done:
			return json.NewEncoder(os.Stdout).Encode(counts)
		default:
		}
		for _, a := range args {
			counts[a][dialOnce(a, 500*time.Millisecond)]++
		}
	}
}
