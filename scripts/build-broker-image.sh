#!/bin/sh
# Build the RabbitMQ image of the compose `broker` and `cluster` profiles (docker/broker/Dockerfile), once per
# recipe and RabbitMQ line: an image with the line's tag (or $DTS_BROKER_IMAGE) is reused.
#
# Usage: RABBITMQ=3.10|4.0|4.3 sh scripts/build-broker-image.sh   (default 3.10; `make broker RABBITMQ=4.3`)
# Each line is Debian's rabbitmq-server of one suite (3.10 bookworm, 4.0 trixie, 4.3 sid). The tag and suite
# come from dts.engines.image (RABBITMQ_LINES), the one place that knows them: 'dts-broker:<line>-<hash of
# docker/broker/'s files>', so a changed recipe is a new tag and no tag is bumped by hand.
# BASE_IMAGE defaults to debian:SUITE-slim; when that is neither present nor pullable (no registry reachable),
# the project's local Debian base of that suite is made with docker/base_image.sh (cached) and used instead.
# DTS_BROKER_IMAGE naming another image (e.g. rabbitmq:4-management, the official one): nothing is built,
# compose pulls it.
set -eu
cd "$(dirname "$0")/.."
RABBITMQ="${RABBITMQ:-3.10}"
PY="${PY:-.venv/bin/python}"   # the project's venv (make install); else the system's python3 on this checkout
[ -x "$PY" ] || PY=python3
LINE=$("$PY" -m dts.engines.image broker "$RABBITMQ")   # "TAG SUITE"; an unknown line: exit 2, one line
DEFAULT_TAG=${LINE% *} SUITE=${LINE#* }
TAG="${DTS_BROKER_IMAGE:-$DEFAULT_TAG}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"

case "$TAG" in
    dts-broker:*) ;;
    *) echo "broker image: $TAG (not built here; compose pulls it)"; exit 0 ;;
esac
if docker image inspect "$TAG" >/dev/null 2>&1 && [ -z "${DTS_BROKER_REBUILD:-}" ]; then
    echo "broker image: $TAG (cached; DTS_BROKER_REBUILD=1 rebuilds it)"
    exit 0
fi
if [ -z "${BASE_IMAGE:-}" ]; then
    BASE_IMAGE=debian:$SUITE-slim
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "cannot pull $BASE_IMAGE (no registry reachable?): making a local base image with docker/base_image.sh"
        bash docker/base_image.sh --suite "$SUITE" "dts-base:$SUITE"
        BASE_IMAGE=dts-base:$SUITE
    fi
fi
echo "building the broker image $TAG (RabbitMQ $RABBITMQ) on $BASE_IMAGE (apt-get install rabbitmq-server; about a minute)"
docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$TAG" docker/broker >/dev/null
echo "broker image: $TAG"
