"""Config, Celery app and tasks of the Distributed Test System.

`task_a` runs only on `queue_a` (pool `worker-a`), `task_b` only on `queue_b` (pool `worker-b`).
Everything is driven by `test-config.yml`, loaded once into a frozen, validated `Config`.

    celery -A celery_app worker -Q queue_a -n worker-a-1@%h      # a worker (what `make up` runs)
    DTS_CONFIG=my-config.yml celery -A celery_app worker ...     # with another config
    BROKER_URL=amqp://user:pw@host:5672/vhost python dispatch.py # another broker
"""

from __future__ import annotations

import enum
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from celery import Celery
from kombu import Exchange, Queue

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PROJECT_DIR / "test-config.yml"
ENV_FILE = PROJECT_DIR / ".env"
TASK_NAMES = ("task_a", "task_b")
POOL_NAMES = ("worker-a", "worker-b")
MESSAGES = {"task_a": "Hello from Task A", "task_b": "Hello from Task B"}
WORKER_MODES = ("auto", "docker", "local")
EXECUTION_POOLS = ("prefork", "threads", "solo")
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp")


def checkout_name() -> str:
    """'dts-<8 hex>': this checkout's RabbitMQ vhost/user and compose project name. Derived from the
    project directory, so two checkouts on one host never share queues, credentials or containers."""
    import hashlib

    return "dts-" + hashlib.sha1(str(PROJECT_DIR).encode()).hexdigest()[:8]


class ExitCode(enum.IntEnum):
    """Exit codes shared by every CLI of the project."""

    OK = 0
    FAILED = 1  # tasks failed, isolation breached, threshold missed
    USAGE = 2  # bad usage or config
    BROKER_UNREACHABLE = 3
    NO_CONSUMER = 4


class CliError(Exception):
    """An expected failure: one line for stderr and the exit code that goes with it."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(CliError):
    exit_code = ExitCode.USAGE


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TaskSpec:
    name: str
    queue: str
    duration: float = 0.0
    failure_rate: float = 0.0

    @property
    def message(self) -> str:
        return MESSAGES[self.name]


@dataclass(frozen=True)
class PoolSpec:
    name: str
    queue: str
    replicas: int = 1
    concurrency: int = 1
    pool: str = "prefork"  # celery execution pool: prefork (processes), threads, solo


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    jitter: bool = True


@dataclass(frozen=True)
class Config:
    path: Path
    name: str
    broker_url: str
    connect_timeout: float
    tasks: dict[str, TaskSpec]
    pools: dict[str, PoolSpec]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    prefetch_multiplier: int = 1
    worker_mode: str = "auto"
    stop_timeout: float = 30.0
    start_timeout: float = 60.0
    dispatch_timeout: float = 60.0
    max_workers: int = 10
    load_timeout: float = 300.0
    min_efficiency: float = 0.0  # 0 = no threshold
    max_p95: float = 0.0  # seconds; 0 = no threshold

    def pool_for_task(self, task: str) -> PoolSpec:
        queue = self.tasks[task].queue
        return next(p for p in self.pools.values() if p.queue == queue)


def _rule(path: Path, key: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"{path.name}: {key} {rule} (got {value!r})")


class _Section:
    """Reads one mapping of the YAML document, checking types and ranges, and knows its unknown keys."""

    def __init__(self, path: Path, prefix: str, data: Any):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _rule(path, prefix or "the document", data, "must be a mapping")
        self.path, self.prefix, self.data, self.seen = path, prefix, data, set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, kind: type | tuple, default: Any) -> Any:
        self.seen.add(name)
        value = self.data.get(name, default)
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
        if not ok:
            wanted = "a number" if float in _as_tuple(kind) else _TYPE_NAMES[_as_tuple(kind)[0]]
            raise _rule(self.path, self.key(name), value, f"must be {wanted}")
        return value

    def number(self, name: str, default: float, lo: float = 0.0, hi: float | None = None) -> float:
        value = self.get(name, (int, float), default)
        if not math.isfinite(value):
            raise _rule(self.path, self.key(name), value, "must be a finite number")
        if value < lo or (hi is not None and value > hi):
            rule = f"must be between {lo:g} and {hi:g}" if hi is not None else f"must be >= {lo:g}"
            raise _rule(self.path, self.key(name), value, rule)
        return float(value)

    def integer(self, name: str, default: int, lo: int = 0, hi: int | None = None) -> int:
        value = self.get(name, int, default)
        if value < lo or (hi is not None and value > hi):
            rule = f"must be between {lo} and {hi}" if hi is not None else f"must be >= {lo}"
            raise _rule(self.path, self.key(name), value, rule)
        return value

    def section(self, name: str) -> _Section:
        self.seen.add(name)
        return _Section(self.path, self.key(name), self.data.get(name))

    def done(self) -> None:
        unknown = sorted((k for k in self.data if str(k) not in self.seen), key=str)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            raise _rule(
                self.path, self.key(unknown[0]), self.data[unknown[0]], f"is not a known key (known: {allowed})"
            )


_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false"}


def _as_tuple(kind: type | tuple) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _check_amqp_url(path: Path, source: str, url: str) -> None:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        raise ConfigError(
            f"{path.name}: {source} must be an AMQP URL like amqp://user:password@host:5672/vhost "
            f"(got scheme {scheme or 'none'!r}); this project needs RabbitMQ"
        )


def parse_config(data: Any, path: Path, env: dict[str, str] | None = None) -> Config:
    """Validate a parsed YAML document into a Config (pure: no file or environment access)."""
    env = env or {}
    root = _Section(path, "", data)
    name = root.get("name", str, "Distributed test")

    broker = root.section("broker")
    broker_url = broker.get("url", str, "amqp://guest:guest@localhost:5672//")
    _check_amqp_url(path, "broker.url", broker_url)
    if env.get("BROKER_URL"):
        broker_url = env["BROKER_URL"]
        _check_amqp_url(path, "$BROKER_URL", broker_url)
    connect_timeout = broker.number("connect_timeout", 5.0, lo=0.1, hi=60)
    broker.done()

    tasks_sec = root.section("tasks")
    tasks = {}
    for task in TASK_NAMES:
        sec = tasks_sec.section(task)
        tasks[task] = TaskSpec(
            name=task,
            queue=sec.get("queue", str, f"queue_{task[-1]}"),
            duration=sec.number("duration", 0.0, hi=3600),
            failure_rate=sec.number("failure_rate", 0.0, hi=1.0),
        )
        sec.done()
    tasks_sec.done()

    workers = root.section("workers")
    mode = workers.get("mode", str, "auto")
    if mode not in WORKER_MODES:
        raise _rule(path, "workers.mode", mode, f"must be one of {', '.join(WORKER_MODES)}")
    prefetch = workers.integer("prefetch_multiplier", 1, lo=1, hi=1000)
    stop_timeout = workers.number("stop_timeout", 30.0, lo=1, hi=3600)
    start_timeout = workers.number("start_timeout", 60.0, lo=1, hi=3600)
    max_workers = workers.integer("max_workers", 10, lo=1, hi=1000)
    pools = {}
    for pool in POOL_NAMES:
        sec = workers.section(pool)
        pools[pool] = PoolSpec(
            name=pool,
            queue=sec.get("queue", str, f"queue_{pool[-1]}"),
            replicas=sec.integer("replicas", 1, lo=0, hi=max_workers),
            concurrency=sec.integer("concurrency", 1, lo=1, hi=256),
            pool=sec.get("pool", str, "prefork"),
        )
        if pools[pool].pool not in EXECUTION_POOLS:
            raise _rule(path, f"workers.{pool}.pool", pools[pool].pool, f"must be one of {', '.join(EXECUTION_POOLS)}")
        sec.done()
    workers.done()

    retry_sec = root.section("retry")
    retry = RetryPolicy(
        max_retries=retry_sec.integer("max_retries", 3, lo=0, hi=100),
        backoff_base=retry_sec.number("backoff_base", 1.0, lo=0.0, hi=3600),
        backoff_max=retry_sec.number("backoff_max", 30.0, lo=0.0, hi=86400),
        jitter=retry_sec.get("jitter", bool, True),
    )
    retry_sec.done()

    dispatch = root.section("dispatch")
    dispatch_timeout = dispatch.number("timeout", 60.0, lo=0.1, hi=86400)
    dispatch.done()

    load = root.section("load_test")
    load_timeout = load.number("timeout", 300.0, lo=1, hi=86400)
    min_efficiency = load.number("min_efficiency", 0.0, hi=1.0)
    max_p95 = load.number("max_p95", 0.0, hi=86400)
    load.done()
    root.done()

    queues = {p.queue for p in pools.values()}
    if len(queues) != len(pools):
        raise _rule(path, "workers.worker-b.queue", pools["worker-b"].queue, "must differ from worker-a's queue")
    for spec in tasks.values():
        if spec.queue not in queues:
            raise _rule(
                path, f"tasks.{spec.name}.queue", spec.queue, f"must be a pool's queue ({', '.join(sorted(queues))})"
            )
    if tasks["task_a"].queue == tasks["task_b"].queue:
        raise _rule(path, "tasks.task_b.queue", tasks["task_b"].queue, "must differ from task_a's queue")

    return Config(
        path=path,
        name=name,
        broker_url=broker_url,
        connect_timeout=connect_timeout,
        tasks=tasks,
        pools=pools,
        retry=retry,
        prefetch_multiplier=prefetch,
        worker_mode=mode,
        stop_timeout=stop_timeout,
        start_timeout=start_timeout,
        dispatch_timeout=dispatch_timeout,
        max_workers=max_workers,
        load_timeout=load_timeout,
        min_efficiency=min_efficiency,
        max_p95=max_p95,
    )


def resolve_config_path(path: str | os.PathLike | None) -> Path:
    """`--config` or $DTS_CONFIG or the project's test-config.yml. A relative path is relative to the
    project directory, not the current one, so every CLI and worker finds the same file wherever it runs."""
    raw = path or os.environ.get("DTS_CONFIG")
    if not raw:
        return DEFAULT_CONFIG
    return (PROJECT_DIR / Path(raw).expanduser()).resolve()


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """KEY=VALUE lines of the git-ignored .env written by `make broker` (missing file: empty)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip().strip("'\"") for k, v in pairs}


def broker_url_from_env_file(values: dict[str, str], host: str = "localhost") -> str | None:
    """The host-side broker URL for the dedicated vhost/user in .env, if .env defines one."""
    try:
        user, password, vhost = values["DTS_BROKER_USER"], values["DTS_BROKER_PASSWORD"], values["DTS_BROKER_VHOST"]
    except KeyError:
        return None
    port = values.get("DTS_BROKER_PORT", "5672")
    return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(vhost, safe='')}"


def deployment_env() -> dict[str, str]:
    """The environment overrides, read in one place: $BROKER_URL, else the .env vhost/user."""
    url = os.environ.get("BROKER_URL") or broker_url_from_env_file(read_env_file())
    return {"BROKER_URL": url} if url else {}


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read, parse and validate the config file; every problem is one ConfigError."""
    resolved = resolve_config_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{resolved.name}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{resolved}: cannot read config ({exc.strerror}); pass --config PATH or set DTS_CONFIG"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{resolved.name}: YAML syntax error{where}: {problem}") from None
    return parse_config(data, resolved, deployment_env())


# --------------------------------------------------------------------------- pure helpers


def backoff_delay(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number `attempt + 1`: base * 2**attempt, capped at backoff_max.

    With jitter the delay is drawn from [delay/2, delay] ("equal jitter"), so retries of many tasks
    spread out while each delay still grows on average and never drops to zero.
    """
    delay = min(policy.backoff_max, policy.backoff_base * (2**attempt))
    if policy.jitter:
        delay = delay / 2 + rand() * delay / 2
    return delay


def backoff_schedule(policy: RetryPolicy, rand: Callable[[], float] = random.random) -> list[float]:
    return [backoff_delay(n, policy, rand) for n in range(policy.max_retries)]


def route_table(config: Config) -> dict[str, dict[str, str]]:
    return {
        f"celery_app.{spec.name}": {"queue": spec.queue, "routing_key": spec.queue} for spec in config.tasks.values()
    }


def declared_queues(config: Config) -> tuple[Queue, ...]:
    """The one place queues are declared: durable, one direct exchange per queue."""
    return tuple(
        Queue(pool.queue, Exchange(pool.queue, type="direct", durable=True), routing_key=pool.queue, durable=True)
        for pool in config.pools.values()
    )


def worker_nodename(pool: str, index: int) -> str:
    """Celery node name template of worker `index` of a pool; %h is expanded by celery to the host name."""
    return f"{pool}-{index}@%h"


def worker_argv(pool: PoolSpec, nodename: str, prefetch_multiplier: int) -> list[str]:
    """The one worker command line, used by the local pool and by docker-compose.yml."""
    return [
        "celery", "-A", "celery_app", "worker",
        "-Q", pool.queue,
        "-n", nodename,
        "--pool", pool.pool,
        "--concurrency", str(pool.concurrency),
        "--prefetch-multiplier", str(prefetch_multiplier),
        "--without-mingle", "--without-gossip",
        "--loglevel", "INFO",
    ]  # fmt: skip


def pool_of_worker(worker: str) -> str:
    """'worker-a-2@host' or 'worker-a@3f2c1d' -> 'worker-a'."""
    name = worker.split("@", 1)[0]
    head, _, tail = name.rpartition("-")
    return head if tail.isdigit() and head else name


def celery_settings(config: Config) -> dict[str, Any]:
    return {
        "broker_url": config.broker_url,
        "result_backend": "rpc://",
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_queues": declared_queues(config),
        "task_routes": route_table(config),
        "task_default_queue": config.tasks["task_a"].queue,
        "task_create_missing_queues": False,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": config.prefetch_multiplier,
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": config.connect_timeout,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "enable_utc": True,
        "timezone": "UTC",
    }


# --------------------------------------------------------------------------- app

_active: dict[str, Config] = {}


def active_config() -> Config:
    """The config in use: the one a CLI passed to use_config(), else the default file ($DTS_CONFIG)."""
    if "config" not in _active:
        _active["config"] = load_config()
    return _active["config"]


def use_config(config: Config) -> None:
    """Make `config` the one the app and the tasks use (CLIs call this after parsing --config)."""
    _active["config"] = config
    if app.configured:
        app.conf.update(celery_settings(config))


app = Celery("celery_app")
app.add_defaults(lambda: celery_settings(active_config()))


class TransientError(Exception):
    """A failure worth retrying (here: injected by failure_rate / fail_times)."""


def simulate_work(
    spec: TaskSpec,
    attempt: int,
    duration: float | None,
    failure_rate: float | None,
    fail_times: int,
    rand: Callable[[], float] = random.random,
) -> None:
    """The work itself: sleep `duration`, then maybe raise a TransientError."""
    time.sleep(spec.duration if duration is None else duration)
    rate = spec.failure_rate if failure_rate is None else failure_rate
    if attempt < fail_times or (rate > 0 and rand() < rate):
        raise TransientError(f"simulated transient failure in {spec.name} (attempt {attempt + 1})")


def run_task(
    task,
    name: str,
    duration: float | None,
    failure_rate: float | None,
    fail_times: int,
    retry_delays: list[float] | None,
) -> dict[str, Any]:
    """Body shared by task_a and task_b: do the work, retry with backoff, return the result dict."""
    config = active_config()
    spec = config.tasks[name]
    attempt = task.request.retries
    delays = list(retry_delays or [])
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        simulate_work(spec, attempt, duration, failure_rate, fail_times)
    except TransientError as exc:
        if attempt >= config.retry.max_retries:
            raise TransientError(
                f"{exc}; gave up after {attempt + 1} attempts (max_retries={config.retry.max_retries})"
            ) from None
        delay = backoff_delay(attempt, config.retry)
        kwargs = dict(task.request.kwargs or {}, retry_delays=[*delays, round(delay, 4)])
        raise task.retry(exc=exc, countdown=delay, kwargs=kwargs, max_retries=config.retry.max_retries) from None
    finished_at = datetime.now(UTC)
    delivery = task.request.delivery_info or {}
    return {
        "message": spec.message,
        "task": name,
        "task_id": task.request.id,
        "queue": delivery.get("routing_key") or spec.queue,
        "worker": task.request.hostname,
        "retries": attempt,
        "retry_delays": delays,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "execution_time": round(time.perf_counter() - t0, 6),
    }


@app.task(bind=True, name="celery_app.task_a")
def task_a(
    self,
    duration: float | None = None,
    failure_rate: float | None = None,
    fail_times: int = 0,
    retry_delays: list[float] | None = None,
) -> dict[str, Any]:
    return run_task(self, "task_a", duration, failure_rate, fail_times, retry_delays)


@app.task(bind=True, name="celery_app.task_b")
def task_b(
    self,
    duration: float | None = None,
    failure_rate: float | None = None,
    fail_times: int = 0,
    retry_delays: list[float] | None = None,
) -> dict[str, Any]:
    return run_task(self, "task_b", duration, failure_rate, fail_times, retry_delays)


TASKS = {"task_a": task_a, "task_b": task_b}
