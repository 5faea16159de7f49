#!/usr/bin/env bash
# Builds and runs the demo scoring backend and the gateway in front of it,
# with the embedded defaults (local CA, in-memory limiter store). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p bin .run
go build -o bin/gateway ./gateway
go build -o bin/scoring ./backends/scoring

# The local CA and certificates stay in .run/, not in the user's home.
export XDG_DATA_HOME="$PWD/.run/data" XDG_CONFIG_HOME="$PWD/.run/config"
export SCORING_UPSTREAMS="${SCORING_UPSTREAMS:-127.0.0.1:9001}"
# A throwaway JWT secret for the demo, new on every run, unless one is given:
# the gateway refuses to start without a strong secret and never ships one.
if [ -z "${GATEWAY_JWT_SECRET:-}" ]; then
	GATEWAY_JWT_SECRET="$(head -c 32 /dev/urandom | base64)"
fi
export GATEWAY_JWT_SECRET
# A throwaway request-signing secret shared by gateway and backend, new on
# every run, unless one is given: the backend refuses unsigned /v1 requests.
if [ -z "${GATEWAY_SIGNING_SECRET_FILE:-}" ]; then
	GATEWAY_SIGNING_SECRET_FILE="$PWD/.run/signing-secret"
	(umask 077 && head -c 48 /dev/urandom | base64 >"$GATEWAY_SIGNING_SECRET_FILE")
fi
export GATEWAY_SIGNING_SECRET_FILE GATEWAY_SIGNING_KEY_ID="${GATEWAY_SIGNING_KEY_ID:-gateway-1}"
export SCORING_SIGNING_KEYS="${SCORING_SIGNING_KEYS:-$GATEWAY_SIGNING_KEY_ID:$GATEWAY_SIGNING_SECRET_FILE}"
https_port="${GATEWAY_HTTPS_PORT:-8443}"
# No load balancer watches the demo's /readyz: Ctrl-C stops at once.
export GATEWAY_SHUTDOWN_DELAY="${GATEWAY_SHUTDOWN_DELAY:-0s}"

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping gateway and scoring backend"
	kill "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

bin/scoring -addr 127.0.0.1:9001 -admin-addr 127.0.0.1:9002 >.run/scoring.log 2>&1 &
pids+=($!)
bin/gateway run --config Caddyfile --adapter caddyfile >.run/gateway.log 2>&1 &
pids+=($!)

root="$XDG_DATA_HOME/caddy/pki/authorities/local/root.crt"
for _ in $(seq 1 100); do
	if [ -f "$root" ] && curl -sf --cacert "$root" "https://localhost:$https_port/healthz" >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "${pids[@]}" 2>/dev/null; then
		echo "a process exited early; see .run/gateway.log and .run/scoring.log" >&2
		exit 1
	fi
	sleep 0.2
done

token="$(bin/gateway issue-token --sub demo --tier free --tenant acme --ttl 1h \
	${GATEWAY_JWT_ISSUER:+--iss "$GATEWAY_JWT_ISSUER"} ${GATEWAY_JWT_AUDIENCE:+--aud "$GATEWAY_JWT_AUDIENCE"})"

cat <<MSG

LexiScore Gateway is running.
  gateway     https://localhost:$https_port   (HTTP on :${GATEWAY_HTTP_PORT:-8080} redirects here)
  metrics     http://${GATEWAY_METRICS_ADDR:-127.0.0.1:9180}/metrics
  backend     http://127.0.0.1:9001   (fault injection: http://127.0.0.1:9002/faults)
  logs        .run/gateway.log  .run/scoring.log
  local CA    $root

Try it (a token for user "demo", valid for an hour; more: bin/gateway issue-token --help):
  curl --cacert $root -H "Authorization: Bearer $token" https://localhost:$https_port/v1/users/demo/scores

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
