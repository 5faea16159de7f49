#!/usr/bin/env bash
# Builds the gateway binary: with xcaddy when it is installed (so users can add
# other Caddy plugins with extra --with flags), otherwise with plain `go build`
# of ./gateway, which links exactly the same modules.
# Usage: ./xcaddy.sh [output-path] [extra xcaddy args...]
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-bin/gateway}"
shift || true
mkdir -p "$(dirname "$out")"

if command -v xcaddy >/dev/null 2>&1; then
	caddy_version=$(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
	XCADDY_SKIP_CLEANUP=0 xcaddy build "$caddy_version" --output "$out" \
		--with github.com/lexiscore/gateway=. "$@"
else
	# Without xcaddy nothing can add a plugin: refuse rather than build a
	# binary without it.
	if [ "$#" -gt 0 ]; then
		echo "xcaddy.sh: $* needs xcaddy (go install github.com/caddyserver/xcaddy/cmd/xcaddy@latest)" >&2
		exit 2
	fi
	# -buildvcs=auto: the commit goes into `gateway version` and
	# gateway_build_info even where GOFLAGS says -buildvcs=false.
	go build -buildvcs=auto -o "$out" ./gateway
fi
echo "built $(realpath "$out")"
