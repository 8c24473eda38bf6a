#!/bin/sh
# The broker container's entrypoint: RabbitMQ in the foreground as PID 1 (it gets `docker stop`'s SIGTERM),
# and, beside it, the workers' vhost and user from RABBITMQ_DEFAULT_VHOST / _USER / _PASS created (or their
# password reset) once the node is up: idempotent, every start. `--health`: the HEALTHCHECK.
#
# A cluster node (the compose `cluster` profile) is also given DTS_CLUSTER_SEED, the node it joins
# (rabbit@rabbit-1), and the cluster's Erlang cookie as the file /run/secrets/erlang_cookie. On its first
# start a node other than the seed joins the seed's cluster (stop_app, join_cluster, start_app), one node at
# a time (rabbit-3 after rabbit-2); later starts find it a member already (its data volume) and it rejoins
# on its own.
#
# DTS_BROKER_TLS_DIR, a folder of ca.pem, server.pem and server.key mounted read-only (the compose engine
# mounts the host folder that DTS_BROKER_TLS_DIR names in the host's environment or .env): a TLS listener on
# 5671 that requires a client certificate signed by ca.pem, and no plain AMQP listener at all.
set -eu
vhost=${RABBITMQ_DEFAULT_VHOST:-}
user=${RABBITMQ_DEFAULT_USER:-}
pass=${RABBITMQ_DEFAULT_PASS:-}
seed=${DTS_CLUSTER_SEED:-}
cookie=/run/secrets/erlang_cookie

if [ "${1:-}" = --health ]; then   # the node answers and the user has its permissions on the vhost
    rabbitmqctl -q list_user_permissions "$user" | cut -f1 | grep -qxF "$vhost"
    if [ -n "$seed" ]; then   # and, in a cluster, the node is a member of the seed's cluster
        rabbitmqctl -q cluster_status --formatter json | grep -qF "\"$seed\""
    fi
    exit
fi
if [ -n "$seed" ]; then   # every node of a cluster has the same cookie: the secret's, owner-only
    if [ ! -r "$cookie" ]; then
        echo "dts-broker: DTS_CLUSTER_SEED is set but $cookie is missing: make up BROKER=cluster writes it" >&2
        exit 2
    fi
    [ -f "$HOME/.erlang.cookie" ] && chmod 600 "$HOME/.erlang.cookie"
    cp "$cookie" "$HOME/.erlang.cookie"
    chmod 400 "$HOME/.erlang.cookie"
fi
if [ -z "$vhost" ] || [ -z "$user" ] || [ -z "$pass" ]; then
    echo "dts-broker: set RABBITMQ_DEFAULT_VHOST, RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS (make up BROKER=compose writes them to .env)" >&2
    exit 2
fi

started_in_cluster() {   # node $1 is a member of the seed's cluster and has started since its join (the
    # seed's running_nodes lists a joined node while its start is still under way: not enough)
    rabbitmqctl -q -n "$1" cluster_status --formatter json 2>/dev/null | grep -qF "\"$seed\"" \
        && rabbitmqctl -q -n "$1" await_startup --timeout 5 >/dev/null 2>&1
}

wait_for_the_node_before() {   # nodes join one at a time: rabbit@rabbit-N once rabbit@rabbit-(N-1) has joined
    # and started (two joining at once can leave the second's tables unavailable: RabbitMQ 4.0's start then
    # retries "Mnesia->Khepri fallback handling" for minutes); bounded, then it joins anyway
    n=${RABBITMQ_NODENAME##*-}
    case "$n" in ''|*[!0-9]*) return 0 ;; esac
    [ "$n" -gt 2 ] || return 0
    before="${RABBITMQ_NODENAME%-*}-$((n - 1))"
    waited=0
    until started_in_cluster "$before"; do
        waited=$((waited + 1))
        if [ "$waited" -ge 90 ]; then echo "dts-broker: $before did not join within 3 min; joining anyway" >&2; return 0; fi
        sleep 2
    done
    echo "dts-broker: $before has joined and started: $RABBITMQ_NODENAME joins now"
}

provision() {
    tries=0   # await_startup fails at once while the node is not reachable yet: ask again, up to 5 min
    until rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -ge 150 ]; then echo "dts-broker: the node did not start within 5 min" >&2; return 1; fi
        sleep 2
    done
    if [ -n "$seed" ] && [ "$seed" != "$RABBITMQ_NODENAME" ] \
        && ! rabbitmqctl -q cluster_status --formatter json | grep -qF "\"$seed\""; then
        wait_for_the_node_before
        rabbitmqctl -q stop_app
        until rabbitmqctl -q join_cluster "$seed"; do   # the seed may still be starting: bounded below
            tries=$((tries + 1))
            if [ "$tries" -ge 150 ]; then echo "dts-broker: could not join $seed within 5 min" >&2; return 1; fi
            sleep 2
        done
        echo "dts-broker: $RABBITMQ_NODENAME joined the cluster of $seed; starting"
        # RabbitMQ 4.0: the first start after the join can fail its deprecated-features check while the
        # tables sync (BOOT FAILED, failed_to_deny_deprecated_features); the next start succeeds
        tries=0
        until rabbitmqctl -q start_app; do
            tries=$((tries + 1))
            if [ "$tries" -ge 10 ]; then echo "dts-broker: could not start after joining $seed" >&2; return 1; fi
            sleep 2
        done
        echo "dts-broker: $RABBITMQ_NODENAME started in the cluster of $seed"
    fi
    rabbitmqctl -q list_vhosts name | grep -qxF "$vhost" || rabbitmqctl -q add_vhost "$vhost"
    if rabbitmqctl -q list_users | cut -f1 | grep -qxF "$user"; then
        rabbitmqctl -q change_password "$user" "$pass"
    else
        rabbitmqctl -q add_user "$user" "$pass"
    fi
    rabbitmqctl -q set_permissions -p "$vhost" "$user" '.*' '.*' '.*'
    echo "dts-broker: vhost $vhost, user $user: ready"
}
# broker.consumer_timeout, when `dts up` passes it: the node's consumer_timeout (unset: RabbitMQ's default)
timeout_conf=/etc/rabbitmq/conf.d/90-dts-consumer-timeout.conf
case "${DTS_CONSUMER_TIMEOUT_MS:-}" in
    '') : > "$timeout_conf" ;;
    *[!0-9]*) echo "dts-broker: DTS_CONSUMER_TIMEOUT_MS must be milliseconds (digits only)" >&2; exit 2 ;;
    *) echo "consumer_timeout = $DTS_CONSUMER_TIMEOUT_MS" > "$timeout_conf" ;;
esac
# a cluster node: a quorum queue delivers again the messages a consumer on a lost node held after 10 s, not
# RabbitMQ's 60 s (which waits out a network partition: the compose cluster's nodes share one engine, where a
# lost node is a stopped one). Only on the lines whose configuration knows the key (4.3; 4.0 and 3.10 do at once)
lost_conf=/etc/rabbitmq/conf.d/91-dts-cluster.conf
: > "$lost_conf"
if [ -n "$seed" ] && grep -qs '"consumer_disconnected_timeout"' \
    /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbit-*/priv/schema/rabbit.schema; then
    echo "consumer_disconnected_timeout = 10000" > "$lost_conf"
fi
# the TLS listener, when a folder of certificates is mounted (unset: plain AMQP on 5672 only)
tls_conf=/etc/rabbitmq/conf.d/95-dts-tls.conf
tls=${DTS_BROKER_TLS_DIR:-}
if [ -n "$tls" ]; then
    for file in ca.pem server.pem server.key; do
        if [ ! -r "$tls/$file" ]; then
            echo "dts-broker: $tls/$file (DTS_BROKER_TLS_DIR) is missing or unreadable by the container's rabbitmq user: give the folder ca.pem, server.pem and server.key, readable by their group (chmod 750 the folder, 640 the files)" >&2
            exit 2
        fi
    done
    cat > "$tls_conf" <<CONF
# written by dts-broker-entrypoint (DTS_BROKER_TLS_DIR): TLS only, a client certificate required
listeners.tcp = none
listeners.ssl.default = 5671
ssl_options.cacertfile = $tls/ca.pem
ssl_options.certfile = $tls/server.pem
ssl_options.keyfile = $tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
CONF
    echo "dts-broker: TLS on 5671, a client certificate signed by $tls/ca.pem required; plain AMQP off"
else
    : > "$tls_conf"
fi
provision &
# Not Debian's /usr/sbin wrapper: it neither execs (SIGTERM would not reach the node) nor logs to stdout.
# This script traps SIGTERM and stops the node cleanly.
cd /var/lib/rabbitmq
exec /usr/lib/rabbitmq/bin/rabbitmq-server
