#!/bin/sh
# Make sure a RabbitMQ answers on localhost:5672: start an installed one; on Debian/Ubuntu as root,
# install rabbitmq-server first; otherwise print the command that installs it on this OS. Not root: print
# the exact sudo command that starts (or installs) it, exit 1.
set -eu
PORT="${DTS_BROKER_PORT:-5672}"
DEADLINE_S="${DTS_BROKER_WAIT:-300}"
PY="${PYTHON:-python3}"

answers() {
    "$PY" -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(('127.0.0.1', $PORT)))" 2>/dev/null
}

node_up() {   # the node answers rabbitmqctl (as root): it is booting or running, whatever its listener does
    PATH="$PATH:/usr/sbin" rabbitmqctl -q ping >/dev/null 2>&1
}

wait_for_broker() {   # a node recovers every vhost before it listens: many vhosts take minutes
    started=$(date +%s)
    next=$(( started + 15 ))
    while ! answers; do
        now=$(date +%s)
        if [ "$now" -ge $(( started + DEADLINE_S )) ]; then
            echo "RabbitMQ did not answer on localhost:$PORT within ${DEADLINE_S}s (DTS_BROKER_WAIT); see /var/log/rabbitmq/" >&2
            exit 1
        fi
        if [ "$now" -ge "$next" ]; then
            if ! node_up; then
                echo "RabbitMQ stopped while starting; see /var/log/rabbitmq/" >&2
                exit 1
            fi
            echo "RabbitMQ is still starting ($(( now - started )) s; it recovers each vhost before it listens)"
            next=$(( now + 15 ))
        fi
        sleep 1
    done
}

if answers; then
    echo "RabbitMQ answers on localhost:$PORT"
    exit 0
fi

if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing rabbitmq-server (apt-get)..."
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    else
        echo "RabbitMQ is not installed. Install and start it, then re-run:" >&2
        echo "  Debian/Ubuntu: sudo apt-get install -y rabbitmq-server && sudo systemctl start rabbitmq-server" >&2
        echo "  Fedora/RHEL:   sudo dnf install -y rabbitmq-server && sudo systemctl start rabbitmq-server" >&2
        echo "  macOS:         brew install rabbitmq && brew services start rabbitmq" >&2
        exit 1
    fi
fi

if answers; then   # the package's post-install may have started it
    echo "RabbitMQ answers on localhost:$PORT"
    exit 0
fi

if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    start="systemctl start rabbitmq-server"
else
    start="rabbitmq-server -detached"
fi
if [ "$(id -u)" != 0 ]; then   # the command, to run once; nothing is run with sudo behind the user's back
    echo "RabbitMQ is installed but not running on localhost:$PORT, and starting it needs root: run this once, then re-run:" >&2
    echo "  sudo $start" >&2
    exit 1
fi
if node_up; then   # started by an earlier call (or at boot) and not listening yet: wait for it, start nothing
    echo "RabbitMQ is starting (its node is up, its listener not yet)..."
else
    echo "starting RabbitMQ..."
    PATH="$PATH:/usr/sbin" $start
fi
wait_for_broker
echo "RabbitMQ answers on localhost:$PORT"
