"""Integration test of the autoscaler: real RabbitMQ (a vhost of its own), real local workers, `scale.py auto`
as a subprocess. A burst deepens queue_a: the pool grows at once to its max; once the queue is empty and
the cooldown has passed it shrinks back to its min with a warm shutdown; every task comes back, once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import CHECKOUT, ROOT, executions, fresh_vhost, local_fleet, vhost_url
from kombu.utils.uuid import uuid

pytestmark = pytest.mark.integration
AUTOSCALE_VHOST = f"dts-test-autoscale-{CHECKOUT}"
BURST, DURATION = 60, 0.2  # 12 s of work for one worker, 4 s for three
MIN, MAX, TARGET, COOLDOWN, INTERVAL = 1, 3, 5, 2, 0.5


def config(path, url):
    path.write_text(
        textwrap.dedent(f"""\
        broker: {{url: "{url}"}}
        pools:
          worker-a: {{queues: [queue_a], replicas: {MIN}, autoscale: {{min: {MIN}, max: {MAX}, target: {TARGET}}}}}
          worker-b: {{queues: [queue_b], replicas: 0}}
        engine: {{name: local, stop_timeout: 30, start_timeout: 60}}
        autoscale: {{interval: {INTERVAL}, cooldown: {COOLDOWN}}}
        monitoring: {{task_events: false}}
        """)
    )
    return path


def test_a_burst_grows_the_pool_and_the_cooldown_shrinks_it_back(rabbitmq, tmp_path):
    from dts.amqp.publish import TaskPublisher
    from dts.amqp.replies import ReplyQueue

    fresh_vhost(AUTOSCALE_VHOST, "guest")
    url, run_dir = vhost_url(AUTOSCALE_VHOST), tmp_path / "run"
    path = config(tmp_path / "autoscale.yml", url)
    out = tmp_path / "autoscale.out"
    with local_fleet(path, url, run_dir) as (settings, app, engine):

        def size() -> int:
            return len(engine.workers()["worker-a"])

        assert size() == MIN
        with ReplyQueue(app) as replies, open(out, "w") as sink:
            publisher = TaskPublisher(app, settings, replies)
            ids = [uuid() for _ in range(BURST)]
            for task_id in ids:
                replies.expect(task_id)
                publisher.publish("task_a", task_id, {"duration": DURATION})
            env = dict(os.environ, BROKER_URL=url, DTS_CONFIG=str(path), DTS_RUN_DIR=str(run_dir))
            proc = subprocess.Popen(
                [sys.executable, "scale.py", "auto", "--engine", "local"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                peak, deadline = MIN, time.monotonic() + 60
                got = replies.collect(set(ids), time.monotonic())
                while len(got.results) < BURST and time.monotonic() < deadline:
                    got = replies.collect(set(ids), time.monotonic() + 0.3)  # results arrive while we watch
                    peak = max(peak, size())
                    assert proc.poll() is None, out.read_text()
                assert len(got.results) == BURST, f"{len(got.results)}/{BURST} results; autoscaler: {out.read_text()}"
                assert peak > MIN, f"the pool never grew; autoscaler said: {out.read_text()}"
                assert peak <= MAX
                deadline = time.monotonic() + COOLDOWN + 30  # the cooldown, then a warm shutdown of short tasks
                while not re.search(rf"-> {MIN} replicas \(down.*\n.*resized in .*: worker-a {MIN}\n", out.read_text()):
                    assert time.monotonic() < deadline, f"the pool stayed at {size()}; autoscaler: {out.read_text()}"
                    time.sleep(0.1)  # polling the autoscaler's output for a condition, bounded by the deadline
                assert size() == MIN
            finally:
                proc.send_signal(signal.SIGINT)  # Ctrl-C
                code = proc.wait(timeout=30)
        said = out.read_text()
        assert code == 0, said
        assert all(m["status"] == "SUCCESS" for m in got.results.values())
        assert set(executions(run_dir, ids).values()) == {1}  # every task ran exactly once
        assert len({m["result"]["worker"] for m in got.results.values()}) > 1  # the new workers took part
        changes = re.findall(r"worker-a: (\d+) -> (\d+) replicas \((up|down)", said)
        assert changes[0] == (str(MIN), str(MAX), "up"), said  # 55+ ready / 5 per replica: straight to max
        assert changes[-1][1:] == (str(MIN), "down"), said
        assert "stopped (Ctrl-C or SIGTERM)" in said and "Traceback" not in said, said
        assert engine.workers()["worker-a"] and size() == MIN  # Ctrl-C left the pool as it was
