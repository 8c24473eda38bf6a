"""Where a worker's CPU goes on a no-op load: py-spy samples of one pool's worker, its main process and its
pool process(es), while a load of no-op tasks runs through 1 + 1 project workers on a vhost of its own
(dts-bench-profile: made fresh, deleted at the end).

    python -m bench.profile                              # the defaults (prefork:1:1), worker-a, 12 s of samples
    python -m bench.profile --tasks 6000 threads:8:32:log=warning
    make bench-profile                                   # the defaults

The setting is bench.pools' POOL:CONCURRENCY:PREFETCH[:noevents][:window=S][:log=LEVEL]. For each process:
the functions that hold the most samples, inclusive (the function and what it calls) and self (the
function alone), as a share of that process's samples; py-spy leaves out samples of idle threads.
Writes the table and the counts to results/bench-profile-<UTC time>.json. Needs py-spy
(requirements-dev.txt) and the right to trace the workers (the same user, or root). Exit 0, 2 on bad usage,
3 without a broker, 1 when the profile could not be taken.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import parser_for, run
from bench.cpu import tree
from bench.pools import parse_setting
from bench.run import PROJECT_DIR, Failed, load_test_argv, ours_config, progress
from bench.table import columns

VHOST = "dts-bench-profile"
RATE = 200  # samples per second
_LINE = re.compile(r":\d+\)$")  # a frame's line number: functions are counted whatever line they were on


def frame_name(frame: str) -> str:
    """'on_message (kombu/messaging.py:654)' -> 'on_message (kombu/messaging.py)', paths from site-packages."""
    name = _LINE.sub(")", frame.strip())
    return re.sub(r"\(.*?site-packages/", "(", name)


def aggregate(raw: str) -> tuple[int, Counter[str], Counter[str]]:
    """py-spy's raw (collapsed) output: 'frame;frame;... count' per stack, outermost first. Returns the
    samples, and per function the samples it is on (inclusive, once per stack) and at the top of (self)."""
    total, inclusive, own = 0, Counter(), Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), [frame_name(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    return total, inclusive, own


def render(role: str, total: int, inclusive: Counter[str], own: Counter[str], top: int) -> str:
    head = [(f"{role}: {total} samples", "inclusive", "self")]
    # the trunk every sample is on (the interpreter's start, the worker's loop) says nothing: left out
    names = sorted((n for n in inclusive if inclusive[n] < 0.98 * total), key=lambda n: (-inclusive[n], n))[:top]
    selfs = [name for name, _ in own.most_common(top) if name not in names]
    rows = [(name[:100], f"{100 * inclusive[name] / total:.1f}%", f"{100 * own[name] / total:.1f}%") for name in names]
    rows += [(name[:100], f"{100 * inclusive[name] / total:.1f}%", f"{100 * own[name] / total:.1f}%") for name in selfs]
    return "\n".join(columns(head + rows))


def py_spy() -> str | None:
    """py-spy beside this Python (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            py_spy() or "py-spy",
            "record",
            "-f",
            "raw",
            "-r",
            str(RATE),
            "-d",
            f"{seconds:g}",
            "-p",
            str(pid),
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def profile(url: str, setting: str, pool: str, tasks: int, seconds: float, work: Path) -> dict[str, str]:
    """py-spy raw output for pool's first worker: {"main": ..., "pool process 1": ...}."""
    config = ours_config(url, work / "profile.yml", parse_setting(setting)["pools"])
    env = dict(os.environ, BROKER_URL=url, DTS_CONFIG=str(config))
    with run.project_workers(url, config, "profile", f"profile ({setting})") as engine:
        main_pid = next(iter(engine.running()[pool].values()))
        children = sorted(tree([main_pid]) - {main_pid})
        load = subprocess.Popen(
            [sys.executable, *load_test_argv(config, tasks, "--no-save")],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.0)  # the load's ramp (connections, the first publishes) is not what is profiled
            progress(f"profile: {seconds:g} s of samples of {pool} (pid {main_pid}, pool processes {children})")
            roles = {"main process": main_pid} | {f"pool process {n + 1}": pid for n, pid in enumerate(children)}
            spies = {
                role: (record(pid, seconds, work / f"{pid}.txt"), work / f"{pid}.txt") for role, pid in roles.items()
            }
            raw = {}
            for role, (spy, path) in spies.items():
                _, err = spy.communicate(timeout=seconds + 30)
                if spy.returncode != 0 or not path.exists():
                    raise Failed(f"py-spy on {role} exited {spy.returncode}: {err.strip().splitlines()[-1:]}")
                raw[role] = path.read_text()
            if load.poll() is not None:
                raise Failed(f"the load ended before the profile did: give it more --tasks (now {tasks})")
        finally:
            _, err = load.communicate(timeout=600)
    if load.returncode != 0:
        raise Failed(f"load_test.py exited {load.returncode}: {err.strip().splitlines()[-1:]}")
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = parser_for("bench.profile", __doc__)
    parser.add_argument("setting", nargs="?", default="prefork:1:1", metavar="POOL:CONCURRENCY:PREFETCH[:...]")
    parser.add_argument("--pool", default="worker-a", help="the pool whose worker is profiled (default worker-a)")
    parser.add_argument("--tasks", type=int, default=5000, metavar="N", help="no-op tasks of each type (default 5000)")
    parser.add_argument("--seconds", type=float, default=12.0, metavar="S", help="seconds of samples (default 12)")
    parser.add_argument("--top", type=int, default=15, metavar="K", help="functions shown per process (default 15)")
    args = parser.parse_args(argv)
    try:
        parse_setting(args.setting)
        if not (1 <= args.tasks <= 50_000 and 1 <= args.seconds <= 120 and 1 <= args.top <= 100):
            raise ValueError("--tasks takes 1..50000, --seconds 1..120, --top 1..100")
        if args.pool not in ("worker-a", "worker-b"):
            raise ValueError(f"--pool {args.pool!r}: worker-a or worker-b")
    except ValueError as exc:
        print(f"bench.profile: error: {exc}", file=sys.stderr)
        return 2
    if not py_spy():
        print("bench.profile: error: py-spy is not installed: `make install` (requirements-dev.txt)", file=sys.stderr)
        return 2
    if not run.broker_answers():
        print(
            f"bench.profile: error: RabbitMQ does not answer at {run.BROKER} as guest: start it (`make broker`)",
            file=sys.stderr,
        )
        return 3
    from dts.results import output_path, save

    path = output_path("bench-profile", None, False, PROJECT_DIR)
    try:
        with tempfile.TemporaryDirectory(prefix="dts-bench-profile-") as work, run.rabbitmq_vhost(VHOST) as url:
            raw = profile(url, args.setting, args.pool, args.tasks, args.seconds, Path(work))
    except Failed as exc:
        print(f"bench.profile: error: {exc}", file=sys.stderr)
        return 1
    tables, counts = [], {}
    for role, text in raw.items():
        total, inclusive, own = aggregate(text)
        tables.append(render(f"{args.pool} {role}", total, inclusive, own, args.top))
        counts[role] = {
            "samples": total,
            "inclusive": dict(inclusive.most_common(200)),
            "self": dict(own.most_common(200)),
        }
    text = "\n\n".join(tables)
    save(path, "bench-profile", {"setting": args.setting, "pool": args.pool, "text": text, "processes": counts})
    print(text)
    print(f"Result file: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
