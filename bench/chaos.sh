#!/usr/bin/env bash
# The fault matrix of docs/resilience.md against the real binary (make chaos):
# the gateway with the shipped Caddyfile, real scoring backends and their
# fault injection, a real Redis, and Go's standard client (bench/chaosclient,
# one log line per request, so that every lost request is counted). Prints one
# line per scenario: what clients got (requests sent, status classes, errors
# and timeouts, p50/p99/max latency, statuses and problem types), the time to
# recover where it applies, and PASS or FAIL against what docs/resilience.md
# and docs/ratelimiting.md promise; the conditions a FAIL missed follow it.
# bench/README.md explains each line.
#
# Loopback only, free ports, every process stopped at the end (Ctrl-C and
# failures included). Each scenario has its own time limit (a scenario past
# it fails the run) and the run stops after CHAOS_TIMEOUT (default 600 s).
# Exit status 1 when any scenario fails.
#
# Usage: bench/chaos.sh [scenario number...]   (e.g. `bench/chaos.sh 4a 6`; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh
mkdir -p bin
go build -o bin/gateway ./gateway
go build -o bin/scoring ./backends/scoring
go build -o bin/chaosclient ./bench/chaosclient

# shellcheck source=bench/common.sh
. bench/common.sh

started=$(date +%s)
failed=0
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }

# timer seconds command...: runs the command after the delay unless its
# pid (timer_pid) is killed first; the sleep goes with it. Stopped at exit
# like every other process, so that an interrupted run does not wait for it.
timer() {
	local delay=$1
	shift
	(
		trap 'kill "$s" 2>/dev/null; exit 0' TERM
		sleep "$delay" &
		s=$!
		wait "$s"
		"$@"
	) &
	timer_pid=$!
	pids+=("$timer_pid")
}
# A scenario past its limit fails the whole run: the watchdog signals this
# shell, whose exit stops everything (common.sh's trap).
scenario="chaos matrix"
trap 'echo "$scenario: FAIL: still running after its time limit" >&2; exit 1' USR1
only=("$@")
run_scenario() { # limit_s name function
	if [ ${#only[@]} -gt 0 ] && [[ " ${only[*]} " != *" ${2%% *} "* ]]; then
		return
	fi
	scenario=$2
	timer "$1" kill -USR1 $$
	local dog=$timer_pid
	"$3"
	kill "$dog" 2>/dev/null || true
	wait "$dog" 2>/dev/null || true
}
timer "${CHAOS_TIMEOUT:-600}" kill -USR1 $$

# result name figures verdict: the scenario's one line.
result() {
	printf '%-34s %s  %s\n' "$1" "$2" "$3"
	[ "$3" = PASS ] || failed=1
}
# A scenario's verdict is a file, since its figures are computed in
# subshells: begin clears it, a missed condition writes FAIL, end reads it.
begin() { rm -f "$work/verdict"; }
end() { # name figures
	result "$1" "$2" "$(cat "$work/verdict" 2>/dev/null || echo PASS)"
}
# report label log[,log...] [report flags]: "label: figures" for a part of a
# scenario; a condition it misses fails the scenario.
report() {
	local label=$1 logs=$2 out
	shift 2
	out=$(bin/chaosclient report -log "$logs" "$@") || echo FAIL >"$work/verdict"
	printf '%s: %s' "$label" "$out"
}
# expect name value condition: a figure the script measured itself, checked
# like report's; prints "name=value".
expect() {
	local ok
	ok=$(python3 -c "v=$2; print(1 if v $3 else 0)" 2>/dev/null || echo 0)
	if [ "$ok" = 1 ]; then
		printf '%s=%s' "$1" "$2"
	else
		printf '%s=%s UNMET(%s %s)' "$1" "$2" "$1" "$3"
		echo FAIL >"$work/verdict"
	fi
}

# Backends: backend name → be_port[name], be_admin[name]; each verifies the
# gateway's signatures.
declare -A be_port be_admin
backend() {
	be_port[$1]=$(free_port)
	be_admin[$1]=$(free_port)
	start_backend "${be_port[$1]}" "${be_admin[$1]}" "bench-1:$signing_secret"
}
faults() { curl -sf -o /dev/null --max-time 10 -X PUT -d "$2" "http://127.0.0.1:${be_admin[$1]}/faults"; }
stat_of() { # backend field: one number of the backend's /stats, -1 when it does not answer
	local v
	v=$(curl -sf --max-time 10 "http://127.0.0.1:${be_admin[$1]}/stats" | grep -o "\"$2\":[0-9]*" | cut -d: -f2) || true
	echo "${v:--1}"
}
# gateway name upstream-backend... [-- K=V ...]: the shipped Caddyfile in front
# of those backends; no shutdown delay unless a scenario sets one.
gateway() {
	local name=$1 ups=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		ups+=("127.0.0.1:${be_port[$1]}")
		shift
	done
	[ $# -gt 0 ] && shift
	start_gateway "$name" Caddyfile "${ups[*]}" GATEWAY_SHUTDOWN_DELAY=0s "$@"
}
stop_gateway() {
	kill "${gateway_pid[$1]}" 2>/dev/null || true
	wait "${gateway_pid[$1]}" 2>/dev/null || true
}
metric() { # gateway name [label=value...]: a metric's sum in one scrape
	local g=$1
	shift
	bin/chaosclient metric -url "${metrics_url[$g]}" "$@"
}

# Tier free: start_gateway raises its limits out of the way.
token=$(bin/gateway issue-token --sub chaos --tier free --ttl 1h)
auth=(-header "Authorization: Bearer $token")
submit='{"audio_base64":"UklGRiQAAABXQVZF","language":"en-US"}'
post=(-method POST -body "$submit" -header 'Content-Type: application/json')
# load gateway name [chaosclient load flags]: requests to the gateway, logged
# to $work/name.log; reads unless the flags say otherwise.
load() {
	local g=$1 name=$2
	shift 2
	local path=/v1/users/chaos/scores
	case " $* " in *" POST "*) path=/v1/scores ;; esac
	bin/chaosclient load -url "https://localhost:${https_port[$g]}$path" "${auth[@]}" -log "$work/client-$name.log" "$@"
}
# bg command...: started in the background, stopped at exit; its pid in bg_pid.
bg() {
	"$@" &
	bg_pid=$!
	pids+=($!)
}
log() { echo "$work/client-$1.log"; }

# 1. Five config reloads under load. Reads must lose nothing over HTTP/1.1 and
# HTTP/2, nor scoring requests over HTTP/2; a POST without Idempotency-Key
# over HTTP/1.1 may be lost when its kept-alive connection closes under it
# (docs/resilience.md#stopping-and-reloading): measured, not judged.
reload_x5() {
	begin
	backend reload
	gateway reload reload
	local l=()
	bg load reload get-h2 -c 3 -pace 20ms -d 14s
	l+=("$bg_pid")
	bg load reload get-h1 -http1 -c 3 -pace 20ms -d 14s
	l+=("$bg_pid")
	bg load reload post-h2 "${post[@]}" -c 2 -pace 20ms -d 14s
	l+=("$bg_pid")
	bg load reload post-h1 "${post[@]}" -http1 -c 2 -pace 20ms -d 14s
	l+=("$bg_pid")
	local reloads=0
	for _ in 1 2 3 4 5; do
		sleep 2
		curl -sf -o /dev/null --max-time 20 -X POST -H 'Content-Type: text/caddyfile' -H 'Cache-Control: must-revalidate' \
			--data-binary @Caddyfile "${admin_url[reload]}/load" && reloads=$((reloads + 1))
	done
	wait "${l[@]}" || true
	stop_gateway reload
	end "1 reload x5 under load" "$(expect reloads $reloads '== 5') | $(report "GET h2+h1" "$(log get-h2),$(log get-h1)" -want 'lost==0,ok_pct==100') | $(report "POST h2" "$(log post-h2)" -want 'lost==0,ok_pct==100') | $(report "POST h1 no key (measured)" "$(log post-h1)" -fields sent,2xx,5xx,errors,timeouts)"
}

# 2. SIGTERM with 50 slow requests in flight (the backend 3 s slow), sent
# as soon as the backend has all 50: all answered, /readyz 503 from the
# signal, exit within delay + grace. The reads' timeouts are raised above the
# backend's delay: this scenario is about the drain, 5 about timeouts.
sigterm_inflight() {
	begin
	local delay=1 grace=10
	backend drain
	gateway drain drain -- GATEWAY_SHUTDOWN_DELAY=${delay}s GATEWAY_GRACE_PERIOD=${grace}s \
		GATEWAY_READ_TIMEOUT=10s GATEWAY_READ_ATTEMPT_TIMEOUT=10s
	faults drain '{"latency_ms": 3000}'
	local l=()
	bg load drain drain-get -http1 -c 25 -n 25
	l+=("$bg_pid")
	bg load drain drain-post "${post[@]}" -c 25 -n 25
	l+=("$bg_pid")
	for _ in $(seq 1 300); do
		[ "$(stat_of drain requests_total)" -ge 50 ] && break
		sleep 0.05
	done
	local pid=${gateway_pid[drain]} t_sig readyz exit_s
	t_sig=$(now)
	kill -TERM "$pid"
	readyz=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${metrics_url[drain]%/metrics}/readyz" || true)
	# A stuck process is killed after twice its bound, so that the run goes on.
	timer $((2 * (delay + grace))) kill -KILL "$pid"
	local killer=$timer_pid
	wait "$pid" || true
	exit_s=$(since "$t_sig")
	kill "$killer" 2>/dev/null || true
	wait "$killer" 2>/dev/null || true
	wait "${l[@]}" || true
	end "2 SIGTERM, 50 slow in flight" "$(report answers "$(log drain-get),$(log drain-post)" -at "$t_sig" -want 'sent==50,in_flight_at==50,2xx==50') | $(expect readyz_after_signal "$readyz" '== 503') $(expect exit_s "$exit_s" "<= $delay + $grace")"
}

# 3. Half of the backend's answers are 503: reads ride through on retries
# and the stale cache; attempts per request from the gateway's metrics.
half_errors() {
	begin
	backend half
	gateway half half
	load half half-warm -n 1 -c 1 >/dev/null
	local a0 s0 a1 s1 sent
	a0=$(metric half gateway_upstream_requests_total)
	s0=$(metric half gateway_fallbacks_total kind=stale)
	faults half '{"error_rate": 0.5, "error_status": 503}'
	load half half -c 8 -pace 10ms -d 8s || true
	faults half '{}'
	a1=$(metric half gateway_upstream_requests_total)
	s1=$(metric half gateway_fallbacks_total kind=stale)
	stop_gateway half
	sent=$(wc -l <"$(log half)")
	end "3 50% upstream 503s" "$(report reads "$(log half)" -want 'ok_pct>=99,lost==0') | $(expect attempts_per_request "$(python3 -c "print(round(($a1 - $a0) / $sent, 2))")" '<= 3') $(expect stale_answers "$(python3 -c "print(int($s1 - $s0))")" '>= 0')"
}

# 4. The upstream dies for 6 s, then comes back. With one upstream, scoring
# requests (never served stale) get fast 503 problem+json while it is dead,
# reads their stale copy, and the first 200 comes within the breaker's open
# delay after it is back; with two, the other one takes every request.
dead_then_back_one() {
	begin
	backend dead1
	gateway dead1 dead1
	load dead1 dead1-warm -n 1 -c 1 >/dev/null
	local l=() t_down t_up
	bg load dead1 dead1-post "${post[@]}" -idempotency-key dead1 -c 4 -pace 20ms -d 16s
	l+=("$bg_pid")
	bg load dead1 dead1-get -c 2 -pace 20ms -d 16s
	l+=("$bg_pid")
	sleep 3
	t_down=$(now)
	faults dead1 '{"outage": true}'
	sleep 6
	t_up=$(now)
	faults dead1 '{}'
	wait "${l[@]}" || true
	stop_gateway dead1
	# The first half second of the outage: requests already at the backend.
	local from
	from=$(python3 -c "print($t_down + 0.5)")
	end "4a upstream dead 6s, then back" "$(report "POST while dead" "$(log dead1-post)" -from "$from" -to "$t_up" -want 'lost==0,2xx==0,code_500==0,problem_pct==100,p99_ms<=500') | $(report "GET while dead" "$(log dead1-get)" -from "$from" -to "$t_up" -want 'lost==0,ok_pct==100' -fields sent,ok_pct,lost,p99_ms) | $(report "POST after" "$(log dead1-post)" -from "$t_up" -recovery-from "$t_up" -want 'recover_s<=7' -fields recover_s)"
}

dead_then_back_two() {
	begin
	backend deadA
	backend liveB
	gateway dead2 deadA liveB
	local l=() t_up served back_s=none
	bg load dead2 dead2-post "${post[@]}" -idempotency-key dead2 -c 4 -pace 20ms -d 16s
	l+=("$bg_pid")
	sleep 3
	faults deadA '{"outage": true}'
	sleep 6
	t_up=$(now)
	faults deadA '{}'
	served=$(stat_of deadA requests_total)
	for _ in $(seq 1 150); do
		if [ "$(stat_of deadA requests_total)" -gt "$served" ]; then
			back_s=$(since "$t_up")
			break
		fi
		sleep 0.1
	done
	wait "${l[@]}" || true
	stop_gateway dead2
	end "4b one of two upstreams dead 6s" "$(report "POST" "$(log dead2-post)" -want 'lost==0,ok_pct==100') | $(expect dead_upstream_back_in_rotation_s "$back_s" '<= 7')"
}

# 5. The backend answers after 5 s, the routes' timeouts are 2 s: every
# request is a 504 problem+json soon after 2 s (the backend sees it
# canceled) or, once the timeouts have opened the breaker, a fast 503
# problem+json; none waits for the backend.
slow_upstream() {
	begin
	backend slow
	gateway slow slow -- GATEWAY_READ_TIMEOUT=2s GATEWAY_READ_ATTEMPT_TIMEOUT=1s GATEWAY_SUBMIT_TIMEOUT=2s
	faults slow '{"latency_ms": 5000}'
	local l=()
	bg load slow slow-get -c 4 -n 12
	l+=("$bg_pid")
	bg load slow slow-post "${post[@]}" -c 4 -n 12
	l+=("$bg_pid")
	wait "${l[@]}" || true
	local cancelled
	cancelled=$(stat_of slow cancelled_total)
	stop_gateway slow
	end "5 upstream 5s slow, timeout 2s" "$(report "GET+POST" "$(log slow-get),$(log slow-post)" -want 'sent==24,2xx==0,code_504>=1,problem_pct==100,lost==0,max_ms<=3500') | $(expect backend_cancelled "$cancelled" '>= 24')"
}

# 6. Redis killed for 4 s (restarted on its port), then paused (SIGSTOP) for
# 4 s, under two gateways that share it: one failing open, one failing closed
# (docs/ratelimiting.md): fail_open serves everything, fail_closed answers
# 503 problem+json; neither waits longer than a store timeout; both count in
# Redis again within the limiter breaker's 5 s after it returns.
redis_faults() {
	begin
	local port
	port=$(free_port)
	start_redis() {
		redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >>"$work/redis.log" 2>&1 &
		redis_pid=$!
		pids+=($!)
		for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
		return 1
	}
	start_redis
	backend redis
	gateway open redis -- REDIS_URL="redis://127.0.0.1:$port/0" GATEWAY_RATE_ON_STORE_ERROR=fail_open
	gateway closed redis -- REDIS_URL="redis://127.0.0.1:$port/0" GATEWAY_RATE_ON_STORE_ERROR=fail_closed
	local l=() t_kill t_back t_stop t_cont
	bg load open open -c 3 -pace 20ms -d 24s
	l+=("$bg_pid")
	bg load closed closed -c 3 -pace 20ms -d 24s
	l+=("$bg_pid")
	sleep 3
	t_kill=$(now)
	kill -KILL "$redis_pid"
	wait "$redis_pid" 2>/dev/null || true
	sleep 4
	t_back=$(now)
	start_redis
	sleep 7
	t_stop=$(now)
	kill -STOP "$redis_pid"
	sleep 4
	t_cont=$(now)
	kill -CONT "$redis_pid"
	wait "${l[@]}" || true
	stop_gateway open
	stop_gateway closed
	local want_open='lost==0,ok_pct==100,max_ms<=1000' want_closed='lost==0,4xx==0,code_500==0,problem_pct==100,max_ms<=1000'
	local fault g want from to until
	for fault in killed paused; do
		# The fault's slice, and after it until the next fault (or the end).
		if [ $fault = killed ]; then from=$t_kill to=$t_back until=$t_stop; else from=$t_stop to=$t_cont until=0; fi
		for g in open closed; do
			begin
			if [ $g = open ]; then want=$want_open; else want=$want_closed; fi
			end "6 Redis $fault 4s, fail_$g" "$(report "while $fault" "$(log $g)" -from "$from" -to "$to" -want "$want") | $(report after "$(log $g)" -from "$to" -to "$until" -recovery-from "$to" -want 'recover_s<=7,lost==0' -fields sent,2xx,lost,recover_s)"
		done
	done
}

# 7. A thousand connections with a 20 ms backend: bench/run.sh, gateway and
# stock Caddy (and the backend direct) in the same run. wrk gives up on a
# request after 10 s instead of 2: on a busy 2-core machine a thousand
# connections queue for seconds, which is latency (p99), not a lost request.
thousand() {
	begin
	local out status=0
	out=$(BENCH_BACKEND_LATENCY_MS=20 BENCH_WRK_TIMEOUT=10s bench/run.sh 8s 1000 1 2>&1) || status=$?
	echo "$out" >"$work/thousand.out"
	local figures
	if ! figures=$(python3 - "$work/thousand.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rows = {}
for m in re.finditer(r"^(stock|gateway)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%\s+(\d+)\s+(\d+)\s+(\d+)$", text, re.M):
    rows[m[1]] = dict(rps=float(m[2]), p50=float(m[3]), p99=float(m[4]), non2xx=float(m[5]), errors=int(m[6]), cpu=float(m[7]), proxy=float(m[8]))
rss = dict(re.findall(r"^peak RSS (stock|gateway): (\d+) MiB$", text, re.M))
g, s = rows["gateway"], rows["stock"]
print(f"gateway: req/s={g['rps']:.0f} p50_ms={g['p50']:.0f} p99_ms={g['p99']:.0f} non2xx_pct={g['non2xx']:.2f} errors={g['errors']} | "
      f"stock: req/s={s['rps']:.0f} p99_ms={s['p99']:.0f} non2xx_pct={s['non2xx']:.2f} errors={s['errors']} | "
      f"gateway/stock: req/s={g['rps']/s['rps']:.2f} p99={g['p99']/s['p99']:.2f} CPU/req={g['cpu']/s['cpu']:.2f} proxy CPU/req={g['proxy']/s['proxy']:.2f} | "
      f"peak RSS MiB gateway={rss['gateway']} stock={rss['stock']}")
print(g["errors"], g["non2xx"])
PY
	); then
		echo FAIL >"$work/verdict"
		end "7 1000 connections, 20ms upstream" "bench/run.sh (exit $status): $(tail -3 <<<"$out" | tr '\n' ' ')"
		return
	fi
	local errors non2xx
	read -r errors non2xx <<<"$(tail -1 <<<"$figures")"
	# bench/run.sh fails a run whose targets answered the mix unlike each other.
	local run_sh=""
	[ "$status" = 0 ] || run_sh=" | $(expect run_sh_exit "$status" '== 0'): $(tail -1 <<<"$out")"
	end "7 1000 connections, 20ms upstream" "$(head -1 <<<"$figures") | $(expect gateway_errors "$errors" '== 0') $(expect gateway_non2xx_pct "$non2xx" '== 0')$run_sh"
}

echo "chaos matrix: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
run_scenario 120 "1 reload x5 under load" reload_x5
run_scenario 120 "2 SIGTERM, 50 slow in flight" sigterm_inflight
run_scenario 120 "3 50% upstream 503s" half_errors
run_scenario 120 "4a upstream dead 6s, then back" dead_then_back_one
run_scenario 120 "4b one of two upstreams dead 6s" dead_then_back_two
run_scenario 120 "5 upstream 5s slow, timeout 2s" slow_upstream
run_scenario 90 "6 Redis killed and paused" redis_faults
run_scenario 240 "7 1000 connections, 20ms upstream" thousand
echo "chaos matrix: $(($(date +%s) - started)) s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$failed"
