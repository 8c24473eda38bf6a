"""Worker logs on disk against their bound, on the compose engine: a long no-op load through worker
containers whose logs rotate many times over, then each container's log files measured on disk.

    python -m bench.logs                                  # 100,000 no-op tasks, 50,000 per pool
    python -m bench.logs --tasks 2000                     # a short run
    python -m bench.logs --output docs/samples/bench-logs.json    # the sample the performance page shows
    make bench-logs

The stack is the run's own: a compose project (dts-bench-logs-<pid>) with the compose `broker` service
(RabbitMQ in a container on a free loopback port, a vhost, user and password made for the run) and 1 + 1
worker containers of the project's image, test-config.yml's pools with engine.log_max_mb 1 and
engine.log_files 3 (a 3 MB bound per container, so that rotation happens many times within the run) and
log_level info (a received and a succeeded line per task, JSON). The load is load_test.py with durations 0.
Then, for each worker container, Docker's json-file log (`docker inspect -f '{{.LogPath}}'`) and its rotated
siblings (.1, .2, ...) are read on disk: their bytes against the bound, and the bytes the worker wrote in
all, estimated as what is kept plus the tasks rotated away times the bytes per task of the kept lines.
Everything is removed afterwards (containers, network, the broker's volume).

Prints one table and PASS/FAIL; writes it with the raw numbers to results/bench-logs-<UTC time>.json (or
--output). Needs root (Docker's log files are root's), Docker and compose. Exit 0 PASS, 1 FAIL (a container
over its bound, no rotation at all, or a task not succeeded), 2 bad usage, 3 no Docker engine or no access
to its log files, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import PROJECT_DIR, parser_for
from bench.run import load_test_argv, progress
from bench.table import columns

MAX_MB, FILES = 1, 3  # the bound of the run: small, so that a worker's logs rotate many times
MB = 1_000_000  # Docker's json-file reads max-size "1m" as 10^6 bytes


def bench_config(path: Path, max_mb: int, files: int) -> Path:
    """test-config.yml with 1 + 1 workers at log level info, the compose engine and the run's log bound;
    readable by the containers' unprivileged user (bind-mounted)."""
    doc = yaml.safe_load((PROJECT_DIR / "test-config.yml").read_text())
    for pool in doc["pools"].values():
        pool.update(replicas=1, log_level="info")
    doc["engine"] = dict(doc.get("engine") or {}, name="compose", log_max_mb=max_mb, log_files=files)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o644)
    path.parent.chmod(0o755)
    return path


@contextlib.contextmanager
def compose_stack(config: Path, project: str, work: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """The compose `broker` service and every pool of `config` as containers, in a compose project, vhost,
    user, password and loopback port of their own; yields (the engine, the CLIs' environment) once every
    worker answers ping; removed afterwards, the broker's volume too."""
    from dts.app import make_app
    from dts.config import load_settings
    from dts.engines.compose import ComposeEngine
    from dts.engines.image import build_broker_image, build_worker_image
    from dts.testing import free_port, uninterrupted

    settings = load_settings(config)
    port, password = free_port(), secrets.token_hex(12)
    vhost = user = project
    url = f"amqp://{user}:{password}@127.0.0.1:{port}/{vhost}"
    progress(f"logs: images (cached by tag): {build_broker_image()}, {build_worker_image(PROJECT_DIR, settings.code)}")
    env = {
        "DTS_BROKER_USER": user,
        "DTS_BROKER_PASSWORD": password,
        "DTS_BROKER_VHOST": vhost,
        "DTS_BROKER_PORT": str(port),
        "DTS_IMAGE": build_worker_image(PROJECT_DIR, settings.code),
        "COMPOSE_PROJECT_NAME": project,
        "BROKER_URL": url,
        "DTS_CONFIG": str(config),
    }
    settings = settings.with_broker_url(url)
    app = make_app(settings)
    engine = ComposeEngine(settings, app, project=project, env=env, run_dir=work / "run", broker="compose")
    try:
        progress(f"logs: compose project {project}: the broker service, then 1 + 1 worker containers")
        engine.prepare()
        engine.start()
        yield engine, dict(os.environ, **env)
    finally:
        with uninterrupted():
            progress(f"logs: removing compose project {project} (containers, network, broker volume)")
            engine.stop(volumes=True)
            app.close()


def log_files(cid: str, files: int) -> list[Path]:
    """A container's json-file log and its rotated siblings that exist (.1 ... .files-1), newest first."""
    out = subprocess.run(["docker", "inspect", "-f", "{{.LogPath}}", cid], capture_output=True, text=True, timeout=30)
    current = Path(out.stdout.strip())
    if not out.stdout.strip():
        raise RuntimeError(f"docker inspect gave no LogPath for {cid[:12]}: {out.stderr.strip()}")
    candidates = [current, *(Path(f"{current}.{n}") for n in range(1, files + 5))]  # more than kept: none expected
    return [path for path in candidates if path.exists()]


def task_of(record: Any) -> str | None:
    """The task a worker's JSON log line is about: its task_id, or for Celery's "received" line (logged before
    the task runs) its data.id."""
    if not isinstance(record, dict):
        return None
    data = record.get("data")
    return record.get("task_id") or (data.get("id") if isinstance(data, dict) else None)


def read_kept(paths: list[Path]) -> dict[str, Any]:
    """What a container's kept log files hold: bytes on disk, lines, and the lines and bytes of its tasks
    (the worker's JSON lines that carry a task_id, inside Docker's {"log": ...} envelope)."""
    kept: dict[str, Any] = {"files": [], "bytes": 0, "lines": 0, "task_lines": 0, "task_bytes": 0, "longest_line": 0}
    task_ids: set[str] = set()
    for path in reversed(paths):  # oldest first
        data = path.read_bytes()
        kept["files"].append({"name": path.name, "bytes": len(data)})
        kept["bytes"] += len(data)
        for line in data.splitlines(keepends=True):
            kept["lines"] += 1
            kept["longest_line"] = max(kept["longest_line"], len(line))
            try:
                record = json.loads(json.loads(line)["log"])
            except (ValueError, KeyError, TypeError):
                continue  # a text line (the banner) or a half-written one
            task_id = task_of(record)
            if task_id:
                if "one_task" not in kept and not record.get("task_id"):  # the first task kept from its received line
                    kept["one_task"] = task_id
                if task_id == kept.get("one_task"):
                    kept.setdefault("one_task_events", []).append(f"{record.get('logger')}: {record.get('event')}"[:80])
                task_ids.add(task_id)
                kept["task_lines"] += 1
                kept["task_bytes"] += len(line)
    kept["tasks"] = len(task_ids)
    return kept


def measure_container(node: str, cid: str, tasks_run: int, max_mb: int, files: int) -> dict[str, Any]:
    """One worker container's logs, read on disk: see summarise."""
    return summarise(read_kept(log_files(cid, files)), node, cid, tasks_run, max_mb, files)


def summarise(kept: dict[str, Any], node: str, cid: str, tasks_run: int, max_mb: int, files: int) -> dict[str, Any]:
    """A container's kept logs against the bound, and what it wrote in all (estimated: the kept bytes plus the
    tasks rotated away times the bytes per kept task). Docker rotates a file once it has reached max-size,
    before the next line: each file may end up to one line past it."""
    bytes_per_task = kept["task_bytes"] / kept["tasks"] if kept["tasks"] else 0.0
    rotated_away = max(0, tasks_run - kept["tasks"])
    bound = max_mb * MB * files
    return {
        "worker": node,
        "container": cid[:12],
        "tasks_run": tasks_run,
        "tasks_in_kept_lines": kept["tasks"],
        "tasks_rotated_away": rotated_away,
        "one_task_lines": kept.get("one_task_events", []),
        "lines_per_task": kept["task_lines"] / kept["tasks"] if kept["tasks"] else 0.0,
        "bytes_per_task": bytes_per_task,
        "written_bytes_estimate": int(kept["bytes"] + rotated_away * bytes_per_task),
        "on_disk_bytes": kept["bytes"],
        "files": kept["files"],
        "bound_bytes": bound,
        "longest_line_bytes": kept["longest_line"],
        "within_bound": kept["bytes"] <= bound + files * kept["longest_line"],
    }


def tasks_per_worker(samples: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        if s.get("state") == "succeeded" and s.get("worker"):
            counts[s["worker"]] = counts.get(s["worker"], 0) + 1
    return counts


def verdict(doc: dict[str, Any]) -> tuple[bool, str]:
    """PASS: every task succeeded, every container within its bound (each file up to one line past
    max-size), and rotation did drop lines (otherwise the run proves nothing)."""
    rows = doc["containers"]
    if doc["succeeded"] != doc["tasks"]:
        return False, f"FAIL: {doc['tasks'] - doc['succeeded']} of {doc['tasks']} tasks did not succeed"
    over = [r["worker"] for r in rows if not r["within_bound"]]
    if over:
        return False, f"FAIL: over the bound on disk: {', '.join(over)}"
    if not any(r["tasks_rotated_away"] for r in rows):
        return False, "FAIL: no worker's lines were rotated away: the run proves nothing (more --tasks)"
    return True, "PASS: every worker's logs on disk within the bound, after rotating"


def mb(n: float) -> str:
    return f"{n / MB:.2f} MB"


def render(doc: dict[str, Any]) -> str:
    """The run's table and verdict, as printed and as the performance page shows them (a worker's container
    id is in the result file)."""
    head = (
        "worker",
        "tasks run",
        "lines/task",
        "bytes/task",
        "written",
        "on disk",
        "files",
        "bound",
        "within",
    )
    lines = [head]
    for r in doc["containers"]:
        lines.append(
            (
                r["worker"].split("@")[0],
                f"{r['tasks_run']:,}",
                f"{r['lines_per_task']:.2f}",
                f"{r['bytes_per_task']:.0f}",
                mb(r["written_bytes_estimate"]),
                mb(r["on_disk_bytes"]),
                str(len(r["files"])),
                mb(r["bound_bytes"]),
                "yes" if r["within_bound"] else "NO",
            )
        )
    written = sum(r["written_bytes_estimate"] for r in doc["containers"])
    disk = sum(r["on_disk_bytes"] for r in doc["containers"])
    return "\n".join(
        [
            f"{doc['succeeded']:,} of {doc['tasks']:,} no-op tasks succeeded in {doc['load_seconds']:.0f} s "
            f"({doc['throughput']:.0f} tasks/s)",
            f"engine.log_max_mb {doc['log_max_mb']}, engine.log_files {doc['log_files']}, log_level info",
            *columns(lines),
            f"all workers: {mb(written)} written (estimated), {mb(disk)} on disk",
            "bound: log_max_mb x log_files per container, each file up to one line past max-size",
            doc["verdict"],
        ]
    )


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = bench_config(work / "bench-logs.yml", args.max_mb, args.files)
    per_type = args.tasks // 2
    with compose_stack(config, f"dts-bench-logs-{os.getpid()}", work) as (engine, env):
        nodes = {node: cid for pool in engine.settings.pools for node, cid in engine._nodes(pool).items()}
        out = work / "load.json"
        timeout = int(2 * per_type / 50 + 120)  # at least 50 tasks/s, or something is wrong
        argv = load_test_argv(config, per_type, "--output", str(out), "--timeout", str(timeout))
        progress(f"logs: load_test.py, {2 * per_type:,} no-op tasks (--tasks {per_type})")
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, *argv], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout + 120
        )
        seconds = time.monotonic() - started
        if not out.exists():
            raise RuntimeError(f"load_test.py exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
        samples = json.loads(out.read_text())["runs"][-1]["samples"]
        progress(f"  done in {seconds:.0f} s (exit {proc.returncode}); reading the containers' log files")
        counts = tasks_per_worker(samples)
        rows = [
            measure_container(node, cid, counts.get(node, 0), args.max_mb, args.files) for node, cid in nodes.items()
        ]
    doc = {
        "tasks": 2 * per_type,
        "succeeded": sum(counts.values()),
        "load_seconds": seconds,
        "throughput": sum(counts.values()) / seconds if seconds else 0.0,
        "log_max_mb": args.max_mb,
        "log_files": args.files,
        "log_level": "info",
        "containers": sorted(rows, key=lambda r: r["worker"]),
        "command": f"python -m bench.logs --tasks {2 * per_type}",
    }
    doc["passed"], doc["verdict"] = verdict(doc)
    doc["text"] = render(doc)
    return doc


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for("bench.logs", __doc__)
    parser.add_argument("--tasks", type=int, default=100_000, metavar="N", help="no-op tasks in all (default 100000)")
    parser.add_argument(
        "--max-mb", type=int, default=MAX_MB, metavar="MB", help=f"engine.log_max_mb (default {MAX_MB})"
    )
    parser.add_argument("--files", type=int, default=FILES, metavar="N", help=f"engine.log_files (default {FILES})")
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="result file (default: results/bench-logs-<UTC time>.json)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 2 <= args.tasks <= 100_000 or not 1 <= args.max_mb <= 10_000 or not 1 <= args.files <= 100:
        print("bench.logs: error: --tasks takes 2..100000, --max-mb 1..10000, --files 1..100", file=sys.stderr)
        return 2
    from dts.engines.docker import compose_command, docker_answers

    if not docker_answers() or compose_command() is None:
        print("bench.logs: error: needs a Docker engine and compose (.ci/install-docker.sh)", file=sys.stderr)
        return 3
    if not os.access("/var/lib/docker", os.R_OK | os.X_OK):
        print("bench.logs: error: Docker's log files are root's: run it as root (sudo)", file=sys.stderr)
        return 3
    from dts.errors import CliError
    from dts.files import shown
    from dts.results import output_path, save

    try:
        path = output_path("bench-logs", args.output, False, PROJECT_DIR)
        with tempfile.TemporaryDirectory(prefix="dts-bench-logs-") as work:
            doc = run(args, Path(work))
    except CliError as exc:
        print(f"bench.logs: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"bench.logs: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.logs: interrupted (the compose project removed)", file=sys.stderr)
        return 130
    save(path, "bench-logs", doc)
    print(doc["text"])
    print(f"Result file: {shown(path)}")
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
