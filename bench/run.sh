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
# BENCH_VARIANT=path runs a second gateway with that Caddyfile as a fourth
# target, interleaved with the others, and prints what the difference costs
# in stock Caddy's throughput (bench/without.py writes such variants);
# BENCH_MAX_COST=0.10 then makes the run fail when that cost, by requests/s
# or by CPU of the whole run, is above it. BENCH_BACKEND_LATENCY_MS=20 makes
# both backends answer /v1 requests that much later, and BENCH_WRK_TIMEOUT
# (wrk's default 2s) is when wrk counts a request as an error (bench/chaos.sh's
# thousand connections, where queueing for the CPU alone takes seconds).
# BENCH_PROFILE_DIR=dir saves, halfway through each round, every proxy's heap
# profile (pprof, and its text form with the runtime's memory statistics), its
# goroutines and its Go runtime metrics, from its admin API, as
# dir/<target>-<round>.{heap,heap.txt,goroutine.txt,metrics}, and every
# proxy's resident memory twice a second from warm-up on (dir/rss: seconds
# since the start, target, VmRSS in MiB, the phase under way); with
# GODEBUG=gctrace=1 in the environment, each proxy's collections too
# (dir/<target>.gctrace).
#
# Throughput on a shared 2-core machine swings with whatever else runs, so
# each run also records the CPU time every process spent on it (proxy,
# backend, Redis, and wrk itself) per request: a saturated machine's
# throughput is its cores divided by that, which gives a second, steadier
# estimate of every ratio ("by CPU").
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

# shellcheck source=bench/common.sh
. bench/common.sh

tick_hz=$(getconf CLK_TCK)

submit='{"audio_base64":"UklGRiQAAABXQVZF","language":"en-US"}'
score_id_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

# The baselines' backend checks no signatures: it trusts the identity header
# the mix sends them (BENCH_USER), which the gateway adds and signs for its own
# backend, so that both serve bench_user's scores and refuse nothing.
bench_user=bench-user
be_port=$(free_port)
be_admin=$(free_port)
start_backend "$be_port" "$be_admin"
be_pid=$backend_pid
direct_score=$(curl -sf -X POST -H 'Content-Type: application/json' -H "X-Auth-User-Id: $bench_user" -d "$submit" \
	"http://127.0.0.1:$be_port/v1/scores" | score_id_of)

gw_be_port=$(free_port)
gw_be_admin=$(free_port)
start_backend "$gw_be_port" "$gw_be_admin" "bench-1:$signing_secret"
gw_be_pid=$backend_pid
if [ -n "${BENCH_BACKEND_LATENCY_MS:-}" ]; then
	for admin in "$be_admin" "$gw_be_admin"; do
		curl -sf -o /dev/null -X PUT -d "{\"latency_ms\": $BENCH_BACKEND_LATENCY_MS}" "http://127.0.0.1:$admin/faults"
	done
fi
redis_pid=

if [ "${BENCH_REDIS:-0}" = 1 ]; then
	redis_port=$(free_port)
	redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
	redis_pid=$!
	pids+=($!)
	for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
	export REDIS_URL="redis://127.0.0.1:$redis_port/0"
fi

# Stock Caddy as one would run it in production: the same reverse_proxy, TLS
# from the same internal CA, a JSON access log to the same kind of file.
st_https=$(free_port); st_http=$(free_port); st_admin=$(free_port)
cat >"$work/Caddyfile.stock" <<CADDY
{
	admin 127.0.0.1:$st_admin
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
stock_pid=$!
pids+=($!)
wait_http "https://localhost:$st_https/v1/scores/$direct_score" -k -H "X-Auth-User-Id: $bench_user"

# The rate-limit store's timeout is raised from the shipped 50ms: on this
# loaded machine Redis calls queue behind the CPU for longer, the breaker
# opens, and requests are then decided in memory (fail_open) without Redis,
# which measured a gateway doing less than every request's Redis work.
gateway_env="GATEWAY_RATE_STORE_TIMEOUT=1s ${BENCH_GATEWAY_ENV:-}"
# shellcheck disable=SC2086 # gateway_env is a list of K=V words
start_gateway gateway "${BENCH_CADDYFILE:-Caddyfile}" "127.0.0.1:$gw_be_port" $gateway_env
gw_https=${https_port[gateway]}
token=$(bin/gateway issue-token --sub "$bench_user" --tier free --ttl 2h)
gateway_score=$(curl -sfk -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
	-d "$submit" "https://localhost:$gw_https/v1/scores" | score_id_of)

declare -A score=([direct]="$direct_score" [stock]="$direct_score" [gateway]="$gateway_score")
declare -A auth=([direct]="" [stock]="" [gateway]="$token")
declare -A identity=([direct]="$bench_user" [stock]="$bench_user" [gateway]="")
declare -A url=(
	[direct]="http://127.0.0.1:$be_port"
	[stock]="https://localhost:$st_https"
	[gateway]="https://localhost:$gw_https"
)
declare -A admin=([stock]="http://127.0.0.1:$st_admin" [gateway]="${admin_url[gateway]}")
# The processes that serve each target, whose CPU time it is charged.
declare -A serving=(
	[direct]="$be_pid"
	[stock]="$stock_pid $be_pid"
	[gateway]="${gateway_pid[gateway]} $gw_be_pid $redis_pid"
)
targets=(direct stock gateway)
if [ -n "${BENCH_VARIANT:-}" ]; then
	# shellcheck disable=SC2086
	start_gateway variant "$BENCH_VARIANT" "127.0.0.1:$gw_be_port" $gateway_env
	score[variant]=$gateway_score
	auth[variant]=$token
	identity[variant]=""
	url[variant]="https://localhost:${https_port[variant]}"
	serving[variant]="${gateway_pid[variant]} $gw_be_pid $redis_pid"
	admin[variant]="${admin_url[variant]}"
	targets+=(variant)
fi

# sample_rss dir: each proxy's VmRSS every half second into dir/rss, with the
# phase the run is in (BENCH_PROFILE_DIR).
phase="$work/phase"
echo warm-up >"$phase"
sample_rss() {
	local start t proxy
	start=$(date +%s.%N)
	mkdir -p "$1"
	while sleep 0.5; do
		for t in "${targets[@]}"; do
			[ "$t" = direct ] && continue
			read -r proxy _ <<<"${serving[$t]}"
			awk -v s="$start" -v t="$t" -v now="$(date +%s.%N)" -v p="$(cat "$phase")" \
				'/^VmRSS/ {printf "%.1f %s %d %s\n", now - s, t, $2 / 1024, p}' "/proc/$proxy/status"
		done
	done >>"$1/rss"
}
if [ -n "${BENCH_PROFILE_DIR:-}" ]; then
	sample_rss "$BENCH_PROFILE_DIR" &
	pids+=($!)
fi

# Warm each target (TLS sessions, connection pools) before measuring.
for t in "${targets[@]}"; do
	echo "warm-up $t" >"$phase"
	BENCH_SCORE_ID="${score[$t]}" BENCH_TOKEN="${auth[$t]}" BENCH_USER="${identity[$t]}" wrk -t2 -c"$conns" --timeout "${BENCH_WRK_TIMEOUT:-2s}" -d2s -s bench/mix.lua "${url[$t]}" >/dev/null
done

# seconds 10s|2m: a wrk duration in seconds.
seconds() { case $1 in *m) echo $((${1%m} * 60)) ;; *s) echo "${1%s}" ;; *) echo "$1" ;; esac; }
# save_profiles admin_url prefix seconds: the proxy's memory and goroutines
# halfway through a round of that many seconds (BENCH_PROFILE_DIR).
save_profiles() {
	mkdir -p "$(dirname "$2")"
	sleep $(($3 / 2))
	curl -sf -o "$2.heap" "$1/debug/pprof/heap"
	curl -sf -o "$2.heap.txt" "$1/debug/pprof/heap?debug=1"
	curl -sf -o "$2.goroutine.txt" "$1/debug/pprof/goroutine?debug=1"
	curl -sf -o "$2.metrics" "$1/metrics"
}

# Rounds interleave the targets so that background noise hits all alike,
# every other round in reverse order so that no target always runs first.
for r in $(seq 1 "$rounds"); do
	order=("${targets[@]}")
	if [ $((r % 2)) -eq 0 ]; then
		order=()
		for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[$i]}"); done
	fi
	for t in "${order[@]}"; do
		# shellcheck disable=SC2086 # serving[$t] is a list of pids
		before=$(cpu_ticks ${serving[$t]})
		read -r proxy _ <<<"${serving[$t]}"
		proxy_before=$(cpu_ticks "$proxy")
		echo "round $r $t" >"$phase"
		profiling=
		if [ -n "${BENCH_PROFILE_DIR:-}" ] && [ -n "${admin[$t]:-}" ]; then
			save_profiles "${admin[$t]}" "$BENCH_PROFILE_DIR/$t-$r" "$(seconds "$duration")" &
			profiling=$!
		fi
		line=$(BENCH_SCORE_ID="${score[$t]}" BENCH_TOKEN="${auth[$t]}" BENCH_USER="${identity[$t]}" \
			/usr/bin/time -f '%U %S' -o "$work/wrk.time" \
			wrk -t2 -c"$conns" --timeout "${BENCH_WRK_TIMEOUT:-2s}" -d"$duration" -s bench/mix.lua "${url[$t]}" | grep '^RESULT')
		# shellcheck disable=SC2086
		after=$(cpu_ticks ${serving[$t]})
		proxy_after=$(cpu_ticks "$proxy")
		if [ -n "$profiling" ]; then wait "$profiling" || echo "profiles of $t incomplete" >&2; fi
		read -r wrk_user wrk_sys <"$work/wrk.time"
		cpu=$(python3 -c "print(round(($after - $before) / $tick_hz + $wrk_user + $wrk_sys, 2))")
		proxy_cpu=$(python3 -c "print(($proxy_after - $proxy_before) / $tick_hz)")
		echo "$t $line cpu_s=$cpu proxy_cpu_s=$proxy_cpu" >>"$work/results"
		echo "round $r $t: ${line#RESULT } cpu_s=$cpu proxy_cpu_s=$proxy_cpu"
	done
done

# Peak resident memory of each proxy over the whole run (VmHWM), since the
# issue-15 target bounds the gateway's against stock Caddy's.
for t in "${targets[@]}"; do
	read -r proxy _ <<<"${serving[$t]}"
	echo "peak RSS $t: $(awk '/^VmHWM/ {print int($2/1024) " MiB"}' "/proc/$proxy/status")"
done
# Rate-limit decisions the gateway made without its store (breaker open or
# timed out): each is a request that skipped its Redis work.
for t in gateway variant; do
	[ -n "${metrics_url[$t]:-}" ] || continue
	curl -sf "${metrics_url[$t]}" | awk -v t="$t" '/^gateway_ratelimit_decisions_total/ {
		n += $2; if ($1 ~ /decision="fail_(open|closed)"/) f += $2 }
		END { printf "rate-limit policy decisions without the store, %s: %d of %d\n", t, f, n }'
done

if [ -n "${BENCH_PROFILE_DIR:-}" ]; then
	for t in "${targets[@]}"; do
		[ "$t" = direct ] && continue
		grep -h '^gc [0-9]' "$work/$t.log" >"$BENCH_PROFILE_DIR/$t.gctrace" || true
	done
fi

python3 - "$work/results" <<'PY'
import os, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    target, rest = line.split(" ", 1)
    kv = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", rest)}
    kv["cpu_us"] = kv["cpu_s"] * 1e6 / kv["requests"]
    kv["proxy_us"] = kv["proxy_cpu_s"] * 1e6 / kv["requests"]
    kv["non2xx_pct"] = kv["non2xx"] * 100 / kv["requests"]
    rows.setdefault(target, []).append(kv)
med = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for t, rs in rows.items()}
print()
print(f"{'target':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7} {'CPU µs/req':>11} {'proxy':>6}   (median of rounds)")
for t in ("direct", "stock", "gateway", "variant"):
    if t not in med:
        continue
    m = med[t]
    print(f"{t:<8} {m['rps']:>10.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['non2xx_pct']:>7.2f}% {m['errors']:>7.0f} {m['cpu_us']:>11.0f} {m['proxy_us']:>6.0f}")
print("(CPU µs/req: every process of the run — proxy, backend, Redis, wrk — per request; proxy: the proxy's")
print(" own process, the backend for direct)")
g, s, d = med["gateway"], med["stock"], med["direct"]
# A target that refuses part of the mix does less work per request, so the
# ratios only compare targets that answered it alike: more than half a
# percentage point between a target's non-2xx share and the gateway's fails
# the run, once everything is printed.
unfair = [t for t in med if abs(med[t]["non2xx_pct"] - g["non2xx_pct"]) > 0.5]
print()
print(f"{'':<27} {'by req/s':>9} {'by CPU':>7} {'by proxy CPU':>13}")
def ratio(name, a, b, proxy=True):
    # By CPU: a saturated machine's throughput is cores / CPU per request.
    # By proxy CPU: the same for a host that runs only the proxy, as in
    # production, where the backend, Redis and clients are elsewhere.
    by_proxy = f"{b['proxy_us']/a['proxy_us']:>13.3f}" if proxy else f"{'':>13}"
    print(f"{name:<27} {a['rps']/b['rps']:>9.3f} {b['cpu_us']/a['cpu_us']:>7.3f} {by_proxy}")
ratio("throughput gateway/stock", g, s)
ratio("throughput gateway/direct", g, d, proxy=False)
print(f"p99 gateway/stock         = {g['p99_ms']/s['p99_ms']:.3f}")
if "variant" in med:
    v = med["variant"]
    ratio("throughput variant/stock", v, s)
    print(f"p99 variant/stock         = {v['p99_ms']/s['p99_ms']:.3f}")
    # What the gateway's extra work costs, as a share of stock Caddy's
    # throughput, (variant - gateway) / stock: per round, so that a slow
    # round slows all three alike, then the median of the rounds.
    triples = list(zip(rows["gateway"], rows["stock"], rows["variant"]))
    estimates = {
        "req/s": [(vr["rps"] - gr["rps"]) / sr["rps"] for gr, sr, vr in triples],
        "CPU": [sr["cpu_us"] * (1 / vr["cpu_us"] - 1 / gr["cpu_us"]) for gr, sr, vr in triples],
        "proxy CPU": [sr["proxy_us"] * (1 / vr["proxy_us"] - 1 / gr["proxy_us"]) for gr, sr, vr in triples],
    }
    print("cost of gateway over variant, in stock's throughput (median of rounds; rounds):")
    for name, costs in estimates.items():
        print(f"  by {name:<10} {statistics.median(costs):.3f}   ({', '.join(f'{c:.3f}' for c in costs)})")
    by_rps, by_cpu = statistics.median(estimates["req/s"]), statistics.median(estimates["CPU"])
    limit = os.environ.get("BENCH_MAX_COST")
    if limit and max(by_rps, by_cpu) > float(limit):
        sys.exit(f"FAIL: the cost is above BENCH_MAX_COST={limit}")
    if limit:
        print(f"ok: at most BENCH_MAX_COST={limit}")
if unfair:
    sys.exit(f"FAIL: non-2xx share of {', '.join(unfair)} differs from the gateway's "
             f"({g['non2xx_pct']:.2f}%): the ratios compare unlike work")
PY
