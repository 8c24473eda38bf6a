"""`dts load-test` (`python load_test.py`): a load of declared tasks (task_a and task_b unless --mix names
others), and what the pool sizes buy.

TASKS of each type are sent (with weights: TASKS x types in all, split by weight), their results collected
as they complete, and the report says throughput, latency (queue wait + execution) per task type,
fairness, failures by reason, and per pool the ideal time on the slots it had and the efficiency.

    dts load-test --tasks 20                  # 20 task_a + 20 task_b on the running pools
    dts load-test --tasks 20 --mix task_a=1,add=3   # 40 tasks: 10 task_a, 30 add (a declared task)
    dts load-test --tasks 40 --sweep 1,2,4,8  # rescale both pools to each size, same load each time
    dts load-test --tasks 20 --output results/run.json --plot results/run.png
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
from pathlib import Path
from typing import Any

from dts import engines
from dts.cli import (
    MAX_DURATION,
    MAX_SWEEP_SIZES,
    MAX_TASKS,
    MAX_TIMEOUT,
    MAX_WORKERS,
    command_parser,
    float_between,
    int_between,
    json_option,
    probability,
    run_main,
)
from dts.config import Settings, load_settings, project_dir
from dts.config.schema import TASK_NAME
from dts.engines import make_engine
from dts.engines.base import replicas
from dts.errors import CliError, ExitCode, excerpt, exit_epilog
from dts.files import shown
from dts.reports.load_report import (
    LoadRun,
    LoadSpec,
    LoadTestReport,
    render_load_test,
    summarise_load,
    threshold_failures,
)
from dts.reports.verdict import verdict
from dts.results import check_writable, output_path, save
from dts.runs.live import LoadProgress
from dts.runs.plan import dispatch_plan

log = logging.getLogger("dts.load_test")
DESCRIPTION = "Send a load of declared tasks and report throughput, latency, fairness and efficiency."
EPILOG = """examples:
  dts load-test --tasks 20                      20 task_a + 20 task_b on the running pools
  dts load-test --tasks 50 --mix 0.8            100 tasks, 80% task_a
  dts load-test --tasks 20 --mix add=3,flash=1  40 tasks of declared tasks: 30 add, 10 flash (their \
declared params; dts dispatch --list shows them)
  dts load-test --tasks 40 --sweep 1,2,4,8      rescale every pool to each size, same load at each \
(the pools are put back to their sizes afterwards)
  dts load-test --tasks 20 --json --output run.json --plot run.png
  dts load-test --tasks 20 --no-save            no result file (default: results/load_test-<UTC time>.json)
  dts load-test --tasks 20 --junit load.xml     JUnit XML for CI too: a testcase per task type
  python load_test.py --tasks 20                the same command, from this repository's checkout

--tasks counts tasks of each type: with --mix NAME=WEIGHT,... the load is TASKS x (number of types) \
tasks (at most 100000) split by weight, each count rounded and the total exact: --mix add=3,flash=1 \
--tasks 20 sends 30 add and 10 flash. The default is task_a=1,task_b=1; --mix F is task_a=F,task_b=1-F.

efficiency = ideal time / actual time. A pool's ideal is the lower bound for its tasks (of every type \
routed to it) on the worker slots it really had: the slots asked from the workers before the run, from \
the first send on, plus each worker that joined later, from the first task it started, with its pool's \
concurrency (or the most tasks it ran at once). The ideal is the earliest time by which that slot time \
holds all the work, the slots could have run every task at the shortest one's length, and the longest \
task could have run; on a steady pool: max(work / slots, ceil(tasks / slots) x shortest task, longest \
task). The run's efficiency: its slowest pool's ideal / the run's time; a pool's: its ideal / the time to \
its last result. A pool that grows during the run (autoscale, a scale command) never shows more than 1; \
a worker lost mid-run still counts (lower, never higher).

"""
EPILOG += exit_epilog("load-test")


def parse_sizes(text: str) -> list[int]:
    """argparse type for --sweep: '1,2,4,8' -> [1, 2, 4, 8] (at most MAX_SWEEP_SIZES sizes of 1..MAX_WORKERS)."""
    parts = [part.strip() for part in text.split(",", MAX_SWEEP_SIZES) if part.strip()]
    if not 1 <= len(parts) <= MAX_SWEEP_SIZES or not all(
        p.isascii() and p.isdigit() and len(p) <= 4 and 1 <= int(p) <= MAX_WORKERS for p in parts
    ):
        raise argparse.ArgumentTypeError(
            f"takes 1 to {MAX_SWEEP_SIZES} pool sizes from 1 to {MAX_WORKERS} like 1,2,4,8 (got {excerpt(text)})"
        )
    return [int(p) for p in parts]


parse_sizes.rule = f"1 to {MAX_SWEEP_SIZES} comma-separated sizes, each from 1 to {MAX_WORKERS}"


MAX_MIX = 20  # --mix: at most this many task types
MAX_WEIGHT = 1_000_000
MAX_LOAD = 2 * MAX_TASKS  # tasks of a run in all (--tasks x types): the seed's most


def mix_arg(text: str) -> float | dict[str, float]:
    """argparse type of --mix: a share of task_a (0..1), or NAME=WEIGHT,... (names checked against the
    config by load_plan, once it is read; weights > 0, each name once)."""
    if "=" not in text:
        return probability(text)
    weights: dict[str, float] = {}
    parts = text.split(",", MAX_MIX)
    for part in parts:
        name, _, weight = part.strip().partition("=")
        problem = _mix_problem(name, weight, weights, len(parts))
        if problem:
            raise argparse.ArgumentTypeError(f"{problem} (got {excerpt(text)})")
        weights[name] = float(weight)
    return weights


mix_arg.rule = f"a share of task_a 0..1, or NAME=WEIGHT,...: up to {MAX_MIX} declared tasks, weights > 0"


def _mix_problem(name: str, weight: str, before: dict[str, float], parts: int) -> str | None:
    if parts > MAX_MIX:
        return f"takes at most {MAX_MIX} NAME=WEIGHT"
    if not TASK_NAME.fullmatch(name):
        return "takes NAME=WEIGHT,..., NAME a declared task's name"
    if name in before:
        return f"names {name} twice"
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_WEIGHT:  # also refuses nan
        return f"weight of {name} must be a number > 0 and <= {MAX_WEIGHT:,}"
    return None


def mix_weights(mix: float | dict[str, float]) -> dict[str, float]:
    """--mix as weights: a share F of task_a is task_a=F,task_b=1-F (the seed's form)."""
    return mix if isinstance(mix, dict) else {"task_a": mix, "task_b": 1 - mix}


def load_plan(settings: Settings, args: argparse.Namespace) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """The load: how many of each task type, and each type's kwargs (its declared params; the built-ins
    get --duration-a/-b and --fail-rate), checked like a dispatch's (dts.runs.plan): an undeclared task,
    or a --duration-X for a task not in the load, is a CliError (exit 2) before anything is sent."""
    from dts.runs.loadgen import task_plan

    weights = mix_weights(args.mix)
    durations = {"task_a": args.duration_a, "task_b": args.duration_b}
    for name, duration in durations.items():
        if duration is not None and name not in weights:
            raise CliError(f"--duration-{name[-1]} is for {name}, which --mix leaves out", ExitCode.USAGE)
    if args.tasks * len(weights) > MAX_LOAD:
        raise CliError(
            f"--tasks {args.tasks} x {len(weights)} task types is more than {MAX_LOAD} tasks: send fewer",
            ExitCode.USAGE,
        )
    asked = [(name, {} if durations.get(name) is None else {"duration": repr(durations[name])}) for name in weights]
    overrides = {} if args.fail_rate is None else {"failure_rate": args.fail_rate}
    return task_plan(args.tasks, weights), dict(dispatch_plan(settings, asked, overrides))


def check_outputs(args: argparse.Namespace, settings: Settings) -> None:
    """Refuse bad output paths and sizes before the load runs, not after (when the results would be lost)."""
    limit = settings.engine.max_replicas
    if args.sweep and max(args.sweep) > limit:
        raise CliError(f"--sweep size {max(args.sweep)} exceeds engine.max_replicas={limit}", ExitCode.USAGE)
    if args.plot and args.plot.suffix.lower() != ".png":
        raise CliError(f"--plot writes a PNG: give a file name ending in .png (got {args.plot})", ExitCode.USAGE)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CliError(
            "--plot needs matplotlib: pip install matplotlib (this repository: pip install -r requirements-plot.txt)",
            ExitCode.USAGE,
        )
    if args.plot:
        check_writable(args.plot)


def start_up(settings: Settings, app) -> dict[str, int]:
    """Consumers on every task queue (exit 4), connections warm, the live worker slots per pool. A broker
    that goes away here is exit 3 with one line (nothing has been sent yet)."""
    from dts.amqp.checks import reaching, require_consumers, warm_up
    from dts.amqp.deadline import Deadline
    from dts.runs.loadgen import live_slots

    deadline = Deadline.after(settings.broker.connect_timeout)  # for all of the start-up's questions
    stats = require_consumers(app, settings, deadline)
    warm_up(app)
    pools = {settings.pool_for_queue(q).name: s.consumers for q, s in stats.items()}  # a worker: one consumer
    with reaching(app):
        return live_slots(app, settings, deadline, workers=sum(pools.values()))


def one_run(settings: Settings, app, args: argparse.Namespace, size: int | None) -> LoadRun:
    from dts.runs.loadgen import interleave, run_load

    plan, kwargs = load_plan(settings, args)
    slots = start_up(settings, app)
    order = interleave(plan)
    log.info("load: %d tasks; slots %s", len(order), slots)
    watch = {t.queue: settings.pool_for_task(name).name for name, t in settings.tasks.items()}
    progress = LoadProgress(len(order), enabled=not args.json)
    timeout = args.timeout or settings.load_test.timeout
    try:
        samples, wall, got = run_load(app, settings, order, kwargs, timeout, progress, watch)
    finally:
        progress.close()
    report = summarise_load(settings, samples, slots, wall)
    return LoadRun(size, report, samples, got.broker_lost, got.pools_lost)


def sweep(settings: Settings, app, args: argparse.Namespace) -> list[LoadRun]:
    """The same load at each pool size; the pools are put back to their sizes afterwards."""
    engine = make_engine(settings, args.engine, app=app)
    before = replicas(engine)
    runs = []
    try:
        for size in args.sweep:
            log.warning("-- %d worker(s) per pool", size)
            engine.resize({pool: size for pool in settings.pools})
            runs.append(one_run(settings, app, args, size))
            if runs[-1].broker_lost or runs[-1].pools_lost:
                break
    finally:
        log.warning("-- back to %s", before)
        engine.resize(before)
    return runs


def build_parser(prog: str = "load_test.py") -> argparse.ArgumentParser:
    parser = command_parser(prog, DESCRIPTION, EPILOG, parents=[json_option()])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """load-test's own options (the shared ones come from its parser's parents)."""
    parser.add_argument(
        "--tasks",
        type=int_between(1, MAX_TASKS),
        default=20,
        metavar="N",
        help=f"tasks of each type, at most {MAX_TASKS} (default 20); with weights, TASKS x types split by weight",
    )
    parser.add_argument(
        "--mix",
        type=mix_arg,
        default=0.5,
        metavar="MIX",
        help="F: the share of task_a, 0..1 (default 0.5), or NAME=WEIGHT,...: declared tasks and their weights",
    )
    for name in ("a", "b"):
        parser.add_argument(
            f"--duration-{name}",
            type=float_between(0, MAX_DURATION),
            metavar="S",
            help=f"task_{name} work, seconds, at most {MAX_DURATION:g} (default: config)",
        )
    parser.add_argument(
        "--fail-rate", type=probability, metavar="P", help="probability 0..1 that an attempt of a built-in task fails"
    )
    parser.add_argument(
        "--timeout",
        type=float_between(0, MAX_TIMEOUT, low_open=True),
        metavar="S",
        help=f"seconds to wait for all results, at most {MAX_TIMEOUT:g} (default: config)",
    )
    parser.add_argument(
        "--sweep",
        type=parse_sizes,
        metavar="SIZES",
        help=f"pool sizes to run the load at, e.g. 1,2,4,8 (at most {MAX_SWEEP_SIZES} sizes, each <= engine.max_replicas)",
    )
    parser.add_argument(
        "--engine", choices=engines.names(), help="where the workers run, for --sweep (default: config)"
    )
    add_output_arguments(parser)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Where load-test's report goes besides stdout: the result file, JUnit, a plot."""
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="result file: the report and every sample as JSON (default: results/load_test-<UTC time>.json)",
    )
    parser.add_argument("--no-save", action="store_true", help="write no result file")
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write JUnit XML for CI: a testcase per task type, one per failed task (at most 1,000)",
    )
    parser.add_argument("--plot", type=Path, metavar="PNG", help="latency histogram + completion timeline (matplotlib)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    check_outputs(args, settings)
    load_plan(settings, args)  # an undeclared task or a bad mix: refused before the broker is asked
    result_file = output_path("load_test", args.output, args.no_save, project_dir(settings))
    if args.junit:
        check_writable(args.junit, "; pass another --junit FILE")
    # Celery is imported once the input is known good: a refusal does not wait for it (~0.3 s)
    from dts.amqp.checks import check_broker
    from dts.app import make_app

    app = make_app(settings)
    check_broker(app, settings.broker.connect_timeout)
    runs = sweep(settings, app, args) if args.sweep else [one_run(settings, app, args, None)]
    problems = tuple(p for r in runs for p in threshold_failures(r.report, settings))
    load = LoadSpec(args.tasks, args.mix, args.duration_a, args.duration_b)
    report = LoadTestReport(str(settings.path), load, tuple(runs), problems)
    save(result_file, "load_test", report.to_json())
    if args.junit:  # whatever the verdict (a partial run's too)
        from dts.reports.junit import load_junit, write_junit  # xml.etree: only for --junit

        write_junit(args.junit, load_junit(report))
    if args.plot:
        from dts.plot import write_plot

        write_plot([s.to_json() for s in runs[-1].samples], args.plot)
    print(json.dumps(report.summary_json(), indent=2) if args.json else "\n".join(render_load_test(report)))
    if result_file and not args.json:
        print(f"Result file: {shown(result_file)}")
    unknown = report.unknown()
    code, problem = verdict(
        ExitCode.FAILED if problems else ExitCode.OK, runs, unknown, f": {unknown} task(s) unknown (ids in the report)"
    )
    if problem:
        raise CliError(problem, code)  # after the (partial) report: one line on stderr
    return code


def main(argv: list[str] | None = None, prog: str = "load_test.py") -> int:
    return run_main(prog, build_parser(prog), run, argv)
