# Shared by the bench scripts (sourced): a work directory and the processes
# started, both removed on exit (Ctrl-C and SIGTERM included); free ports;
# waiting for a URL to answer; the scoring backend, the gateway and their
# secrets; CPU time of processes.
work=$(mktemp -d)
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	# A process stopped on purpose (SIGSTOP) ends only once continued.
	kill -CONT "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # url [curl args...]
	local url=$1; shift
	for _ in $(seq 1 150); do
		curl -sf -o /dev/null --max-time 5 "$@" "$url" && return 0
		sleep 0.2
	done
	echo "no answer from $url" >&2
	return 1
}

# cpu_ticks pid...: the CPU time (user+system, clock ticks) the processes used so far.
cpu_ticks() {
	local total=0 pid stat
	for pid in "$@"; do
		read -r -a stat <"/proc/$pid/stat"
		# Fields 14 and 15 (utime, stime); the command name in field 2 has no spaces here.
		total=$((total + stat[13] + stat[14]))
	done
	echo "$total"
}

# The secrets a gateway and the backends that verify its signatures share:
# a throwaway JWT secret (exported) and signing secret (a file, key id bench-1).
signing_secret="$work/signing.key"
head -c 48 /dev/urandom | base64 >"$signing_secret"
export GATEWAY_JWT_SECRET
GATEWAY_JWT_SECRET="$(head -c 32 /dev/urandom | base64)"

# start_backend port admin_port [signing keys]: a scoring backend (bin/scoring);
# its pid in backend_pid.
start_backend() {
	SCORING_SIGNING_KEYS="${3:-}" bin/scoring -addr "127.0.0.1:$1" -admin-addr "127.0.0.1:$2" >>"$work/scoring.log" 2>&1 &
	backend_pid=$!
	pids+=($!)
	wait_http "http://127.0.0.1:$1/healthz"
}

# start_gateway name caddyfile upstreams [K=V ...]: bin/gateway in front of
# backends that verify its signatures (start_backend ... "bench-1:$signing_secret"),
# on free ports, with limits high enough never to refuse a benchmark's load (the
# limiter still runs every policy); K=V settings come after those and win. Sets
# https_port[name], gateway_pid[name], admin_url[name] and metrics_url[name];
# its log is $work/name.log.
declare -A https_port gateway_pid admin_url metrics_url
start_gateway() {
	local name=$1 caddyfile=$2 upstreams=$3 port admin metrics
	shift 3
	port=$(free_port)
	admin="127.0.0.1:$(free_port)"
	metrics="127.0.0.1:$(free_port)"
	https_port[$name]=$port
	admin_url[$name]="http://$admin"
	metrics_url[$name]="http://$metrics/metrics"
	env XDG_DATA_HOME="$work/$name-data" XDG_CONFIG_HOME="$work/$name-config" \
		GATEWAY_SIGNING_KEY_ID=bench-1 GATEWAY_SIGNING_SECRET_FILE="$signing_secret" \
		GATEWAY_RATE_BURST=1000000/s GATEWAY_RATE_SUSTAINED=100000000/m \
		GATEWAY_RATE_SCORE_BURST=1000000/s GATEWAY_RATE_SCORE_SUSTAINED=100000000/m \
		GATEWAY_RATE_IP_CEILING=1000000/s GATEWAY_RATE_IP_AUTH_FAILURES=100000000/m \
		"$@" \
		SCORING_UPSTREAMS="$upstreams" GATEWAY_HTTPS_PORT="$port" GATEWAY_PUBLIC_HTTPS_PORT="$port" \
		GATEWAY_HTTP_PORT="$(free_port)" GATEWAY_METRICS_ADDR="$metrics" GATEWAY_ADMIN_ADDR="$admin" \
		bin/gateway run --config "$caddyfile" --adapter caddyfile >"$work/$name.log" 2>&1 &
	gateway_pid[$name]=$!
	pids+=($!)
	wait_http "https://localhost:$port/healthz" -k
}
