"""Unit tests (no broker): the live view's tracker (Celery task events in, ordered lines out) and the
load test's plain progress lines."""

from __future__ import annotations

import io

import pytest

from dts.runs.live import LiveView, LoadProgress, TaskEvent, TaskTracker, TaskWatch, progress_line, retry_delay

ID = "5843da32-8c8a-44e3-a5a6-ceec032ddc13"


def sent(retries=0, ts=10.0, kwargs="{}"):
    return {
        "type": "task-sent",
        "uuid": ID,
        "retries": retries,
        "queue": "queue_a",
        "timestamp": ts,
        "hostname": "gen1@client",
        "kwargs": kwargs,
    }


def worker_event(kind, ts, **fields):
    return {"type": kind, "uuid": ID, "hostname": "worker-a@vm-1", "timestamp": ts, **fields}


def states(lines: list[TaskEvent]) -> list[str]:
    return [line.state for line in lines]


def feed_all(tracker: TaskTracker, events) -> list[TaskEvent]:
    return [line for event in events for line in tracker.feed(event)]


def test_a_task_sent_line_comes_first_even_when_the_worker_speaks_first():
    tracker = TaskTracker(max_retries=3)
    tracker.expect(ID, "task_a")
    assert tracker.feed(worker_event("task-received", 10.1, retries=0)) == []  # held back: no SENT yet
    assert tracker.feed(worker_event("task-started", 10.2)) == []
    lines = tracker.feed(sent())
    assert states(lines) == ["SENT", "RECEIVED", "STARTED"]
    assert (lines[0].where, lines[1].where) == ("queue_a", "worker-a@vm-1")
    assert not tracker.finished()
    lines = tracker.feed(worker_event("task-succeeded", 10.4, runtime=0.1034))
    assert states(lines) == ["SUCCESS"] and lines[0].detail == "0.103s"
    assert tracker.finished() and tracker.unfinished() == []
    assert tracker.feed(worker_event("task-succeeded", 10.5, runtime=0.1)) == []  # a duplicate shows nothing


@pytest.mark.parametrize(("sent_first", "own"), [(True, None), (False, None), (True, 5)])
def test_a_retry_line_has_the_error_the_attempt_and_the_backoff_delay_in_either_order(sent_first, own):
    tracker = TaskTracker(max_retries=3)
    tracker.expect(ID, "task_a", max_retries=own)  # own: the task's retry.max_retries, over the tracker's
    feed_all(tracker, [sent(), worker_event("task-received", 10.1, retries=0), worker_event("task-started", 10.2)])
    halves = [
        sent(retries=1, ts=10.3, kwargs="{'fail_times': 1, 'retry_delays': [0.05]}"),
        worker_event("task-retried", 10.31, exception="TransientError('boom')"),
    ]
    lines = feed_all(tracker, halves if sent_first else halves[::-1])
    assert states(lines) == ["RETRY"]
    assert lines[0].detail == f"attempt 1 failed: TransientError('boom'); retry 1/{own or 3} in 0.05s"
    lines = feed_all(tracker, [worker_event("task-received", 10.4, retries=1), worker_event("task-started", 10.5)])
    assert [(line.state, line.detail) for line in lines] == [("RECEIVED", "attempt 2"), ("STARTED", "attempt 2")]


def test_the_next_attempt_on_another_worker_waits_for_the_retry_line_of_the_previous_one():
    tracker = TaskTracker(max_retries=3)
    tracker.expect(ID, "task_a")
    feed_all(
        tracker,
        [
            sent(),
            worker_event("task-received", 10.1, retries=0),
            worker_event("task-started", 10.2),
            sent(retries=1, ts=10.3, kwargs="{'retry_delays': [0.05]}"),
        ],
    )
    other = {"hostname": "worker-a@vm-2"}
    early = feed_all(
        tracker,
        [{**worker_event("task-received", 10.4, retries=1), **other}, {**worker_event("task-started", 10.45), **other}],
    )
    assert early == []  # attempt 2 on vm-2 is held until attempt 1's RETRY from vm-1 is known
    lines = tracker.feed(worker_event("task-retried", 10.31, exception="E"))
    assert [(line.state, line.where) for line in lines] == [
        ("RETRY", "worker-a@vm-1"),
        ("RECEIVED", "worker-a@vm-2"),
        ("STARTED", "worker-a@vm-2"),
    ]
    assert lines[0].detail == "attempt 1 failed: E; retry 1/3 in 0.05s" and lines[2].detail == "attempt 2"
    lines = tracker.feed({**worker_event("task-succeeded", 10.6, runtime=0.1), **other})
    assert states(lines) == ["SUCCESS"] and tracker.finished()


def test_the_retry_of_an_attempt_is_its_own_when_the_next_attempt_reached_the_same_worker_first():
    """The retry's message (held for its countdown) may be received by the same worker before the event that
    says the attempt before it failed: that RETRY is still attempt 1's."""
    tracker = TaskTracker(max_retries=3)
    tracker.expect(ID, "flash")
    feed_all(tracker, [sent(), worker_event("task-received", 10.1, retries=0), worker_event("task-started", 10.2)])
    early = feed_all(
        tracker,
        [
            worker_event("task-received", 10.3, retries=1),
            sent(retries=1, ts=10.3, kwargs="{'_dts_retry_delays': [0.2]}"),
        ],
    )
    lines = early + tracker.feed(worker_event("task-retried", 10.31, exception="CallFailed('exit code 75: busy')"))
    assert [(line.state, line.detail) for line in lines] == [
        ("RETRY", "attempt 1 failed: exit code 75: busy; retry 1/3 in 0.20s"),
        ("RECEIVED", "attempt 2"),
    ]


def test_flush_shows_what_is_held_in_order_when_events_stop():
    tracker = TaskTracker(max_retries=3)
    tracker.expect(ID, "task_a")
    feed_all(tracker, [sent(), worker_event("task-retried", 10.3, exception="E")])  # received/started were lost
    assert tracker.feed(worker_event("task-received", 10.4, retries=1)) == []
    lines = tracker.flush(ID)
    assert states(lines) == ["RETRY", "RECEIVED"] and lines[0].detail == "attempt 1 failed: E"
    assert not tracker.finished()
    tracker.feed(worker_event("task-succeeded", 10.6, runtime=0.1))
    assert states(tracker.flush(ID)) == ["SUCCESS"] and tracker.finished()


def test_failure_and_unknown_are_final_and_say_why():
    tracker = TaskTracker(max_retries=0)
    tracker.expect(ID, "task_a")
    lines = feed_all(
        tracker,
        [
            sent(),
            worker_event("task-received", 10.1, retries=0),
            worker_event("task-started", 10.2),
            worker_event("task-failed", 11.0, exception="TransientError('x')"),
        ],
    )
    assert states(lines) == ["SENT", "RECEIVED", "STARTED", "FAILURE"]
    assert lines[-1].detail == "after 1 attempt(s): TransientError('x')" and tracker.finished()
    other = TaskTracker(max_retries=0)
    other.expect(ID, "task_a")
    feed_all(other, [sent(), {"type": "task-unknown", "uuid": ID, "exception": "no result within 5s"}])
    lines = other.flush(ID)  # nothing came from a worker: what the dispatcher knows is shown when it flushes
    assert [(line.state, line.where, line.detail) for line in lines] == [("UNKNOWN", "-", "no result within 5s")]
    assert other.finished()


def test_events_of_other_tasks_are_ignored():
    tracker = TaskTracker(max_retries=3)
    tracker.expect(ID, "task_a")
    assert tracker.feed({**sent(), "uuid": "someone-else"}) == []
    assert tracker.unfinished() == [ID]


def test_a_task_that_finished_before_its_sent_line_is_not_finished_until_shown():
    tracker = TaskTracker(max_retries=3)
    tracker.expect(ID, "task_a")
    events = [
        worker_event("task-received", 10.1, retries=0),
        worker_event("task-started", 10.2),
        worker_event("task-succeeded", 10.4, runtime=0.1),
    ]
    assert feed_all(tracker, events) == [] and tracker.unfinished() == [ID]
    assert states(tracker.feed(sent())) == ["SENT", "RECEIVED", "STARTED", "SUCCESS"] and tracker.finished()


@pytest.mark.parametrize(
    ("kwargs", "delay"),
    [
        ("{'retry_delays': [0.05, 0.1]}", 0.1),
        ({"retry_delays": [2]}, 2.0),
        ("{}", None),
        ("{'retry_delays': []}", None),
        ("not python", None),
        ("{'retry_delays': [0.05, ...", None),
        (None, None),
    ],
)
def test_retry_delay_is_read_from_the_kwargs_repr_or_unknown(kwargs, delay):
    assert retry_delay(kwargs) == delay


def test_plain_view_lines_and_table_have_no_colour():
    out = io.StringIO()
    view = LiveView(out, colour=False)
    watch = TaskWatch(view.show, max_retries=3)
    watch.expect(ID, "task_a")
    watch.feed(sent(ts=0.0))
    view.table(("Task", "Result"), [("task_a", "Hello from Task A")])
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(f" SENT     task_a {ID} queue_a") and "\x1b[" not in out.getvalue()
    assert lines[1:] == ["Task    Result", "task_a  Hello from Task A"]
    assert not watch.wait_until_finished(0.01)


def test_plain_progress_lines_have_rate_and_eta():
    assert progress_line(180, 400, 2.0) == "progress: 180/400 (45%), 90.0 tasks/s, ETA 2.4s"
    assert progress_line(0, 400, 0.0) == "progress: 0/400 (0%), 0.0 tasks/s, ETA -"
    out = io.StringIO()
    progress = LoadProgress(3, stream=out, every=0)
    for _ in range(3):
        progress.step()
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "progress: 1/3 (33%)",
        "progress: 2/3 (66%)",
        "progress: 3/3 (100%)",
    ]
    silent = io.StringIO()
    LoadProgress(3, enabled=False, stream=silent).step()
    assert silent.getvalue() == ""
