"""`make bench`: the project against plain Celery and raw AMQP, in one run, on one broker.

    python -m bench.run                  # the full run (~20 min on 2 cores: the 100k-task RSS load dominates)
    python -m bench.run --quick          # a smoke run (~4 min): smaller loads, RSS at 1k / 10k tasks
    python -m bench.run --tasks 5000 --output results/bench.json

Each side gets a vhost of its own on the same RabbitMQ (dts-bench-ceiling, dts-bench-naive,
dts-bench-ours: made fresh, deleted at the end) and runs in turn:
  ceiling  raw kombu, messages the size of a task message: publish (confirms), publish + consume
  naive    bench/naive.py: Celery defaults, rpc://, delay() per task; 1 + 1 `celery worker` processes
  ours     the project's CLIs on 1 + 1 local workers (LocalEngine): load_test.py, dispatch.py --repeat,
           bench/ours.py (single-task round trips, the publish phase alone), load_test.py's peak RSS
Prints one table (ours, naive, ceiling, ratio, target, PASS/MISS; a miss never fails the command) and
writes it with every raw number to results/bench-<UTC time>.json. Progress goes to stderr. Needs
rabbitmqctl (vhosts) and the guest user on localhost. Exit 0 when the table was made (even with
misses and rows that could not be measured), 2 on bad usage, 3 if the broker cannot be reached, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import PROJECT_DIR, RUN_DIR, ceiling, parser_for, startup
from bench.cpu import CpuMeter
from bench.table import build_rows, render, summary
from dts.testing import uninterrupted

VHOSTS = {"ceiling": "dts-bench-ceiling", "naive": "dts-bench-naive", "ours": "dts-bench-ours"}
BROKER = "amqp://guest:guest@localhost:5672"
WORKER_START = 60.0  # seconds for a naive worker to consume
WORKER_STOP = 30.0  # seconds a naive worker's warm shutdown may take before SIGKILL
CLI_TIMEOUT = 600.0  # seconds for one measuring subprocess (the RSS loads get more: their size / 50 tasks/s)
FULL = {"tasks": 2000, "rtt_seconds": 3.0, "rounds": 10, "rss": (5000, 50000), "starts": 5, "wall_runs": 10}
QUICK = {"tasks": 300, "rtt_seconds": 1.0, "rounds": 5, "rss": (500, 5000), "starts": 2, "wall_runs": 3}


def progress(text: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A measurement that could not be made (its row shows n/a; the run goes on)."""


def broker_answers() -> bool:
    from kombu import Connection

    try:
        with Connection(f"{BROKER}/", connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # noqa: BLE001 - any failure to connect is "does not answer"
        return False


# -- vhosts
def fresh_vhost(vhost: str) -> str:
    """`vhost` emptied (deleted if it exists) and made again for guest; its broker URL."""
    from dts.provision import ensure_vhost, rabbitmqctl

    if vhost in rabbitmqctl("list_vhosts", "name").stdout.split():
        rabbitmqctl("delete_vhost", vhost)
    ensure_vhost(vhost, "guest")
    return f"{BROKER}/{vhost}"


def delete_vhosts(vhosts: tuple[str, ...] | None = None) -> None:
    from dts.provision import rabbitmqctl

    vhosts = tuple(VHOSTS.values()) if vhosts is None else vhosts
    with contextlib.suppress(Exception):
        existing = rabbitmqctl("list_vhosts", "name").stdout.split()
        for vhost in vhosts:
            if vhost in existing:
                rabbitmqctl("delete_vhost", vhost)


@contextlib.contextmanager
def rabbitmq_vhost(vhost: str):
    """A fresh vhost for the block (its URL), deleted afterwards."""
    url = fresh_vhost(vhost)
    try:
        yield url
    finally:
        with uninterrupted():
            delete_vhosts((vhost,))


# -- subprocesses
def load_with_cpu(argv: list[str], env: dict[str, str], worker_pids: list[int], tasks: int) -> dict[str, Any]:
    """run_json(argv) with the CPU the workers, the broker and that load generator used per task."""
    meter = CpuMeter(worker_pids)
    out = run_json(argv, env)
    out["cpu"] = meter.stop(tasks)
    return out


def run_json(argv: list[str], env: dict[str, str], timeout: float = CLI_TIMEOUT) -> dict[str, Any]:
    """A measuring subprocess (python ARGV from the project folder); its stdout as one JSON document."""
    try:
        proc = subprocess.run(
            [sys.executable, *argv], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise Failed(f"{' '.join(argv[:2])} did not finish within {timeout:g}s") from None
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise Failed(f"{' '.join(argv[:2])} exited {proc.returncode}: {last[:300]}") from None


def peak_rss(argv: list[str], env: dict[str, str], timeout: float, out: Path) -> tuple[int, int]:
    """Run python ARGV (stdout/stderr to files) and return (exit code, the child's own peak RSS in KiB),
    from wait4's rusage of that one process."""
    with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
        proc = subprocess.Popen([sys.executable, *argv], cwd=PROJECT_DIR, env=env, stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, usage.ru_maxrss
            if time.monotonic() > deadline:
                raise Failed(f"{' '.join(argv[:3])} did not finish within {timeout:g}s")
            time.sleep(0.2)  # polling a child process, not synchronising on time
    finally:
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(ChildProcessError):
                os.wait4(proc.pid, 0)
            proc.returncode = -9


def measure(name: str, results: dict[str, Any], key: str, fn, *args) -> None:
    """results[key] = fn(*args); a failure is recorded under errors and the run goes on."""
    progress(name)
    t0 = time.monotonic()
    try:
        results[key] = fn(*args)
    except Failed as exc:
        progress(f"  FAILED: {exc}")
        results.setdefault("errors", []).append(f"{name}: {exc}")
        return
    progress(f"  done in {time.monotonic() - t0:.1f}s: {short(results[key])}")


def short(value: Any) -> str:
    if isinstance(value, dict) and value.get("reports"):  # load_test.py --json
        value = {k: value["reports"][0].get(k) for k in ("tasks", "completed", "failed", "total_time", "throughput")}
    elif isinstance(value, dict) and value.get("repeat"):  # dispatch.py --json
        value = value["repeat"]
    if isinstance(value, dict):
        return ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in value.items()
            if not isinstance(v, dict | list)
        )
    return str(value)


# -- ceiling
def run_ceiling(url: str, messages: int, rtt_seconds: float) -> dict[str, Any]:
    from dts.app import make_app
    from dts.config import load_settings

    size, msg = ceiling.task_message(make_app(load_settings(PROJECT_DIR / "test-config.yml")))
    out: dict[str, Any] = {"message_bytes": size, "messages": messages}
    for key, fn, confirms in (
        ("publish", ceiling.publish_rate, True),
        ("publish_consume", ceiling.publish_consume_rate, True),
        ("publish_no_confirms", ceiling.publish_rate, False),
        ("publish_consume_no_confirms", ceiling.publish_consume_rate, False),
    ):
        progress(f"ceiling: {key.replace('_', ' ')}, {messages} messages of {size} bytes")
        try:
            out[key] = fn(url, msg, messages, confirms=confirms)
        except Exception as exc:  # noqa: BLE001 - any broker error: the row shows n/a
            raise Failed(f"ceiling {key}: {type(exc).__name__}: {exc}") from None
        progress(f"  {out[key]['rate']:,.0f} msg/s")
    progress(f"ceiling: round trips at 100/s for {rtt_seconds:g}s through an echo process")
    try:
        out["round_trip"] = ceiling.round_trip(url, msg, rate=100, seconds=rtt_seconds)
    except Exception as exc:  # noqa: BLE001 - any broker error: the row shows n/a
        raise Failed(f"ceiling round_trip: {type(exc).__name__}: {exc}") from None
    progress(f"  p50 {out['round_trip']['p50'] * 1000:.2f} ms, p99 {out['round_trip']['p99'] * 1000:.2f} ms")
    out["publish_rate"] = out["publish"]["rate"]
    out["publish_consume_rate"] = out["publish_consume"]["rate"]
    return out


# -- naive
class NaiveWorkers:
    """1 + 1 plain `celery -A bench.naive worker -Q queue_x -c 1` processes (own sessions, logs to files)."""

    def __init__(self, url: str, log_dir: Path):
        self.url, self.log_dir, self.procs = url, log_dir, {}
        self.env = dict(os.environ, NAIVE_BROKER_URL=url)

    def start(self) -> None:
        for name in ("a", "b"):
            log = open(self.log_dir / f"naive-{name}.log", "w")  # closed in stop()
            command = f"celery -A bench.naive worker -Q queue_{name} -c 1 -n naive-{name}@%h --without-mingle --without-gossip"
            argv = [sys.executable, "-m", *command.split()]
            self.procs[name] = (
                subprocess.Popen(
                    argv, cwd=PROJECT_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                ),
                log,
            )
        self._wait_consuming()

    def _wait_consuming(self) -> None:
        from kombu import Connection

        deadline = time.monotonic() + WORKER_START
        with Connection(self.url) as conn:
            while True:
                for name, (proc, _) in self.procs.items():
                    if proc.poll() is not None:
                        raise Failed(
                            f"naive worker {name} exited {proc.returncode}; see {self.log_dir}/naive-{name}.log"
                        )
                counts = []
                for name in self.procs:
                    try:
                        counts.append(conn.channel().queue_declare(f"queue_{name}", passive=True).consumer_count)
                    except conn.channel_errors:  # not declared yet
                        counts.append(0)
                if all(counts):
                    return
                if time.monotonic() > deadline:
                    raise Failed(f"naive workers not consuming within {WORKER_START:g}s; see {self.log_dir}")
                time.sleep(0.2)  # polling the broker for consumers

    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.procs.values()]

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL of the whole process group after WORKER_STOP seconds."""
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP
        for proc, log in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # prefork children left behind
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
        self.procs = {}


def run_naive(url: str, plan: dict[str, Any], durations: tuple[float, float], log_dir: Path, out: dict) -> None:
    workers = NaiveWorkers(url, log_dir)
    progress("naive: starting 1 + 1 plain celery workers")
    try:
        workers.start()
    except BaseException:
        with uninterrupted():
            workers.stop()
        raise
    env = dict(os.environ, NAIVE_BROKER_URL=url)
    try:
        measure(
            f"naive: no-op load, {2 * plan['tasks']} tasks, delay() each, ResultSet.get()",
            out,
            "load",
            load_with_cpu,
            ["-m", "bench.naive", "load", "--tasks", str(plan["tasks"])],
            env,
            workers.pids(),
            2 * plan["tasks"],
        )
        measure(
            f"naive: round trips at 100/s for {plan['rtt_seconds']:g}s",
            out,
            "rtt",
            run_json,
            ["-m", "bench.naive", "rtt", "--rate", "100", "--seconds", str(plan["rtt_seconds"])],
            env,
        )
        measure(
            f"naive: seed scenario, {plan['rounds']} rounds",
            out,
            "seed",
            run_json,
            [
                "-m",
                "bench.naive",
                "seed",
                "--rounds",
                str(plan["rounds"]),
                "--duration-a",
                str(durations[0]),
                "--duration-b",
                str(durations[1]),
            ],
            env,
        )
    finally:
        progress("naive: stopping the workers")
        with uninterrupted():
            workers.stop()
    out["throughput"] = out.get("load", {}).get("throughput")
    out["cpu"] = out.get("load", {}).pop("cpu", None)
    out["seed_overhead"] = out.get("seed", {}).get("overhead_median")


# -- ours
# the pools of the second no-op load: the fast profile docs/performance.md documents for short tasks, chosen by a
# sweep of `make bench-pools` (test-config.yml's comments say what it gives up)
FAST_PROFILE = {"execution_pool": "threads", "concurrency": 8, "prefetch_multiplier": 32, "log_level": "warning"}


def ours_config(url: str, path: Path, pools: dict[str, Any] | None = None) -> Path:
    """test-config.yml as it is (task events, durations, reliability settings) on the ours vhost, with
    1 worker of concurrency 1 per pool (or `pools`' settings) and the local engine."""
    doc = yaml.safe_load((PROJECT_DIR / "test-config.yml").read_text())
    doc["broker"] = dict(doc.get("broker") or {}, url=url)
    for pool in doc["pools"].values():
        pool.update({"replicas": 1, "concurrency": 1, **(pools or {})})
    doc["engine"] = dict(doc.get("engine") or {}, name="local")
    doc["tasks"] = dict(doc.get("tasks") or {}, **NOOP_TASKS)  # bench.ours kinds: beside task_a, on its pool
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


NOOP_TASKS = {  # a no-op task of your own of each kind: a callable of the standard library, and `true`
    "noop_call": {"queue": "queue_a", "call": "os:getpid"},
    "noop_command": {"queue": "queue_a", "command": ["true"]},
}


def consume_rate(samples: list[dict[str, Any]]) -> float | None:
    """Completions per second of the workers: tasks done / (last finish - first start), worker clocks."""
    spans = []
    for s in samples:
        if s.get("ok") and s.get("started_at") and s.get("execution_time") is not None:
            start = datetime.fromisoformat(s["started_at"]).timestamp()
            spans.append((start, start + s["execution_time"]))
    if len(spans) < 2:
        return None
    wall = max(e for _, e in spans) - min(b for b, _ in spans)
    return len(spans) / wall if wall > 0 else None


def sent_rate(samples: list[dict[str, Any]]) -> float | None:
    """Tasks sent per second during a load (first to last sent_at, client clock)."""
    sent = sorted(s["sent_at"] for s in samples if s.get("sent_at"))
    return (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 and sent[-1] > sent[0] else None


def load_test_argv(config: Path, tasks: int, *extra: str) -> list[str]:
    return [
        "load_test.py",
        "--config",
        str(config),
        "--tasks",
        str(tasks),
        "--duration-a",
        "0",
        "--duration-b",
        "0",
        "--json",
        *extra,
    ]


def run_ours(url: str, plan: dict[str, Any], work: Path, out: dict) -> None:
    config = ours_config(url, work / "ours.yml")
    env = dict(os.environ, BROKER_URL=url, DTS_CONFIG=str(config))
    os.environ.update(BROKER_URL=url, DTS_CONFIG=str(config))  # this process's app too ($BROKER_URL wins over .env)
    measure(
        f"ours: publish phase alone, {2 * plan['tasks']} tasks, no consumers (dts.amqp.publish.TaskPublisher)",
        out,
        "publish",
        run_json,
        ["-m", "bench.ours", "publish", "--tasks", str(plan["tasks"])],
        env,
    )
    fresh_vhost(VHOSTS["ours"])  # drop the tasks nobody consumed
    with project_workers(url, config, "ours", "ours") as engine:
        measure_warm(engine, config, env, plan, work, out)
    measure(
        f"ours: the first dispatch after a fresh start of the workers, {plan['starts']} starts",
        out,
        "first",
        startup.first_dispatches,
        lambda: project_workers(url, config, "ours-fresh", "ours (a fresh start)"),
        ["dispatch.py", "--config", str(config), "--json", "--no-save"],
        env,
        plan["starts"],
        run_json,
    )
    run_fast_profile(url, plan, work, out)
    summarise_ours(out)


def measure_warm(engine, config: Path, env: dict[str, str], plan: dict[str, Any], work: Path, out: dict) -> None:
    """On running workers: the no-op load with CPU, round trips, the seed scenario, the process wall, RSS."""
    load_file = work / "ours-load.json"
    measure(
        f"ours: load_test.py, {2 * plan['tasks']} no-op tasks",
        out,
        "load",
        load_with_cpu,
        load_test_argv(config, plan["tasks"], "--output", str(load_file)),
        env,
        worker_pids(engine),
        2 * plan["tasks"],
    )
    if load_file.exists():
        samples = json.loads(load_file.read_text())["runs"][-1]["samples"]
        out["consume_rate"], out["load_sent_rate"] = consume_rate(samples), sent_rate(samples)
    rtt = ["-m", "bench.ours", "rtt", "--rate", "100", "--seconds", str(plan["rtt_seconds"])]
    measure(f"ours: round trips at 100/s for {plan['rtt_seconds']:g}s", out, "rtt", run_json, rtt, env)
    kinds = ["-m", "bench.ours", "kinds", "--rate", "60", "--seconds", str(plan["rtt_seconds"])]
    measure("ours: a no-op built-in, callable and command in turn, and fork/exec of true", out, "kinds", run_json,
            kinds, env)  # fmt: skip
    repeat = ["dispatch.py", "--config", str(config), "--repeat", str(plan["rounds"]), "--json", "--no-save"]
    measure(f"ours: dispatch.py --repeat {plan['rounds']}", out, "dispatch", run_json, repeat, env)
    wall = ["dispatch.py", "--config", str(config), "--output", str(work / "dispatch-wall.json")]
    measure(
        f"ours: `python dispatch.py` process wall, {plan['wall_runs']} runs",
        out,
        "wall",
        process_wall,
        wall,
        env,
        plan["wall_runs"],
    )
    out["rss"] = {}
    for label, tasks in zip(("small", "large"), plan["rss"], strict=True):
        measure(f"ours: load_test.py peak RSS, {2 * tasks} tasks", out["rss"], label, rss_run, config, tasks, env, work)


def summarise_ours(out: dict) -> None:
    """The figures the table reads, lifted out of the raw measurements."""
    out["throughput"] = (out.get("load", {}).get("reports") or [{}])[0].get("throughput")
    out["cpu"] = out.get("load", {}).pop("cpu", None)
    out["seed_overhead"] = ((out.get("dispatch") or {}).get("repeat") or {}).get("overhead_median")
    out["publish_rate"] = out.get("publish", {}).get("rate")
    if out["publish_rate"] is None and out.get("load_sent_rate"):
        out["publish_rate"], out["publish_rate_source"] = out["load_sent_rate"], "load_test sent_at span"
    if out.get("dispatch"):
        out["dispatch"] = {"repeat": out["dispatch"].get("repeat"), "summary": out["dispatch"].get("summary")}


def worker_pids(engine) -> list[int]:
    return [pid for workers in engine.running().values() for pid in workers.values()]


@contextlib.contextmanager
def project_workers(url: str, config: Path, run_dir: str, label: str):
    """The project's workers for `config` on the bench vhost `url` (LocalEngine, its own run folder), yielded
    as the engine, stopped afterwards. This process's app and the workers use `url` ($BROKER_URL wins over
    .env) and `config`; a start that fails is Failed (the measurement shows n/a)."""
    from dts.app import make_app
    from dts.config import load_settings
    from dts.errors import CliError
    from dts.testing import local_workers

    os.environ.update(BROKER_URL=url, DTS_CONFIG=str(config))
    settings = load_settings(config)
    app = make_app(settings)
    progress(f"{label}: starting 1 + 1 project workers")
    try:
        with local_workers(settings, app, RUN_DIR / "bench" / run_dir) as engine:
            try:
                yield engine
            finally:
                progress(f"{label}: stopping the workers")
    except CliError as exc:
        raise Failed(f"the project's workers did not start: {exc}") from None


def run_fast_profile(url: str, plan: dict[str, Any], work: Path, out: dict) -> None:
    """The no-op load again, on 1 + 1 workers with FAST_PROFILE: out["short"] = throughput, CPU."""
    config = ours_config(url, work / "ours-short.yml", FAST_PROFILE)
    env = dict(os.environ, BROKER_URL=url, DTS_CONFIG=str(config))
    label = ", ".join(f"{k} {v}" for k, v in FAST_PROFILE.items())
    load: dict[str, Any] = {}
    with project_workers(url, config, "ours-short", f"ours ({label})") as engine:
        measure(
            f"ours: load_test.py, {2 * plan['tasks']} no-op tasks ({label})",
            load,
            "load",
            load_with_cpu,
            load_test_argv(config, plan["tasks"], "--no-save"),
            env,
            worker_pids(engine),
            2 * plan["tasks"],
        )
    if "load" in load:
        out["short"] = {
            "pools": FAST_PROFILE,
            "cpu": load["load"].pop("cpu", None),
            "throughput": (load["load"].get("reports") or [{}])[0].get("throughput"),
        }
    out.setdefault("errors", []).extend(load.get("errors", []))


def process_wall(argv: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    try:
        return startup.process_wall(argv, env, runs)
    except RuntimeError as exc:
        raise Failed(str(exc)) from None


def rss_run(config: Path, tasks: int, env: dict[str, str], work: Path) -> dict[str, Any]:
    timeout = 2 * tasks / 50 + 120  # at least 50 tasks/s, or something is wrong
    argv = load_test_argv(config, tasks, "--no-save", "--timeout", str(int(timeout)))
    code, kib = peak_rss(argv, env, timeout + 60, work / f"rss-{tasks}.json")
    report = {}
    with contextlib.suppress(OSError, json.JSONDecodeError, IndexError, KeyError):
        report = json.loads((work / f"rss-{tasks}.json").read_text())["reports"][0]
    if code != 0:
        raise Failed(f"load_test.py --tasks {tasks} exited {code}")
    return {"tasks": 2 * tasks, "peak_rss_mib": kib / 1024, "throughput": report.get("throughput")}


# -- the run
def bench(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {"plan": plan, "errors": []}
    work = Path(tempfile.mkdtemp(prefix="dts-bench-"))
    try:
        urls = {side: fresh_vhost(vhost) for side, vhost in VHOSTS.items()}
        from dts.config import load_settings

        seed = load_settings(PROJECT_DIR / "test-config.yml").tasks
        durations = (seed["task_a"].duration, seed["task_b"].duration)
        results["ceiling"] = {}
        measure(
            f"ceiling: raw kombu on {VHOSTS['ceiling']}",
            results,
            "ceiling",
            run_ceiling,
            urls["ceiling"],
            2 * plan["tasks"],
            plan["rtt_seconds"],
        )
        results["naive"] = {}
        try:
            run_naive(urls["naive"], plan, durations, work, results["naive"])
        except Failed as exc:
            results["errors"].append(f"naive: {exc}")
            progress(f"  FAILED: {exc}")
        results["ours"] = {}
        try:
            run_ours(urls["ours"], plan, work, results["ours"])
        except Failed as exc:
            results["errors"].append(f"ours: {exc}")
            progress(f"  FAILED: {exc}")
        results["errors"] += results["naive"].pop("errors", []) + results["ours"].pop("errors", [])
        results["errors"] += results["ours"].get("rss", {}).pop("errors", [])
    finally:
        progress("deleting the bench vhosts")
        with uninterrupted():
            delete_vhosts()
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for("bench.run", __doc__)
    parser.add_argument(
        "--tasks",
        type=int,
        metavar="N",
        help="no-op tasks of each type per load (default 2000; --quick 300); the ceiling sends 2 x N messages",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: small loads, RSS at 1k / 10k tasks")
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="result file (default: results/bench-<UTC time>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (configs, worker logs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = dict(QUICK if args.quick else FULL, quick=args.quick)
    if args.tasks is not None:
        if not 1 <= args.tasks <= 50_000:
            print("bench: error: --tasks takes 1..50000", file=sys.stderr)
            return 2
        plan["tasks"] = args.tasks
    from dts.errors import CliError
    from dts.results import output_path, save

    try:
        path = output_path("bench", args.output, False, PROJECT_DIR)
        if not broker_answers():
            print(
                f"bench: error: RabbitMQ does not answer at {BROKER} as guest: start it (`make broker`)",
                file=sys.stderr,
            )
            return 3
        if plan["quick"]:
            progress(
                f"--quick: {plan['tasks']} tasks per type, RSS at {2 * plan['rss'][0]} / {2 * plan['rss'][1]} "
                "tasks (the full run: 10k / 100k)"
            )
        results = bench(args, plan)
    except CliError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted (workers stopped, vhosts deleted)", file=sys.stderr)
        return 130
    rows = build_rows(results)
    table = render(rows)
    save(path, "bench", {"table": [r.to_json() for r in rows], "text": table, "measurements": results})
    print(table)
    print(summary(rows) + ("" if not results["errors"] else f"; not measured: {'; '.join(results['errors'])}"))
    if plan["quick"]:
        print("(--quick: smaller loads than the targets are defined for; RSS rows are 1k / 10k tasks)")
    print(f"Result file: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
