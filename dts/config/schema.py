"""The config's declaration: every key of test-config.yml, with its type, default, bounds and help, once.

    EngineSettings.stop_timeout                     # 60.0: the default is the dataclass field's
    rule(EngineSettings, "stop_timeout").max        # 3600: bounds and help live in the field's metadata
    [k.name for k in keys()][:3]                    # ['name', 'broker', 'broker.url']: the walk (docs, tests)

A key's type is its annotation, its default the field's default, and the rest (bounds, choices, help) its
`Rule`. The parser (dts.config.parse) reads every section from here with one generic reader; a default or
bound known only at load time (a pool's replicas are bounded by engine.max_replicas) is a `Ref`, resolved by
the parser. What one key cannot say alone (min <= max, routes, a URL's form, TLS files, the environment's
overrides) is its section's validate hook: dts.config.parse.VALIDATE, one function per class. Adding a key
to any section is one field here (and its line in test-config.yml).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from dts.engines.registry import names as engine_names  # a registered engine is a valid engine.name

# The built-in tasks (simulated work) and their default routes; a task of your own is declared with `call:`.
DEFAULT_ROUTES = {"task_a": "queue_a", "task_b": "queue_b"}
SIMULATED, OWN = "simulated", "own"  # the kinds of task: a key that applies to one kind only says which
TASK_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")  # a task's wire name is celery_app.<name>
CALL = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")  # module:function
DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")  # an exception class by its dotted name
PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
MAX_TASKS = 100
MAX_PARAMS = 50
MAX_PARAM_CHARS = 1024  # a param's value (a default, or a dispatch's): no NUL or newline, not starting with -
EXECUTION_POOLS = ("prefork", "threads", "solo")
LOG_LEVELS = ("debug", "info", "warning", "error")
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp")
QUEUE_TYPES = ("auto", "classic", "quorum")  # the work and dead-letter queues' x-queue-type (auto: see below)
POOL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")  # a compose service, a Celery node name and a file name
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
HOST_NAME = re.compile(r"[A-Za-z0-9.:-]{1,253}")
MAX_POOLS = 20
MAX_POOL_QUEUES = 20
MAX_URL_CHARS = 1024  # docs/reference/input-bounds.md
MAX_BROKER_URLS = 9  # failover URLs of one broker cluster, separated by URL_SEPARATOR
URL_SEPARATOR = ";"  # Celery's and kombu's separator of failover URLs
DAY = 86400  # seconds: the upper bound of a duration that has no tighter one
CONSUMER_TIMEOUT_MAX = 30 * DAY  # RabbitMQ keeps it in an Erlang timer: under 2**32 ms (49 days)
MAX_MOUNTS = 20  # a pool's devices, and its volumes
# a pool's device or volume as written: HOST[:CONTAINER[:MODE]] of plain path characters (no space, comma, NUL)
MOUNT_ENTRY = re.compile(r"[A-Za-z0-9_.@+/:-]{1,1024}")
DEVICE_PERMISSIONS = "rwm"  # docker's cgroup permissions of a device: read, write, mknod
VOLUME_MODES = ("rw", "ro")
# where the image and the engines put the worker's own files: no device or volume may cover them
RESERVED_TARGETS = ("/app/test-config.yml", "/opt/venv", "/opt/dts", "/tmp", "/run/secrets")


@dataclass(frozen=True)
class Ref:
    """A default or bound known only at load time: another key's value (`engine.max_replicas`) or a fact of
    the entry being read (`route`: a task's queue in DEFAULT_ROUTES)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Rule:
    """What a field's metadata says about its key, beside the type (annotation) and default (field default)."""

    help: str
    min: float | Ref | None = None  # numbers: the range; a list or mapping: how many items
    max: float | Ref | None = None
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None  # a callable: asked at load time
    pattern: re.Pattern[str] | None = None  # a list's items, a mapping's entry names, a string
    follows: Ref | None = None  # the default when the file has none, where it is known only at load time
    entries: Mapping[str, Mapping[str, Any]] | None = None  # a mapping's fixed entries, each with its facts
    # a key without a default: why and how to give it, when the file lacks it (none: its section's hook gives it)
    required: str | None = None
    form: str | None = None  # what a value (a list's item, a mapping's entry name) not matching `pattern` is told
    items: str | None = None  # what a list's or mapping's items are called, in its count's message
    kind: str | None = None  # a task's key that applies to one kind of task only: SIMULATED or OWN
    each: tuple[str, str] = ("entries", "strings")  # a mapping of lists: what a list holds, what its items must be

    def allowed(self) -> tuple[str, ...] | None:
        """The choices, asked now where they are a registry's (the engine names)."""
        return self.choices() if callable(self.choices) else self.choices


_RULE = "dts.config"


def key(*, help: str, **rule: Any) -> dict[str, Rule]:
    """The metadata of a dataclass field that is a config key: `field(default=60.0, metadata=key(...))`."""
    return {_RULE: Rule(help, **rule)}


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class BrokerTLS:
    """TLS to the broker (`broker.tls`): the CA that signed the broker's certificate, an optional client
    certificate and key, and the name the broker's certificate must carry (default: the URL's host).
    Validate hook: ca_file is required (or $BROKER_TLS_CA_FILE); cert_file goes with key_file; $BROKER_TLS_*
    replace the files; each must be a readable file now."""

    ca_file: str = field(  # required, but $BROKER_TLS_CA_FILE may give it: its hook refuses it when neither does
        metadata=key(help="(required) PEM of the CA that signed the broker's certificate ($BROKER_TLS_CA_FILE)")
    )
    cert_file: str | None = field(
        default=None, metadata=key(help="a client certificate, with key_file ($BROKER_TLS_CERT_FILE)")
    )
    key_file: str | None = field(
        default=None, metadata=key(help="the client certificate's private key, unencrypted PEM ($BROKER_TLS_KEY_FILE)")
    )
    server_hostname: str | None = field(
        default=None,
        metadata=key(
            pattern=HOST_NAME,
            form="must be a host name or IP address (letters, digits, .:-)",
            help="the name the broker's certificate must carry (default: the URL's host)",
        ),
    )


@dataclass(frozen=True)
class BrokerSettings:
    """The broker (`broker:`): where it is and how its queues are declared.
    Validate hook: the URL's form ($BROKER_URL replaces it, checked too); delivery_limit is for quorum queues
    only; an amqps:// URL needs broker.tls (which $BROKER_TLS_* alone also make)."""

    url: str = field(
        default="amqp://guest:guest@localhost:5672//",
        metadata=key(help="host-side broker URL; .env and $BROKER_URL override it"),
    )
    connect_timeout: float = field(
        default=5.0,
        metadata=key(
            min=0.1,
            max=60,
            help="seconds to wait for the broker (to connect, or to answer a request of a start-up check, a "
            "status, an autoscaler's look or a dead-letter command) before giving up (exit 3)",
        ),
    )
    heartbeat: int = field(
        default=30,
        metadata=key(
            min=0,
            max=600,
            help="seconds between AMQP heartbeats of the workers and the CLIs' waits (0: off); a broker that "
            "stops answering is noticed within about two",
        ),
    )
    queue_type: str = field(
        default="auto",
        metadata=key(
            choices=QUEUE_TYPES,
            help="the work queues, their .dead queues and each run's reply queue: quorum (replicated over a "
            "cluster's nodes) or classic; auto: quorum when the broker URL lists several nodes, else classic",
        ),
    )
    delivery_limit: int = field(
        default=5,
        metadata=key(min=1, max=1000, help="quorum only: a message redelivered more often than this is dead-lettered"),
    )
    consumer_timeout: float = field(
        default=1800.0,
        metadata=key(
            min=60,
            max=CONSUMER_TIMEOUT_MAX,
            help="seconds a worker may hold a message unacknowledged (a task running, a retry waiting out its "
            "backoff) before RabbitMQ takes it back and it runs again: the compose broker's consumer_timeout "
            "and the quorum queues' per-consumer timeout; set a broker you run to at least this",
        ),
    )
    tls: BrokerTLS | None = field(
        default=None, metadata=key(help="TLS to the broker; absent: plain AMQP (refused for an amqps:// URL)")
    )

    @property
    def queues_type(self) -> str:
        """The queues' type as declared: `auto` is quorum for the nodes of a cluster (several URLs), else classic."""
        if self.queue_type == "auto":
            return "quorum" if URL_SEPARATOR in self.url else "classic"
        return self.queue_type


Scalar = str | int | float | bool  # a param's value


def command_placeholders(argv: tuple[str, ...]) -> set[str]:
    """The {name} placeholders of a command's argv (an empty or unclosed one as "{}")."""
    import string

    found: set[str] = set()
    for part in argv:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
        except ValueError:
            fields = [""]
        found |= {f or "{}" for f in fields}
    return found


TASK_SPEC = re.compile(r"(?:(?P<count>[1-9][0-9]{0,3})\*)?(?P<name>[a-z][a-z0-9_]{0,62})(?::(?P<pairs>.*))?", re.S)
MAX_TASK_SPEC = 4096  # characters of one task spec (--task, or a scenario's entry)
# what a dispatch may set on a built-in task: (type, low, high), the bounds of its config keys and --fail-times
REPORT_FORMATS = ("junit",)  # a command task's report: (the placeholder that names its path is {report})
REPORT_PLACEHOLDER = "report"
SIMULATED_KEYS = {"duration": (float, 0, 3600), "failure_rate": (float, 0, 1), "fail_times": (int, 0, 100)}


def task_spec(text: str) -> tuple[int, str, dict[str, str]] | str:
    """`[N*]NAME[:KEY=VALUE,...]` as (count, name, {key: value}); or, when it is not one, why (pure)."""
    if len(text) > MAX_TASK_SPEC:
        return f"must be at most {MAX_TASK_SPEC} characters (got {len(text)})"
    found = TASK_SPEC.fullmatch(text)
    if not found:
        return "takes NAME[:KEY=VALUE,...], NAME a task's name"
    values: dict[str, str] = {}
    for pair in found["pairs"].split(",") if found["pairs"] else []:
        name, equals, value = pair.partition("=")
        if not equals or not PARAM_NAME.fullmatch(name):
            return f"takes NAME:KEY=VALUE,... (not {pair[:40]!r})"
        values[name] = value
    return int(found["count"] or 1), found["name"], values


def mount(text: str, device: bool) -> tuple[str, str, str] | str:
    """A pool's `devices:` entry HOST[:CONTAINER[:PERMISSIONS]] or `volumes:` entry HOST:CONTAINER[:ro|rw] as
    (host, container, mode), defaults filled in (the container path: the host's; rwm; rw), paths normalised;
    or, when it is not one, why (pure). A volume's host path may still be relative (to the config file)."""
    import posixpath

    parts = text.split(":")
    if len(parts) > 3 or "" in parts or (not device and len(parts) < 2):
        return "must be HOST[:CONTAINER[:PERMISSIONS]]" if device else "must be HOST:CONTAINER[:ro|rw]"
    host, target = parts[0], parts[1 if len(parts) > 1 else 0]
    mode = parts[2] if len(parts) == 3 else DEVICE_PERMISSIONS if device else VOLUME_MODES[0]
    if ".." in host.split("/") or ".." in target.split("/"):
        return "must not hold .. in a path: give the path itself"
    if device and not host.startswith("/"):
        return "must name the device by its absolute path on the host (e.g. /dev/ttyUSB0)"
    if not target.startswith("/"):
        return "must give an absolute path in the container (e.g. " + ("/dev/board)" if device else "/images)")
    host, target = posixpath.normpath(host), posixpath.normpath(target)
    if device and (set(mode) - set(DEVICE_PERMISSIONS) or len(set(mode)) != len(mode)):
        return "must give the device's permissions as letters of rwm (e.g. rw)"
    if not device and mode not in VOLUME_MODES:
        return "must end in :ro or :rw (the mount's mode)"
    covered = next((r for r in RESERVED_TARGETS if r == target or r.startswith(target.rstrip("/") + "/")), None)
    if covered:
        return f"must not cover {covered}, the worker's own: pick another path in the container"
    return host, target, mode


def mount_parts(entry: str) -> tuple[str, str, str]:
    """A pool's device or volume as loaded (host:container:mode, the host path absolute): its three parts."""
    host, target, mode = entry.rsplit(":", 2)  # the host path may hold a colon (the config's folder): not the others
    return host, target, mode


def code_folders(settings: Settings) -> list[Path]:
    """The `code:` folders, as paths (relative to the config file's folder, where they were checked)."""
    return [settings.path.parent / folder for folder in settings.code]


MAX_PARAM_PATTERN = 200  # characters of a param's pattern


def param_rule_problem(task: TaskSettings, name: str, value: Scalar) -> str | None:
    """What is wrong with a value of param `name` of a task of your own, by its choices: and patterns:
    (pure; the config's defaults, a dispatch's values and, on the worker, a message's), or None."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    allowed = task.choices.get(name)
    if allowed is not None and text not in allowed:
        return f"must be one of {', '.join(allowed)}"
    pattern = task.patterns.get(name)
    if pattern is not None and not re.fullmatch(pattern, text):
        return f"must match {pattern}"
    return None


def param_problem(value: str) -> str | None:
    """What is wrong with a param's string value (a default in the file, or a dispatch's), or None: at most
    MAX_PARAM_CHARS characters, no NUL or newline, not starting with - (it may fill a command's argv: no
    option injection)."""
    if len(value) > MAX_PARAM_CHARS:
        return f"must be at most {MAX_PARAM_CHARS} characters (got {len(value)})"
    if "\0" in value or "\n" in value or "\r" in value:
        return "must not hold a NUL or a newline"
    if value.startswith("-"):
        return "must not start with - (an option where an argument goes)"
    return None


@dataclass(frozen=True)
class TaskSettings:
    """A task (`tasks.<task>`): where it is routed, and its work: simulated (the built-ins, task_a and task_b),
    or of your own: a Python callable (`call:`) or a program (`command:`).
    Validate hook: a task of your own has a queue and one of call: or command: (its placeholders declared
    params, its retry_on_exit codes 1..255); time_limit exceeds soft_time_limit (0: none)."""

    name: str
    queue: str = field(
        metadata=key(follows=Ref("route"), help="the queue the task is routed to; must be a pool's queue")
    )
    duration: float = field(
        default=0.0, metadata=key(min=0, max=3600, kind=SIMULATED, help="seconds of simulated work per attempt")
    )
    failure_rate: float = field(
        default=0.0,
        metadata=key(
            min=0, max=1, kind=SIMULATED, help="probability that an attempt raises a transient error (retried)"
        ),
    )
    call: str | None = field(
        default=None,
        metadata=key(
            pattern=CALL,
            kind=OWN,
            form="must be module:function (e.g. mylab.jobs:flash), a callable the workers import",
            help="a task of your own: the Python callable the workers run, module:function (or command:); "
            "its keyword arguments are the params, its JSON-serialisable return value the result's `value`",
        ),
    )
    command: tuple[str, ...] = field(
        default=(),
        metadata=key(
            max=200,
            kind=OWN,
            items="arguments",
            help="or (instead of call:) the program the workers run, as an argv list, never through a shell; "
            "{name} placeholders are filled from the params",
        ),
    )
    cleanup: tuple[str, ...] = field(
        default=(),
        metadata=key(
            max=200,
            kind=OWN,
            items="arguments",
            help="a command task's clean-up (power a board off, release a lock): an argv run after every "
            "attempt, whatever happened, {name} placeholders filled as the command's; its failure is reported",
        ),
    )
    cleanup_timeout: float = field(
        default=60.0,
        metadata=key(min=1, max=3600, kind=OWN, help="seconds the clean-up may run before its process group is killed"),
    )
    report: str | None = field(
        default=None,
        metadata=key(
            choices=REPORT_FORMATS,
            kind=OWN,
            help="a report the command writes where its {report} placeholder says (e.g. --junitxml={report}): "
            "junit; it comes back with the result (at most 1 MB) and its testcases join the run's JUnit file",
        ),
    )
    cwd: str | None = field(
        default=None, metadata=key(kind=OWN, help="a command's working folder (default: the worker's)")
    )
    env: dict[str, str] = field(
        default_factory=dict,
        metadata=key(
            max=50,
            pattern=re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}"),
            kind=OWN,
            form="must be an environment variable's name",
            items="variables",
            help="variables added to a command's environment",
        ),
    )
    retry_on_exit: tuple[int, ...] = field(
        default=(),
        metadata=key(
            max=20,
            kind=OWN,
            items="exit codes",
            help="a command's exit codes retried with backoff (1..255); any other but 0 fails the task",
        ),
    )
    params: dict[str, Scalar] = field(
        default_factory=dict,
        metadata=key(
            max=MAX_PARAMS,
            pattern=PARAM_NAME,
            kind=OWN,
            form="must be a lower-case name of letters, digits and _",
            items="params",
            help="the callable's keyword arguments and their defaults (a dispatch may override them: "
            "--task NAME:KEY=VALUE)",
        ),
    )
    choices: dict[str, tuple[str, ...]] = field(
        default_factory=dict,
        metadata=key(
            max=MAX_PARAMS,
            pattern=PARAM_NAME,
            kind=OWN,
            form="must name a declared param",
            items="params",
            each=("values", "strings"),
            help="the only values a param takes, by its name (e.g. board: [rev-a, rev-b]); a dispatch giving "
            "another is refused before anything is sent",
        ),
    )
    patterns: dict[str, str] = field(
        default_factory=dict,
        metadata=key(
            max=MAX_PARAMS,
            pattern=PARAM_NAME,
            kind=OWN,
            form="must name a declared param",
            items="params",
            help="a regular expression a param's whole value must match, by its name (e.g. select: "
            "'[a-z_ ]+'); without choices: or a pattern a string value is only held to the default rule",
        ),
    )
    retry_on: tuple[str, ...] = field(
        default=(),
        metadata=key(
            max=20,
            pattern=DOTTED,
            kind=OWN,
            form="must name an exception class by its dotted name (e.g. mylab.jobs.BoardBusy)",
            items="exception classes",
            help="exceptions retried with backoff (dotted names; dts.Transient always is); any other fails the "
            "task at once with its type and message",
        ),
    )
    retry: RetryPolicy | None = field(
        default=None,
        metadata=key(
            help="this task's own backoff: the keys given here replace the top-level retry: section's for it "
            "(e.g. retry: {max_retries: 0} for a task never retried)"
        ),
    )
    soft_time_limit: float = field(
        default=0.0,
        metadata=key(min=0, max=DAY, help="seconds; past it the task fails, not retried (prefork only); 0 = none"),
    )
    time_limit: float = field(
        default=0.0,
        metadata=key(
            min=0, max=DAY, help="seconds; past it the worker kills the task's process (prefork only); 0 = none"
        ),
    )


@dataclass(frozen=True)
class EngineSettings:
    """Where the workers run (`engine:`) and the bounds every engine keeps."""

    name: str = field(
        default="auto",
        metadata=key(
            choices=engine_names,
            help="where the workers run (auto: compose if Docker answers, else local; stub: pools in memory, for tests and dry runs)",
        ),
    )
    stop_timeout: float = field(
        default=60.0, metadata=key(min=1, max=3600, help="seconds a warm shutdown may take before SIGKILL")
    )
    start_timeout: float = field(
        default=60.0, metadata=key(min=1, max=3600, help="seconds to wait for a new worker to answer ping")
    )
    max_replicas: int = field(default=10, metadata=key(min=1, max=1000, help="upper bound for any pool's replicas"))
    health_interval: float = field(
        default=60.0, metadata=key(min=1, max=3600, help="seconds between health checks of a swarm worker")
    )
    log_max_mb: int = field(
        default=10,
        metadata=key(
            min=1,
            max=10_000,
            help="MB a worker's log file grows to before it is rotated (every engine: compose and swarm's json-file "
            "max-size, supervisord's for local workers)",
        ),
    )
    log_files: int = field(
        default=3,
        metadata=key(
            min=1,
            max=100,
            help="log files kept per worker, the current one included: a worker's logs take at most "
            "log_max_mb x log_files on disk",
        ),
    )


@dataclass(frozen=True)
class PoolAutoscale:
    """A pool's autoscaling range (`pools.<name>.autoscale`): `scale.py auto` keeps its replicas within
    min..max, aiming at `target` ready messages per replica. Validate hook: min <= max."""

    min: int = field(
        default=1,
        metadata=key(
            min=0, max=Ref("engine.max_replicas"), help="fewest replicas (0: none while the queues are empty)"
        ),
    )
    max: int = field(
        default=EngineSettings.max_replicas,
        metadata=key(
            follows=Ref("engine.max_replicas"),
            min=1,
            max=Ref("engine.max_replicas"),
            help="most replicas (default: engine.max_replicas)",
        ),
    )
    target: int = field(default=20, metadata=key(min=1, max=1_000_000, help="ready messages per replica"))


@dataclass(frozen=True)
class PoolSettings:
    """A pool: a named group of identical workers serving its queues."""

    name: str
    queues: tuple[str, ...] = field(
        metadata=key(
            min=1,
            max=MAX_POOL_QUEUES,
            pattern=QUEUE_NAME,
            required="the queue(s) this pool consumes, e.g. [queue_a]",
            form="must hold queue names of letters, digits and _.:- (at most 100)",
            items="queue names",
            help="(required) the queues this pool consumes (-Q)",
        )
    )
    replicas: int = field(
        default=1, metadata=key(min=0, max=Ref("engine.max_replicas"), help="workers started by `make up`")
    )
    concurrency: int = field(default=1, metadata=key(min=1, max=256, help="execution slots per worker (--concurrency)"))
    execution_pool: str = field(default="prefork", metadata=key(choices=EXECUTION_POOLS, help="Celery's --pool"))
    prefetch_multiplier: int = field(
        default=1, metadata=key(min=1, max=1000, help="messages each slot reserves ahead; 1 = fair dispatch")
    )
    autoscale: PoolAutoscale | None = field(
        default=None, metadata=key(help="the range `scale.py auto` keeps; absent: left alone")
    )
    log_level: str = field(
        default="info",
        metadata=key(
            choices=LOG_LEVELS,
            help="the workers' --loglevel: info logs two lines per task (received, succeeded); warning drops "
            "them (~0.13 ms of worker CPU per task, docs/performance.md) and keeps retries, failures and warnings",
        ),
    )
    devices: tuple[str, ...] = field(
        default=(),
        metadata=key(
            max=MAX_MOUNTS,
            pattern=MOUNT_ENTRY,
            items="devices",
            form="must be HOST[:CONTAINER[:PERMISSIONS]] of letters, digits and _.@+/:- (e.g. /dev/ttyUSB0:/dev/board)",
            help="container engines: host devices the workers open, HOST[:CONTAINER[:PERMISSIONS]] as `docker run "
            "--device` takes them (e.g. /dev/ttyUSB0:/dev/board:rw); compose adds the device's group to the "
            "worker's user; swarm refuses them (no devices in swarm services); local workers use the host's",
        ),
    )
    volumes: tuple[str, ...] = field(
        default=(),
        metadata=key(
            max=MAX_MOUNTS,
            pattern=MOUNT_ENTRY,
            items="volumes",
            form="must be HOST:CONTAINER[:ro|rw] of letters, digits and _.@+/:- (e.g. /srv/images:/images:ro)",
            help="container engines: host folders or files mounted into the workers, HOST:CONTAINER[:ro|rw] "
            "(default rw), HOST absolute or relative to this file (inside its folder); local workers use the host's",
        ),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff (`retry:`): the delay before retry n+1 is backoff_base * 2**n, capped."""

    max_retries: int = field(default=3, metadata=key(min=0, max=100, help="retries after the first attempt"))
    backoff_base: float = field(default=1.0, metadata=key(min=0, max=3600, help="seconds (fractions allowed)"))
    backoff_max: float = field(default=30.0, metadata=key(min=0, max=DAY, help="cap on one delay, seconds"))
    jitter: bool = field(
        default=True, metadata=key(help="draw each delay from [delay/2, delay] so retries of many tasks spread out")
    )


@dataclass(frozen=True)
class DispatchSettings:
    """dispatch.py (`dispatch:`)."""

    timeout: float = field(
        default=60.0,
        metadata=key(min=0.1, max=DAY, help="seconds to wait for all results before reporting them missing"),
    )
    tasks: tuple[str, ...] = field(
        default=tuple(DEFAULT_ROUTES),
        metadata=key(
            min=1,
            max=MAX_TASKS,
            pattern=TASK_NAME,
            items="tasks",
            form="must name a declared task",
            help="the tasks `dts dispatch` sends when it is given no --task (each a declared task)",
        ),
    )


@dataclass(frozen=True)
class LoadTestSettings:
    """load_test.py (`load_test:`): its wait and its thresholds."""

    timeout: float = field(
        default=300.0,
        metadata=key(min=1, max=DAY, help="seconds to wait for all results before the rest count as failed"),
    )
    min_efficiency: float = field(
        default=0.0, metadata=key(min=0, max=1, help="exit 1 below this efficiency (ideal / actual); 0 = none")
    )
    max_p95: float = field(
        default=0.0, metadata=key(min=0, max=DAY, help="exit 1 above this p95 end-to-end latency (seconds); 0 = none")
    )


@dataclass(frozen=True)
class MonitoringSettings:
    """Task events (`monitoring:`)."""

    task_events: bool = field(
        default=True, metadata=key(help="workers send task events, clients task-sent events (live view, Flower)")
    )
    event_window: float = field(
        default=0.01,
        metadata=key(
            min=0,
            max=1,
            help="seconds a worker gathers task events into one message when they come faster than one per "
            "window (0: one message per loop turn, Celery's way); an event after a quiet window goes at once",
        ),
    )


@dataclass(frozen=True)
class AutoscaleSettings:
    """The autoscaler's loop (`autoscale:`): how often it looks, how long it waits before a scale-down.
    Validate hook: a pool's key written here (min, max, target) is told it goes in pools.NAME.autoscale."""

    interval: float = field(default=2.0, metadata=key(min=0.1, max=60, help="seconds between two looks at the queues"))
    cooldown: float = field(
        default=30.0, metadata=key(min=0, max=3600, help="seconds after a pool's last change before it may shrink")
    )


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The whole file: one typed, frozen object (dts.config.load_settings).
    Validate hook: a queue belongs to one pool; each task is routed to a pool's queue, each to its own."""

    path: Path
    name: str = field(default="Distributed test", metadata=key(help='printed by dispatch.py as "Loaded config: ..."'))
    broker: BrokerSettings = field(default=BrokerSettings(), metadata=key(help="the broker connection"))
    tasks: dict[str, TaskSettings] = field(
        metadata=key(
            entries={task: {"route": queue, "kind": SIMULATED} for task, queue in DEFAULT_ROUTES.items()},
            pattern=TASK_NAME,
            max=MAX_TASKS,
            form="must be a lower-case name of letters, digits and _ (e.g. flash_and_test)",
            help="the tasks: the built-ins (task_a, task_b: simulated work) and your own (any other name, with "
            "`call:`), their routes and behaviour",
        )
    )
    pools: dict[str, PoolSettings] = field(
        metadata=key(
            min=1,
            max=MAX_POOLS,
            pattern=POOL_NAME,
            required="declare each pool's queues, e.g. worker-a: {queues: [queue_a]}",
            form="must be a lower-case name of letters, digits and dashes (e.g. worker-a)",
            items="pools",
            help="(required) the pools, by name (lower-case letters, digits, -)",
        )
    )
    retry: RetryPolicy = field(default=RetryPolicy(), metadata=key(help="exponential backoff of retried tasks"))
    engine: EngineSettings = field(default=EngineSettings(), metadata=key(help="where the workers run"))
    dispatch: DispatchSettings = field(default=DispatchSettings(), metadata=key(help="dispatch.py"))
    code: tuple[str, ...] = field(
        default=(),
        metadata=key(
            max=20,
            pattern=re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]{0,199}"),
            form="must be a folder inside the project, relative to this file (e.g. lib)",
            items="folders",
            help="folders (relative to this file) holding your own tasks' modules: on the local workers' import "
            "path; the container engines' image copies them (its tag follows their content)",
        ),
    )
    scenarios: dict[str, tuple[str, ...]] = field(
        default_factory=dict,
        metadata=key(
            max=50,
            pattern=TASK_NAME,
            form="must be a lower-case name of letters, digits and _ (e.g. nightly)",
            items="scenarios",
            each=("tasks", "strings: NAME[:KEY=VALUE,...]"),
            help="named test scenarios for `dts dispatch --scenario NAME`: each a list of tasks as --task takes "
            "them, NAME[:KEY=VALUE,...], a leading N* to send it N times (e.g. 3*board_smoke:board=rev-b)",
        ),
    )
    load_test: LoadTestSettings = field(default=LoadTestSettings(), metadata=key(help="load_test.py"))
    monitoring: MonitoringSettings = field(default=MonitoringSettings(), metadata=key(help="task events"))
    autoscale: AutoscaleSettings = field(
        default=AutoscaleSettings(), metadata=key(help="the autoscaler's loop (make autoscale)")
    )

    def retry_for(self, task: str) -> RetryPolicy:
        """The task's backoff: its own retry: keys over the top-level retry: section."""
        return self.tasks[task].retry or self.retry

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


# --------------------------------------------------------------------------- reading the declaration


@cache
def _declared(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """A settings class's keys in declaration order: name → (field, type)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if _RULE in f.metadata}


def names(cls: type) -> tuple[str, ...]:
    """The keys a settings class declares, in declaration order."""
    return tuple(_declared(cls))


def default_of(f: dataclasses.Field) -> Any:
    """A field's default (a fresh one where a factory makes it); MISSING for a required key."""
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


def declared(cls: type, name: str) -> tuple[Any, Any, Rule]:
    """A key's (type, default, rule); the default is MISSING for a required key."""
    f, kind = _declared(cls)[name]
    return kind, default_of(f), f.metadata[_RULE]


def rule(cls: type, name: str) -> Rule:
    return declared(cls, name)[2]


def optional(kind: Any) -> tuple[Any, bool]:
    """A key's type without its `| None`, and whether it had one (null or absent: the default, or no section)."""
    if isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind):
        return next(a for a in typing.get_args(kind) if a is not type(None)), True
    return kind, False


def section_of(kind: Any) -> type | None:
    """The settings class of a section's type (X, X | None, dict[str, X]), or None for a value."""
    if typing.get_origin(kind) is dict:
        kind = typing.get_args(kind)[1]
    elif isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind if dataclasses.is_dataclass(kind) else None


def is_scalar(kind: Any) -> bool:
    """A value the generic reader handles: a number, a string (maybe a choice), true/false."""
    return kind in (int, float, str, bool)


@dataclass(frozen=True)
class Key:
    """One key of the walk: `pools.<name>.replicas`, its type, default (MISSING: required; a Ref: another
    key's value), bounds, choices and help. A section is a key too (its type a settings class)."""

    name: str
    type: Any
    default: Any
    min: float | Ref | None
    max: float | Ref | None
    choices: tuple[str, ...] | None
    help: str
    required: bool  # the file must give it (a mapping of fixed entries, like tasks, is not required)


def keys(cls: type = Settings, prefix: str = "", facts: Mapping[str, Any] | None = None) -> Iterator[Key]:
    """Every key of the declaration, depth first in file order: sections, their entries (`pools.<name>`,
    `tasks.task_a`) and values, dotted. A Ref default that the entry knows (a task's route) is resolved."""
    facts = facts or {}
    for name, (f, kind) in _declared(cls).items():
        r, dotted = f.metadata[_RULE], prefix + name
        if r.kind and facts.get("kind") != r.kind:  # a task's key of the other kind of task
            continue
        default = r.follows if r.follows else default_of(f)
        if isinstance(default, Ref) and default.name in facts:
            default = facts[default.name]
        elif r.follows and default.name not in facts:  # an entry without the fact: a task of your own's queue
            default = MISSING
        required = default is MISSING and r.entries is None
        yield Key(dotted, kind, default, r.min, r.max, r.allowed(), r.help, required)
        sub = section_of(kind)
        if sub is None:
            if typing.get_origin(kind) is dict:  # a mapping of values (a task's params): any names
                yield Key(f"{dotted}.<name>", typing.get_args(kind)[1], MISSING, None, None, None, r.help, False)
            continue
        if typing.get_origin(kind) is not dict:
            yield from keys(sub, dotted + ".", facts)
            continue
        entries = {**(r.entries or {}), **({"<name>": {"kind": OWN}} if r.pattern else {})}
        for entry, entry_facts in entries.items():
            doc = (sub.__doc__ or "").splitlines()[0]
            yield Key(f"{dotted}.{entry}", sub, MISSING, None, None, None, doc, False)
            yield from keys(sub, f"{dotted}.{entry}.", entry_facts)


@cache
def referenced() -> frozenset[str]:
    """The keys a Ref names (`engine.max_replicas`): the parser reads them before the keys that need them."""
    return frozenset(str(v) for k in keys() for v in (k.min, k.max, k.default) if isinstance(v, Ref))
