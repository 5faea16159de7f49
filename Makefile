# The two commands the README promises: `make run` and `make test`.
GO ?= go

.PHONY: run observe test build bench bench-auth chaos deps vet unit fuzz

run:
	./deploy/run-local.sh

# make run plus Debian's Prometheus and Alertmanager with the shipped rules
# and config, receivers writing to .run/alerts.log (alerts/README.md).
observe: deps
	OBSERVE=1 ./deploy/run-local.sh

test: deps vet unit fuzz

deps:
	./deploy/install-deps.sh

vet:
	$(GO) vet ./...
	# go.mod says what the code imports (prints the change when it does not).
	$(GO) mod tidy -diff
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 40m ./...
	# The Helm chart's checks: a module of their own, so that Helm's
	# dependencies stay out of the gateway's go.mod.
	cd deploy/helm/test && $(GO) test -count=1 -timeout 20m ./...

# Short, bounded fuzzing of every parser that takes client input; longer runs:
# FUZZTIME=10m make fuzz. The default is a count of executions, not a
# duration: with a duration, Go 1.26's fuzz coordinator can fail a target
# with a bare "context deadline exceeded" when the time runs out on a busy
# machine (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 20000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseToken$$' -fuzztime $(FUZZTIME) ./modules/identity
	$(GO) test -run '^$$' -fuzz '^FuzzAPIKey$$' -fuzztime $(FUZZTIME) ./modules/identity
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./modules/validation
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./internal/httpsig
	$(GO) test -run '^$$' -fuzz '^FuzzConn$$' -fuzztime $(FUZZTIME) ./modules/framing

build:
	./xcaddy.sh

bench:
	./bench/run.sh

# The fault matrix against the real binary (bench/README.md#the-fault-matrix-make-chaos):
# reloads, SIGTERM, upstream errors, outages and slowness, Redis killed and
# paused, a thousand connections; one line per scenario, PASS or FAIL, a few
# minutes. make test only checks that the scripts parse and the client's logic.
chaos:
	./bench/chaos.sh

# Issue 3's target: authentication and the Redis rate limiter together cost at
# most a tenth of stock Caddy's throughput (bench/README.md): the median of ten
# interleaved rounds, by requests/s and by CPU.
bench-auth:
	mkdir -p bin
	./bench/without.py Caddyfile authenticate rate_limit >bin/Caddyfile.without-auth
	BENCH_REDIS=1 BENCH_VARIANT=bin/Caddyfile.without-auth BENCH_MAX_COST=0.10 ./bench/run.sh 4s 32 10
