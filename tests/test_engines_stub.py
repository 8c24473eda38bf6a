"""scale.py's actions and one autoscaler step on the stub engine (dts/engines/stub.py, shipped in the package),
in-process through `scale.main([...])`: the broker is the real test RabbitMQ (queues of their own, which no
worker consumes, so their depth is what the test put there), no worker process runs. A second engine with an
option of its own, registered by one line, gets that option on the command line."""

from __future__ import annotations

import pytest
import yaml
from helpers import app_for, write_config
from kombu import Producer

import scale
from dts import engines
from dts.app.conf import declared_queues
from dts.cli import pools
from dts.config import load_settings
from dts.engines.base import Option
from dts.engines.stub import StubEngine
from dts.errors import CliError, ExitCode

QUEUE_A, QUEUE_B = "stub_a", "stub_b"  # no session worker consumes these
MIN, MAX, TARGET = 1, 3, 5


@pytest.fixture
def stub():
    """The stub engine (always registered), emptied before and after a test."""
    StubEngine.reset()
    yield StubEngine
    StubEngine.reset()


class ColouredStub(StubEngine):
    """A second engine with one option of its own: all it takes is this class and one register() line."""

    name = "coloured"
    cli_options = (
        Option(
            "--colour",
            help="the workers' colour",
            refusal="--colour needs the coloured engine",
            choices=("grey", "red"),
        ),
    )

    def __init__(self, settings, app, colour: str = "grey"):
        super().__init__(settings, app)
        self.colour = colour
        self.calls.append(("colour", colour))


@pytest.fixture
def coloured():
    before = dict(engines.ENGINES)
    engines.register("coloured", f"{__name__}:ColouredStub")  # the one line
    StubEngine.reset()
    yield ColouredStub
    StubEngine.reset()
    engines.ENGINES.clear()
    engines.ENGINES.update(before)


@pytest.fixture
def config(tmp_path):
    """Two pools on the stub queues; worker-a autoscaled (1..3, 5 ready per replica)."""
    path = write_config(tmp_path / "stub.yml", queue_a=QUEUE_A, queue_b=QUEUE_B, replicas="1")
    doc = yaml.safe_load(path.read_text())
    doc["pools"]["worker-a"]["autoscale"] = {"min": MIN, "max": MAX, "target": TARGET}
    doc["autoscale"] = {"interval": 0.5, "cooldown": 30}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def queues(rabbitmq, config):
    """The stub queues declared and empty before and after the test; returns fill(queue, n)."""
    settings = load_settings(config)
    app = app_for(settings)

    def purge():
        with app.connection_for_write() as conn:
            for queue in declared_queues(settings):
                queue.bind(conn.default_channel).declare()
                conn.default_channel.queue_purge(queue.name)

    def fill(queue: str, count: int) -> None:
        with app.connection_for_write() as conn:
            producer = Producer(conn.default_channel)
            for n in range(count):
                producer.publish({"n": n}, exchange=queue, routing_key=queue, serializer="json")

    purge()
    yield fill
    purge()
    app.close()


@pytest.fixture
def run(stub, config, capsys):
    """scale.main with --engine stub and the stub config: (exit code, stdout)."""

    def main(*argv: str) -> tuple[int, str]:
        code = scale.main([*argv, "--engine", "stub", "--config", str(config)])
        captured = capsys.readouterr()
        return code, captured.out

    return main


# --------------------------------------------------------------------------- the registry


def test_a_registered_engine_is_a_choice_and_make_engine_builds_it(stub, config):
    settings = load_settings(config)
    assert engines.names() == ("auto", "compose", "local", "swarm", "stub")
    engine = engines.make_engine(settings, "stub", app=None)
    assert isinstance(engine, StubEngine) and engine.settings is settings
    assert engines.engines_in_use(engine, settings, "stub") == [engine]


@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"init_swarm": True}, "--init-swarm needs the swarm engine (this run uses stub): add --engine swarm"),
        (
            {"broker": "compose"},
            "--broker compose|cluster (BROKER=compose|cluster) runs RabbitMQ as compose services: it needs "
            "the compose engine (this run uses stub); add --engine compose, start Docker",
        ),
        ({"colour": "red"}, "the stub engine takes no option 'colour'"),
    ],
)
def test_make_engine_refuses_options_the_engine_does_not_take(stub, config, options, line):
    with pytest.raises(CliError) as err:
        engines.make_engine(load_settings(config), "stub", None, **options)
    assert (str(err.value), err.value.exit_code) == (line, ExitCode.USAGE)


def test_an_unknown_engine_is_a_usage_error(config):
    with pytest.raises(CliError) as err:
        engines.make_engine(load_settings(config), "nomad", None)
    assert str(err.value) == "unknown engine 'nomad': choose from auto, compose, local, swarm, stub"
    assert err.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("command", "line"),
    [
        ("build", "`build` needs the compose engine (this run uses stub): add --engine compose"),
        ("compose", "`compose` needs the compose engine (this run uses stub): add --engine compose"),
        ("stack", "`stack` needs the swarm engine (this run uses stub): add --engine swarm"),
    ],
)
def test_the_engine_only_commands_refuse_the_stub_with_their_lines(stub, config, capsys, command, line):
    assert scale.main([command, "--engine", "stub", "--config", str(config)]) == ExitCode.USAGE
    assert capsys.readouterr().err == f"scale.py: error: {line}\n"


def test_an_engines_option_comes_from_its_class_alone(coloured, config, queues, capsys):
    """Registered by one line, the engine's option is on the pool commands, reaches its constructor, and
    another engine refuses it with the engine's own words."""
    assert "--colour {grey,red}" in scale_help("up") and "--colour {grey,red}" in scale_help("status")
    assert scale.main(["set", "worker-a", "2", "--engine", "coloured", "--colour", "red", "--config", str(config)]) == 0
    assert ("colour", "red") in ColouredStub.calls and ColouredStub.sizes == {"worker-a": 2}
    capsys.readouterr()
    assert scale.main(["set", "worker-a", "1", "--engine", "stub", "--colour", "red", "--config", str(config)]) == 2
    assert capsys.readouterr().err == "scale.py: error: --colour needs the coloured engine\n"
    engines.ENGINES.pop("coloured")
    assert "--colour" not in scale_help("up")  # unregistered: gone from the command line


def scale_help(command: str) -> str:
    """`scale.py COMMAND --help`, as text."""
    import argparse

    parser = pools.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command].format_help()


# --------------------------------------------------------------------------- scale.py's actions


def test_set_all_up_and_down(run, queues):
    assert run("set", "worker-a", "3") == (0, "worker-a: 3 worker(s) up (+3)\nworker-b: 0 worker(s)\n")
    assert StubEngine.sizes == {"worker-a": 3}
    assert run("set", QUEUE_B, "2") == (0, "worker-a: 3 worker(s)\nworker-b: 2 worker(s) up (+2)\n")
    assert run("all", "1") == (0, "worker-a: 1 worker(s) up (-2)\nworker-b: 1 worker(s) up (-1)\n")
    assert run("up") == (0, "worker-a: 1 worker(s) up (+0)\nworker-b: 1 worker(s) up (+0)\n")
    assert run("down") == (0, "stub: stopped 2 worker(s)\n")
    assert StubEngine.sizes == {}
    assert StubEngine.calls == [
        ("resize", {"worker-a": 3}),
        ("resize", {"worker-b": 2}),
        ("resize", {"worker-a": 1, "worker-b": 1}),
        ("resize", {"worker-a": 1, "worker-b": 1}),
        ("stop", False),
    ]


def test_a_size_beyond_max_replicas_is_refused_before_the_engine_is_asked(run):
    assert run("set", "worker-a", "11") == (ExitCode.USAGE, "")
    assert StubEngine.calls == []


def test_status_shows_the_engines_workers_and_the_brokers_depth(run, queues, rabbitmq):
    run("set", "worker-a", "2")
    queues(QUEUE_A, 7)
    code, out = run("status")
    assert code == ExitCode.NO_CONSUMER  # nobody consumes the stub queues, and stub workers answer no ping
    lines = out.splitlines()
    assert lines[0].startswith("engine: stub   broker: amqp://guest:***@") and lines[0].endswith(" (ok)")
    assert lines[2].split() == ["worker-a", QUEUE_A, "2", "0", "0", "0", "7", "0", "-"]
    assert lines[3].split() == ["worker-b", QUEUE_B, "0", "0", "0", "0", "0", "0", "-"]
    assert [line.strip() for line in lines[4:6]] == [
        "worker-a@stub-1  (not answering ping)",
        "worker-a@stub-2  (not answering ping)",
    ]
    assert lines[-1] == "stub: 2 worker(s) in memory"  # the engine's own status line, last


def test_health_names_the_silent_workers_and_the_unconsumed_queues(run, queues):
    run("set", "worker-a", "1")
    code, out = run("health")
    assert code == ExitCode.NO_CONSUMER
    problems = [line for line in out.splitlines() if line.startswith("UNHEALTHY")]
    assert problems == [
        f"UNHEALTHY (exit 4): {QUEUE_A} (pool worker-a) has no consumer",
        f"UNHEALTHY (exit 4): {QUEUE_B} (pool worker-b) has no consumer",
        "UNHEALTHY (exit 4): worker-a@stub-1 (pool worker-a) does not answer ping",
    ]
    assert "stub: 1 worker(s) in memory" not in out  # the engine's line is status's, not health's


# --------------------------------------------------------------------------- the autoscaler


def test_one_autoscaler_step_grows_the_pool_to_what_the_queue_needs(run, queues):
    run("set", "worker-a", str(MIN))
    queues(QUEUE_A, 12)  # ceil(12 / 5) = 3 replicas
    code, out = run("auto", "--once")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:2] == [
        "autoscaling on stub, a look every 0.5s, scale-down after 30s:",
        f"  worker-a {MIN}..{MAX} (target {TARGET} ready/replica)",
    ]
    # one line per decision, past 88 characters too (a record to grep)
    assert lines[2].endswith(" worker-a: 1 -> 3 replicas (up: 12 ready > 1 x target 5; 12 ready, 0 consumer(s))")
    assert lines[3].endswith(" worker-a 3") and " resized in " in lines[3]
    assert lines[4] == "done: 1 resize(s); the pools keep their current sizes"
    assert StubEngine.sizes == {"worker-a": 3}  # worker-b has no autoscale: mapping: left alone
    assert StubEngine.calls[-1] == ("resize", {"worker-a": 3})


def test_a_look_that_calls_for_nothing_resizes_nothing(run, queues):
    run("set", "worker-a", "2")
    queues(QUEUE_A, 6)  # fits 2 x 5, and is more than 1 x 2.5: stays (and the cooldown holds anyway)
    code, out = run("auto", "--once")
    assert (code, out.splitlines()[-1]) == (0, "done: 0 resize(s); the pools keep their current sizes")
    assert StubEngine.calls == [("resize", {"worker-a": 2})]


def test_the_makefile_asks_the_engine_what_it_needs(stub, config, capsys):
    """`make up` / `make deploy` ask `scale.py engine` instead of naming engines: a new engine needs no
    Makefile edit (the stub runs no image and takes no deploy arguments; swarm does both)."""
    for argv, out in (
        (["engine", "--engine", "stub"], "stub\n"),
        (["engine", "--engine", "stub", "--needs-image"], "no\n"),
        (["engine", "--engine", "stub", "--deploy-args"], "\n"),
        (["engine", "--engine", "local", "--needs-image"], "no\n"),
        (["engine", "--engine", "swarm", "--needs-image"], "yes\n"),
        (["engine", "--engine", "swarm", "--deploy-args"], "--init-swarm\n"),
    ):
        assert scale.main([*argv, "--config", str(config)]) == ExitCode.OK
        assert capsys.readouterr().out == out


def test_load_test_sweep_resizes_to_each_size_in_turn_and_puts_the_pools_back(stub, config, monkeypatch):
    """load_test.py --sweep on the stub: every pool at each size while that size's load runs, the sizes from
    before afterwards; a run that lost the broker ends the sweep, and a run that raises still restores."""
    import argparse
    import types

    from dts.cli import load_test

    settings = load_settings(config)
    StubEngine.sizes.update({"worker-a": 1, "worker-b": 2})
    seen: list[tuple[int | None, dict[str, int]]] = []
    lose_broker_at, raise_at = None, None

    def run_at(settings, app, args, size):  # the load itself is the integration tests' (real workers)
        seen.append((size, dict(StubEngine.sizes)))
        if size == raise_at:
            raise KeyboardInterrupt
        return types.SimpleNamespace(size=size, broker_lost=size == lose_broker_at, pools_lost=())

    monkeypatch.setattr(load_test, "one_run", run_at)
    args = argparse.Namespace(engine="stub", sweep=[1, 3, 2])
    runs = load_test.sweep(settings, None, args)
    assert [r.size for r in runs] == [1, 3, 2]
    assert seen == [(n, {"worker-a": n, "worker-b": n}) for n in (1, 3, 2)]
    assert StubEngine.sizes == {"worker-a": 1, "worker-b": 2}  # put back

    seen.clear()
    lose_broker_at = 3
    assert [r.size for r in load_test.sweep(settings, None, args)] == [1, 3]  # no run after the broker was lost
    assert StubEngine.sizes == {"worker-a": 1, "worker-b": 2}

    lose_broker_at, raise_at = None, 3
    with pytest.raises(KeyboardInterrupt):
        load_test.sweep(settings, None, args)
    assert StubEngine.sizes == {"worker-a": 1, "worker-b": 2}
