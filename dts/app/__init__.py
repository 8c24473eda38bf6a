"""The Celery app, made from a `Settings` (no global state): its configuration is dts.app.conf's, its tasks
are registered from one table, their work is dts.runtime.work's.

    app = make_app(settings)            # what every command does with the settings it parsed
    app.tasks[task_name("task_a")]      # the task `celery_app.task_a` (its name on the wire)
    celery -A dts.app worker ...        # a worker: the app for $DTS_CONFIG, made on first use (worker_app)

The workers' `-A` names this module, inside the package, so a `celery_app.py` of the user's own can never
shadow it; this repository's top-level celery_app.py is the readable entry that takes its app from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from dts.config import Settings

APP_NAME = "celery_app"  # the app's main name: the tasks' wire names begin with it (celery_app.task_a)
SIMULATED = ("task_a", "task_b")  # the built-in tasks: simulated work (tasks.NAME.duration, failure_rate)
DEAD_LETTER_REQUEST = (
    "dts.runtime.deadletter:DeadLetterRequest"  # a final failure goes to the queue's Q.dead, with the reason
)


def task_name(task: str) -> str:
    """'task_a' -> 'celery_app.task_a': the name a task is sent and registered by."""
    return f"{APP_NAME}.{task}"


def _simulated(task: str, settings: Settings):
    """The body of a simulated task: the work, its retries with backoff, the result dict (dts.runtime.work)."""
    from dts.runtime.work import run_task

    def run(
        self,
        duration: float | None = None,
        failure_rate: float | None = None,
        fail_times: int = 0,
        retry_delays: list[float] | None = None,
    ) -> dict[str, Any]:
        return run_task(self, task, settings, duration, failure_rate, fail_times, retry_delays)

    run.__name__ = run.__qualname__ = task
    return run


def _own(task: str, settings: Settings):
    """The body of a task of your own: its callable with the params (dts.runtime.calls, imported on use:
    the dispatcher never needs the user's code)."""

    def run(self, **params: Any) -> dict[str, Any]:
        if settings.tasks[task].command:
            from dts.runtime.commands import run_command

            return run_command(self, task, settings, params)
        from dts.runtime.calls import run_call

        return run_call(self, task, settings, params)

    run.__name__ = run.__qualname__ = task
    return run


def make_app(settings: Settings) -> Celery:
    """The app for `settings`: configured on first use, every declared task registered under one naming rule
    (`celery_app.<name>`): the built-ins with their simulated work, your own with their callable."""
    from celery import Celery  # on use: dts.app.conf's readers (the k8s renderer) need no Celery

    from dts.app.conf import celery_settings

    # task events without publisher confirms; no fixups (Celery's Django one costs every CLI ~4 ms to import)
    # the control queue named afresh on each connection (dts.app.mailbox: a 4.3 cluster that lost a node)
    app = Celery(APP_NAME, events="dts.app.events:UnconfirmedEvents", control="dts.app.mailbox:Control", fixups=[])
    app.add_defaults(lambda: celery_settings(settings))
    for task, spec in settings.tasks.items():  # not shared: another app (other settings) never gets them
        task_of = app.task(bind=True, name=task_name(task), Request=DEAD_LETTER_REQUEST, shared=False)
        task_of(_own(task, settings) if spec.call or spec.command else _simulated(task, settings))
    return app


def worker_app(settings: Settings) -> Celery:
    """The app of a worker process: make_app, plus the worker-side signal handlers (JSON logs with the task
    lifecycle, the time-limit check, the result channel opened before the first task)."""
    from dts.logs import connect_worker_signals
    from dts.runtime.work import connect_time_limit_check, connect_warm_up

    app = make_app(settings)
    connect_worker_signals()  # LOG_FORMAT=json: the worker logs JSON lines, with the task lifecycle
    connect_time_limit_check(lambda: settings)  # a worker whose execution pool ignores time limits says so
    connect_warm_up(app)  # the result channel open before the first task, not inside it
    return app


def __getattr__(name: str) -> Celery:
    """`celery -A dts.app worker` asks this module for `app`: the worker's app for $DTS_CONFIG, made once."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from dts.config import load_settings

    made = globals()["app"] = worker_app(load_settings())
    return made
