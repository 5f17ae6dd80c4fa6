# deployctl: the two commands of the README are `make demo` and `make test`.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2

.PHONY: demo test check bench bench-proxy bench-scale build chaos

# The main job: build the example app into an image FROM scratch, serve it
# from a registry on 127.0.0.1, start a dev node, deploy v1 with 3 replicas,
# apply a broken v2 and watch it roll back, then clean up.
demo:
	$(GO) run ./cmd/deployctl-demo

# Every test: unit, real Docker, real raft on loopback TCP, the built binary.
# This is the CI tier: DEPLOYCTL_REQUIRE_DOCKER=1 makes a test that needs
# the Docker Engine fail when none answers, where a plain `go test ./...`
# (the unit tier) skips it with one line (internal/enginetest).
test:
	DEPLOYCTL_REQUIRE_DOCKER=1 $(GO) test -race -count=1 -timeout 40m ./...

# Formatting, vet and staticcheck, as CI runs them.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

# Issue 8's proxy comparison (README "Proxy benchmark", ~2 min): wrk and an
# open loop at 1,000 req/s straight to a backend, through nginx, Caddy and
# deployctl's proxy, all on loopback. Not part of `make test`: it is slow
# and needs wrk, Debian's nginx (installed here with apt-get when missing,
# which needs root) and a Go toolchain with the module proxy (it builds
# Caddy with go install unless one is on PATH). The table goes to the test
# log, and to a file with DEPLOYCTL_BENCH_PROXY_OUT=path;
# DEPLOYCTL_BENCH_PROXY_CPUPROFILE=path profiles deployctl's proxy.
bench-proxy:
	@command -v wrk >/dev/null && command -v nginx >/dev/null || apt-get install -y --no-install-recommends wrk nginx-light
	DEPLOYCTL_BENCH_PROXY=1 $(GO) test -run TestCompareProxies -v -count=1 -timeout 20m ./deployer/proxy/

# Issue 12's scale run (README "Scale"): three server processes with TLS
# and one `deployctl agent --hollow 1000`; 100 services × 1,000 replicas,
# a rolling update, an automatic rollback and kill -9 of the leader. Not
# part of `make test` (TestHollowScale is its small version there). Takes
# the e2e lock; sizes: DEPLOYCTL_SCALE_HOSTS, _SERVICES, _REPLICAS;
# DEPLOYCTL_SCALE_PROFILE_DIR=dir saves 30 s CPU profiles of the servers.
bench-scale:
	flock /tmp/deployctl-e2e.lock env DEPLOYCTL_BENCH_SCALE=1 $(GO) test -run '^TestScaleBenchmark$$' -v -count=1 -timeout 60m ./cmd/deployctl/

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/deployctl ./cmd/deployctl

# The long fault-injection run (internal/chaos/DESIGN.md): three servers in
# network namespaces, DEPLOYCTL_CHAOS_ROUNDS random faults (kill -9, SIGSTOP,
# partitions, wipe and rejoin, cluster remove/leave and rejoin, clock steps)
# under four concurrent clients running every operation (apply, rollback,
# scale, rm, policy set, status, policy and cluster reads), every history checked
# with porcupine; 80 rounds are > 10,000 operations (~6 min on 2 cores).
# DEPLOYCTL_CHAOS_SEED=N repeats a logged schedule.
chaos:
	DEPLOYCTL_CHAOS_ROUNDS=$${DEPLOYCTL_CHAOS_ROUNDS:-80} $(GO) test -race -count=1 -v -run '^TestChaos' -timeout 60m ./cmd/deployctl

# Issue 12's failover figures (README "Speed", docs/cluster.md section 7):
# 20 kill -9 of the leader of three real servers (TLS, loopback), with the
# default raft timeouts and with hashicorp/raft's 1 s ones, side by side.
# No Docker; ~5 min on 2 cores.
.PHONY: bench-failover
bench-failover:
	$(GO) test -run '^$$' -bench 'LeaderFailover' -benchtime 20x -timeout 30m ./cmd/deployctl
