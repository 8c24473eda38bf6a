"""The worker slots a pool had over a load run, and the ideal time of its tasks on them (pure), so that
efficiency (ideal / actual) stays at most 1 when a pool changes size during the run.

    lanes = pool_lanes(table, rows, start_slots=1, concurrency=1, t0=first_send)   # [(0.0, 1), (3.2, 1), ...]
    ideal_on(executions, lanes)       # the earliest time these tasks could all have run on those slots

Lanes are slots and when they came: `start_slots` (asked from the workers before the run) from the run's
first send, then, for each worker whose tasks show it joined later (in the order of the first task it
started), the slots it adds beyond those already counted: its pool's concurrency, or more if it was seen
running more tasks at once. A slot stays counted to the end (a worker lost mid-run lowers the efficiency,
never raises it). Every task ran on a slot counted from before it started, so the ideal on these lanes is
never above the real time (times from the workers' clocks: the same clock as the client on one host).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

from dts.runs.samples import SampleTable

Lanes = list[tuple[float, int]]  # (seconds after the first send, slots added then)


OVERLAP = 0.001  # seconds two spans must share to count as at once (start times are in whole microseconds)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) spans that overlap at one time, by more than OVERLAP (one ending as another
    starts: not both)."""
    events = sorted([(max(start, end - OVERLAP), -1) for start, end in spans] + [(start, 1) for start, _ in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def pool_lanes(table: SampleTable, rows: Iterable[int], start_slots: int, concurrency: int, t0: float) -> Lanes:
    """A pool's lanes (see the module's text) from the rows of its tasks; `t0`: the run's first send."""
    spans: dict[int, list[tuple[float, float]]] = {}  # worker -> its tasks' (start, end), seconds after t0
    for r in rows:
        started, execution = table.started_at[r], table.execution_time[r]
        if not math.isnan(started):
            begin = max(0.0, started - t0)
            spans.setdefault(table.worker[r], []).append((begin, begin + (0.0 if math.isnan(execution) else execution)))
    lanes: Lanes = [(0.0, start_slots)] if start_slots > 0 else []
    have, seen = max(start_slots, 0), 0
    for worker in sorted(spans, key=lambda w: min(spans[w])):
        seen += max(concurrency, most_at_once(spans[worker]))
        if seen > have:
            lanes.append((min(spans[worker])[0], seen - have))
            have = seen
    return lanes


def work_bound(work: float, lanes: Lanes) -> float:
    """The earliest time by which the lanes' slot time holds `work` slot-seconds (work / slots on one lane
    from 0); inf without a slot."""
    if not lanes:
        return math.inf
    ordered = sorted(lanes)
    at, have, left = ordered[0][0], 0, work
    for start, slots in ordered:
        if have and have * (start - at) >= left:
            return at + left / have
        left -= have * (start - at)
        at, have = start, have + slots
    return at + left / have


def count_bound(tasks: int, shortest: float, lanes: Lanes) -> float:
    """The earliest time by which the lanes could have run `tasks` tasks of `shortest` seconds each, one
    after another in each slot (ceil(tasks / slots) x shortest on one lane from 0); inf without a slot."""
    if not lanes:
        return math.inf
    if shortest <= 0:
        return min(start for start, _ in lanes)
    ends = [(start + shortest, n, 1) for n, (start, _) in enumerate(lanes)]  # (time, lane, tasks in a row)
    heapq.heapify(ends)
    done = 0
    while True:
        at, n, row = heapq.heappop(ends)
        done += lanes[n][1]
        if done >= tasks:
            return at
        heapq.heappush(ends, (lanes[n][0] + (row + 1) * shortest, n, row + 1))


def ideal_on(executions: list[float], lanes: Lanes) -> float:
    """Lower bound on the time one pool needs for these tasks on these lanes: the work spread over the
    slots as they came, but no sooner than every task at the shortest one's length, nor than the longest
    task. 0 without tasks, inf without a slot."""
    if not executions:
        return 0.0
    if sum(slots for _, slots in lanes) < 1:
        return math.inf
    work = sum(executions)
    return max(work_bound(work, lanes), count_bound(len(executions), min(executions), lanes), max(executions))
