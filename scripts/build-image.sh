#!/bin/sh
# Build the worker image (docker compose build). BASE_IMAGE defaults to python:3.12-slim; when that
# image is neither present nor pullable (no registry reachable), a local Debian base is made with
# tests/base_image.sh (debootstrap + docker import, cached) and used instead.
set -eu
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" COMPOSE_DOCKER_CLI_BUILD="${COMPOSE_DOCKER_CLI_BUILD:-0}"

if [ -z "${BASE_IMAGE:-}" ]; then
    BASE_IMAGE=python:3.12-slim
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "cannot pull $BASE_IMAGE (no registry reachable?): making a local base image with tests/base_image.sh"
        bash tests/base_image.sh dts-base:bookworm
        BASE_IMAGE=dts-base:bookworm
    fi
fi
export BASE_IMAGE
echo "building the worker image on $BASE_IMAGE"
"$PY" scale.py build --engine compose
