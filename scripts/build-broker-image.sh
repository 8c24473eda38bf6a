#!/bin/sh
# Build the RabbitMQ image of the compose `broker` profile (docker/broker/Dockerfile), once per recipe:
# an image with the tag $DTS_BROKER_IMAGE (default dts-broker:v2) is reused. BASE_IMAGE defaults to
# debian:bookworm-slim; when that is neither present nor pullable (no registry reachable), the project's
# local Debian base is made with docker/base_image.sh (cached) and used instead.
# DTS_BROKER_IMAGE naming another image (e.g. rabbitmq:3-management, the official one): nothing is built,
# compose pulls it.
set -eu
cd "$(dirname "$0")/.."
DEFAULT_TAG=dts-broker:v2   # bump with LABEL dts.amqp.checks.version in docker/broker/Dockerfile
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
    BASE_IMAGE=debian:bookworm-slim
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "cannot pull $BASE_IMAGE (no registry reachable?): making a local base image with docker/base_image.sh"
        bash docker/base_image.sh dts-base:bookworm
        BASE_IMAGE=dts-base:bookworm
    fi
fi
echo "building the broker image $TAG on $BASE_IMAGE (apt-get install rabbitmq-server; about a minute)"
docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$TAG" docker/broker >/dev/null
echo "broker image: $TAG"
