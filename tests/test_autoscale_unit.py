"""Unit tests (no broker): the autoscaler's decision table, its reasons, and the policies read from the config."""

from __future__ import annotations

import pytest
from helpers import ROOT

from dts.config import load_settings
from dts.runs.autoscale import Change, Policy, decide, policies, reason

P = Policy(min=1, max=3, target=5, cooldown=2.0)  # the integration test's policy
Z = Policy(min=0, max=10, target=20, cooldown=30.0)  # scale to zero allowed, the default target and cooldown


@pytest.mark.parametrize(
    ("ready", "replicas", "last_change", "now", "policy", "expected"),
    [
        # up: at once (even right after a change), to ceil(ready / target), at most max
        (6, 1, 0.0, 0.1, P, 2),
        (10, 1, 0.0, 0.1, P, 2),  # 10 fit 2 x 5 exactly
        (11, 1, 0.0, 0.1, P, 3),
        (57, 1, 0.0, 0.1, P, 3),  # 12 wanted, capped at max
        (57, 2, 0.0, 0.1, P, 3),
        (1000, 3, 0.0, 100.0, P, 3),  # at max: stays
        (1, 0, 0.0, 0.1, Z, 1),  # from zero: one message is enough
        (401, 0, 0.0, 0.1, Z, 10),
        # steady: the queue fits the replicas
        (5, 1, 0.0, 100.0, P, 1),
        (15, 3, 0.0, 100.0, P, 3),
        (0, 1, 0.0, 100.0, P, 1),  # min: never below
        (0, 0, 0.0, 100.0, Z, 0),
        # down: not within the cooldown of the last change
        (0, 3, 0.0, 1.9, P, 3),
        (0, 3, 10.0, 11.0, P, 3),
        (0, 3, 0.0, 2.0, P, 1),  # cooldown over: straight to what the queue needs (min)
        (0, 3, 0.0, 29.9, Z, 3),  # Z's 30 s cooldown
        (0, 5, 0.0, 30.0, Z, 0),  # min 0: to zero once idle
        # hysteresis: shrink only to a size the queue fills to at most half its target
        (14, 3, 0.0, 100.0, P, 3),  # 14 would fit 3 x 5: keep 3
        (9, 3, 0.0, 100.0, P, 3),  # 9 fits 2 x 5, but not 2 x 2.5: keep 3 (no flap at the 10 boundary)
        (6, 3, 0.0, 100.0, P, 3),  # 6 needs ceil(6 / 2.5) = 3
        (5, 3, 0.0, 100.0, P, 2),  # 5 fit 2 x 2.5
        (2, 3, 0.0, 100.0, P, 1),
        (11, 2, 0.0, 100.0, P, 3),  # and back up only above 2 x 5
        (10, 2, 0.0, 100.0, P, 2),
        # out of bounds (config changed, or someone ran scale.py set): to the bound at once
        (0, 0, 0.0, 0.1, P, 1),
        (0, 5, 0.0, 0.1, P, 3),
        (100, 5, 0.0, 0.1, P, 3),
    ],
)
def test_decide(ready, replicas, last_change, now, policy, expected):
    assert decide(ready, replicas, last_change, now, policy) == expected


def test_decide_never_leaves_the_bounds():
    for policy in (P, Z, Policy(2, 2, 1, 0.0), Policy(0, 1, 1_000_000, 0.0)):
        for ready in (0, 1, 4, 5, 6, 49, 50, 51, 10_000):
            for replicas in range(0, 12):
                for now in (0.0, 1.0, 1000.0):
                    got = decide(ready, replicas, 0.0, now, policy)
                    assert policy.min <= got <= policy.max, (ready, replicas, now, policy)


def test_a_shrink_is_not_undone_by_the_same_queue():
    """Hysteresis: right after any scale-down, the same depth never asks for a scale-up."""
    for ready in range(0, 40):
        for replicas in range(1, 4):
            after = decide(ready, replicas, 0.0, 100.0, P)
            if after < replicas:
                assert decide(ready, after, 100.0, 100.0, P) == after, (ready, replicas, after)


@pytest.mark.parametrize(
    ("ready", "before", "after", "words"),
    [
        (57, 1, 3, "up: 57 ready > 1 x target 5 (autoscale.max)"),
        (6, 1, 2, "up: 6 ready > 1 x target 5"),
        (0, 3, 1, "down: 0 ready fit 1 x 0.5 x target 5, 2s cooldown passed"),
        (0, 0, 1, "below autoscale.min 1"),
        (0, 5, 3, "above autoscale.max 3"),
    ],
)
def test_reason_says_why(ready, before, after, words):
    assert reason(ready, before, after, P) == words


def test_change_line():
    line = Change(0.0, "worker-a", 1, 3, 57, 1, "up: 57 ready > 1 x target 5").line()
    # one line per decision, even past 88 characters: a record to grep
    assert line.endswith(" worker-a: 1 -> 3 replicas (up: 57 ready > 1 x target 5; 57 ready, 1 consumer(s))")
    assert "\n" not in line


def test_policies_are_the_pools_with_an_autoscale_mapping(tmp_path):
    shipped = load_settings(ROOT / "test-config.yml")
    assert policies(shipped) == {"worker-a": Policy(1, 4, 20, 30.0), "worker-b": Policy(1, 4, 20, 30.0)}
    path = tmp_path / "cfg.yml"
    path.write_text(
        "pools: {worker-a: {queues: [queue_a], autoscale: {}}, worker-b: {queues: [queue_b]}}\n"
        "engine: {max_replicas: 7}\nautoscale: {cooldown: 5}\n"
    )
    assert policies(load_settings(path)) == {"worker-a": Policy(1, 7, 20, 5.0)}  # defaults; worker-b left alone


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        (
            ["auto"],
            "pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\n",
            "scale.py: error: no pool has an autoscale: mapping in cfg.yml: add one, e.g. "
            "pools.worker-a.autoscale: {min: 1, max: 4, target: 20}",
        ),
        (
            ["auto", "--interval", "0"],
            None,
            "scale.py auto: error: argument --interval: must be a number from 0.1 to 60 (got '0') (see scale.py auto --help)",
        ),
        (
            ["auto", "--once", "--duration", "5"],
            None,
            "scale.py auto: error: argument --duration: not allowed with argument --once (see scale.py auto --help)",
        ),
        (
            ["auto", "--duration", "0"],
            None,
            "scale.py auto: error: argument --duration: must be a number > 0 and <= 86400 (got '0') (see scale.py auto --help)",
        ),
    ],
)
def test_auto_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, config, expected):
    """Refused before Celery is imported or a broker asked (no broker needed)."""
    import scale

    if config:
        (tmp_path / "cfg.yml").write_text(config)
        args = [*args, "--config", str(tmp_path / "cfg.yml")]
    try:
        code = scale.main(args)
    except SystemExit as exc:  # argparse's usage errors exit
        code = exc.code
    assert (code, capsys.readouterr().err) == (2, expected + "\n")
