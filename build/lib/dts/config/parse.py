"""A parsed YAML document → `Settings`, every rule read from the declaration (dts.config.schema).

    settings = parse_settings({"pools": {"w": {"queues": ["queue_a", "queue_b"]}}}, Path("test-config.yml"))
    settings.engine.stop_timeout                    # 60.0: EngineSettings' declared default

Pure: no file or environment access (the environment's overrides come in as a dict). A key's type,
default, bounds and choices are its declaration's; what is written here is only what one key cannot say
alone (a URL's form, TLS files, min <= max, routes). Every problem is one ConfigError that leads with the
file, the dotted key and the value: `test-config.yml: retry.max_retries must be between 0 and 100 (got -1)`.
"""

from __future__ import annotations

import math
import reprlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dts.config import schema
from dts.config.env import TLS_ENV, TLS_FILE_KEYS
from dts.config.schema import (
    BROKER_SCHEMES,
    MAX_BROKER_URLS,
    MAX_URL_CHARS,
    URL_SEPARATOR,
    AutoscaleSettings,
    BrokerSettings,
    BrokerTLS,
    DispatchSettings,
    EngineSettings,
    LoadTestSettings,
    MonitoringSettings,
    PoolAutoscale,
    PoolSettings,
    Ref,
    RetryPolicy,
    Settings,
    TaskSettings,
)
from dts.config.yamlfile import shown_path
from dts.errors import ConfigError, excerpt

ROOT_KEYS = schema.names(Settings)

_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false", list: "a list"}


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
    """One mapping of the YAML document and the settings class that declares its keys (for a mapping of
    entries, like pools, the entries' class): typed, range-checked reads, and its unknown keys. `facts`
    resolve the declaration's Refs (engine.max_replicas, a task's route)."""

    def __init__(self, path: Path, prefix: str, data: Any, schema_: type, facts: dict[str, Any] | None = None):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _rule(path, prefix or "the document", data, "must be a mapping")
        self.path, self.prefix, self.data, self.seen = path, prefix, data, set()
        self.schema, self.facts = schema_, facts or {}

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, value: Any, rule: str) -> ConfigError:
        return _rule(self.path, self.key(name), value, rule)

    def resolve(self, value: Any) -> Any:
        return self.facts[value.name] if isinstance(value, Ref) else value

    def rule(self, name: str) -> schema.Rule:
        return schema.rule(self.schema, name)

    def typed(self, name: str, value: Any, kind: type | tuple) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.fail(name, value, "must be " + ("a number" if float in kinds else _TYPE_NAMES[kinds[0]]))
        return value

    def get(self, name: str, kind: type | tuple, default: Any) -> Any:
        self.seen.add(name)
        return self.typed(name, self.data.get(name, default), kind)

    def value(self, name: str) -> Any:
        """A scalar key, read by its declaration: its type, default (or the fact it follows), bounds, choices."""
        kind, default, rule = schema.declared(self.schema, name)
        default = self.resolve(rule.follows or default)
        choices = rule.allowed()
        if choices:
            value = self.get(name, str, default)
            if value not in choices:
                raise self.fail(name, value, f"must be one of {', '.join(choices)}")
            return value
        lo, hi = self.resolve(rule.min), self.resolve(rule.max)
        if kind is float:
            value = self.get(name, (int, float), default)
            if not math.isfinite(value):
                raise self.fail(name, value, "must be a finite number")
            if not lo <= value <= hi:
                raise self.fail(name, value, f"must be between {lo:g} and {hi:g}")
            return float(value)
        value = self.get(name, kind, default)
        if kind is int and not lo <= value <= hi:
            raise self.fail(name, value, f"must be between {lo} and {hi}")
        return value

    def values(self) -> dict[str, Any]:
        """Every scalar key of the section's class, in declaration order: the keyword arguments to build it."""
        return {
            n: self.value(n) for n in schema.names(self.schema) if schema.is_scalar(schema.declared(self.schema, n)[0])
        }

    def section(self, name: str, facts: dict[str, Any] | None = None) -> _Section:
        """The declared section `name` (for a mapping of entries, its entries' class reads them)."""
        sub = schema.section_of(schema.declared(self.schema, name)[0])
        return self._sub(name, sub, facts)

    def entry(self, name: str, facts: dict[str, Any] | None = None) -> _Section:
        """An entry of this mapping of entries (a pool, a task), read by the entries' class."""
        return self._sub(name, self.schema, facts)

    def _sub(self, name: str, sub: type, facts: dict[str, Any] | None) -> _Section:
        self.seen.add(name)
        return _Section(self.path, self.key(str(name)), self.data.get(name), sub, {**self.facts, **(facts or {})})

    def items(self) -> list[tuple[str, Any]]:
        """Every (key, value) of a free-form mapping (pools), all keys seen."""
        self.seen.update(self.data)
        return list(self.data.items())

    def done(self) -> None:
        unknown = sorted((k for k in self.data if k not in self.seen), key=str)
        if unknown:
            known = ", ".join(sorted(self.seen)) or "none"
            raise self.fail(str(unknown[0]), self.data[unknown[0]], f"is not a known key (known: {known})")


# --------------------------------------------------------------------------- sections


def _broker(sec: _Section, env: dict[str, str]) -> BrokerSettings:
    url = sec.value("url")
    _check_amqp_url(sec.path, "broker.url", url)
    source = "broker.url"
    if "BROKER_URL" in env:
        url = env["BROKER_URL"]
        source = env.get("BROKER_URL_SOURCE", "$BROKER_URL")
        _check_amqp_url(sec.path, source, url)
    queue_type = sec.value("queue_type")
    limit = sec.value("delivery_limit")
    if queue_type == "classic" and "delivery_limit" in sec.data:
        raise sec.fail(
            "delivery_limit", limit, "applies to quorum queues only: set broker.queue_type: quorum (or auto) or drop it"
        )
    tls = _broker_tls(sec, env)
    if tls is None and url.startswith("amqps://"):
        raise ConfigError(
            f"{sec.path.name}: {source} is an amqps:// URL but broker.tls.ca_file is not set: add "
            "broker.tls: {ca_file: PATH} naming the CA that signed the broker's certificate"
        )
    settings = BrokerSettings(
        url=url,
        connect_timeout=sec.value("connect_timeout"),
        heartbeat=sec.value("heartbeat"),
        queue_type=queue_type,
        delivery_limit=limit,
        tls=tls,
    )
    sec.done()
    return settings


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
        raise ConfigError(
            f"{sec.path.name}: {source} names {shown_path(path)}, which is not a file: give the path of a PEM file"
        )
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigError(
            f"{sec.path.name}: {source} names {shown_path(path)}, which cannot be read "
            f"({exc.strerror or exc}): fix its permissions"
        ) from None
    return str(path)


def _optional_str(sec: _Section, key: str) -> str | None:
    """A string of broker.tls, where null is the same as absent."""
    sec.seen.add(key)
    value = sec.data.get(key)
    return None if value is None else sec.typed(key, value, str)


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
    if hostname is not None and not sec.rule("server_hostname").pattern.fullmatch(hostname):
        raise sec.fail("server_hostname", hostname, "must be a host name or IP address (letters, digits, .:-)")
    sec.done()
    return BrokerTLS(**files, server_hostname=hostname)


def broker_urls(url: str) -> list[str]:
    """The failover URLs of a broker URL setting: `amqp://a//;amqp://b//` is two (kombu tries them in turn)."""
    return url.split(URL_SEPARATOR)


def _check_amqp_url(path: Path, source: str, url: str) -> None:
    """One AMQP URL, or up to MAX_BROKER_URLS of them separated by `;` (the nodes of one cluster, tried in
    turn), each checked alone and all with one scheme."""
    if URL_SEPARATOR not in url:
        return _check_one_url(path, source, url)
    if len(url) > MAX_URL_CHARS * MAX_BROKER_URLS:
        raise ConfigError(
            f"{path.name}: {source} is {len(url)} characters long; at most {MAX_BROKER_URLS} URLs of "
            f"{MAX_URL_CHARS} characters each (starts {excerpt(url, 20)})"
        )
    urls = broker_urls(url)
    if len(urls) > MAX_BROKER_URLS:
        raise ConfigError(
            f"{path.name}: {source} lists {len(urls)} URLs; at most {MAX_BROKER_URLS} (the nodes of one cluster)"
        )
    for number, each in enumerate(urls, 1):
        if not each.strip():
            raise ConfigError(
                f"{path.name}: {source} has an empty URL at position {number} of {len(urls)}: separate the "
                "nodes' URLs with one ';' and no space"
            )
        _check_one_url(path, f"{source} (URL {number} of {len(urls)})", each)
    schemes = sorted({each.split("://", 1)[0] for each in urls})
    if len({"amqps" if s == "amqps" else "amqp" for s in schemes}) > 1:
        raise ConfigError(
            f"{path.name}: {source} mixes {' and '.join(schemes)} URLs: the nodes of one cluster are all "
            "amqps:// (TLS) or all amqp://"
        )


def _check_one_url(path: Path, source: str, url: str) -> None:
    """An AMQP URL of at most MAX_URL_CHARS, without spaces or control characters, with a numeric port if
    any. A message never shows the URL itself past its scheme: it may hold a password."""
    if len(url) > MAX_URL_CHARS:
        raise ConfigError(
            f"{path.name}: {source} is {len(url)} characters long; an AMQP URL has at most "
            f"{MAX_URL_CHARS} (starts {excerpt(url, 20)})"
        )
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        raise ConfigError(
            f"{path.name}: {source} must be an AMQP URL like amqp://user:password@host:5672/vhost "
            f"(got {'scheme ' + _shown(scheme) if scheme else _shown(url[:20])}); this project needs RabbitMQ"
        )
    bad = next((c for c in url if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        raise ConfigError(
            f"{path.name}: {source} has a space or control character ({bad!r} at position "
            f"{url.index(bad)}): percent-encode it (%20) or remove it"
        )
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError on a port that is not a number in 0..65535
    except ValueError as exc:
        raise ConfigError(f"{path.name}: {source} has a bad port ({exc}): use host:5672") from None


def _tasks(sec: _Section) -> dict[str, TaskSettings]:
    tasks = {}
    for name, facts in schema.rule(Settings, "tasks").entries.items():
        task = sec.entry(name, facts)
        queue = task.value("queue")
        soft, hard = task.value("soft_time_limit"), task.value("time_limit")
        if soft and hard and hard <= soft:
            raise task.fail("time_limit", hard, f"must exceed {task.key('soft_time_limit')} ({soft:g}), or be 0 (none)")
        tasks[name] = TaskSettings(
            name=name,
            queue=queue,
            duration=task.value("duration"),
            failure_rate=task.value("failure_rate"),
            soft_time_limit=soft,
            time_limit=hard,
        )
        task.done()
    sec.done()
    return tasks


def _queues(sec: _Section) -> tuple[str, ...]:
    rule = sec.rule("queues")
    sec.seen.add("queues")
    if "queues" not in sec.data:
        raise sec.fail("queues", None, "is required: the queue(s) this pool consumes, e.g. [queue_a]")
    value = sec.typed("queues", sec.data["queues"], (list, str))
    queues = (value,) if isinstance(value, str) else tuple(value)
    if not rule.min <= len(queues) <= rule.max:
        raise sec.fail("queues", value, f"must list {rule.min} to {rule.max} queue names")
    for queue in queues:
        if not isinstance(queue, str) or not rule.pattern.fullmatch(queue):
            raise sec.fail("queues", queue, "must hold queue names of letters, digits and _.:- (at most 100)")
    return queues


def _pool_autoscale(parent: _Section) -> PoolAutoscale | None:
    """`autoscale:` of a pool: absent (or null) = not autoscaled; `{}` = every default."""
    present = parent.data.get("autoscale") is not None
    sec = parent.section("autoscale")
    if not present:
        return None
    low, high = sec.value("min"), sec.value("max")
    if low > high:
        raise sec.fail("min", low, f"must be <= {sec.key('max')} ({high})")
    scale = PoolAutoscale(min=low, max=high, target=sec.value("target"))
    sec.done()
    return scale


def _pool(sec: _Section, name: str) -> PoolSettings:
    pool = PoolSettings(name=name, queues=_queues(sec), **sec.values(), autoscale=_pool_autoscale(sec))
    sec.done()
    return pool


def _pools(parent: _Section, max_replicas: int) -> dict[str, PoolSettings]:
    if "pools" not in parent.data:
        raise parent.fail("pools", None, "is required: declare each pool's queues, e.g. worker-a: {queues: [queue_a]}")
    rule = parent.rule("pools")
    sec = parent.section("pools", {"engine.max_replicas": max_replicas})
    entries = sec.items()
    if not rule.min <= len(entries) <= rule.max:
        raise parent.fail("pools", sec.data, f"must declare {rule.min} to {rule.max} pools")
    pools = {}
    for name, _ in entries:
        if not isinstance(name, str) or not rule.pattern.fullmatch(name):
            raise sec.fail(str(name), name, "must be a lower-case name of letters, digits and dashes (e.g. worker-a)")
        pools[name] = _pool(sec.entry(name), name)
    owner: dict[str, str] = {}
    for pool in pools.values():
        for queue in pool.queues:
            if owner.get(queue) == pool.name:
                raise sec.fail(f"{pool.name}.queues", queue, "is listed twice")
            if queue in owner:
                raise sec.fail(
                    f"{pool.name}.queues",
                    queue,
                    f"is already served by pool {owner[queue]}: a queue belongs to one pool",
                )
            owner[queue] = pool.name
    return pools


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
    root = _Section(path, "", data, Settings)
    root.seen.update(ROOT_KEYS)
    root.done()  # a misspelt section is reported first, not as the problem it causes elsewhere
    engine_sec = root.section("engine")
    engine = EngineSettings(**engine_sec.values())
    engine_sec.done()
    pools = _pools(root, engine.max_replicas)
    tasks = _tasks(root.section("tasks"))
    _check_routes(path, tasks, pools)
    retry_sec, dispatch_sec, load_sec = root.section("retry"), root.section("dispatch"), root.section("load_test")
    monitoring_sec, autoscale_sec = root.section("monitoring"), root.section("autoscale")
    settings = Settings(
        path=path,
        name=root.value("name"),
        broker=_broker(root.section("broker"), env),
        tasks=tasks,
        pools=pools,
        retry=RetryPolicy(**retry_sec.values()),
        engine=engine,
        dispatch=DispatchSettings(**dispatch_sec.values()),
        load_test=LoadTestSettings(**load_sec.values()),
        monitoring=MonitoringSettings(**monitoring_sec.values()),
        autoscale=AutoscaleSettings(**autoscale_sec.values()),
    )
    misplaced = next((k for k in schema.names(PoolAutoscale) if k in autoscale_sec.data), None)
    if misplaced:  # a pool's key written in the loop's section
        known = ", ".join(sorted(schema.names(AutoscaleSettings)))
        raise autoscale_sec.fail(
            misplaced,
            autoscale_sec.data[misplaced],
            f"is not a known key (known: {known}); a pool's range goes in pools.NAME.autoscale",
        )
    for sec in (retry_sec, dispatch_sec, load_sec, monitoring_sec, autoscale_sec, root):
        sec.done()
    return settings
