#!/usr/bin/env bash
# Builds the container image from a static binary built here, without
# network: podman (or docker) takes the Containerfile at the repository root.
#   deploy/build-image.sh [name[:tag]]    default lexiscore-gateway:<version>
# IMAGE_BUILDER=docker uses docker instead of podman.
set -euo pipefail
cd "$(dirname "$0")/.."

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
version="$(git describe --tags --always --dirty 2>/dev/null || echo dev)"
name="${1:-lexiscore-gateway:$version}"
builder="${IMAGE_BUILDER:-podman}"

rm -rf bin/image
mkdir -p bin/image/data
CGO_ENABLED=0 go build -buildvcs=auto -trimpath -ldflags='-s -w' -o bin/image/gateway ./gateway
cp /etc/ssl/certs/ca-certificates.crt bin/image/

# The docker format keeps HEALTHCHECK, which the OCI format has no field for.
format=()
[ "$builder" = podman ] && format=(--format docker)
# IMAGE_BUILD_FLAGS: more flags for the builder, e.g. --layers=false.
read -r -a extra <<<"${IMAGE_BUILD_FLAGS:-}"
"$builder" build "${format[@]}" "${extra[@]}" -f Containerfile \
	--build-arg VERSION="$version" --build-arg REVISION="$revision" -t "$name" .
