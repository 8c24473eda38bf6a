#!/usr/bin/env bash
# Build a local base image (default name dts-base:SUITE) for machines that cannot pull one:
# Debian SUITE minbase + python3 + python3-venv + ca-certificates, made with debootstrap and
# `docker import`, with this host's CA bundle so pip inside trusts what the host trusts.
# Use it as the project's base: docker build --build-arg BASE_IMAGE=dts-base:bookworm .
#
# Usage: docker/base_image.sh [--rebuild] [--suite bookworm|trixie|sid] [IMAGE_NAME]
# SUITE (default bookworm, the project's base): trixie (Debian 13) and sid (unstable) are the bases of
# the RabbitMQ 4.0 and 4.3 broker images (scripts/build-broker-image.sh).
# Idempotent: does nothing when the image exists with the current recipe version. The debootstrap
# rootfs tarball is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/dts and reused across runs, also by
# --rebuild (which remakes the image only); delete that directory to run debootstrap again.
# Needs root (debootstrap) and a running engine (.ci/install-docker.sh).
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian), HOST_CA_BUNDLE
#      (default /etc/ssl/certs/ca-certificates.crt; skipped when absent).
set -euo pipefail

RECIPE_VERSION=1            # bump when anything below changes what the image contains
INCLUDE=python3,python3-venv,ca-certificates
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/dts

rebuild=0
SUITE=bookworm
while [[ ${1:-} == --* ]]; do
    case $1 in
        --rebuild) rebuild=1; shift ;;
        --suite) SUITE=${2:-}; shift 2 ;;
        *) echo "base_image: unknown option $1 (usage: $0 [--rebuild] [--suite SUITE] [IMAGE_NAME])" >&2; exit 2 ;;
    esac
done
case $SUITE in
    bookworm | trixie | sid) ;;
    *) echo "base_image: unknown suite '$SUITE' (bookworm, trixie or sid)" >&2; exit 2 ;;
esac
NAME=${1:-dts-base:$SUITE}
ROOTFS_IMAGE=${NAME%%:*}-rootfs:${SUITE}-v${RECIPE_VERSION}
LABEL=dts.base.version

# The legacy builder works with both CLIs here: /usr/local/bin/docker 28 has no buildx (BuildKit
# would fail), Debian's /usr/bin/docker 20.10 uses the legacy builder by default.
export DOCKER_BUILDKIT=0

say() { echo "base_image: $*"; }
die() { echo "base_image: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "Docker engine not answering; run .ci/install-docker.sh"

have=$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$NAME" 2>/dev/null || true)
if [[ $rebuild -eq 0 && $have == "$RECIPE_VERSION" ]]; then
    say "$NAME already present (recipe v$RECIPE_VERSION)"
    exit 0
fi

old_id=$(docker image inspect -f '{{.Id}}' "$NAME" 2>/dev/null || true)
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/lock"
flock 9                     # one builder at a time per cache dir

work=$(mktemp -d "$CACHE_DIR/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
tarball=$CACHE_DIR/rootfs-$SUITE-$arch-v$RECIPE_VERSION.tar

# 1. rootfs tarball (cached)
if [[ -s $tarball ]]; then
    say "reusing cached rootfs $tarball"
else
    [[ $EUID -eq 0 ]] || die "debootstrap needs root; run: sudo $0"
    command -v debootstrap >/dev/null || die "debootstrap not installed; run .ci/install-docker.sh"
    say "debootstrap --variant=minbase --include=$INCLUDE $SUITE ($MIRROR); takes ~40 s"
    start=$SECONDS
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$work/rootfs" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1 \
        || { tail -n 5 "$work/debootstrap.log" >&2; die "debootstrap failed (see above; mirror $MIRROR)"; }
    # Slim it: no downloaded .debs or package lists (apt-get update restores them); no host
    # resolver/hostname baked in (the engine bind-mounts its own at run time).
    rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/lib/apt/lists/*
    : >"$work/rootfs/etc/resolv.conf"
    rm -f "$work/rootfs/etc/hostname"
    tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$tarball"
    rm -rf "$work/rootfs"
    say "rootfs cached: $tarball ($(du -h "$tarball" | cut -f1), $((SECONDS - start)) s)"
fi

# 2. import
start=$SECONDS
docker import -m "debootstrap $SUITE minbase + $INCLUDE" "$tarball" "$ROOTFS_IMAGE" >/dev/null \
    || die "docker import of $tarball failed; delete it and rerun"
say "imported $ROOTFS_IMAGE ($((SECONDS - start)) s)"

# 3. final image: host CA bundle (pip goes through this host's TLS-intercepting egress), UTF-8
ctx=$work/context
mkdir -p "$ctx"
{
    echo "FROM $ROOTFS_IMAGE"
    if [[ -s $HOST_CA_BUNDLE ]]; then
        cp "$HOST_CA_BUNDLE" "$ctx/ca-certificates.crt"
        echo "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt"
    fi
    echo "ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
    if [[ $SUITE == sid ]]; then
        # unstable's Release file can be past its Valid-Until on a mirror that syncs it late (seen
        # here): apt-get update would refuse it. Only sid's image says so; the stable suites check.
        echo "RUN echo 'Acquire::Check-Valid-Until \"false\";' >/etc/apt/apt.conf.d/99dts-no-valid-until"
    fi
    echo "LABEL $LABEL=$RECIPE_VERSION"
    echo 'CMD ["python3"]'
} >"$ctx/Dockerfile"
start=$SECONDS
docker build -t "$NAME" "$ctx" >"$work/build.log" 2>&1 \
    || { tail -n 5 "$work/build.log" >&2; die "docker build of $NAME failed (see above)"; }
docker run --rm "$NAME" python3 -c 'import venv, ssl, ensurepip' \
    || die "$NAME built but python3/venv does not work in it"
say "built $NAME ($((SECONDS - start)) s)"
# drop the image this one replaced (and its untagged rootfs parent), if nothing else uses it
if [[ -n $old_id && $old_id != "$(docker image inspect -f '{{.Id}}' "$NAME")" ]]; then
    docker rmi "$old_id" >/dev/null 2>&1 || true
fi
