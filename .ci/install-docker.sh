#!/usr/bin/env bash
# Make a Docker engine answer on this machine (Debian bookworm, root).
#
# Idempotent: installs Debian's docker.io, docker-compose (1.29) and debootstrap only when missing
# (apt-get update once first), the compose v2 plugin (below), starts dockerd in the background (log: $DOCKERD_LOG) only when
# `docker info` does not answer, then waits up to $DOCKER_WAIT_SECONDS for the engine.
# Exit 0 when the engine answers; non-zero with a one-line message otherwise.
#
# Env: DOCKERD_LOG (default /tmp/dockerd.log), DOCKER_WAIT_SECONDS (default 60),
#      DOCKERD_FLAGS (extra dockerd flags; none are needed here: overlay2 + iptables-nft work).
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKER_WAIT_SECONDS=${DOCKER_WAIT_SECONDS:-60}
PACKAGES=(docker.io docker-compose debootstrap)

say() { echo "install-docker: $*"; }
die() { echo "install-docker: $*" >&2; exit 1; }

# Any docker CLI will do for `docker info` (/usr/local/bin/docker 28 or Debian's /usr/bin/docker).
engine_up() { docker info >/dev/null 2>&1; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    [[ $EUID -eq 0 ]] || die "need root to apt-get install ${missing[*]}; run: sudo $0"
    say "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp)
    trap 'rm -f "$apt_log"' EXIT
    apt-get update -qq >"$apt_log" 2>&1 \
        || { tail -n 5 "$apt_log" >&2; die "apt-get update failed; check the Debian mirror in /etc/apt/sources.list*"; }
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1 \
        || { tail -n 5 "$apt_log" >&2; die "apt-get install ${missing[*]} failed (see above)"; }
else
    say "packages present: ${PACKAGES[*]}"
fi

# Compose v2, the `docker compose` plugin users run today, from Debian 13's package (a static Go binary: it
# needs libc6 >= 2.34, bookworm has 2.36); Debian 12 only has docker-compose 1.29, kept for the test that
# covers it (DTS_COMPOSE=docker-compose). Pinned by version and sha256; installed where every docker CLI
# looks for plugins.
COMPOSE_DEB=docker-compose_2.26.1-4_amd64.deb
COMPOSE_SHA256=47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea
COMPOSE_URL=${DEBIAN_MIRROR:-http://deb.debian.org/debian}/pool/main/d/docker-compose/$COMPOSE_DEB
PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
if [[ -x $PLUGIN ]]; then
    say "compose v2 plugin present: $($PLUGIN version --short 2>/dev/null)"
elif [[ $(dpkg --print-architecture 2>/dev/null) != amd64 ]]; then
    say "compose v2 plugin: no pinned package for $(dpkg --print-architecture); docker-compose 1.29 only"
else
    [[ $EUID -eq 0 ]] || die "need root to install the compose v2 plugin in $PLUGIN; run: sudo $0"
    work=$(mktemp -d)
    curl -fsS -m 300 -o "$work/$COMPOSE_DEB" "$COMPOSE_URL" || die "cannot download $COMPOSE_URL"
    echo "$COMPOSE_SHA256  $work/$COMPOSE_DEB" | sha256sum -c --quiet - || die "$COMPOSE_DEB: sha256 mismatch"
    dpkg-deb -x "$work/$COMPOSE_DEB" "$work/root"
    install -D -m 755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN"
    rm -rf "$work"
    say "compose v2 plugin installed: $($PLUGIN version --short)"
fi

if engine_up; then
    say "engine already answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
    exit 0
fi

command -v dockerd >/dev/null || die "dockerd not found after installing docker.io"
[[ $EUID -eq 0 ]] || die "the Docker engine is not running and starting dockerd needs root; run: sudo $0"

pid=$(cat /var/run/docker.pid 2>/dev/null || true)
if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    say "dockerd (pid $pid) is already starting; waiting for it"
else
    say "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: dockerd gets its own session, so it outlives this script and whatever ran it.
    # (No job control here, so setsid execs in place and $! is dockerd's pid.)
    # shellcheck disable=SC2086  # DOCKERD_FLAGS is a flag list
    setsid dockerd ${DOCKERD_FLAGS:-} >"$DOCKERD_LOG" 2>&1 </dev/null &
    pid=$!
fi

deadline=$((SECONDS + DOCKER_WAIT_SECONDS))
until engine_up; do
    if ((SECONDS >= deadline)); then
        die "engine did not answer within ${DOCKER_WAIT_SECONDS}s; last log line: $(tail -n 1 "$DOCKERD_LOG" 2>/dev/null)"
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        die "dockerd exited; last log line: $(tail -n 1 "$DOCKERD_LOG" 2>/dev/null)"
    fi
    sleep 1
done
say "engine answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null), storage $(docker info -f '{{.Driver}}' 2>/dev/null))"
