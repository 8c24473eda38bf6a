"""One broker node against a three-node cluster, in one run: the no-op load and the seed scenario on 1 + 1
project workers, for each broker in turn.

    python -m bench.cluster                 # ~3 min: one node (classic), one node (quorum), the cluster (quorum)
    python -m bench.cluster --tasks 500     # a shorter run
    make bench-cluster

The brokers: the host's RabbitMQ on a fresh vhost (dts-bench-cluster) with classic queues, the same with
`queue_type: quorum` (what quorum queues cost without replication), and a compose `cluster` profile of the
benchmark's own (dts.testing.compose_cluster: three nodes as containers on this machine, every queue a
quorum queue replicated on the three). For each: no-op throughput (load_test.py --tasks N, durations 0,
results collected) and the seed scenario's overhead (dispatch.py --repeat 10: median). Prints one table
with each row's ratio to the first; writes it with the raw numbers to results/bench-cluster-<UTC time>.json.
Exit 0, 2 on bad usage, 3 without a broker or a Docker engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import PROJECT_DIR, parser_for, run
from bench.run import Failed, load_test_argv, ours_config, progress
from bench.table import columns

VHOST = "dts-bench-cluster"
BROKERS = ("one node, classic", "one node, quorum", "3-node cluster, quorum")


def measure(url: str, config: Path, tasks: int, label: str) -> dict[str, Any]:
    """The no-op load's throughput and the seed scenario's median overhead on 1 + 1 workers at `url`."""
    env = dict(os.environ, BROKER_URL=url, DTS_CONFIG=str(config))
    with run.project_workers(url, config, "cluster", label):
        load = run.run_json(load_test_argv(config, tasks, "--no-save"), env)
        seed = run.run_json(["dispatch.py", "--config", str(config), "--repeat", "10", "--json", "--no-save"], env)
    report = load["reports"][0]
    return {
        "broker": label,
        "throughput": report["throughput"],
        "completed": report["completed"],
        "seed_overhead": seed["repeat"]["overhead_median"],
    }


def config_for(url: str, path: Path, queue_type: str) -> Path:
    config = ours_config(url, path)
    doc = yaml.safe_load(config.read_text())
    doc["broker"]["queue_type"] = queue_type
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


@contextlib.contextmanager
def broker(label: str, work: Path) -> Iterator[tuple[str, str]]:
    """The broker of one row: (its URL, the queue type to declare)."""
    if label.startswith("3-node"):
        from dts.config import load_settings
        from dts.testing import compose_cluster

        settings = load_settings(ours_config(run.BROKER + "/", work / "seed.yml"))
        with compose_cluster(settings, work / "run", f"dts-bench-cluster-{os.getpid()}", VHOST) as cluster:
            yield cluster.url, "quorum"
    else:
        with run.rabbitmq_vhost(VHOST) as url:
            yield url, label.rsplit(" ", 1)[-1]


def ratio(row: dict[str, Any], base: dict[str, Any] | None, key: str) -> str:
    return f"{row[key] / base[key]:.2f}x" if base and base[key] else ""


def render(rows: list[dict[str, Any]]) -> str:
    head = ("broker", "no-op tasks/s", "vs one node", "seed overhead ms", "vs one node")
    base = rows[0] if rows and "error" not in rows[0] else None
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append((r["broker"], "n/a", "", r["error"][:60], ""))
            continue
        lines.append(
            (
                r["broker"],
                f"{r['throughput']:.0f}",
                ratio(r, base, "throughput"),
                f"{r['seed_overhead'] * 1000:.1f}",
                ratio(r, base, "seed_overhead"),
            )
        )
    return "\n".join(columns(lines))


def main(argv: list[str] | None = None) -> int:
    parser = parser_for("bench.cluster", __doc__)
    parser.add_argument("--tasks", type=int, default=1000, metavar="N", help="no-op tasks of each type (default 1000)")
    args = parser.parse_args(argv)
    if not 1 <= args.tasks <= 50_000:
        print("bench.cluster: error: --tasks takes 1..50000", file=sys.stderr)
        return 2
    from dts.engines.docker import compose_command

    if not run.broker_answers() or compose_command() is None:
        print(
            f"bench.cluster: error: needs RabbitMQ at {run.BROKER} (`make broker`) and docker compose", file=sys.stderr
        )
        return 3
    from dts.errors import CliError
    from dts.files import shown
    from dts.results import output_path, save

    path = output_path("bench-cluster", None, False, PROJECT_DIR)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dts-bench-cluster-") as work:
        for label in BROKERS:
            progress(f"cluster: {label}, {2 * args.tasks} no-op tasks, then the seed scenario")
            try:
                with broker(label, Path(work)) as (url, queue_type):
                    config = config_for(url, Path(work) / "bench.yml", queue_type)
                    rows.append(measure(url, config, args.tasks, label))
            except (Failed, CliError, KeyError, IndexError, json.JSONDecodeError) as exc:
                rows.append({"broker": label, "error": f"{type(exc).__name__}: {exc}"})
            progress(f"  {rows[-1]}")
    table = render(rows)
    save(path, "bench-cluster", {"text": table, "rows": rows, "tasks": 2 * args.tasks})
    print(table)
    print(f"Result file: {shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
