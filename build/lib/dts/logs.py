"""Log formatting: human-readable text, or one JSON object per line when `LOG_FORMAT=json` (the default in
containers). The one place that reads LOG_FORMAT; CLIs (dts.cli) and workers (celery_app) both use it.

    LOG_FORMAT=json python dispatch.py -v       # diagnostics on stderr as JSON lines
    LOG_FORMAT=json dts worker worker-a

A JSON line always has `timestamp` (ISO 8601, UTC), `level`, `event` (the message) and `logger`; a worker's
lines add `worker` (its node name) and, while a task runs, `task_id`, `task_name`, `queue` and `attempt`;
the task lifecycle records ("task started", "task retry", "task succeeded", "task failed") add `outcome`
and `duration` (seconds). Formatting is python-json-logger's; this module only names the fields.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from dts.errors import CliError, ExitCode, excerpt

ENV = "LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = (
    "timestamp",
    "level",
    "event",
    "logger",
    "task_id",
    "task_name",
    "queue",
    "worker",
    "attempt",
    "duration",
    "outcome",
)
TASK_FIELDS = ("task_id", "task_name", "queue", "worker", "attempt")

log = logging.getLogger("dts.task")


def log_format(env: Mapping[str, str] | None = None) -> str:
    """'text' (default) or 'json', from $LOG_FORMAT; any other value is a usage error (exit 2)."""
    value = (os.environ if env is None else env).get(ENV, "").strip().lower() or "text"
    if value not in FORMATS:
        raise CliError(f"{ENV}={excerpt(value)} is not a log format: use {' or '.join(FORMATS)}", ExitCode.USAGE)
    return value


def json_enabled() -> bool:
    """True when LOG_FORMAT=json; an invalid value counts as text (where it is reported, see log_format)."""
    try:
        return log_format() == "json"
    except CliError:
        return False


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of a log format: 'text' (TEXT_FORMAT) or 'json' (one object per line, FIELDS)."""
    if fmt == "text":
        return logging.Formatter(TEXT_FORMAT)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter  # on use: ~4 ms of every CLI's start otherwise

        class _JsonFormatter(JsonFormatter):
            def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
                return {"timestamp": log_data.pop("timestamp"), **log_data}  # the timestamp first, for the eye

        return _JsonFormatter(
            "%(levelname)s %(message)s %(name)s",
            rename_fields={"levelname": "level", "message": "event", "name": "logger"},
            timestamp=True,
        )
    raise ValueError(f"unknown log format {fmt!r}")


# -- workers: Celery's own loggers in JSON, the task context on every record, the task lifecycle records

_node: dict[str, str] = {}  # this worker's node name, set when the worker starts
_started: dict[str, float] = {}  # task id -> perf_counter at task_prerun (in the process running the task)


class TaskContext(logging.Filter):
    """Adds the worker's node name and, inside a task, the task's id, name, queue and attempt to a record
    (fields a record already has win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery._state import get_current_task

        fields: dict[str, Any] = {"worker": _node.get("name")}
        task = get_current_task()
        if task is not None and task.request.id:
            fields = task_fields(task)
        for key, value in fields.items():
            if value is not None and getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


def task_fields(task, request=None) -> dict[str, Any]:
    req = request or task.request
    return {
        "task_id": req.id,
        "task_name": task.name,
        "queue": (req.delivery_info or {}).get("routing_key"),
        "worker": req.hostname or _node.get("name"),
        "attempt": (req.retries or 0) + 1,
    }


def use_json(logger: logging.Logger) -> None:
    """Give every handler of `logger` the JSON formatter and the task context."""
    for handler in logger.handlers:
        handler.setFormatter(formatter("json"))
        if not any(isinstance(f, TaskContext) for f in handler.filters):
            handler.addFilter(TaskContext())


def _duration(task_id: str, pop: bool) -> float | None:
    start = _started.pop(task_id, None) if pop else _started.get(task_id)
    return None if start is None else round(time.perf_counter() - start, 6)


def json_notices() -> None:
    """Celery's worker prints a few notices from its signal handlers instead of logging them (e.g.
    'worker: Warm shutdown (MainProcess)'); in JSON mode they become JSON lines too (a record formatted by
    the JSON formatter, written with one os.write, as Celery does: no logging lock in a signal handler)."""
    from celery import _original_os_write
    from celery.apps import worker

    fmt = formatter("json")

    def say(msg: str, f=sys.__stderr__) -> None:
        record = logging.makeLogRecord(
            {
                "name": "celery.apps.worker",
                "levelname": "WARNING",
                "levelno": logging.WARNING,
                "msg": msg.strip(),
                "worker": _node.get("name"),
            }
        )
        try:
            _original_os_write(f.fileno(), (fmt.format(record) + "\n").encode())
        except (OSError, ValueError):
            pass  # best effort, like Celery's own safe_say

    worker.safe_say = say


def _early_json(sender=None, **_) -> None:
    """Before Celery sets up logging (it then replaces the root handlers): a JSON handler for what it
    says earlier, e.g. the SecurityWarning about the user it runs as, captured from `warnings`."""
    _node["name"] = sender
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
    use_json(logging.getLogger())
    logging.captureWarnings(True)
    json_notices()


def _json_root(logger=None, **_) -> None:
    from celery.utils.log import get_multiprocessing_logger

    use_json(logger)
    mp_logger = get_multiprocessing_logger()
    if mp_logger is not None:
        use_json(mp_logger)


def _json_task_logger(logger=None, **_) -> None:
    use_json(logger)


def _task_started(task_id=None, task=None, **_) -> None:
    _started[task_id] = time.perf_counter()
    log.info("task started", extra={**task_fields(task), "outcome": "started"})


def _task_retried(sender=None, request=None, reason=None, **_) -> None:
    when = getattr(reason, "when", None)
    log.warning(
        "task retry",
        extra={
            **task_fields(sender, request),
            "outcome": "retry",
            "duration": _duration(request.id, pop=False),
            "delay": when if isinstance(when, int | float) else None,
            "error": str(getattr(reason, "exc", None) or reason),
        },
    )


def _task_finished(task_id=None, task=None, retval=None, state=None, **_) -> None:
    fields = {**task_fields(task), "duration": _duration(task_id, pop=True)}
    if state == "SUCCESS":
        log.info("task succeeded", extra={**fields, "outcome": "success"})
    elif state == "FAILURE":
        log.error("task failed", extra={**fields, "outcome": "failure", "error": str(retval)})
    # RETRY: logged by task_retry (with the delay)


def connect_worker_signals() -> None:
    """In JSON mode, make a worker's logs JSON (root, celery.*, task logger) and log the task lifecycle.
    Text mode stays Celery's own format, untouched. Safe to call in a CLI: these signals fire in workers."""
    from celery import signals

    if not json_enabled():
        return
    for signal, handler in (
        (signals.celeryd_init, _early_json),
        (signals.after_setup_logger, _json_root),
        (signals.after_setup_task_logger, _json_task_logger),
        (signals.task_prerun, _task_started),
        (signals.task_retry, _task_retried),
        (signals.task_postrun, _task_finished),
    ):
        signal.connect(handler, weak=False)
