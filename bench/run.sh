#!/usr/bin/env bash
# Three-way load benchmark, all in one run on this machine: the same request
# mix (bench/mix.lua) against the scoring backend directly, against stock
# Caddy's reverse_proxy (same Caddy version, same TLS), and against the
# gateway with the shipped Caddyfile. Prints requests/s, p50/p99 latency and
# the ratios gateway/stock and gateway/direct. Absolute numbers depend on the
# machine; the ratios are what we track (bench/README.md).
#
# The gateway gets a bearer token, limits high enough never to refuse the
# load (the limiter still runs every policy), and its own backend that
# verifies request signatures; the baselines use a backend that does not.
# BENCH_REDIS=1 puts the limiter on a throwaway Redis; BENCH_CADDYFILE=path
# runs a variant of the Caddyfile; BENCH_GATEWAY_ENV="K=V ..." adds settings.
#
# Usage: bench/run.sh [duration (default 10s)] [connections (default 32)] [rounds (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10s}"
conns="${2:-32}"
rounds="${3:-3}"

./deploy/install-deps.sh
mkdir -p bin
go build -o bin/gateway ./gateway
go build -o bin/scoring ./backends/scoring
go build -o bin/caddy-stock github.com/caddyserver/caddy/v2/cmd/caddy

work=$(mktemp -d)
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # url [curl args...]
	local url=$1; shift
	for _ in $(seq 1 150); do
		curl -sf -o /dev/null "$@" "$url" && return 0
		sleep 0.2
	done
	echo "no answer from $url" >&2
	return 1
}

# start_backend port admin_port [signing keys]: a scoring backend.
start_backend() {
	SCORING_SIGNING_KEYS="${3:-}" bin/scoring -addr "127.0.0.1:$1" -admin-addr "127.0.0.1:$2" >>"$work/scoring.log" 2>&1 &
	pids+=($!)
	wait_http "http://127.0.0.1:$1/healthz"
}
submit='{"audio_base64":"UklGRiQAAABXQVZF","language":"en-US"}'
score_id_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

be_port=$(free_port)
start_backend "$be_port" "$(free_port)"
direct_score=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$submit" "http://127.0.0.1:$be_port/v1/scores" | score_id_of)

signing_secret="$work/signing.key"
head -c 48 /dev/urandom | base64 >"$signing_secret"
gw_be_port=$(free_port)
start_backend "$gw_be_port" "$(free_port)" "bench-1:$signing_secret"

if [ "${BENCH_REDIS:-0}" = 1 ]; then
	redis_port=$(free_port)
	redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
	export REDIS_URL="redis://127.0.0.1:$redis_port/0"
fi

# Stock Caddy as one would run it in production: the same reverse_proxy, TLS
# from the same internal CA, a JSON access log to the same kind of file.
st_https=$(free_port); st_http=$(free_port)
cat >"$work/Caddyfile.stock" <<CADDY
{
	admin off
	http_port $st_http
	https_port $st_https
	skip_install_trust
	storage file_system $work/stock-data
}
localhost {
	tls internal
	log {
		output stdout
		format json
	}
	reverse_proxy 127.0.0.1:$be_port
}
CADDY
bin/caddy-stock run --config "$work/Caddyfile.stock" --adapter caddyfile >"$work/stock.log" 2>&1 &
pids+=($!)
wait_http "https://localhost:$st_https/v1/scores/$direct_score" -k

gw_https=$(free_port)
export GATEWAY_JWT_SECRET
GATEWAY_JWT_SECRET="$(head -c 32 /dev/urandom | base64)"
# shellcheck disable=SC2086 # BENCH_GATEWAY_ENV is a list of K=V words
env XDG_DATA_HOME="$work/gw-data" XDG_CONFIG_HOME="$work/gw-config" \
	GATEWAY_SIGNING_KEY_ID=bench-1 GATEWAY_SIGNING_SECRET_FILE="$signing_secret" \
	GATEWAY_RATE_BURST=1000000/s GATEWAY_RATE_SUSTAINED=100000000/m \
	GATEWAY_RATE_SCORE_BURST=1000000/s GATEWAY_RATE_SCORE_SUSTAINED=100000000/m \
	${BENCH_GATEWAY_ENV:-} \
	SCORING_UPSTREAMS="127.0.0.1:$gw_be_port" GATEWAY_HTTPS_PORT="$gw_https" GATEWAY_PUBLIC_HTTPS_PORT="$gw_https" \
	GATEWAY_HTTP_PORT="$(free_port)" GATEWAY_METRICS_ADDR="127.0.0.1:$(free_port)" \
	GATEWAY_ADMIN_ADDR="127.0.0.1:$(free_port)" \
	bin/gateway run --config "${BENCH_CADDYFILE:-Caddyfile}" --adapter caddyfile >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_http "https://localhost:$gw_https/healthz" -k
token=$(bin/gateway issue-token --sub bench-user --tier free --ttl 2h)
gateway_score=$(curl -sfk -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
	-d "$submit" "https://localhost:$gw_https/v1/scores" | score_id_of)

declare -A score=([direct]="$direct_score" [stock]="$direct_score" [gateway]="$gateway_score")
declare -A auth=([direct]="" [stock]="" [gateway]="$token")
declare -A url=(
	[direct]="http://127.0.0.1:$be_port"
	[stock]="https://localhost:$st_https"
	[gateway]="https://localhost:$gw_https"
)
targets=(direct stock gateway)

# Warm each target (TLS sessions, connection pools) before measuring.
for t in "${targets[@]}"; do
	BENCH_SCORE_ID="${score[$t]}" BENCH_TOKEN="${auth[$t]}" wrk -t2 -c"$conns" -d2s -s bench/mix.lua "${url[$t]}" >/dev/null
done

# Rounds interleave the targets so that background noise hits all alike.
for r in $(seq 1 "$rounds"); do
	for t in "${targets[@]}"; do
		line=$(BENCH_SCORE_ID="${score[$t]}" BENCH_TOKEN="${auth[$t]}" \
			wrk -t2 -c"$conns" -d"$duration" -s bench/mix.lua "${url[$t]}" | grep '^RESULT')
		echo "$t $line" >>"$work/results"
		echo "round $r $t: ${line#RESULT }"
	done
done

python3 - "$work/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    target, rest = line.split(" ", 1)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    rows.setdefault(target, []).append({k: float(v) for k, v in kv.items()})
med = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for t, rs in rows.items()}
print()
print(f"{'target':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7}   (median of rounds)")
for t in ("direct", "stock", "gateway"):
    m = med[t]
    print(f"{t:<8} {m['rps']:>10.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['non2xx']:>8.0f} {m['errors']:>7.0f}")
g, s, d = med["gateway"], med["stock"], med["direct"]
print()
print(f"throughput gateway/stock  = {g['rps']/s['rps']:.3f}")
print(f"throughput gateway/direct = {g['rps']/d['rps']:.3f}")
print(f"p99 gateway/stock         = {g['p99_ms']/s['p99_ms']:.3f}")
PY
