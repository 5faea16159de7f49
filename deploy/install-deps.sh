#!/usr/bin/env bash
# Installs, with apt-get, the programs the tests and benchmarks run for real
# (Redis, also as Cluster and Sentinel, Prometheus, Alertmanager, wrk, GNU time
# for the benchmark's CPU accounting, and the deployment checks' podman,
# docker-compose and systemd-analyze) when any is missing. Idempotent.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
command -v podman >/dev/null || need+=(podman)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v systemd-analyze >/dev/null || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
