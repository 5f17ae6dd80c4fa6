package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/controller/ui"
	"github.com/deployctl/deployctl/internal/pki"
)

func newUICmd(g *globals) *cobra.Command {
	var listen string
	var open bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Open the web dashboard through a local proxy that carries this CLI's certificate",
		Long: `ui serves the cluster's dashboard (/ui/ on every server) on 127.0.0.1: a
browser has no client certificate, so this proxy forwards its requests with
the CLI's (--tls-ca, --tls-cert, --tls-key), as kubectl proxy does. It
forwards the dashboard's pages only, to a Host on the loopback interface
only; every action still goes through the API's role checks and policy.
It prints the URL and runs until interrupted. Without TLS (a --dev server)
the dashboard is also at http://ADDR/ui/ directly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := ui.CheckLoopback(listen); err != nil {
				return exitWith(ExitUsage, err)
			}
			p, err := dashboardProxy(g)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen %s: %w", listen, err)
			}
			url := "http://" + ln.Addr().String() + ui.Prefix
			fmt.Fprintf(cmd.OutOrStdout(), "Dashboard: %s (forwarding to %s; Ctrl-C stops)\n", url, g.addr)
			if open {
				openBrowser(cmd, url)
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return fmt.Errorf("serve %s: %w", url, err)
			case <-ctx.Done():
			}
			shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(shut)
			_ = srv.Close()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8001", "where the proxy listens (loopback only; port 0 picks a free one)")
	cmd.Flags().BoolVar(&open, "open", false, "open the URL in a browser (xdg-open or open, when there is one)")
	return cmd
}

// dashboardProxy builds the proxy from the global flags.
func dashboardProxy(g *globals) (*ui.Proxy, error) {
	servers := splitList(strings.Split(g.addr, ","))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	scheme := "http"
	if g.tls.set() {
		if err := g.tls.check(); err != nil {
			return nil, exitWith(ExitUsage, err)
		}
		cfg, err := pki.ClientConfig(g.tls.CA, g.tls.Cert, g.tls.Key)
		if err != nil {
			return nil, exitWith(ExitUsage, err)
		}
		tr.TLSClientConfig = cfg
		scheme = "https"
	}
	p, err := ui.NewProxy(ui.ProxyConfig{Servers: servers, Scheme: scheme, Transport: tr, Logger: hclog.New(&hclog.LoggerOptions{Name: "ui", Output: os.Stderr, Level: hclog.Warn})})
	if err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	return p, nil
}

// openBrowser starts the system's URL opener when there is one; without
// one it says so and the printed URL is the way in.
func openBrowser(cmd *cobra.Command, url string) {
	for _, opener := range []string{"xdg-open", "open"} {
		path, err := exec.LookPath(opener)
		if err != nil {
			continue
		}
		c := exec.Command(path, url)
		if err := c.Start(); err == nil {
			go func() { _ = c.Wait() }()
			return
		}
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "no browser opener found (xdg-open); open the URL above")
}
