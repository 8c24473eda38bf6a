"""The data model of a load: each task as a Sample (when it was sent, what came back), and all of them as
a SampleTable, in columns: a few dozen bytes a task, so that 100,000 tasks fit where 10,000 did.

    table = SampleTable(("task_a", "task_b"))
    row = table.add("task_a", task_id, sent_at=time.time())
    table.succeeded(row, received_at, result)        # result: the task's return value (worker, started_at, ...)
    table.failed(row, received_at, "TransientError: ...")   /   table.unknown(row, "no result within 60s")
    table.latencies(), table.executions("task_a")    # array('d') columns for exact percentiles
    for sample in table: ...                          # Sample views, one at a time

A Sample object per task (a dataclass, its dicts and strings) cost about 0.8 KB; here a task is five
numbers in arrays, its id as 16 bytes (a UUID, as the load generator makes them; any other id is kept as a
str) and one byte of state; errors are kept only for the tasks that have one.
"""

from __future__ import annotations

import math
import uuid
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

NONE = math.nan  # a time not known (no result)
PENDING, SUCCEEDED, FAILED, UNKNOWN = 0, 1, 2, 3


def _timestamp(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else NONE


def _iso(ts: float) -> str | None:
    return None if math.isnan(ts) else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True)
class Sample:
    """One task of a load: when it was sent and, once it completed, what came back."""

    task: str
    task_id: str
    sent_at: float  # wall clock (time.time()) on the client
    received_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    unknown: bool = False  # no result by the deadline: it may still be queued, running, or have run

    @property
    def state(self) -> str:
        """succeeded | failed | unknown"""
        return "succeeded" if self.result is not None else "unknown" if self.unknown else "failed"

    def to_json(self) -> dict[str, Any]:
        r = self.result or {}
        return {
            "task": self.task,
            "task_id": self.task_id,
            "sent_at": self.sent_at,
            "received_at": self.received_at,
            "ok": self.result is not None,
            "state": self.state,
            "worker": r.get("worker"),
            "started_at": r.get("started_at"),
            "execution_time": r.get("execution_time"),
            "retries": r.get("retries"),
            "error": self.error,
        }


class SampleTable:
    def __init__(self, tasks: Iterable[str]):
        self.task_names = list(tasks)
        self._task_index = {name: i for i, name in enumerate(self.task_names)}
        self.workers: list[str | None] = [None]  # index 0: no worker
        self._worker_index: dict[str, int] = {}
        self._ids = bytearray()  # 16 bytes a task: its UUID
        self._other_ids: dict[int, str] = {}  # row -> an id that is not a canonical UUID string
        self.task = array("B")
        self.state = array("B")
        self.worker = array("H")
        self.retries = array("i")
        self.sent_at = array("d")
        self.received_at = array("d")
        self.started_at = array("d")
        self.execution_time = array("d")
        self.errors: dict[int, str] = {}

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> SampleTable:
        """A table from Sample objects (tests, small runs)."""
        samples = list(samples)
        table = cls(dict.fromkeys(s.task for s in samples))
        for s in samples:
            row = table.add(s.task, s.task_id, s.sent_at)
            if s.result is not None:
                table.succeeded(row, s.received_at, s.result)
            elif s.unknown:
                table.unknown(row, s.error or "")
            else:
                table.failed(row, s.received_at, s.error or "")
        return table

    def __len__(self) -> int:
        return len(self.task)

    def task_id(self, row: int) -> str:
        other = self._other_ids.get(row)
        return other if other is not None else str(uuid.UUID(bytes=bytes(self._ids[16 * row : 16 * row + 16])))

    def add(self, task: str, task_id: str, sent_at: float) -> int:
        if task not in self._task_index:
            self._task_index[task] = len(self.task_names)
            self.task_names.append(task)
        try:
            parsed = uuid.UUID(task_id)
        except ValueError:
            parsed = None
        if parsed is not None and str(parsed) == task_id:
            self._ids += parsed.bytes
        else:
            self._other_ids[len(self.task)] = task_id
            self._ids += bytes(16)
        self.task.append(self._task_index[task])
        self.state.append(PENDING)
        self.worker.append(0)
        self.retries.append(0)
        self.sent_at.append(sent_at)
        self.received_at.append(NONE)
        self.started_at.append(NONE)
        self.execution_time.append(NONE)
        return len(self.task) - 1

    def succeeded(self, row: int, received_at: float | None, result: dict[str, Any]) -> None:
        worker = result.get("worker")
        if worker not in self._worker_index:
            self._worker_index[worker] = len(self.workers)
            self.workers.append(worker)
        self.state[row], self.worker[row] = SUCCEEDED, self._worker_index[worker]
        self.retries[row] = int(result.get("retries") or 0)
        self.received_at[row] = NONE if received_at is None else received_at
        self.started_at[row] = _timestamp(result.get("started_at"))
        execution = result.get("execution_time")
        self.execution_time[row] = NONE if execution is None else float(execution)

    def failed(self, row: int, received_at: float | None, error: str) -> None:
        self.state[row], self.errors[row] = FAILED, error
        self.received_at[row] = NONE if received_at is None else received_at

    def unknown(self, row: int, why: str) -> None:
        self.state[row], self.errors[row] = UNKNOWN, why

    # -- reading
    def count(self, state: int) -> int:
        return self.state.count(state)

    def rows(self, task: str | None = None, state: int | None = None) -> Iterator[int]:
        want = None if task is None else self._task_index.get(task, -1)
        for row in range(len(self.task)):
            if (want is None or self.task[row] == want) and (state is None or self.state[row] == state):
                yield row

    def tasks_of(self, task: str) -> int:
        return self.task.count(self._task_index[task]) if task in self._task_index else 0

    def latencies(self, task: str | None = None) -> array:
        """End-to-end seconds (sent -> result received) of the tasks (of one type) that succeeded."""
        return array("d", (self.received_at[r] - self.sent_at[r] for r in self.rows(task, SUCCEEDED)))

    def queue_waits(self, task: str | None = None) -> array:
        """Seconds from sent to started on the worker (never negative: two clocks) of the tasks (of one type)
        that succeeded."""
        started = self.started_at
        waits = (
            max(0.0, started[r] - self.sent_at[r]) for r in self.rows(task, SUCCEEDED) if not math.isnan(started[r])
        )
        return array("d", waits)

    def executions(self, task: str | None = None) -> array:
        rows = self.rows(task, SUCCEEDED)
        return array("d", (self.execution_time[r] for r in rows if not math.isnan(self.execution_time[r])))

    def per_worker(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rows(state=SUCCEEDED):
            name = self.workers[self.worker[r]]
            counts[name] = counts.get(name, 0) + 1
        return counts

    def total_retries(self) -> int:
        return sum(self.retries[r] for r in self.rows(state=SUCCEEDED))

    def sample(self, row: int) -> Sample:
        """One task as a Sample (what to_json and the reports read)."""
        state = self.state[row]
        received = None if math.isnan(self.received_at[row]) else self.received_at[row]
        result = None
        if state == SUCCEEDED:
            execution = self.execution_time[row]
            result = {
                "worker": self.workers[self.worker[row]],
                "started_at": _iso(self.started_at[row]),
                "execution_time": None if math.isnan(execution) else execution,
                "retries": self.retries[row],
            }
        task = self.task_names[self.task[row]]
        error = self.errors.get(row)
        return Sample(task, self.task_id(row), self.sent_at[row], received, result, error, unknown=state == UNKNOWN)

    def __iter__(self) -> Iterator[Sample]:
        return (self.sample(row) for row in range(len(self.task)))
