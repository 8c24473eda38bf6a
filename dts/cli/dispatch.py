"""`dts dispatch` (`python dispatch.py`): send one task_a and one task_b concurrently and report results,
timings, retries and isolation.

    dts dispatch                      # the project's test-config.yml
    dts dispatch --fail-rate 0.5      # inject transient failures to watch the backoff
    dts dispatch --json               # one JSON document on stdout
    dts dispatch --quiet              # only the results, one line per task
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from dts.cli import (
    MAX_FAIL_TIMES,
    MAX_REPEAT,
    MAX_TIMEOUT,
    command_parser,
    float_between,
    int_between,
    json_option,
    probability,
    run_main,
)
from dts.config import Settings, load_settings, project_dir
from dts.errors import CliError, ExitCode, exit_epilog
from dts.files import shown
from dts.reports.dispatch_report import (
    DISPATCH_COLUMNS,
    DISPATCH_LAYOUT,
    bare_results,
    dispatch_report,
    dispatch_rows,
    dispatch_totals,
    summarise_dispatch,
)
from dts.reports.verdict import verdict
from dts.results import check_writable, output_path, save
from dts.runs.live import EventStream, LiveView, TaskWatch
from dts.runs.plan import dispatch_plan, scenario_tasks, task_arg, task_list

log = logging.getLogger("dts.dispatch")
DESCRIPTION = "Send task_a and task_b concurrently; print results, execution times, retries and total time."
EPILOG = """examples:
  dts dispatch                       run once with the project's test-config.yml
  dts dispatch --fail-rate 0.5       each attempt fails with p=0.5: watch the retries back off
  dts dispatch --fail-times 2        the first 2 attempts of each task fail, the third succeeds
  dts dispatch --json | jq .summary  machine-readable output
  dts dispatch --quiet               only the results ("task_a: Hello from Task A")
  dts dispatch | cat                 plain lines, no colour (also with CI=true; NO_COLOR=1: no colour)
  dts dispatch --repeat 10           benchmark: median overhead over 10 rounds
  dts dispatch --no-save             no result file (default: results/dispatch-<UTC time>.json)
  dts dispatch --junit report.xml    the report as JUnit XML too, for CI (GitLab, Jenkins)
  dts dispatch --task flash:board=rev-b --task unit_tests
                                     these declared tasks instead, with these params, all at once
  dts dispatch --list                the declared tasks, their routes and params, the scenarios
  dts dispatch --scenario nightly    the tasks of a scenario (scenarios: in the config)
  python dispatch.py                 the same command, from this repository's checkout

live lines: HH:MM:SS.mmm STATE TASK ID WHERE [DETAIL], STATE one of SENT (WHERE = queue), RECEIVED, \
STARTED, RETRY (attempt, error, backoff delay), SUCCESS (run time), FAILURE, UNKNOWN (no result by the \
deadline); WHERE = the worker. From Celery's task events (monitoring.task_events in the config).

"""
EPILOG += exit_epilog("dispatch")


def build_parser(prog: str = "dispatch.py") -> argparse.ArgumentParser:
    parser = command_parser(prog, DESCRIPTION, EPILOG, parents=[json_option()])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """dispatch's own options (the shared ones come from its parser's parents)."""
    parser.add_argument(
        "--timeout",
        type=float_between(0, MAX_TIMEOUT, low_open=True),
        metavar="S",
        help=f"seconds to wait for results, at most {MAX_TIMEOUT:g} (default: dispatch.timeout)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--task",
        action="append",
        type=task_arg,
        metavar="NAME[:K=V,...]",
        help="send this declared task, with these params (repeatable; N*NAME: N times; default: dispatch.tasks)",
    )
    which.add_argument("--scenario", metavar="NAME", help="send the tasks of this scenario (scenarios: in the config)")
    parser.add_argument(
        "--list", action="store_true", help="print the declared tasks, their params and the scenarios, then exit"
    )
    parser.add_argument(
        "--fail-rate", type=probability, metavar="P", help="probability 0..1 that an attempt of a built-in task fails"
    )
    parser.add_argument(
        "--fail-times",
        type=int_between(0, MAX_FAIL_TIMES),
        metavar="N",
        default=0,
        help=f"make the first N attempts of each task fail, N <= {MAX_FAIL_TIMES} (N > retry.max_retries fails the task)",
    )
    parser.add_argument(
        "--repeat",
        type=int_between(1, MAX_REPEAT),
        default=1,
        metavar="N",
        help=f"dispatch N rounds (N <= {MAX_REPEAT}) and report median/min/max overhead (a benchmark); "
        "prints the last round",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the results, one line per task")
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="result file (default: results/dispatch-<UTC time>.json)"
    )
    parser.add_argument("--no-save", action="store_true", help="write no result file")
    parser.add_argument(
        "--junit", type=Path, metavar="FILE", help="also write the report as JUnit XML (a testcase per task), for CI"
    )


def announce_plan(settings: Settings, announce) -> None:
    pools = settings.pools.values()
    announce(f"Loaded config: {settings.name}")
    announce(
        f"Expected workers: {sum(p.replicas for p in pools)} ({', '.join(f'{p.name} x{p.replicas}' for p in pools)})"
    )


def check_pools(settings: Settings, app, announce, conn, tasks: list[str]) -> None:
    """On the reply queue's connection: the task queues declared as configured (exit 2), each consumed
    (exit 4); the first task message built ahead of the clock."""
    from dts.amqp.checks import redact_url, require_consumers, warm_up
    from dts.amqp.deadline import Deadline

    log.info("broker %s", redact_url(settings.broker.url))
    deadline = Deadline.after(settings.broker.connect_timeout)
    stats = require_consumers(app, settings, deadline, check_queues=True, conn=conn, tasks=tasks)
    announce("Consumers: " + ", ".join(f"{q} {s.consumers}" for q, s in stats.items()))
    warm_up(app)


def dispatch_rounds(settings: Settings, args: argparse.Namespace, plan: list, replies, watch) -> tuple[list, list]:
    """args.repeat rounds on the run's reply queue (the watch sees the first), until one loses the broker
    or a pool."""
    from dts.amqp.publish import TaskPublisher
    from dts.runs.dispatch_round import dispatch_round

    rounds, waits = [], []
    timeout = args.timeout or settings.dispatch.timeout
    publisher = TaskPublisher(replies.app, settings, replies, sent_events=settings.monitoring.task_events)
    for n in range(args.repeat):
        outcomes, total, got = dispatch_round(settings, publisher, timeout, plan, replies, watch if n == 0 else None)
        rounds.append((outcomes, summarise_dispatch(outcomes, total)))
        waits.append(got)
        overhead = rounds[-1][1].overhead * 1000
        log.info("round %d/%d: total %.3fs overhead %.1f ms", n + 1, args.repeat, total, overhead)
        if got.broker_lost or got.pools_lost:
            break
    return rounds, waits


def show_report(args: argparse.Namespace, view: LiveView | None, report, result_file: Path | None) -> None:
    """The report as asked: one JSON document, the bare results, or the table and the totals."""
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif args.quiet:
        print("\n".join(bare_results(report)))
    else:
        view.table(DISPATCH_COLUMNS, dispatch_rows(report), **DISPATCH_LAYOUT)
        for line in dispatch_totals(report):
            view.message(line)
        if result_file:
            view.message(f"Result file: {shown(result_file)}")


def plan_of(settings: Settings, args: argparse.Namespace) -> list:
    """What this dispatch sends: --task, a --scenario, else dispatch.tasks; the built-ins with --fail-rate and
    --fail-times (checked against the config: CliError, exit 2)."""
    overrides = {"fail_times": args.fail_times} if args.fail_times else {}
    if args.fail_rate is not None:
        overrides["failure_rate"] = args.fail_rate
    asked = scenario_tasks(settings, args.scenario) if args.scenario else [t for each in args.task or [] for t in each]
    return dispatch_plan(settings, asked, overrides)


def run(args: argparse.Namespace) -> int:
    if args.json and args.quiet:
        raise CliError("argument -q/--quiet: not allowed with argument --json", ExitCode.USAGE)
    settings = load_settings(args.config)
    if args.list:
        print("\n".join(task_list(settings)))
        return ExitCode.OK
    plan = plan_of(settings, args)  # unknown tasks or params: exit 2, nothing sent
    # Celery is imported once the input is known good: a refusal does not wait for it (~0.3 s)
    from dts.amqp.replies import ReplyQueue
    from dts.app import make_app

    app = make_app(settings)
    if not gc.isenabled():  # run as a script: what start-up loaded is never garbage, so never scanned again
        gc.freeze()
        gc.enable()
    view = None if args.json or args.quiet else LiveView(sys.stdout)
    announce = view.message if view else (lambda line: None)
    result_file = output_path("dispatch", args.output, args.no_save, project_dir(settings))
    if args.junit:
        check_writable(args.junit, "; pass another --junit FILE")
    watch = TaskWatch(view.show, settings.retry.max_retries) if view else None  # the first round's live lines
    announce_plan(settings, announce)
    # one connection for the checks and the results (the broker unreachable: exit 3)
    with ReplyQueue(
        app, connect_timeout=settings.broker.connect_timeout, heartbeat=settings.broker.heartbeat
    ) as replies:
        events = (
            EventStream(app, watch.feed, until=watch.all_shown, wait=False)
            if watch and settings.monitoring.task_events
            else None
        )
        with events or nullcontext():  # it connects and binds in its thread while the pools are checked
            check_pools(settings, app, announce, replies.conn, [name for name, _ in plan])
            announce("Dispatching tasks...")
            if events:
                events.wait_ready()
            rounds, waits = dispatch_rounds(settings, args, plan, replies, watch)
    report, problem = written_report(settings, args, rounds, waits, result_file)
    show_report(args, view, report, result_file)
    if events:
        events.finish()
    if problem:
        raise CliError(problem, report.exit_code)  # after the (partial) report: one line on stderr, exit 3 or 4
    return report.exit_code


def written_report(settings, args: argparse.Namespace, rounds, waits, result_file):
    """The rounds' report with its verdict (a lost broker or pool: exit 3 or 4 and why), saved to the result
    file and, with --junit, as JUnit XML beside it, whatever the verdict (a partial run's too)."""
    report = dispatch_report(settings, rounds)
    unknown = [o.task_id for o in report.outcomes if o.unknown]
    ids = f": {len(unknown)} task(s) unknown ({', '.join(unknown)})" if unknown else ""
    code, problem = verdict(
        report.exit_code, waits, len(unknown), ids, broker_fix="; the report has what is known", pool_fix=" (`make up`)"
    )
    report = replace(report, exit_code=code)
    save(result_file, "dispatch", report.to_json())
    if args.junit:
        from dts.reports.junit import dispatch_junit, write_junit  # xml.etree: only for --junit

        write_junit(args.junit, dispatch_junit(report))
    return report, problem


def main(argv: list[str] | None = None, prog: str = "dispatch.py") -> int:
    return run_main(prog, build_parser(prog), run, argv)
