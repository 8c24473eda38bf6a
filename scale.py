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
import re
import sys
from typing import Any

from broker import check_broker, queue_stats
from celery_app import POOL_NAMES, CliError, Config, ExitCode, load_config, use_config
from cli import run_main
from pools import make_backend, resolve_mode, validate_count

log = logging.getLogger("dts.scale")
ACTIONS = ("up", "down", "status", "mode", "build", "logs")


# --------------------------------------------------------------------------- pure helpers


def parse_count(text: str) -> int:
    digits = text.strip()
    if not re.fullmatch(r"-?[0-9]+", digits):
        raise CliError(
            f"COUNT must be a whole number (got {text!r}); e.g. `python scale.py worker-a 3`", ExitCode.USAGE
        )
    value = int(digits)
    if value < 0:
        raise CliError(f"COUNT must be >= 0 (got {value})", ExitCode.USAGE)
    return value


def check_usage(target: str | None, count: str | None, all_count: str | None) -> None:
    """Refuse command lines whose parts contradict each other, instead of ignoring a part."""
    if target is None and all_count is None:
        raise CliError("nothing to do: give up, down, status, POOL COUNT or --all COUNT (see --help)", ExitCode.USAGE)
    if target in ACTIONS and (count is not None or all_count is not None):
        extra = count if count is not None else f"--all {all_count}"
        raise CliError(
            f"`{target}` takes no count (got {extra}); to resize: `python scale.py worker-a 3`", ExitCode.USAGE
        )
    if target not in ACTIONS and target is not None and all_count is not None:
        raise CliError(f"give either `{target} COUNT` or `--all COUNT`, not both", ExitCode.USAGE)


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


def status_rows(config: Config, workers: dict[str, list[str]], stats: dict[str, Any],
                activity: dict[str, dict[str, int]]) -> list[dict[str, Any]]:  # fmt: skip
    """Per pool: its workers (alive = answered ping; running/reserved tasks; concurrency), worker slots,
    and the broker's view of its queue (consumers, messages ready). unacked = running + reserved."""
    rows = []
    for pool in config.pools.values():
        q = stats.get(pool.queue)
        members = [{"name": name, **activity.get(name, {"alive": False})} for name in workers.get(pool.name, [])]
        alive = [m for m in members if m["alive"]]
        rows.append({
            "pool": pool.name,
            "queue": pool.queue,
            "workers": members,
            "alive": len(alive),
            "slots": sum(m.get("concurrency", pool.concurrency) for m in alive),
            "consumers": q.consumers if q else None,
            "ready": q.ready if q else None,
            "unacked": sum(m.get("running", 0) + m.get("reserved", 0) for m in alive),
            "other_consumers": max(0, (q.consumers if q else 0) - len(alive)),
        })  # fmt: skip
    return rows


def format_status(rows: list[dict[str, Any]], mode: str) -> list[str]:
    head = f"{'pool':<10} {'queue':<9} {'workers':>7} {'alive':>5} {'slots':>5} {'consumers':>9} {'ready':>6} {'unacked':>7}"
    lines = [f"mode: {mode}", head]
    for r in rows:
        consumers = "?" if r["consumers"] is None else r["consumers"]
        ready = "?" if r["ready"] is None else r["ready"]
        lines.append(
            f"{r['pool']:<10} {r['queue']:<9} {len(r['workers']):>7} {r['alive']:>5} {r['slots']:>5} "
            f"{consumers:>9} {ready:>6} {r['unacked']:>7}"
        )
        for m in r["workers"]:
            state = (
                f"concurrency {m['concurrency']}, running {m['running']}, reserved {m['reserved']}"
                if m["alive"] else "not answering ping"
            )  # fmt: skip
            lines.append(f"  {m['name']}  ({state})")
        if r["other_consumers"]:
            lines.append(f"  + {r['other_consumers']} consumer(s) of {r['queue']} not started by this back end")
    return lines


# --------------------------------------------------------------------------- I/O


def worker_activity(app, names: list[str]) -> dict[str, dict[str, Any]]:
    """Ask the workers themselves: who answers, its pool's concurrency, tasks running and reserved."""
    if not names:
        return {}
    inspect = app.control.inspect(destination=names, timeout=2.0)
    pongs = inspect.ping() or {}
    active, reserved, stats = inspect.active() or {}, inspect.reserved() or {}, inspect.stats() or {}
    return {
        name: {
            "alive": name in pongs,
            "concurrency": int(stats.get(name, {}).get("pool", {}).get("max-concurrency", 0)),
            "running": len(active.get(name, [])),
            "reserved": len(reserved.get(name, [])),
        }
        for name in names
    }


def every_backend(backend, config: Config, requested: str | None) -> list:
    """The resolved back end, plus the local one when `auto` chose docker: processes started before an
    engine was installed still show in status and stop on down."""
    if (requested or config.worker_mode) == "auto" and backend.mode == "docker":
        return [backend, make_backend(config, "local")]
    return [backend]


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
  python scale.py logs -f            follow the workers' logs
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
    parser.add_argument("--lines", type=int, default=20, help="logs: lines per worker (default 20)")
    parser.add_argument("-f", "--follow", action="store_true", help="logs: keep following")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics on stderr")
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    use_config(config)
    from celery_app import app

    check_usage(args.target, args.count, args.all_count)
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
    if args.target == "logs":
        backend.logs(args.lines, args.follow)
        return ExitCode.OK
    if args.target == "status":
        workers, modes = {pool: [] for pool in config.pools}, []
        for each in every_backend(backend, config, args.mode):  # show what either back end started
            found = each.workers()
            if each is backend or any(found.values()):
                modes.append(each.mode)
                workers = {pool: workers[pool] + found[pool] for pool in workers}
        mode = "+".join(modes)
        try:
            check_broker(app, config.connect_timeout)
            stats = queue_stats(app, [p.queue for p in config.pools.values()])
            activity = worker_activity(app, [name for names in workers.values() for name in names])
        except CliError as exc:
            log.warning("%s", exc)
            stats, activity = {}, {}
        rows = status_rows(config, workers, stats, activity)
        print(
            json.dumps({"mode": mode, "pools": rows}, indent=2) if args.json else "\n".join(format_status(rows, mode))
        )
        return ExitCode.OK if stats else ExitCode.BROKER_UNREACHABLE
    if args.target == "down":
        for each in every_backend(backend, config, args.mode):  # stop what either back end started
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
    plan = backend.up() if args.target == "up" else backend.scale(desired)
    for pool, workers in backend.workers().items():
        change = plan.get(pool, 0)
        print(
            f"{pool}: {len(workers)} worker(s) up ({change:+d})"
            if pool in plan
            else f"{pool}: {len(workers)} worker(s)"
        )
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    return run_main("scale.py", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
