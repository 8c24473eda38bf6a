"""The Celery app of the Distributed Test System and its two tasks.

`task_a` is routed to `queue_a` and `task_b` to `queue_b` (by default; `tasks:` in test-config.yml), each
served by its own pool of workers (`pools:`). Settings come from dts.routing, the work from dts.work.

    python -m dts.worker worker-a                                # a worker of pool worker-a (what engines run)
    DTS_CONFIG=my-config.yml python dispatch.py                  # another config
    BROKER_URL=amqp://user:pw@host:5672/vhost python dispatch.py # another broker
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from dts.config import Settings, load_settings
from dts.logs import connect_worker_signals
from dts.routing import celery_settings
from dts.work import connect_time_limit_check, connect_warm_up, run_task

DEAD_LETTER_REQUEST = "dts.deadletter:DeadLetterRequest"  # a final failure goes to the queue's Q.dead, with the reason
_active: dict[str, Settings] = {}


def active_settings() -> Settings:
    """The settings in use: those a CLI passed to use_settings(), else the default file ($DTS_CONFIG)."""
    if "settings" not in _active:
        _active["settings"] = load_settings()
    return _active["settings"]


def use_settings(settings: Settings) -> None:
    """Make `settings` the ones the app and the tasks use (CLIs call this after parsing --config)."""
    _active["settings"] = settings
    if app.configured:
        app.conf.update(celery_settings(settings))


# task events without publisher confirms; no fixups (Celery's Django one costs every CLI ~4 ms to import)
app = Celery("celery_app", events="dts.events:UnconfirmedEvents", fixups=[])
app.add_defaults(lambda: celery_settings(active_settings()))
connect_worker_signals()  # LOG_FORMAT=json: the worker logs JSON lines, with the task lifecycle
connect_time_limit_check(active_settings)  # a worker whose execution pool ignores time limits says so
connect_warm_up(app)  # the result channel open before the first task, not inside it


@app.task(bind=True, name="celery_app.task_a", Request=DEAD_LETTER_REQUEST)
def task_a(
    self,
    duration: float | None = None,
    failure_rate: float | None = None,
    fail_times: int = 0,
    retry_delays: list[float] | None = None,
) -> dict[str, Any]:
    return run_task(self, "task_a", active_settings(), duration, failure_rate, fail_times, retry_delays)


@app.task(bind=True, name="celery_app.task_b", Request=DEAD_LETTER_REQUEST)
def task_b(
    self,
    duration: float | None = None,
    failure_rate: float | None = None,
    fail_times: int = 0,
    retry_delays: list[float] | None = None,
) -> dict[str, Any]:
    return run_task(self, "task_b", active_settings(), duration, failure_rate, fail_times, retry_delays)


TASKS = {"task_a": task_a, "task_b": task_b}
