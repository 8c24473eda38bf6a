"""test-config.yml → one typed, frozen `Settings`, validated at load time; the only config parser.

    settings = load_settings()                      # --config / $DTS_CONFIG / test-config.yml, + env overrides
    settings.pools["worker-a"].queues               # ('queue_a',)
    settings.pool_for_task("task_b").name           # 'worker-b'

Every problem is one ConfigError (exit 2) that leads with the file, the dotted key and the value:
`test-config.yml: retry.max_retries must be between 0 and 100 (got -1)`. Deployment facts come from the
environment, read in one place (`deployment_env`): $BROKER_URL, else the file named by $BROKER_URL_FILE
(Docker's *_FILE convention: a swarm secret), else the vhost/user in `.env`.

Input is bounded before it is trusted (README, "Input bounds"): a config file is at most MAX_CONFIG_BYTES
(checked with stat, then read with a bounded read); its YAML may not use anchors or aliases (`&x`, `*x`:
no billion-laughs expansion), nor hold more than MAX_YAML_NODES nodes or nest deeper than MAX_YAML_DEPTH;
a URL is at most MAX_URL_CHARS. Values in messages are cut to a short excerpt.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import reprlib
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.resolver import Resolver

from dts.errors import ConfigError, excerpt

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_DIR / "test-config.yml"
ENV_FILE = PROJECT_DIR / ".env"
RUN_DIR = Path(os.environ.get("DTS_RUN_DIR") or PROJECT_DIR / ".run")  # local workers' pid/log files, rendered files
# The task routing defaults: the tasks are code (celery_app.py); where each is routed is config.
DEFAULT_ROUTES = {"task_a": "queue_a", "task_b": "queue_b"}
ENGINES = ("auto", "compose", "local", "swarm")  # auto never picks swarm: it is asked for by name
EXECUTION_POOLS = ("prefork", "threads", "solo")
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp")
QUEUE_TYPES = ("classic", "quorum")  # RabbitMQ's x-queue-type of the work and dead-letter queues
POOL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")  # a compose service, a Celery node name and a file name
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
MAX_POOLS = 20
# Input bounds (README, "Input bounds"): what a config file, its YAML and a URL may be at most.
MAX_CONFIG_BYTES = 1024 * 1024  # the shipped file is ~4 KB
MAX_ENV_FILE_BYTES = 64 * 1024  # .env: a few KEY=VALUE lines
MAX_YAML_NODES = 10_000  # scalars + mappings + sequences (the shipped file has ~100)
MAX_YAML_DEPTH = 20  # nesting levels (the shipped file has 5)
MAX_INT_DIGITS = 30  # a longer integer is a typo, and int() of a huge one is slow
MAX_URL_CHARS = 1024
ROOT_KEYS = ("name", "broker", "pools", "tasks", "retry", "engine", "dispatch", "load_test", "monitoring", "autoscale")


@dataclass(frozen=True)
class BrokerTLS:
    """TLS to the broker (`broker.tls`): the CA that signed the broker's certificate, an optional client
    certificate and key, and the name the broker's certificate must carry (default: the URL's host)."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    server_hostname: str | None = None  # None: the broker URL's host


@dataclass(frozen=True)
class BrokerSettings:
    url: str = "amqp://guest:guest@localhost:5672//"
    connect_timeout: float = 5.0
    queue_type: str = "classic"  # classic | quorum (replicated across a cluster's nodes): dts.routing
    delivery_limit: int = 5  # quorum only: a message redelivered more often than this is dead-lettered
    tls: BrokerTLS | None = None  # None: plain AMQP (refused for an amqps:// URL)


@dataclass(frozen=True)
class TaskSettings:
    name: str
    queue: str
    duration: float = 0.0  # seconds of simulated work per attempt
    failure_rate: float = 0.0  # probability that an attempt raises a transient error
    soft_time_limit: float = 0.0  # seconds; SoftTimeLimitExceeded inside the task (fails, not retried); 0 = none
    time_limit: float = 0.0  # seconds; the worker kills the process running the task (prefork only); 0 = none


@dataclass(frozen=True)
class PoolAutoscale:
    """A pool's autoscaling range (`pools.<name>.autoscale`): `scale.py auto` keeps its replicas within
    min..max, aiming at `target` ready messages per replica."""

    min: int = 1
    max: int = 10  # default: engine.max_replicas
    target: int = 20  # ready messages per replica


@dataclass(frozen=True)
class PoolSettings:
    """A pool: a named group of identical workers serving its queues."""

    name: str
    queues: tuple[str, ...]
    replicas: int = 1  # workers started by `make up`
    concurrency: int = 1  # execution slots per worker (--concurrency)
    execution_pool: str = "prefork"  # Celery's --pool
    prefetch_multiplier: int = 1
    autoscale: PoolAutoscale | None = None  # None: `scale.py auto` leaves this pool alone


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    jitter: bool = True


@dataclass(frozen=True)
class EngineSettings:
    name: str = "auto"  # where the workers run: auto | compose | local | swarm
    stop_timeout: float = 60.0  # warm shutdown bound, used by every engine
    start_timeout: float = 60.0
    max_replicas: int = 10
    health_interval: float = 60.0  # seconds between a worker container's health checks (swarm stack)


@dataclass(frozen=True)
class DispatchSettings:
    timeout: float = 60.0


@dataclass(frozen=True)
class LoadTestSettings:
    timeout: float = 300.0
    min_efficiency: float = 0.0  # 0 = no threshold
    max_p95: float = 0.0  # seconds; 0 = no threshold


@dataclass(frozen=True)
class MonitoringSettings:
    task_events: bool = True  # workers send task events, clients send task-sent events (live view, Flower)


@dataclass(frozen=True)
class AutoscaleSettings:
    """The autoscaler's loop (`autoscale:`): how often it looks, how long it waits before a scale-down."""

    interval: float = 2.0  # seconds between two looks at the queues
    cooldown: float = 30.0  # seconds after a pool's last change before it may shrink


@dataclass(frozen=True)
class Settings:
    path: Path
    name: str
    broker: BrokerSettings
    tasks: dict[str, TaskSettings]
    pools: dict[str, PoolSettings]
    retry: RetryPolicy
    engine: EngineSettings
    dispatch: DispatchSettings
    load_test: LoadTestSettings
    monitoring: MonitoringSettings = MonitoringSettings()
    autoscale: AutoscaleSettings = AutoscaleSettings()

    def pool_for_queue(self, queue: str) -> PoolSettings:
        return next(p for p in self.pools.values() if queue in p.queues)

    def pool_for_task(self, task: str) -> PoolSettings:
        return self.pool_for_queue(self.tasks[task].queue)

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue a pool serves, in declaration order: the queues the app declares."""
        return tuple(q for p in self.pools.values() for q in p.queues)

    def with_broker_url(self, url: str) -> Settings:
        return replace(self, broker=replace(self.broker, url=url))


# --------------------------------------------------------------------------- reading one mapping

_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false"}


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 64, 64
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8


def _shown(value: Any) -> str:
    """A value for an error message, cut short: a message is one line, whatever the input. Bounded work too:
    reprlib looks at a few items and levels, never the whole of a huge value."""
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _rule(path: Path, key: str, value: Any, rule: str) -> ConfigError:
    key = key if len(key) <= 80 else key[:77] + "..."
    return ConfigError(f"{path.name}: {key} {rule} (got {_shown(value)})")


class _Section:
    """One mapping of the YAML document: typed, range-checked reads, and its unknown keys."""

    def __init__(self, path: Path, prefix: str, data: Any):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _rule(path, prefix or "the document", data, "must be a mapping")
        self.path, self.prefix, self.data, self.seen = path, prefix, data, set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, value: Any, rule: str) -> ConfigError:
        return _rule(self.path, self.key(name), value, rule)

    def get(self, name: str, kind: type | tuple, default: Any) -> Any:
        self.seen.add(name)
        value = self.data.get(name, default)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.fail(name, value, "must be " + ("a number" if float in kinds else _TYPE_NAMES[kinds[0]]))
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.fail(name, value, f"must be one of {', '.join(choices)}")
        return value

    def number(self, name: str, default: float, lo: float = 0.0, hi: float = 86400) -> float:
        value = self.get(name, (int, float), default)
        if not math.isfinite(value):
            raise self.fail(name, value, "must be a finite number")
        if not lo <= value <= hi:
            raise self.fail(name, value, f"must be between {lo:g} and {hi:g}")
        return float(value)

    def integer(self, name: str, default: int, lo: int = 0, hi: int = 1000) -> int:
        value = self.get(name, int, default)
        if not lo <= value <= hi:
            raise self.fail(name, value, f"must be between {lo} and {hi}")
        return value

    def section(self, name: str) -> _Section:
        self.seen.add(name)
        return _Section(self.path, self.key(name), self.data.get(name))

    def items(self) -> list[tuple[str, Any]]:
        """Every (key, value) of a free-form mapping (pools, tasks), all keys seen."""
        self.seen.update(self.data)
        return list(self.data.items())

    def done(self) -> None:
        unknown = sorted((k for k in self.data if k not in self.seen), key=str)
        if unknown:
            known = ", ".join(sorted(self.seen)) or "none"
            raise self.fail(str(unknown[0]), self.data[unknown[0]], f"is not a known key (known: {known})")


# --------------------------------------------------------------------------- sections


def _broker(sec: _Section, env: dict[str, str]) -> BrokerSettings:
    url = sec.get("url", str, BrokerSettings.url)
    _check_amqp_url(sec.path, "broker.url", url)
    source = "broker.url"
    if "BROKER_URL" in env:
        url = env["BROKER_URL"]
        source = env.get("BROKER_URL_SOURCE", "$BROKER_URL")
        _check_amqp_url(sec.path, source, url)
    queue_type = sec.choice("queue_type", QUEUE_TYPES, BrokerSettings.queue_type)
    limit = sec.integer("delivery_limit", BrokerSettings.delivery_limit, lo=1, hi=1000)
    if queue_type != "quorum" and "delivery_limit" in sec.data:
        raise sec.fail(
            "delivery_limit", limit, "applies to quorum queues only: set broker.queue_type: quorum or drop it"
        )
    tls = _broker_tls(sec, env)
    if tls is None and url.startswith("amqps://"):
        raise ConfigError(f"{sec.path.name}: {source} is an amqps:// URL but broker.tls.ca_file is not set: add "
                          "broker.tls: {ca_file: PATH} naming the CA that signed the broker's certificate")  # fmt: skip
    settings = BrokerSettings(url=url, connect_timeout=sec.number("connect_timeout", 5.0, lo=0.1, hi=60),
                              queue_type=queue_type, delivery_limit=limit, tls=tls)  # fmt: skip
    sec.done()
    return settings


# $BROKER_TLS_<KEY> overrides broker.tls.<key>: where a container finds the files mounted into it
TLS_FILE_KEYS = ("ca_file", "cert_file", "key_file")
TLS_ENV = {key: f"BROKER_TLS_{key.upper()}" for key in TLS_FILE_KEYS}


def _tls_file(sec: _Section, key: str, env: dict[str, str]) -> str | None:
    """A file of broker.tls (or the $BROKER_TLS_* that overrides it): it must exist and be readable now,
    not at the first connection (exit 2 naming the key and the file)."""
    value, source = _optional_str(sec, key), sec.key(key)
    if TLS_ENV[key] in env:
        value, source = env[TLS_ENV[key]], "$" + TLS_ENV[key]
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (sec.path.parent / path).resolve()  # relative to the config file, like any path in it
    if not path.is_file():
        raise ConfigError(f"{sec.path.name}: {source} names {_shown_path(path)}, which is not a file: "
                          "give the path of a PEM file")  # fmt: skip
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigError(f"{sec.path.name}: {source} names {_shown_path(path)}, which cannot be read "
                          f"({exc.strerror or exc}): fix its permissions") from None  # fmt: skip
    return str(path)


def _optional_str(sec: _Section, key: str) -> str | None:
    sec.seen.add(key)
    return None if sec.data.get(key) is None else sec.get(key, str, None)


def _broker_tls(parent: _Section, env: dict[str, str]) -> BrokerTLS | None:
    """`broker.tls`: absent (or null) = plain AMQP; else ca_file is required, cert_file and key_file go together."""
    present = parent.data.get("tls") is not None or any(name in env for name in TLS_ENV.values())
    sec = parent.section("tls")
    if not present:
        return None
    files = {key: _tls_file(sec, key, env) for key in TLS_FILE_KEYS}
    if files["ca_file"] is None:
        raise sec.fail("ca_file", None, "is required: the PEM file of the CA that signed the broker's certificate")
    if (files["cert_file"] is None) != (files["key_file"] is None):
        given, missing = ("cert_file", "key_file") if files["cert_file"] else ("key_file", "cert_file")
        raise sec.fail(missing, None, f"is required with {sec.key(given)}: a client certificate needs its key")
    hostname = _optional_str(sec, "server_hostname")
    if hostname is not None and not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", hostname):
        raise sec.fail("server_hostname", hostname, "must be a host name or IP address (letters, digits, .:-)")
    sec.done()
    return BrokerTLS(**files, server_hostname=hostname)


def _check_amqp_url(path: Path, source: str, url: str) -> None:
    """An AMQP URL of at most MAX_URL_CHARS, without spaces or control characters, with a numeric port if
    any. A message never shows the URL itself past its scheme: it may hold a password."""
    if len(url) > MAX_URL_CHARS:
        raise ConfigError(f"{path.name}: {source} is {len(url)} characters long; an AMQP URL has at most "
                          f"{MAX_URL_CHARS} (starts {excerpt(url, 20)})")  # fmt: skip
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        raise ConfigError(
            f"{path.name}: {source} must be an AMQP URL like amqp://user:password@host:5672/vhost "
            f"(got {'scheme ' + _shown(scheme) if scheme else _shown(url[:20])}); this project needs RabbitMQ"
        )
    bad = next((c for c in url if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        raise ConfigError(f"{path.name}: {source} has a space or control character ({bad!r} at position "
                          f"{url.index(bad)}): percent-encode it (%20) or remove it")  # fmt: skip
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError on a port that is not a number in 0..65535
    except ValueError as exc:
        raise ConfigError(f"{path.name}: {source} has a bad port ({exc}): use host:5672") from None


def _tasks(sec: _Section) -> dict[str, TaskSettings]:
    tasks = {}
    for name, default_queue in DEFAULT_ROUTES.items():
        task = sec.section(name)
        queue = task.get("queue", str, default_queue)
        soft, hard = task.number("soft_time_limit", 0.0), task.number("time_limit", 0.0)
        if soft and hard and hard <= soft:
            raise task.fail("time_limit", hard, f"must exceed {task.key('soft_time_limit')} ({soft:g}), or be 0 (none)")
        tasks[name] = TaskSettings(
            name=name,
            queue=queue,
            duration=task.number("duration", 0.0, hi=3600),
            failure_rate=task.number("failure_rate", 0.0, hi=1.0),
            soft_time_limit=soft,
            time_limit=hard,
        )
        task.done()
    sec.done()
    return tasks


def _queues(sec: _Section) -> tuple[str, ...]:
    value = sec.get("queues", (list, str), None) if "queues" in sec.data else None
    if value is None:
        raise sec.fail("queues", None, "is required: the queue(s) this pool consumes, e.g. [queue_a]")
    queues = (value,) if isinstance(value, str) else tuple(value)
    if not queues or len(queues) > 20:
        raise sec.fail("queues", value, "must list 1 to 20 queue names")
    for queue in queues:
        if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
            raise sec.fail("queues", queue, "must hold queue names of letters, digits and _.:- (at most 100)")
    return queues


def _pool_autoscale(parent: _Section, max_replicas: int) -> PoolAutoscale | None:
    """`autoscale:` of a pool: absent (or null) = not autoscaled; `{}` = every default."""
    present = parent.data.get("autoscale") is not None
    sec = parent.section("autoscale")
    if not present:
        return None
    low = sec.integer("min", 1, lo=0, hi=max_replicas)
    high = sec.integer("max", max_replicas, lo=1, hi=max_replicas)
    if low > high:
        raise sec.fail("min", low, f"must be <= {sec.key('max')} ({high})")
    scale = PoolAutoscale(min=low, max=high, target=sec.integer("target", 20, lo=1, hi=1_000_000))
    sec.done()
    return scale


def _pool(sec: _Section, name: str, max_replicas: int) -> PoolSettings:
    pool = PoolSettings(
        name=name,
        queues=_queues(sec),
        replicas=sec.integer("replicas", 1, lo=0, hi=max_replicas),
        concurrency=sec.integer("concurrency", 1, lo=1, hi=256),
        execution_pool=sec.choice("execution_pool", EXECUTION_POOLS, "prefork"),
        prefetch_multiplier=sec.integer("prefetch_multiplier", 1, lo=1, hi=1000),
        autoscale=_pool_autoscale(sec, max_replicas),
    )
    sec.done()
    return pool


def _pools(parent: _Section, max_replicas: int) -> dict[str, PoolSettings]:
    if "pools" not in parent.data:
        raise parent.fail("pools", None, "is required: declare each pool's queues, e.g. worker-a: {queues: [queue_a]}")
    sec = parent.section("pools")
    entries = sec.items()
    if not 1 <= len(entries) <= MAX_POOLS:
        raise parent.fail("pools", sec.data, f"must declare 1 to {MAX_POOLS} pools")
    pools = {}
    for name, data in entries:
        if not isinstance(name, str) or not POOL_NAME.fullmatch(name):
            raise sec.fail(str(name), name, "must be a lower-case name of letters, digits and dashes (e.g. worker-a)")
        pools[name] = _pool(_Section(sec.path, sec.key(str(name)), data), name, max_replicas)
    owner: dict[str, str] = {}
    for pool in pools.values():
        for queue in pool.queues:
            if owner.get(queue) == pool.name:
                raise sec.fail(f"{pool.name}.queues", queue, "is listed twice")
            if queue in owner:
                raise sec.fail(f"{pool.name}.queues", queue, f"is already served by pool {owner[queue]}: "
                               "a queue belongs to one pool")  # fmt: skip
            owner[queue] = pool.name
    return pools


def _engine(sec: _Section) -> EngineSettings:
    settings = EngineSettings(
        name=sec.choice("name", ENGINES, "auto"),
        stop_timeout=sec.number("stop_timeout", 60.0, lo=1, hi=3600),
        start_timeout=sec.number("start_timeout", 60.0, lo=1, hi=3600),
        max_replicas=sec.integer("max_replicas", 10, lo=1, hi=1000),
        health_interval=sec.number("health_interval", 60.0, lo=1, hi=3600),
    )
    sec.done()
    return settings


def _check_routes(path: Path, tasks: dict[str, TaskSettings], pools: dict[str, PoolSettings]) -> None:
    served = [q for p in pools.values() for q in p.queues]
    for task in tasks.values():
        if task.queue not in served:
            raise _rule(path, f"tasks.{task.name}.queue", task.queue, f"must be a pool's queue ({', '.join(served)})")
    first, *others = tasks.values()
    for task in others:
        if task.queue == first.queue:
            raise _rule(path, f"tasks.{task.name}.queue", task.queue, f"must differ from {first.name}'s queue")


def parse_settings(data: Any, path: Path, env: dict[str, str] | None = None) -> Settings:
    """Validate a parsed YAML document into Settings (pure: no file or environment access)."""
    env = env or {}
    if data is None:
        raise ConfigError(f"{path.name}: the file is empty; start from the project's test-config.yml")
    root = _Section(path, "", data)
    root.seen.update(ROOT_KEYS)
    root.done()  # a misspelt section is reported first, not as the problem it causes elsewhere
    engine = _engine(root.section("engine"))
    pools = _pools(root, engine.max_replicas)
    tasks = _tasks(root.section("tasks"))
    _check_routes(path, tasks, pools)
    retry_sec, dispatch_sec, load_sec = root.section("retry"), root.section("dispatch"), root.section("load_test")
    monitoring_sec, autoscale_sec = root.section("monitoring"), root.section("autoscale")
    settings = Settings(
        path=path,
        name=root.get("name", str, "Distributed test"),
        broker=_broker(root.section("broker"), env),
        tasks=tasks,
        pools=pools,
        retry=RetryPolicy(
            max_retries=retry_sec.integer("max_retries", 3, lo=0, hi=100),
            backoff_base=retry_sec.number("backoff_base", 1.0, hi=3600),
            backoff_max=retry_sec.number("backoff_max", 30.0),
            jitter=retry_sec.get("jitter", bool, True),
        ),
        engine=engine,
        dispatch=DispatchSettings(timeout=dispatch_sec.number("timeout", 60.0, lo=0.1)),
        load_test=LoadTestSettings(
            timeout=load_sec.number("timeout", 300.0, lo=1),
            min_efficiency=load_sec.number("min_efficiency", 0.0, hi=1.0),
            max_p95=load_sec.number("max_p95", 0.0),
        ),
        monitoring=MonitoringSettings(task_events=monitoring_sec.get("task_events", bool, True)),
        autoscale=AutoscaleSettings(
            interval=autoscale_sec.number("interval", 2.0, lo=0.1, hi=60),
            cooldown=autoscale_sec.number("cooldown", 30.0, hi=3600),
        ),
    )
    misplaced = next((k for k in ("min", "max", "target") if k in autoscale_sec.data), None)
    if misplaced:  # a pool's key written in the loop's section
        raise autoscale_sec.fail(misplaced, autoscale_sec.data[misplaced], "is not a known key (known: cooldown, "
                                 "interval); a pool's range goes in pools.NAME.autoscale")  # fmt: skip
    for sec in (retry_sec, dispatch_sec, load_sec, monitoring_sec, autoscale_sec, root):
        sec.done()
    return settings


# --------------------------------------------------------------------------- bounded YAML


class _BoundedComposer(Composer):
    """PyYAML's composer, refusing what makes a small file expensive: any anchor or alias (a few hundred
    bytes of nested aliases expand into gigabytes), more than MAX_YAML_NODES nodes, nesting deeper than
    MAX_YAML_DEPTH (the recursion would overflow the stack). It reads events one by one, so it stops at
    the first offending one: refusal costs what the file's start costs, never the whole expansion."""

    def __init__(self) -> None:
        Composer.__init__(self)
        self.nodes = self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            raise ComposerError(None, None, "YAML anchors and aliases (&name, *name) are not supported: write the "
                                "value out in full", event.start_mark)  # fmt: skip
        self.nodes += 1
        if self.nodes > MAX_YAML_NODES:
            raise ComposerError(None, None, f"more than {MAX_YAML_NODES} YAML values: this is not a config file",
                                event.start_mark)  # fmt: skip
        if isinstance(event, CollectionStartEvent) and self.depth >= MAX_YAML_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        self.depth += 1
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1


class _BoundedConstructor(SafeConstructor):
    def construct_bounded_int(self, node):
        if len(node.value) > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"an integer of more than {MAX_INT_DIGITS} digits", node.start_mark)
        return self.construct_yaml_int(node)


_BoundedConstructor.add_constructor("tag:yaml.org,2002:int", _BoundedConstructor.construct_bounded_int)

if yaml.__with_libyaml__:  # libyaml scans and parses (fast, in C); the bounded composer builds the nodes
    from yaml._yaml import CParser

    class _Loader(_BoundedComposer, CParser, _BoundedConstructor, Resolver):
        def __init__(self, stream):
            CParser.__init__(self, stream)
            _BoundedConstructor.__init__(self)
            Resolver.__init__(self)
            _BoundedComposer.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml: the pure-Python scanner and parser
    from yaml.parser import Parser as _Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, _Parser, _BoundedComposer, _BoundedConstructor, Resolver):
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _Parser.__init__(self)
            _BoundedComposer.__init__(self)
            _BoundedConstructor.__init__(self)
            Resolver.__init__(self)


def parse_yaml(text: str, path: Path) -> Any:
    """One YAML document, within the bounds above (safe types only); ConfigError naming the line otherwise."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        problem = f"{context}, {problem}" if context and mark else problem
        problem = problem if len(problem) <= 120 else problem[:117] + "..."
        kind = "refused" if isinstance(exc, (ComposerError, ConstructorError)) else "syntax error"
        raise ConfigError(f"{path.name}: YAML {kind}{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:  # a value the safe constructors reject (defence in depth)
        raise ConfigError(f"{path.name}: YAML value not supported ({type(exc).__name__}: "
                          f"{str(exc)[:80]})") from None  # fmt: skip
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- files and environment


def checkout_name() -> str:
    """'dts-<8 hex>': this checkout's RabbitMQ vhost/user and compose project name. Derived from the
    project directory, so two checkouts on one host never share queues, credentials or containers."""
    return "dts-" + hashlib.sha1(str(PROJECT_DIR).encode()).hexdigest()[:8]


def results_dir() -> Path:
    """Where result files go: $DTS_RESULTS_DIR, else the project's results/ (git-ignored)."""
    return Path(os.environ.get("DTS_RESULTS_DIR") or PROJECT_DIR / "results")


def resolve_config_path(path: str | os.PathLike | None) -> Path:
    """`--config` or $DTS_CONFIG or the project's test-config.yml. A relative path is relative to the
    project directory, not the current one, so every CLI and worker finds the same file wherever it runs."""
    raw = path or os.environ.get("DTS_CONFIG")
    if not raw:
        return DEFAULT_CONFIG
    return (PROJECT_DIR / Path(raw).expanduser()).resolve()


def _shown_path(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 100 else text[:40] + "..." + text[-57:]


def read_bounded(path: Path, limit: int, what: str, hint: str) -> str:
    """A file's text, read only if it is a regular file of at most `limit` bytes of UTF-8 (checked with stat
    first, then a bounded read: a FIFO, /dev/zero or a growing file cannot make this block or fill memory).
    Every problem is one ConfigError naming the file, `what` it should be and `hint` (the fix)."""
    shown = _shown_path(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{shown} is a directory, not a {what}; {hint}")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{shown} is not a regular file: cannot read {what}; {hint}")
        if info.st_size > limit:
            raise ConfigError(f"{shown} is {info.st_size} bytes: a {what} has at most {limit}; {hint}")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read {what} ({exc.strerror or exc}); {hint}") from None
    if len(data) > limit:
        raise ConfigError(f"{shown} is over {limit} bytes: a {what} has at most {limit}; {hint}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """KEY=VALUE lines of the git-ignored .env written by `make broker` (missing file: empty)."""
    if not os.path.lexists(path):
        return {}
    lines = read_bounded(
        path, MAX_ENV_FILE_BYTES, "env file", "it holds KEY=VALUE lines (`make broker` writes it)"
    ).splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip().strip("'\"") for k, v in pairs}


def broker_url_from_env_file(values: dict[str, str], host: str = "localhost", tls: bool = False) -> str | None:
    """The broker URL for the dedicated vhost/user in .env, if .env defines one; with `tls`, the amqps:// URL
    of the broker's TLS listener ($DTS_BROKER_TLS_PORT, default 5671): what containers use when broker.tls is set."""
    try:
        user, password, vhost = values["DTS_BROKER_USER"], values["DTS_BROKER_PASSWORD"], values["DTS_BROKER_VHOST"]
    except KeyError:
        return None
    scheme, port = (
        ("amqps", values.get("DTS_BROKER_TLS_PORT", "5671")) if tls else ("amqp", values.get("DTS_BROKER_PORT", "5672"))
    )
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(vhost, safe='')}"


def read_broker_url_file(path: str) -> str:
    """The broker URL in the file $BROKER_URL_FILE names (a Docker secret: /run/secrets/...), without the
    surrounding whitespace; ConfigError naming the file when it cannot be read or holds no URL."""
    hint = "$BROKER_URL_FILE must name a readable file holding one amqp://user:password@host:5672/vhost URL"
    if not path.strip():
        raise ConfigError("$BROKER_URL_FILE is set but empty: unset it or name a file holding the broker URL")
    url = read_bounded(Path(path), MAX_URL_CHARS + 2, "broker URL file", hint).strip()
    if not url:
        raise ConfigError(f"{_shown_path(Path(path))} (from $BROKER_URL_FILE) is empty; {hint}")
    return url


def deployment_env(environ: dict[str, str] | None = None, env_file: Path = ENV_FILE) -> dict[str, str]:
    """The environment overrides, read in one place. Precedence: $BROKER_URL (set but empty is an error),
    else the file $BROKER_URL_FILE names (unreadable: an error), else the .env vhost/user, else the config.
    $BROKER_TLS_CA_FILE / _CERT_FILE / _KEY_FILE override broker.tls's files (where an engine mounted them)."""
    environ = os.environ if environ is None else environ
    tls = {name: environ[name] for name in TLS_ENV.values() if name in environ}  # files mounted into a container
    return {**tls, **_broker_url_env(environ, env_file)}


def _broker_url_env(environ, env_file: Path) -> dict[str, str]:
    if "BROKER_URL" in environ:
        if not environ["BROKER_URL"].strip():
            raise ConfigError("$BROKER_URL is set but empty: unset it or give amqp://user:password@host:5672/vhost")
        return {"BROKER_URL": environ["BROKER_URL"]}
    if "BROKER_URL_FILE" in environ:
        url = read_broker_url_file(environ["BROKER_URL_FILE"])
        return {"BROKER_URL": url, "BROKER_URL_SOURCE": "the URL in $BROKER_URL_FILE"}
    url = broker_url_from_env_file(read_env_file(env_file))
    return {"BROKER_URL": url} if url else {}


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Read, parse and validate the config file; every problem is one ConfigError."""
    resolved = resolve_config_path(path)
    text = read_bounded(resolved, MAX_CONFIG_BYTES, "config", "pass --config PATH or set DTS_CONFIG")
    return parse_settings(parse_yaml(text, resolved), resolved, deployment_env())
