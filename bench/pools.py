"""Pool settings side by side: the no-op load and the seed scenario on 1 + 1 project workers, once per
setting, one after the other, on one vhost (dts-bench-pools: made fresh, deleted at the end).

    python -m bench.pools                                  # the settings docs/performance.md compares (~4 min)
    python -m bench.pools --tasks 3000 prefork:1:1 threads:4:16 solo:1:16
    make bench-pools                                       # the default settings

A setting is EXECUTION_POOL:CONCURRENCY:PREFETCH_MULTIPLIER, with `:noevents` to switch task events off
`:window=SECONDS` for monitoring.event_window (0: one event message per loop turn, Celery's way) and
`:log=LEVEL` for the pools' log_level (warning: no per-task log lines).
For each: no-op throughput (load_test.py --tasks N, durations 0, results collected), the workers'
completions/s, CPU per task (workers, broker, load generator: bench/cpu.py), and the seed scenario's
overhead (dispatch.py --repeat 10, task_a 0.1 s + task_b 0.2 s: median). Prints one table; writes it with
the raw numbers to results/bench-pools-<UTC time>.json. Exit 0, 2 on bad usage, 3 without a broker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import PROJECT_DIR, parser_for, run
from bench.run import Failed, consume_rate, load_test_argv, load_with_cpu, ours_config, progress, worker_pids
from bench.table import columns
from dts.config.schema import LOG_LEVELS

VHOST = "dts-bench-pools"
DEFAULT = ["prefork:1:1", "prefork:1:16", "prefork:4:16", "solo:1:16", "threads:4:16", "threads:4:16:noevents"]
POOLS = ("prefork", "threads", "solo")


def parse_setting(text: str) -> dict[str, Any]:
    """'threads:4:16[:noevents][:window=S][:log=LEVEL]' -> the pool keys of test-config.yml (and monitoring's)."""
    parts = text.split(":")
    flags = parts[3:]
    windows = [f.removeprefix("window=") for f in flags if f.startswith("window=")]
    levels = [f.removeprefix("log=") for f in flags if f.startswith("log=")]
    bad = [f for f in flags if f != "noevents" and not f.startswith(("window=", "log="))]
    bad += [level for level in levels if level not in LOG_LEVELS]
    if len(parts) < 3 or parts[0] not in POOLS or bad or not all(_seconds(w) is not None for w in windows):
        raise ValueError(
            f"{text!r}: expected POOL:CONCURRENCY:PREFETCH[:noevents][:window=SECONDS][:log=LEVEL], POOL one of "
            f"{', '.join(POOLS)}"
        )
    if not (parts[1].isdigit() and parts[2].isdigit()):
        raise ValueError(f"{text!r}: CONCURRENCY and PREFETCH are whole numbers")
    concurrency, prefetch = int(parts[1]), int(parts[2])
    if not (1 <= concurrency <= 64 and 1 <= prefetch <= 1000):
        raise ValueError(f"{text!r}: concurrency 1..64, prefetch 1..1000")
    monitoring: dict[str, Any] = {"task_events": "noevents" not in flags}
    if windows:
        monitoring["event_window"] = _seconds(windows[-1])
    pools: dict[str, Any] = {"execution_pool": parts[0], "concurrency": concurrency, "prefetch_multiplier": prefetch}
    if levels:
        pools["log_level"] = levels[-1]
    return {"pools": pools, "monitoring": monitoring}


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None


def measure_setting(url: str, text: str, tasks: int, work: Path) -> dict[str, Any]:
    setting = parse_setting(text)
    config = ours_config(url, work / "pools.yml", setting["pools"])
    doc = yaml.safe_load(config.read_text())
    doc["monitoring"] = setting["monitoring"]
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = dict(os.environ, BROKER_URL=url, DTS_CONFIG=str(config))
    row: dict[str, Any] = {"setting": text}
    with run.project_workers(url, config, "pools", f"pools ({text})") as engine:
        out = work / "load.json"
        load = load_with_cpu(load_test_argv(config, tasks, "--output", str(out)), env, worker_pids(engine), 2 * tasks)
        report = load["reports"][0]
        row.update(
            throughput=report["throughput"],
            completed=report["completed"],
            cpu=load["cpu"],
            consume_rate=consume_rate(json.loads(out.read_text())["runs"][-1]["samples"]),
        )
        seed = run.run_json(["dispatch.py", "--config", str(config), "--repeat", "10", "--json", "--no-save"], env)
        row["seed_overhead"] = seed["repeat"]["overhead_median"]
    return row


def render(rows: list[dict[str, Any]]) -> str:
    head = ("setting", "tasks/s", "consume/s", "CPU ms (wk/brk/gen)", "overhead ms")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append((r["setting"], "n/a", "n/a", r["error"][:60], "n/a"))
            continue
        c = r["cpu"]
        lines.append(
            (
                r["setting"],
                f"{r['throughput']:.0f}",
                f"{r['consume_rate'] or 0:.0f}",
                f"{c['all_ms']:.2f} ({c['workers_ms']:.2f}/{c['broker_ms']:.2f}/{c['generator_ms']:.2f})",
                f"{r['seed_overhead'] * 1000:.1f}",
            )
        )
    return "\n".join(columns(lines))


def main(argv: list[str] | None = None) -> int:
    parser = parser_for("bench.pools", __doc__)
    parser.add_argument("settings", nargs="*", metavar="POOL:CONCURRENCY:PREFETCH[:noevents]", default=DEFAULT)
    parser.add_argument("--tasks", type=int, default=2000, metavar="N", help="no-op tasks of each type (default 2000)")
    args = parser.parse_args(argv)
    try:
        for text in args.settings:
            parse_setting(text)
        if not 1 <= args.tasks <= 50_000:
            raise ValueError("--tasks takes 1..50000")
    except ValueError as exc:
        print(f"bench.pools: error: {exc}", file=sys.stderr)
        return 2
    if not run.broker_answers():
        print(
            f"bench.pools: error: RabbitMQ does not answer at {run.BROKER} as guest: start it (`make broker`)",
            file=sys.stderr,
        )
        return 3
    import tempfile

    from dts.results import output_path, save

    path = output_path("bench-pools", None, False, PROJECT_DIR)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dts-bench-pools-") as work, run.rabbitmq_vhost(VHOST) as url:
        for text in args.settings:
            progress(f"pools: {text}, {2 * args.tasks} no-op tasks, then the seed scenario")
            try:
                rows.append(measure_setting(url, text, args.tasks, Path(work)))
            except (Failed, KeyError, IndexError, json.JSONDecodeError) as exc:
                rows.append({"setting": text, "error": f"{type(exc).__name__}: {exc}"})
            progress(f"  {rows[-1]}")
    table = render(rows)
    save(path, "bench-pools", {"text": table, "rows": rows, "tasks": 2 * args.tasks})
    print(table)
    print(f"Result file: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
