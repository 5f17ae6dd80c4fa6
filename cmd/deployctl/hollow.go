package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deployctl/deployctl/internal/hollow"
)

// hollowOptions are the flags of `deployctl agent --hollow N`.
type hollowOptions struct {
	count                           int
	prefix, tlsDir                  string
	startLatency, jitter, stopDelay time.Duration
	failFraction                    float64
	statsEvery                      time.Duration
}

func bindHollowFlags(f *pflag.FlagSet, o *hollowOptions) {
	f.IntVar(&o.count, "hollow", 0, "run N simulated hosts (no Docker Engine) instead of the agent for this host: scale tests only")
	f.StringVar(&o.prefix, "hollow-prefix", hollow.DefaultPrefix, "host ids of the simulated hosts: PREFIX-0001 ...")
	f.StringVar(&o.tlsDir, "tls-dir", "", "with --hollow: the directory 'deployctl tls init' wrote; each simulated host uses HOST.pem there or a certificate issued in memory from ca-key.pem")
	f.DurationVar(&o.startLatency, "hollow-start-latency", hollow.DefaultStartLatency, "with --hollow: how long a simulated replica takes to start and pass its check")
	f.DurationVar(&o.jitter, "hollow-jitter", hollow.DefaultJitter, "with --hollow: ± uniform spread of the start latency")
	f.DurationVar(&o.stopDelay, "hollow-stop-latency", hollow.DefaultStopLatency, "with --hollow: how long a simulated replica takes to stop")
	f.Float64Var(&o.failFraction, "hollow-fail-fraction", 0, "with --hollow: fraction of starts that fail (0 to 1); images whose tag or reference contains \"bad\" always fail their health checks")
	f.DurationVar(&o.statsEvery, "hollow-stats-every", 10*time.Second, "with --hollow: log the fleet's counters this often (0: never)")
}

// runHollow runs the simulated hosts until SIGINT/SIGTERM.
func runHollow(cmd *cobra.Command, g *globals, servers []string, labels map[string]string, logLevel string, o hollowOptions) error {
	if o.count <= 0 {
		return exitWith(ExitUsage, fmt.Errorf("--hollow %d: give the number of simulated hosts (--tls-dir is for --hollow only)", o.count))
	}
	if o.tlsDir == "" && g.tls.set() {
		return exitWith(ExitUsage, fmt.Errorf("--hollow with --tls-cert: each simulated host needs a certificate of its own; give --tls-dir DIR (the directory 'deployctl tls init' wrote) instead of --tls-ca/--tls-cert/--tls-key"))
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "deployctl", Level: hclog.LevelFromString(logLevel), Output: cmd.ErrOrStderr()})
	clientFor := hollow.PlainClients(servers, o.count)
	if o.tlsDir != "" {
		clientFor = hollow.TLSClients(o.tlsDir, servers)
	}
	fleet, err := hollow.New(hollow.Config{Hosts: o.count, Prefix: o.prefix, Labels: labels, StartLatency: o.startLatency, Jitter: o.jitter,
		StopLatency: o.stopDelay, FailFraction: o.failFraction, Logger: log}, clientFor)
	if err != nil {
		return exitWith(ExitUsage, fmt.Errorf("--hollow: %w", err))
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("hollow hosts running", "hosts", o.count, "first", hollow.HostID(o.prefix, 1), "last", hollow.HostID(o.prefix, o.count), "tls", o.tlsDir != "")
	if o.statsEvery > 0 {
		go logHollowStats(ctx, fleet, o.statsEvery, log)
	}
	return fleet.Run(ctx)
}

func logHollowStats(ctx context.Context, fleet *hollow.Fleet, every time.Duration, log hclog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := fleet.Stats()
		log.Info("hollow stats", "starts", s.Starts, "healthy", s.Healthy, "unhealthy", s.Unhealthy, "failed", s.Failed, "stops", s.Stops,
			"reports", s.Reports, "report_errors", s.ReportErrors, "assignment_sets", s.AssignmentSets)
	}
}
