"""Start, stop, resize and inspect the worker pools (local processes or docker compose services).

python scale.py up                  # every pool at its configured size; waits for ping
python scale.py worker-a 3          # resize one pool
python scale.py --all 4             # resize every pool
python scale.py status              # workers, consumers and queue depth per queue
python scale.py down                # warm shutdown of every worker
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from broker import check_broker, queue_stats
from celery_app import POOL_NAMES, CliError, Config, ExitCode, load_config, use_config
from pools import make_backend, resolve_mode, validate_count

log = logging.getLogger("dts.scale")
ACTIONS = ("up", "down", "status", "mode", "build")


# --------------------------------------------------------------------------- pure helpers


def parse_count(text: str) -> int:
    if not text.lstrip("-").isdigit():
        raise CliError(
            f"COUNT must be a whole number (got {text!r}); e.g. `python scale.py worker-a 3`", ExitCode.USAGE
        )
    value = int(text)
    if value < 0:
        raise CliError(f"COUNT must be >= 0 (got {value})", ExitCode.USAGE)
    return value


def desired_sizes(target: str | None, count: int | None, all_count: int | None, config: Config) -> dict[str, int]:
    """What a scale command asks for, per pool."""
    if all_count is not None:
        return {pool: all_count for pool in config.pools}
    if target not in config.pools:
        raise CliError(f"unknown pool {target!r}: use one of {', '.join(config.pools)} (or up, down, status)",
                       ExitCode.USAGE)  # fmt: skip
    if count is None:
        raise CliError(f"missing COUNT: e.g. `python scale.py {target} 3`", ExitCode.USAGE)
    return {target: count}


def status_rows(config: Config, workers: dict[str, list[str]], stats: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for pool in config.pools.values():
        q = stats.get(pool.queue)
        rows.append({
            "pool": pool.name,
            "queue": pool.queue,
            "workers": workers.get(pool.name, []),
            "concurrency": pool.concurrency,
            "slots": len(workers.get(pool.name, [])) * pool.concurrency,
            "consumers": q.consumers if q else None,
            "ready": q.ready if q else None,
        })  # fmt: skip
    return rows


def format_status(rows: list[dict[str, Any]], mode: str) -> list[str]:
    lines = [f"mode: {mode}", f"{'pool':<10} {'queue':<9} {'workers':>7} {'slots':>5} {'consumers':>9} {'ready':>6}"]
    for r in rows:
        consumers = "?" if r["consumers"] is None else r["consumers"]
        ready = "?" if r["ready"] is None else r["ready"]
        lines.append(
            f"{r['pool']:<10} {r['queue']:<9} {len(r['workers']):>7} {r['slots']:>5} {consumers:>9} {ready:>6}"
        )
        lines.extend(f"  {name}" for name in r["workers"])
    return lines


# --------------------------------------------------------------------------- I/O


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scale.py",
        description="Start, stop, resize and inspect the worker pools.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""examples:
  python scale.py up                 start every pool at its configured size (waits for ping)
  python scale.py worker-a 3         three worker-a workers (new ones answer ping before this returns)
  python scale.py --all 2            two workers in every pool
  python scale.py status --json      per queue: workers, slots, consumers, messages ready
  python scale.py down               warm shutdown: running tasks finish, reserved ones go back to the queue

pools: {", ".join(POOL_NAMES)}
exit codes: 0 ok, 1 a worker failed to start, 2 bad usage or config, 3 broker unreachable""",
    )
    parser.add_argument(
        "target", nargs="?", help="up, down, status, mode (print the resolved back end), build, or a pool name"
    )
    parser.add_argument("count", nargs="?", help="new size of the pool")
    parser.add_argument("--all", dest="all_count", metavar="COUNT", help="resize every pool to COUNT")
    parser.add_argument("--mode", choices=("auto", "docker", "local"), help="worker back end (default: workers.mode)")
    parser.add_argument("--config", help="config file (default: test-config.yml, or $DTS_CONFIG)")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics on stderr")
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    use_config(config)
    from celery_app import app

    if args.target is None and args.all_count is None:
        raise CliError("nothing to do: give up, down, status, POOL COUNT or --all COUNT (see --help)", ExitCode.USAGE)
    if args.target == "mode":
        print(resolve_mode(args.mode or config.worker_mode))
        return ExitCode.OK
    backend = make_backend(config, args.mode or config.worker_mode)
    if args.target == "build":
        if backend.mode != "docker":
            raise CliError(
                "build needs the docker back end (a Docker engine); local workers need no image", ExitCode.USAGE
            )
        backend.build()
        return ExitCode.OK
    if args.target == "status":
        workers = backend.workers()
        try:
            check_broker(app, config.connect_timeout)
            stats = queue_stats(app, [p.queue for p in config.pools.values()])
        except CliError as exc:
            log.warning("%s", exc)
            stats = {}
        rows = status_rows(config, workers, stats)
        print(
            json.dumps({"mode": backend.mode, "pools": rows}, indent=2)
            if args.json
            else "\n".join(format_status(rows, backend.mode))
        )
        return ExitCode.OK if stats else ExitCode.BROKER_UNREACHABLE
    if args.target == "down":
        backends = [backend]
        if (args.mode or config.worker_mode) == "auto" and backend.mode == "docker":
            backends.append(make_backend(config, "local"))  # stop what either back end started
        for each in backends:
            stopped = -sum(each.down().values())
            print(f"{each.mode}: stopped {stopped} worker(s)")
        return ExitCode.OK
    if args.target == "up":
        desired = {name: spec.replicas for name, spec in config.pools.items()}
    else:
        all_count = parse_count(args.all_count) if args.all_count is not None else None
        count = parse_count(args.count) if args.count is not None else None
        desired = desired_sizes(args.target, count, all_count, config)
    for pool, size in desired.items():
        validate_count(pool, size, config)
    check_broker(app, config.connect_timeout)
    plan = backend.scale(desired)
    for pool, workers in backend.workers().items():
        change = plan.get(pool, 0)
        print(
            f"{pool}: {len(workers)} worker(s) up ({change:+d})"
            if pool in plan
            else f"{pool}: {len(workers)} worker(s)"
        )
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except CliError as exc:
        print(f"scale.py: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
