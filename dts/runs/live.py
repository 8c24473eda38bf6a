"""What users watch while work runs: the dispatch's live lines (one per task event: SENT, RECEIVED,
STARTED, RETRY, SUCCESS, FAILURE) and the load test's progress. Colour (rich) on a terminal; plain lines
when the output is piped or CI=true (dts.reports.console decides, and draws the tables).

    watch = TaskWatch(show=view.show, max_retries=3)
    with EventStream(app, watch.feed):         # Celery's event stream, consumed in a thread
        watch.expect(task_id, "task_a"); task_a.apply_async(task_id=task_id)
        watch.wait_until_finished(timeout)

TaskTracker is the pure part: Celery event dicts in, the lines to show out, in each task's own order
(events from the client and from the workers arrive in any order).
"""

from __future__ import annotations

import ast
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, TextIO

from dts.amqp.deadline import close_quietly
from dts.reports.console import interactive, table_lines
from dts.runtime.calls import DELAYS_KEY

log = logging.getLogger("dts.live")
JOIN_BOUND = 0.2  # seconds the event thread gets to end after the run (a daemon: it never holds the exit)

# each state's colour as an ANSI SGR code (the live lines are styled without rich: ~35 ms to import)
STYLES = {
    "SENT": "34",  # blue
    "RECEIVED": "36",  # cyan
    "STARTED": "33",  # yellow
    "RETRY": "35",  # magenta
    "SUCCESS": "1;32",  # bold green
    "FAILURE": "1;31",  # bold red
    "UNKNOWN": "1;33",  # bold yellow
}
TIME_WIDTH = 12  # "HH:MM:SS.mmm"


def styled(line: str, state: str) -> str:
    """A live line for a terminal: its time dim, its state in the state's colour."""
    end = TIME_WIDTH + 1 + len(state)
    code = STYLES.get(state)
    state_part = f"\x1b[{code}m{line[TIME_WIDTH + 1 : end]}\x1b[0m" if code else line[TIME_WIDTH + 1 : end]
    return f"\x1b[2m{line[:TIME_WIDTH]}\x1b[0m {state_part}{line[end:]}"


@dataclass(frozen=True)
class TaskEvent:
    """One line of the live view."""

    state: str  # SENT | RECEIVED | STARTED | RETRY | SUCCESS | FAILURE | UNKNOWN (no result by the deadline)
    task: str
    task_id: str
    timestamp: float  # when it happened (epoch seconds, the sender's clock)
    where: str  # the queue (SENT) or the worker's node name
    detail: str = ""

    def line(self) -> str:
        clock = datetime.fromtimestamp(self.timestamp).strftime("%H:%M:%S.%f")[:-3]
        return f"{clock} {self.state:<8} {self.task} {self.task_id} {self.where}" + (
            f"  {self.detail}" if self.detail else ""
        )


def retry_delay(kwargs_repr: Any) -> float | None:
    """The backoff delay of a retry, from the retried message's kwargs (run_task appends it to
    `retry_delays`, a task of your own to DELAYS_KEY); None when it cannot be read (the event carries kwargs as a repr string)."""
    try:
        kwargs = ast.literal_eval(kwargs_repr) if isinstance(kwargs_repr, str) else kwargs_repr
        return float((kwargs.get("retry_delays") or kwargs[DELAYS_KEY])[-1])  # a built-in's, or your own task's
    except (ValueError, SyntaxError, TypeError, KeyError, IndexError, MemoryError, RecursionError, AttributeError):
        return None


Key = tuple[int, int]  # (attempt, stage): SENT (0, 0); per attempt RECEIVED 1, STARTED 2, RETRY or final 3
FINAL = ("SUCCESS", "FAILURE", "UNKNOWN")


@dataclass
class _Task:
    name: str
    next: Key = (0, 0)  # the next line to show
    held: dict[Key, TaskEvent] = field(default_factory=dict)  # lines waiting for an earlier one
    hosts: dict[int, str] = field(default_factory=dict)  # attempt -> the worker that received it
    delays: dict[int, float | None] = field(default_factory=dict)  # attempt -> backoff before the next one
    done: bool = False  # its final line is shown
    max_retries: int | None = None  # its own retry.max_retries (None: the tracker's)
    retried: set[int] = field(default_factory=set)  # attempts whose RETRY line is held or shown


class TaskTracker:
    """Celery task events in, lines out, each task's lines in its own order: SENT, then per attempt
    RECEIVED, STARTED, then RETRY (error, backoff delay) or SUCCESS/FAILURE. Events come from the client
    and from several workers over separate connections, so they arrive in any order: a line waits until
    the lines before it are shown (flush() shows what is left, in order, when no more events will come)."""

    def __init__(self, max_retries: int):
        self.max_retries = max_retries
        self.tasks: dict[str, _Task] = {}

    def expect(self, task_id: str, name: str, max_retries: int | None = None) -> None:
        self.tasks[task_id] = _Task(name, max_retries=max_retries)

    def finished(self) -> bool:
        """Every task's final line shown."""
        return not self.unfinished()

    def unfinished(self) -> list[str]:
        return [tid for tid, t in self.tasks.items() if not t.done]

    def feed(self, event: dict[str, Any]) -> list[TaskEvent]:
        task_id = event.get("uuid")
        task = self.tasks.get(task_id)
        if task is None or task.done:
            return []
        kind, ts, host = event.get("type"), float(event.get("timestamp") or time.time()), event.get("hostname", "")
        line = partial(TaskEvent, task=task.name, task_id=task_id, timestamp=ts, where=host)
        if kind == "task-sent":
            retries = int(event.get("retries") or 0)
            if retries == 0:
                self._hold(task, (0, 0), line(state="SENT", where=event.get("queue") or "?"))
            else:  # a retry's new message: it carries the backoff delay of attempt `retries`
                task.delays[retries] = retry_delay(event.get("kwargs"))
                self._complete_retry(task, retries)
        elif kind == "task-received":
            attempt = int(event.get("retries") or 0) + 1
            task.hosts[attempt] = host
            self._hold(task, (attempt, 1), line(state="RECEIVED", detail=f"attempt {attempt}" if attempt > 1 else ""))
        elif kind == "task-started":
            attempt = self._attempt_of(task, host)
            self._hold(task, (attempt, 2), line(state="STARTED", detail=f"attempt {attempt}"))
        elif kind == "task-retried":
            attempt = self._retried_attempt(task, host)
            self._hold(
                task,
                (attempt, 3),
                line(state="RETRY", detail=f"attempt {attempt} failed: {unwrapped(event.get('exception', ''))}"),
            )
            self._complete_retry(task, attempt)
        elif kind == "task-succeeded":
            runtime = event.get("runtime")
            note = f"{float(runtime):.3f}s" if runtime is not None else ""
            self._hold(task, (self._attempt_of(task, host), 3), line(state="SUCCESS", detail=note))
        elif kind == "task-failed" and event.get("exception") == "ExceptionWithTraceback()":
            pass  # a task killed at its hard time limit: Celery's next task-failed names TimeLimitExceeded(limit)
        elif kind == "task-failed":
            attempt = self._attempt_of(task, host)
            note = f"after {attempt} attempt(s): {unwrapped(event.get('exception', ''))}"
            self._hold(task, (attempt, 3), line(state="FAILURE", detail=note))
        elif kind == "task-unknown":  # not a Celery event: the dispatcher's word for "no result by the deadline"
            unknown = line(state="UNKNOWN", where=host or "-", detail=event.get("exception", ""))
            self._hold(task, (max(task.hosts, default=1), 3), unknown)
        return self._release(task)

    def flush(self, task_id: str) -> list[TaskEvent]:
        """Everything still held for a task, in order (its events stopped coming)."""
        task = self.tasks[task_id]
        lines = [task.held[key] for key in sorted(task.held)]
        task.held.clear()
        task.done = task.done or any(line.state in FINAL for line in lines)
        return lines

    @staticmethod
    def _attempt_of(task: _Task, host: str) -> int:
        """The attempt a worker's event is about: the latest attempt that worker received."""
        return max((a for a, h in task.hosts.items() if h == host), default=max(task.hosts, default=1))

    @classmethod
    def _retried_attempt(cls, task: _Task, host: str) -> int:
        """The attempt a task-retried event is about: the earliest attempt that worker received and that has
        no RETRY yet. Not simply its latest: the retry's own message may reach the same worker (received,
        held for its countdown) before the event that says the attempt before it failed."""
        open_ = [a for a, h in task.hosts.items() if h == host and a not in task.retried]
        attempt = min(open_) if open_ else cls._attempt_of(task, host)
        task.retried.add(attempt)
        return attempt

    @staticmethod
    def _hold(task: _Task, key: Key, line: TaskEvent) -> None:
        if key >= task.next and key not in task.held:  # a duplicate (a redelivery) keeps the first line
            task.held[key] = line

    def _complete_retry(self, task: _Task, attempt: int) -> None:
        """A RETRY line shows its backoff delay once the retry's message has been seen."""
        held = task.held.get((attempt, 3))
        if held is None or held.state != "RETRY" or "; retry" in held.detail:
            return
        if attempt in task.delays:
            delay = task.delays[attempt]
            most = self.max_retries if task.max_retries is None else task.max_retries
            when = f"retry {attempt}/{most}" + (f" in {delay:.2f}s" if delay is not None else "")
            task.held[(attempt, 3)] = replace(held, detail=f"{held.detail}; {when}")

    def _release(self, task: _Task) -> list[TaskEvent]:
        lines = []
        while task.next in task.held:
            line = task.held.pop(task.next)
            if line.state == "RETRY" and task.next[0] not in task.delays:
                task.held[task.next] = line  # wait for its delay: the retry's message is on its way
                break
            lines.append(line)
            attempt, stage = task.next
            if line.state in FINAL:
                task.done = True
                task.held.clear()
                break
            task.next = (1, 1) if stage == 0 else (attempt + 1, 1) if stage == 3 else (attempt, stage + 1)
        return lines


WRAPPED = re.compile(r"CallFailed\((['\"])(.*)\1\)", re.S)  # a task of your own's failure, as its event says it


def unwrapped(exception: str) -> str:
    """A task-failed (or task-retried) event's exception as the report says it: a task of your own's failure is the callable's
    own exception (`CallFailed('ValueError: bad board; not retried')` -> `ValueError: bad board; ...`)."""
    found = WRAPPED.fullmatch(exception)
    return found.group(2) if found else exception


class TaskWatch:
    """A TaskTracker shared by the event thread and the dispatcher: feed() from any thread, lines shown
    in order, and a wait for every task's final line."""

    def __init__(self, show: Callable[[TaskEvent], None], max_retries: int):
        self.tracker = TaskTracker(max_retries)
        self.show = show
        self._changed = threading.Condition()

    def expect(self, task_id: str, name: str, max_retries: int | None = None) -> None:
        with self._changed:
            self.tracker.expect(task_id, name, max_retries)

    def feed(self, event: dict[str, Any]) -> None:
        with self._changed:
            for line in self.tracker.feed(event):
                self.show(line)
            self._changed.notify_all()

    def wait_until_finished(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(self.tracker.finished, timeout=max(0.0, timeout))

    def unfinished(self) -> list[str]:
        with self._changed:
            return self.tracker.unfinished()

    def all_shown(self) -> bool:
        """Tasks expected, and every one's final line shown: nothing more to watch for."""
        with self._changed:
            return bool(self.tracker.tasks) and self.tracker.finished()

    def flush(self, task_id: str) -> None:
        with self._changed:
            for line in self.tracker.flush(task_id):
                self.show(line)
            self._changed.notify_all()


class EventStream:
    """Celery's event stream consumed in a daemon thread (its own connection), each event passed to
    `on_event`. Entering returns once the stream's queue is bound, so no event sent afterwards is missed.
    With `until`, the thread stops itself as soon as an event makes it true (the last task's final line):
    leaving then does not wait for its next 0.1 s look at should_stop. With `wait=False`, entering only
    starts the thread (it connects and binds while the caller goes on): call wait_ready() before the
    first send."""

    def __init__(
        self,
        app,
        on_event: Callable[[dict[str, Any]], None],
        ready_timeout: float = 5.0,
        until: Callable[[], bool] | None = None,
        wait: bool = True,
    ):
        self.app, self.on_event, self.ready_timeout, self.until = app, on_event, ready_timeout, until
        self.wait = wait
        self.ready = threading.Event()
        self.receiver = None
        self.error: BaseException | None = None

    def __enter__(self) -> EventStream:
        self.stopping = False
        self.closed = False  # the thread closes its connection itself (`until` came true)
        self.receiver = self._receiver()  # here, not in the thread: ~5 ms of Python that would hold the GIL there
        self.thread = threading.Thread(target=self._run, name="dts-events", daemon=True)
        self.thread.start()
        if self.wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Return once the stream's queue is bound (or it failed, or ready_timeout passed: said once)."""
        if not self.ready.wait(self.ready_timeout):
            log.warning(
                "the task event stream did not start within %gs: showing result states only", self.ready_timeout
            )

    def _handle(self, event: dict[str, Any]) -> None:
        self.on_event(event)
        if self.until is not None and self.until():
            self.closed = True  # this thread closes its connection: the caller's __exit__ leaves it to it
            self.receiver.should_stop = True  # checked as soon as this drain returns

    def _receiver(self):
        """kombu's ConsumerMixin consumes on a clone of the connection (connected in the thread), checking
        its heartbeat between 0.1 s drains: a broker silent for two intervals ends the stream (the view then
        shows result states only)."""
        self.connection = self.app.connection_for_read(heartbeat=self.app.conf.broker_heartbeat or 0)
        ready = self.ready

        class Receiver(self.app.events.Receiver):
            def on_consume_ready(self, *args, **kwargs):
                ready.set()

        receiver = Receiver(self.connection, handlers={"*": self._handle}, app=self.app)
        receiver.should_stop = self.stopping
        return receiver

    def _run(self) -> None:
        try:
            lost = (OSError, *self.connection.connection_errors, *self.connection.channel_errors)
            try:
                for _ in self.receiver.consume(limit=None, timeout=None, safety_interval=0.1, wakeup=False):
                    pass
            except lost as exc:  # the view degrades to result states; the dispatch itself goes on
                self.error = exc
                log.warning("task event stream stopped: %s", exc)
            else:
                if self.closed:  # stopped by `until`: the close handshake here, not on the caller's path
                    close_quietly(self.connection)
        finally:
            self.ready.set()

    def finish(self) -> None:
        """After the caller's last output: the thread's own close handshake done (bounded), before the
        process ends (a socket cut mid-handshake is a warning in the broker's log)."""
        self.thread.join(timeout=JOIN_BOUND)

    def __exit__(self, *exc_info) -> None:
        if self.closed:  # the thread stopped by itself and closes its connection: nothing to wait for
            return
        self.stopping = True
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=JOIN_BOUND)  # it looks at should_stop every 0.1 s while the broker answers
        if self.connection is not None and not self.closed:
            # a thread still reading (a broker that stopped answering) gets its socket dropped, not a handshake
            close_quietly(self.connection, handshake=not self.thread.is_alive())


class LiveView:
    """Prints task events as lines and the summary table as aligned columns: styled with ANSI codes on a
    terminal (the time dim, the state in its colour, the header bold, a failed task's row red), plain
    otherwise. No rich here: importing it costs ~35 ms of every dispatch."""

    def __init__(self, stream: TextIO | None = None, colour: bool | None = None):
        stream = stream or sys.stdout
        self.colour = (interactive(stream) and not os.environ.get("NO_COLOR")) if colour is None else colour
        self.stream = stream

    def show(self, event: TaskEvent) -> None:
        line = event.line()
        self.message(styled(line, event.state) if self.colour else line)

    def message(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def table(self, columns: tuple[str, ...], rows: list[tuple[str, ...]], **layout: Any) -> None:
        """The summary table: plain aligned columns (`layout`: table_lines's options, one line a row); on a
        terminal the header bold, a failed row red."""
        header, *lines = table_lines(columns, rows, **layout)
        if self.colour:
            header = f"\x1b[1m{header}\x1b[0m"
            lines = [f"\x1b[31m{line}\x1b[0m" if _failed(row) else line for line, row in zip(lines, rows, strict=True)]
        for line in (header, *lines):
            self.message(line)


def _failed(row) -> bool:
    """A failed task's row of the summary table: its Result cell starts with FAILED."""
    return row[1].startswith("FAILED")


class LoadProgress:
    """The load test's progress on stderr: a redrawn bar with rate and ETA on a terminal, else one plain
    line every `every` seconds (and one at the end)."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None, every: float = 2.0):
        stream = stream or sys.stderr  # looked up now: tests and wrappers replace sys.stderr
        self.total, self.enabled, self.stream, self.every = total, enabled and total > 0, stream, every
        self.done = 0
        self.t0 = self.last = time.monotonic()
        self.bar = None
        if self.enabled and interactive(stream):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("results"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} tasks/s  ETA"),
                TimeRemainingColumn(),
                console=Console(file=stream),
                transient=False,
            )
            self.bar_task = self.bar.add_task("results", total=total, rate="-")
            self.bar.start()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.t0
        return self.done / elapsed if elapsed > 0 else 0.0

    def step(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.bar_task, completed=self.done, rate=f"{self.rate():.1f}")
            if self.done >= self.total:
                self.close()
            return
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self.stream.write(progress_line(self.done, self.total, now - self.t0) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def progress_line(done: int, total: int, elapsed: float) -> str:
    """'progress: 180/400 (45%), 88.1 tasks/s, ETA 2.5s'"""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.1f}s" if rate > 0 else "-"
    return f"progress: {done}/{total} ({100 * done // max(total, 1)}%), {rate:.1f} tasks/s, ETA {eta}"
