#!/usr/bin/env bash
# Builds and runs the demo scoring backend and the gateway in front of it,
# with the embedded defaults (local CA, in-memory limiter store). Ctrl-C stops both.
# OBSERVE=1 (make observe) also starts Debian's Prometheus and Alertmanager
# with the shipped rules and Alertmanager config, every receiver writing to
# .run/alerts.log instead of paging anyone.
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
# It is kept in .run/jwt-secret so that more tokens can be issued for this run.
jwt_hint='with your GATEWAY_JWT_SECRET exported'
if [ -z "${GATEWAY_JWT_SECRET:-}" ]; then
	(umask 077 && head -c 32 /dev/urandom | base64 >.run/jwt-secret)
	GATEWAY_JWT_SECRET="$(cat .run/jwt-secret)"
	jwt_hint='GATEWAY_JWT_SECRET="$(cat .run/jwt-secret)"'
fi
export GATEWAY_JWT_SECRET
# A throwaway request-signing secret shared by gateway and backend, new on
# every run, unless one is given: the backend refuses unsigned /v1 requests.
# The backend reads it from a file, so a secret given in GATEWAY_SIGNING_SECRET
# moves to one (the gateway takes a secret from one source, never two).
if [ -z "${GATEWAY_SIGNING_SECRET_FILE:-}" ]; then
	GATEWAY_SIGNING_SECRET_FILE="$PWD/.run/signing-secret"
	if [ -n "${GATEWAY_SIGNING_SECRET:-}" ]; then
		(umask 077 && printf '%s' "$GATEWAY_SIGNING_SECRET" >"$GATEWAY_SIGNING_SECRET_FILE")
		unset GATEWAY_SIGNING_SECRET
	else
		(umask 077 && head -c 48 /dev/urandom | base64 >"$GATEWAY_SIGNING_SECRET_FILE")
	fi
fi
export GATEWAY_SIGNING_SECRET_FILE GATEWAY_SIGNING_KEY_ID="${GATEWAY_SIGNING_KEY_ID:-gateway-1}"
export SCORING_SIGNING_KEYS="${SCORING_SIGNING_KEYS:-$GATEWAY_SIGNING_KEY_ID:$GATEWAY_SIGNING_SECRET_FILE}"
# API keys: a keys file of the run's own, new on every run, unless one is
# given. It starts with one demo key; keys appended to it are accepted within
# the api_key provider's reload interval (10s), without a restart.
keys_hint="${GATEWAY_API_KEYS_FILE:-}"
if [ -z "$keys_hint" ]; then
	GATEWAY_API_KEYS_FILE="$PWD/.run/api-keys"
	keys_hint=.run/api-keys
	demo=$(bin/gateway new-api-key --user demo --tier free --tenant acme 2>/dev/null) || {
		echo "minting the demo API key failed: bin/gateway new-api-key --user demo" >&2
		exit 1
	}
	demo_key="${demo%%$'\n'*}"
	(umask 077 && printf '%s\n' "${demo#*$'\n'}" >"$GATEWAY_API_KEYS_FILE")
fi
export GATEWAY_API_KEYS_FILE
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

if [ "${OBSERVE:-}" = 1 ]; then
	prom_addr="${OBSERVE_PROMETHEUS_ADDR:-127.0.0.1:9090}"
	am_addr="${OBSERVE_ALERTMANAGER_ADDR:-127.0.0.1:9093}"
	log_addr="${OBSERVE_ALERT_LOG_ADDR:-127.0.0.1:9095}"
	metrics_addr="${GATEWAY_METRICS_ADDR:-127.0.0.1:9180}"
	obs="$PWD/.run/observe"
	mkdir -p "$obs"
	cat >"$obs/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
  # Dashboard links in alerts (alerts/README.md): the compose stack's Grafana.
  external_labels: {grafana_url: "${OBSERVE_GRAFANA_URL:-http://localhost:3000}"}
rule_files: ["$PWD/alerts/rules/*.yml"]
alerting:
  alertmanagers: [{static_configs: [{targets: ["$am_addr"]}]}]
scrape_configs:
  - job_name: gateway
    static_configs: [{targets: ["$metrics_addr"]}]
YAML
	# The shipped routing, grouping and inhibition; receivers (the file's
	# last section) replaced by the local log.
	sed '/^receivers:/,$d' alerts/alertmanager.yml >"$obs/alertmanager.yml"
	cat >>"$obs/alertmanager.yml" <<YAML
receivers:
  - {name: pagerduty, webhook_configs: [{url: "http://$log_addr/pagerduty", send_resolved: true}]}
  - {name: ticket, webhook_configs: [{url: "http://$log_addr/ticket", send_resolved: true}]}
  - {name: heartbeat, webhook_configs: [{url: "http://$log_addr/heartbeat", send_resolved: false}]}
YAML
	: >.run/alerts.log
	deploy/alert-log.py "$log_addr" .run/alerts.log >.run/alert-log.log 2>&1 &
	pids+=($!)
	prometheus-alertmanager --config.file="$obs/alertmanager.yml" --storage.path="$obs/alertmanager" \
		--web.listen-address="$am_addr" --cluster.listen-address= >.run/alertmanager.log 2>&1 &
	pids+=($!)
	prometheus --config.file="$obs/prometheus.yml" --storage.tsdb.path="$obs/prometheus" \
		--web.listen-address="$prom_addr" >.run/prometheus.log 2>&1 &
	pids+=($!)
fi

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

Try it (a token for user "demo", valid for an hour):
  curl --cacert $root -H "Authorization: Bearer $token" https://localhost:$https_port/v1/users/demo/scores

More tokens that this gateway accepts (options: bin/gateway issue-token --help):
  $jwt_hint bin/gateway issue-token --sub demo --tier free --ttl 1h
MSG
if [ -n "${demo_key:-}" ]; then
	cat <<MSG

Or an API key (user "demo"):
  curl --cacert $root -H "X-API-Key: $demo_key" https://localhost:$https_port/v1/users/demo/scores
MSG
fi
cat <<MSG

More API keys (options: bin/gateway new-api-key --help): the first line printed is the key, the second
goes into the keys file, which the gateway reads again within 10 seconds:
  bin/gateway new-api-key --user demo --tier pro | { read -r key; read -r line; echo "\$line" >>$keys_hint; echo "\$key"; }

Press Ctrl-C to stop.
MSG
if [ "${OBSERVE:-}" = 1 ]; then
	cat <<MSG

Monitoring (shipped rules and Alertmanager config; nothing leaves the machine):
  prometheus    http://$prom_addr   (targets: /targets, rules: /rules, alerts: /alerts)
  alertmanager  http://$am_addr
  alerts log    .run/alerts.log   (what would page, ticket or heartbeat: tail -f it)
  logs          .run/prometheus.log  .run/alertmanager.log

Keep traffic flowing (alerts are ratios of it), then inject a fault and watch it page; the production
windows apply, so a page takes minutes (alerts/README.md lists how many):
  while sleep 0.2; do curl -s -o /dev/null --cacert $root -H "Authorization: Bearer $token" https://localhost:$https_port/v1/users/demo/scores; done &
  curl -X PUT -d '{"outage":true}' http://127.0.0.1:9002/faults      # backend dead
  curl -X PUT -d '{"error_rate":0.5,"error_status":500}' http://127.0.0.1:9002/faults
  curl -X DELETE http://127.0.0.1:9002/faults                         # all clear
Dashboards need Grafana: the compose stack (deploy/) provisions dashboards/ against this Prometheus.
MSG
fi
wait -n "${pids[@]}"
