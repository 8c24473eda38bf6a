"""Long tasks and the consumer timeout on RabbitMQ 4.0 and 4.3, end to end on a real Docker engine: a broker
whose configuration file gives a consumer 5 s to acknowledge (checked every second), the pools as containers
on quorum queues with `broker.consumer_timeout: 600`, and two tasks that each hold their message more than twice as long:
a task with no time limit running 12 s, and a retry waiting out a 12 s backoff in its worker. Each completes
once: received once (the retry: twice, its two attempts), succeeded, nothing left on the queues.

What keeps them: on 4.0 the project's own setting in the broker containers (written after the broker's
configuration files, so it wins over a file's short value); on 4.3 the workers' per-consumer timeout on
quorum queues (the file's value is kept there: advanced.config wins over the project's, and a consumer
without the argument is cancelled within seconds, checked first).
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from helpers import compose_broker_stack, run_cli, write_config

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(900)]
HOLD = 12  # seconds each task holds its message: over twice the broker's 5 s, checked every second
TICK = "{channel_tick_interval, 1000}"  # the broker looks for late acknowledgements every second, not every 60
# the short timeout per line: 4.0 in a conf.d file (the project's file comes after it), 4.3 in advanced.config
SHORT = {
    "4.0": {"50-short.conf": "consumer_timeout = 5000\n", "advanced.config": f"[{{rabbit, [{TICK}]}}].\n"},
    "4.3": {"advanced.config": f"[{{rabbit, [{{consumer_timeout, 5000}}, {TICK}]}}].\n"},
}
SECOND_TRY = "test -e /tmp/dts-second-try && exit 0; touch /tmp/dts-second-try; exit 75"  # fails once, then succeeds


def short_timeout_image(line: str, folder) -> str:
    """The line's broker image with the short consumer timeout in its configuration files."""
    from dts.engines.image import broker_image, build_broker_image

    tag = f"dts-test-short-timeout:{line}"  # not dts-broker:*, so the project does not build it itself
    files = SHORT[line]
    for name, text in files.items():
        (folder / name).write_text(text)
    copies = "".join(
        f"COPY {name} /etc/rabbitmq/{'conf.d/' if name.endswith('.conf') else ''}{name}\n" for name in files
    )
    (folder / "Dockerfile").write_text(f"FROM {broker_image(line)}\n{copies}")
    build_broker_image(line)  # the line's own image first (cached by tag)
    subprocess.run(["docker", "build", "-q", "-t", tag, str(folder)], check=True, capture_output=True, timeout=600)
    return tag


@pytest.fixture(scope="module", params=["4.0", "4.3"])
def stack(request, tmp_path_factory):
    line = request.param
    image = short_timeout_image(line, tmp_path_factory.mktemp("short-image"))
    path = write_config(tmp_path_factory.mktemp("ct") / "ct.yml", replicas="1", timeout="180")
    text = path.read_text().replace(
        "  connect_timeout: 5\n", "  connect_timeout: 5\n  queue_type: quorum\n  consumer_timeout: 600\n"
    )
    text = text.replace("duration: 0.1,", f"duration: {HOLD},")
    own = (
        f"  second_try: {{queue: queue_b, command: [sh, -c, '{SECOND_TRY}'], retry_on_exit: [75], "
        f"retry: {{max_retries: 1, backoff_base: {HOLD}, backoff_max: {HOLD}, jitter: false}}}}\n"
    )
    path.write_text(insert_task(text, own))
    name = "ct" + line.replace(".", "")
    with compose_broker_stack(path, name, rabbitmq=line, extra_env={"DTS_BROKER_IMAGE": image}) as found:
        yield {**found, "line": line}


def insert_task(text: str, own: str) -> str:
    """The config with one more task under `tasks:` (after task_b)."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("  task_b:")) + 1
    return "".join([*lines[:at], own, *lines[at:]])


def broker(stack: dict, *args: str) -> str:
    (cid,) = stack["engine"].containers("broker")
    proc = subprocess.run(["docker", "exec", cid, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_broker_runs_with_the_timeout_that_line_keeps(stack):
    """4.0: the project's 600 s over the file's 5 s; 4.3: advanced.config's 5 s stays the global value."""
    found = broker(stack, "rabbitmqctl", "-q", "eval", "application:get_env(rabbit, consumer_timeout).").strip()
    assert found == {"4.0": "{ok,600000}", "4.3": "{ok,5000}"}[stack["line"]]


@pytest.mark.parametrize("stack", ["4.3"], indirect=True)  # on 4.0 the node's timeout is the project's 600 s
def test_on_4_3_a_quorum_consumer_without_its_own_timeout_is_cancelled(stack):
    """The control: the broker's 5 s is real on 4.3 quorum queues (basic.cancel within seconds)."""
    from amqp.exceptions import ConsumerCancelled
    from kombu import Connection

    with Connection(stack["env"]["BROKER_URL"]) as conn:
        channel = conn.channel()
        channel.queue_declare("ct-probe", durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
        channel.basic_publish(channel.prepare_message(b"probe"), "", "ct-probe")
        channel.basic_qos(0, 1, False)
        got, cancelled = [], []
        channel.basic_consume("ct-probe", callback=got.append, on_cancel=cancelled.append)
        deadline = time.monotonic() + 60
        while not cancelled and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except TimeoutError:
                pass
            except ConsumerCancelled as cancel:  # py-amqp raises it when the tag has no callback left
                cancelled.append(cancel)
    assert len(got) == 1 and cancelled, "the broker's 5 s consumer timeout never cancelled the consumer"


def test_a_long_task_and_a_long_backoff_retry_each_complete_once(stack):
    proc = run_cli("dispatch.py", "--task", "task_a", "--task", "second_try", "--json", env=stack["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    by = {t["task"]: t for t in json.loads(proc.stdout)["tasks"]}
    assert by["task_a"]["state"] == "succeeded" and by["task_a"]["result"]["retries"] == 0, by["task_a"]
    assert by["second_try"]["state"] == "succeeded" and by["second_try"]["result"]["retries"] == 1, by["second_try"]
    assert by["task_a"]["result"]["execution_time"] >= HOLD
    received = {pool: worker_log(stack, pool) for pool in ("worker-a", "worker-b")}
    assert received["worker-a"].count(f"[{by['task_a']['task_id']}] received") == 1, received["worker-a"][-3000:]
    # the retry's two attempts: received twice (once more, and the broker took a message back)
    assert received["worker-b"].count(f"[{by['second_try']['task_id']}] received") == 2, received["worker-b"][-3000:]
    assert work_left(stack, deadline=time.monotonic() + 15) == {"queue_a": 0, "queue_b": 0}


def work_left(stack: dict, deadline: float) -> dict[str, int]:
    """The work queues' messages (ready + unacknowledged) once both are empty or at the deadline (a task's
    late ack follows its result by a moment)."""
    while True:
        listed = broker(stack, "rabbitmqctl", "-q", "list_queues", "-p", stack["env"]["DTS_BROKER_VHOST"],
                        "name", "messages", "--formatter", "json")  # fmt: skip
        left = {q["name"]: q["messages"] for q in json.loads(listed) if q["name"] in ("queue_a", "queue_b")}
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.2)  # polling the broker for a condition, bounded by the deadline


def worker_log(stack: dict, pool: str) -> str:
    (cid,) = stack["engine"].containers(pool)
    proc = subprocess.run(["docker", "logs", cid], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr
