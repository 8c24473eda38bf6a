#!/bin/sh
# A multi-node Docker Swarm on one machine, as a real multi-host one is built: NODES extra Docker engines,
# each a `dockerd` in a network namespace of its own (its own address, data and exec roots, socket and
# containers' cgroup), joined as one swarm by token (node 1 the manager), and a local image registry
# (Debian's docker-registry) every node pulls the worker image from.
#
#   sh scripts/swarm-nodes.sh up [NODES]     # default 3; idempotent: what exists is kept
#   sh scripts/swarm-nodes.sh push IMAGE     # the host engine's IMAGE into the registry; prints its name there
#   sh scripts/swarm-nodes.sh env            # DOCKER_HOST (the manager), DTS_BROKER_HOST, DTS_IMAGE (in the registry)
#   sh scripts/swarm-nodes.sh nodes          # the swarm's nodes (docker node ls on the manager)
#   sh scripts/swarm-nodes.sh kill N         # node N dies: its engine, its containers, its link (a lost host)
#   sh scripts/swarm-nodes.sh revive N       # node N's link and engine back (it rejoins the swarm)
#   sh scripts/swarm-nodes.sh down           # everything removed: daemons, namespaces, links, data, registry
#
# Why namespaces and not Docker-in-Docker: `docker run --privileged` is refused where the engine is not
# granted every capability (shared CI machines often are not), while `ip netns` works. dockerd is entered into its namespace with nsenter
# (network only): `ip netns exec` would also remount /sys and hide the cgroups dockerd needs.
# Needs root, iproute2, nsenter (util-linux), dockerd, and docker-registry (installed with apt if missing).
set -eu

PREFIX=dtssw
BRIDGE=${PREFIX}0
NET=10.213.0
HOST_IP=$NET.1
STATE=${DTS_SWARM_STATE:-/var/lib/dts-swarm}
RUN=${DTS_SWARM_RUN:-/run/dts-swarm}
REGISTRY_PORT=${DTS_REGISTRY_PORT:-5000}
WAIT=${DTS_SWARM_WAIT:-60}   # seconds for one engine (or the registry) to answer

node_ip() { echo "$NET.$((10 + $1))"; }
sock() { echo "unix://$RUN/node$1.sock"; }
on() { n=$1; shift; docker -H "$(sock "$n")" "$@"; }
say() { echo "swarm-nodes: $*"; }
die() { echo "swarm-nodes: error: $*" >&2; exit "${2:-1}"; }

wait_for() {   # wait_for WHAT COMMAND...: the command succeeds within WAIT seconds
    what=$1; shift; tries=0
    until "$@" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt $((WAIT * 4)) ] || die "$what did not answer within ${WAIT}s"
        sleep 0.25   # polling, bounded by WAIT
    done
}

bridge_up() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || {
        ip link add "$BRIDGE" type bridge
        ip addr add "$HOST_IP/24" dev "$BRIDGE"
    }
    ip link set "$BRIDGE" up
    # Docker's FORWARD policy is DROP: let the nodes reach each other (swarm, overlay) through the bridge
    iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null \
        || iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
}

link_up() {   # node N's namespace, its veth pair on the bridge, its address
    n=$1; ns=$PREFIX$n
    [ -e "/run/netns/$ns" ] || ip netns add "$ns"
    if ! ip link show "${ns}h" >/dev/null 2>&1; then
        ip link add "${ns}h" type veth peer name "${ns}n"
        ip link set "${ns}n" netns "$ns"
        ip -n "$ns" link set "${ns}n" name eth0
        ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
    fi
    ip link set "${ns}h" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$HOST_IP"
}

engine_up() {   # node N's dockerd, inside its namespace, answering on its socket
    n=$1; ns=$PREFIX$n
    if on "$n" info >/dev/null 2>&1; then return; fi
    mkdir -p "$STATE/node$n" "$RUN/node$n"
    # its own network and host name (a node's name in `docker node ls`), the host's mounts and cgroups
    nsenter --net="/run/netns/$ns" unshare --uts sh -c "hostname $ns && exec dockerd \"\$@\"" dockerd \
        --data-root "$STATE/node$n" --exec-root "$RUN/node$n" --pidfile "$RUN/node$n.pid" \
        -H "$(sock "$n")" --cgroup-parent "/$ns" \
        --insecure-registry "$HOST_IP:$REGISTRY_PORT" \
        >"$STATE/node$n.log" 2>&1 &
    wait_for "the engine of node $n" on "$n" info
}

registry_up() {
    command -v docker-registry >/dev/null 2>&1 || {
        say "installing Debian's docker-registry"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >/dev/null
    }
    if [ -f "$RUN/registry.pid" ] && kill -0 "$(cat "$RUN/registry.pid")" 2>/dev/null; then return; fi
    mkdir -p "$STATE/registry" "$RUN"
    cat >"$STATE/registry.yml" <<EOF
version: 0.1
storage: {filesystem: {rootdirectory: $STATE/registry}, delete: {enabled: true}}
http: {addr: "0.0.0.0:$REGISTRY_PORT"}
EOF
    docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
    echo $! >"$RUN/registry.pid"
    wait_for "the registry" python3 -c "import urllib.request as r; r.urlopen('http://127.0.0.1:$REGISTRY_PORT/v2/', timeout=2)"
}

swarm_up() {   # node 1 inits the swarm; the others join it by the worker token
    nodes=$1
    if [ "$(on 1 info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
        on 1 swarm init --advertise-addr "$(node_ip 1)" >/dev/null
    fi
    token=$(on 1 swarm join-token -q worker)
    n=2
    while [ "$n" -le "$nodes" ]; do
        if [ "$(on "$n" info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
            on "$n" swarm join --token "$token" --advertise-addr "$(node_ip "$n")" "$(node_ip 1):2377" >/dev/null
        fi
        n=$((n + 1))
    done
}

up() {
    nodes=${1:-3}
    case "$nodes" in ''|*[!0-9]*) die "NODES must be a whole number 2..9 (got '$nodes')" 2 ;; esac
    [ "$nodes" -ge 2 ] && [ "$nodes" -le 9 ] || die "NODES must be 2..9 (got $nodes)" 2
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, dockerd)" 2
    bridge_up
    registry_up
    n=1
    while [ "$n" -le "$nodes" ]; do link_up "$n"; engine_up "$n"; n=$((n + 1)); done
    swarm_up "$nodes"
    say "$nodes nodes in one swarm (manager node 1 at $(node_ip 1)), registry at $HOST_IP:$REGISTRY_PORT"
}

push() {   # the host engine's image into the registry: the nodes pull it as $HOST_IP:PORT/NAME:TAG
    image=${1:?usage: swarm-nodes.sh push IMAGE}
    name=${image##*/}
    docker tag "$image" "127.0.0.1:$REGISTRY_PORT/$name" >/dev/null
    docker push -q "127.0.0.1:$REGISTRY_PORT/$name" >/dev/null
    echo "$HOST_IP:$REGISTRY_PORT/$name"
}

containers_of() {   # the pids of node N's containers (their cgroup, under the node's cgroup parent)
    cat /sys/fs/cgroup/pids/"$PREFIX$1"/*/cgroup.procs 2>/dev/null || true
}

kill_node() {   # as a host that dies: its link goes first (no goodbye on the wire), then all its processes
    n=${1:?usage: swarm-nodes.sh kill N}; ns=$PREFIX$n
    ip link set "${ns}h" down 2>/dev/null || true
    pids="$(ip netns pids "$ns" 2>/dev/null) $(containers_of "$n")"
    # shellcheck disable=SC2086
    [ -z "${pids# }" ] || kill -9 $pids 2>/dev/null || true
    rm -f "$RUN/node$n.pid"
    say "node $n killed"
}

revive() {
    n=${1:?usage: swarm-nodes.sh revive N}
    bridge_up; link_up "$n"; engine_up "$n"
    say "node $n back"
}

down() {   # every node's processes, namespace, link, data; the registry; the bridge and its rule
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX[0-9]*$" || true); do
        n=${ns#"$PREFIX"}
        on "$n" swarm leave --force >/dev/null 2>&1 || true
        kill_node "$n" >/dev/null
        ip link del "${ns}h" 2>/dev/null || true
        ip netns del "$ns"
        for c in /sys/fs/cgroup/*/"$ns"; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    done
    if [ -f "$RUN/registry.pid" ]; then kill "$(cat "$RUN/registry.pid")" 2>/dev/null || true; fi
    # the engines' mounts (overlay layers, netns files) under the state and run folders go before the folders
    grep -oE " ($STATE|$RUN)[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$STATE" "$RUN"
    iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
    say "removed: nodes, namespaces, links, data, registry"
}

case "${1:-}" in
    up) up "${2:-3}" ;;
    push) push "${2:-}" ;;
    env) image=${DTS_IMAGE:-dts-worker:latest}
         echo "DOCKER_HOST=$(sock 1) DTS_BROKER_HOST=$HOST_IP DTS_IMAGE=$HOST_IP:$REGISTRY_PORT/${image##*/}" ;;
    nodes) on 1 node ls ;;
    kill) kill_node "${2:-}" ;;
    revive) revive "${2:-}" ;;
    down) down ;;
    *) die "usage: swarm-nodes.sh up [NODES] | push IMAGE | env | nodes | kill N | revive N | down" 2 ;;
esac
