"""A parsed YAML document → `Settings`: one generic reader builds every section from its declaration
(dts.config.schema), and each section's validate hook adds what one key cannot say alone.

    settings = parse_settings({"pools": {"w": {"queues": ["queue_a", "queue_b"]}}}, Path("test-config.yml"))
    settings.engine.stop_timeout                    # 60.0: EngineSettings' declared default
    VALIDATE[PoolAutoscale]                         # its cross-field rule: min <= max

The reader walks the declaration recursively: values (typed, bounded, choices, patterns), lists, sections,
optional sections (`broker.tls`, `pools.<name>.autoscale`: absent or null is none) and mappings of entries
(`pools:` free, by name; `tasks:` fixed, each with its facts). Per section: its keys in declaration order
(a key another key's Ref names first: engine, for engine.max_replicas), then its hook, then its unknown keys.
A hook (`VALIDATE`, registered with `@_validates(cls)`) gets the section and its values and returns them,
checked or replaced: min <= max, routes, a URL's form, TLS files, the environment's overrides (given as a dict:
no environment access here; broker.tls's files are the only ones opened). Every problem is one ConfigError that leads with the file, the dotted key and the
value: `test-config.yml: retry.max_retries must be between 0 and 100 (got -1)`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import typing
from collections.abc import Callable
from dataclasses import MISSING
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

_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false", list: "a list", dict: "a mapping"}


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


def parse_settings(data: Any, path: Path, env: dict[str, str] | None = None) -> Settings:
    """Validate a parsed YAML document into Settings (no environment access: `env` holds its overrides)."""
    if data is None:
        raise ConfigError(f"{path.name}: the file is empty; start from the project's test-config.yml")
    return _Section(path, "", data, Settings, env=env or {}).build()


class _Section:
    """One mapping of the YAML document and the settings class that declares its keys (for a mapping of
    entries, like pools, the entries' class): it reads every declared key, runs the class's validate hook and
    refuses unknown keys. `facts` resolve the declaration's Refs that an entry knows (a task's route); `known`
    (shared by the whole document) holds every value read so far (engine.max_replicas); `env` the overrides."""

    def __init__(
        self,
        path: Path,
        prefix: str,
        data: Any,
        schema_: type,
        facts: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        known: dict[str, Any] | None = None,
        name: str = "",
    ):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _rule(path, prefix or "the document", data, "must be a mapping")
        self.path, self.prefix, self.data, self.seen = path, prefix, data, set()
        self.schema, self.facts, self.env = schema_, facts or {}, env or {}
        self.known = {} if known is None else known
        self.name = name  # an entry's: its key in the mapping of entries

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, value: Any, rule: str) -> ConfigError:
        return _rule(self.path, self.key(name), value, rule)

    def resolve(self, value: Any) -> Any:
        """A Ref's value: the entry's fact, else a key read before; MISSING when neither has it (a task of
        your own has no default route)."""
        if not isinstance(value, Ref):
            return value
        return self.facts[value.name] if value.name in self.facts else self.known.get(value.name, MISSING)

    def typed(self, name: str, value: Any, kind: type | tuple) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.fail(name, value, "must be " + ("a number" if float in kinds else _TYPE_NAMES[kinds[0]]))
        return value

    def get(self, name: str, kind: type | tuple, default: Any) -> Any:
        self.seen.add(name)
        return self.typed(name, self.data.get(name, default), kind)

    # ----------------------------------------------------------------- a section

    def build(self) -> Any:
        """The section's settings object: every declared key read, the hook run, unknown keys refused."""
        declared = schema.names(self.schema)
        if not self.prefix:  # the document: a misspelt section is reported first, not as the problem it causes
            self.seen.update(declared)
            self.done()
        values = {name: self.read(name) for name in self._order(declared)}
        hook = next((VALIDATE[c] for c in self.schema.__mro__ if c in VALIDATE), None)
        if hook is not None:
            values = hook(self, values)
        self.done()
        self.known.update((self.key(name), value) for name, value in values.items())
        given = {"path": self.path, "name": self.name}  # the fields that are no key: the file's, an entry's name
        fields = (f.name for f in dataclasses.fields(self.schema) if f.name not in declared)
        return self.schema(**{f: given[f] for f in fields}, **values)

    def _order(self, declared: tuple[str, ...]) -> list[str]:
        """Declaration order, except that a key another key's Ref names (engine: engine.max_replicas) is first."""
        refs = schema.referenced()
        first = [n for n in declared if any(r == self.key(n) or r.startswith(self.key(n) + ".") for r in refs)]
        return first + [n for n in declared if n not in first]

    def section(self, name: str, facts: dict[str, Any] | None = None) -> _Section:
        """The declared section `name` (for a mapping of entries, its entries' class reads them)."""
        sub = schema.section_of(schema.declared(self.schema, name)[0])
        return self._sub(name, sub, facts)

    def entry(self, name: str, facts: dict[str, Any] | None = None) -> _Section:
        """An entry of this mapping of entries (a pool, a task), read by the entries' class."""
        return self._sub(name, self.schema, facts)

    def _sub(self, name: str, sub: type, facts: dict[str, Any] | None) -> _Section:
        self.seen.add(name)
        data, facts = self.data.get(name), {**self.facts, **(facts or {})}
        return _Section(self.path, self.key(str(name)), data, sub, facts, self.env, self.known, str(name))

    def done(self) -> None:
        unknown = sorted((k for k in self.data if k not in self.seen), key=str)
        if unknown:
            known = ", ".join(sorted(self.seen)) or "none"
            raise self.fail(str(unknown[0]), self.data[unknown[0]], f"is not a known key (known: {known})")

    # ----------------------------------------------------------------- a key

    def read(self, name: str) -> Any:
        """One declared key, by its declaration: a section, a mapping of entries, a list or a value."""
        kind, default, rule = schema.declared(self.schema, name)
        if rule.kind and rule.kind != self.facts.get("kind"):  # a key of the other kind of task
            if name in self.data:
                own = "your own tasks (with call:)" if rule.kind == schema.OWN else "the built-in tasks"
                raise self.fail(name, self.data[name], f"applies to {own} only")
            return default
        if default is MISSING and rule.required and name not in self.data:
            raise self.fail(name, None, f"is required: {rule.required}")
        kind, optional = schema.optional(kind)
        if typing.get_origin(kind) is dict:
            if schema.section_of(kind) is None:
                values = typing.get_args(kind)[1]
                if typing.get_origin(values) is tuple:
                    return self.lists(name, default, rule)
                return self.scalars(name, default, rule, strings_only=values is str)
            return self.entries(name, rule)
        if schema.section_of(kind) is not None:
            self.seen.add(name)
            return None if optional and self.data.get(name) is None else self.section(name).build()
        default = self.resolve(rule.follows or default)
        if optional or (default is MISSING and not rule.required):  # no default, no hint: its hook gives it
            self.seen.add(name)
            if self.data.get(name) is None:
                return None if default is MISSING else default
        if typing.get_origin(kind) is tuple:
            return self.strings(name, default, rule, typing.get_args(kind)[0])
        return self.value(name, kind, default, rule)

    def value(self, name: str, kind: type, default: Any, rule: schema.Rule) -> Any:
        """A scalar: its type, default, bounds, choices and pattern."""
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
        if kind is str and rule.pattern and not rule.pattern.fullmatch(value):
            raise self.fail(name, value, rule.form or f"must match {rule.pattern.pattern}")
        return value

    def strings(self, name: str, default: Any, rule: schema.Rule, item: type = str) -> tuple[Any, ...]:
        """A list of strings (one string is a list of one), or of integers: how many, and each by its type
        and the rule's pattern."""
        value = self.get(name, (list, str), list(default) if isinstance(default, tuple) else default)
        items = (value,) if isinstance(value, str) else tuple(value)
        lo, hi = self.resolve(rule.min), self.resolve(rule.max)
        if lo is not None and not lo <= len(items) <= hi:
            raise self.fail(name, value, f"must list {lo} to {hi} {rule.items or 'items'}")
        if lo is None and hi is not None and len(items) > hi:
            raise self.fail(name, value, f"must list at most {hi} {rule.items or 'items'}")
        for each in items:
            if item is int and (not isinstance(each, int) or isinstance(each, bool)):
                raise self.fail(name, each, "must hold integers")
            if item is str and (not isinstance(each, str) or (rule.pattern and not rule.pattern.fullmatch(each))):
                raise self.fail(name, each, rule.form or "must hold strings")
        return items

    def entries(self, name: str, rule: schema.Rule) -> dict[str, Any]:
        """A mapping of entries: the rule's fixed ones (the built-in tasks), each with its facts, always
        there; and, where the rule has a pattern, any others so named, counted by its bounds (pools, your own
        tasks: kind OWN)."""
        sec = self.section(name)
        fixed = rule.entries or {}
        found = {entry: sec.entry(entry, dict(facts)).build() for entry, facts in fixed.items()}
        if rule.pattern is None:
            sec.done()
            return found
        others = [entry for entry in sec.data if entry not in fixed]
        sec.seen.update(sec.data)
        lo, hi = self.resolve(rule.min), self.resolve(rule.max)
        if lo is not None and not lo <= len(sec.data) <= hi:
            raise self.fail(name, sec.data, f"must declare {lo} to {hi} {rule.items or 'entries'}")
        if hi is not None and lo is None and len(sec.data) > hi:
            raise self.fail(name, sec.data, f"must declare at most {hi} {rule.items or 'entries'}")
        for entry in others:
            if not isinstance(entry, str) or not rule.pattern.fullmatch(entry):
                raise sec.fail(str(entry), entry, rule.form or "must be a name")
            found[entry] = sec.entry(entry, {"kind": schema.OWN} if fixed else None).build()
        return found

    def lists(self, name: str, default: dict[str, Any], rule: schema.Rule) -> dict[str, tuple[str, ...]]:
        """A mapping of lists of strings (the scenarios, a task's choices): names by the rule's pattern, each
        list of 1 to MAX_TASKS strings (`rule.each`: what they are called)."""
        data = self.get(name, dict, default)
        if rule.max is not None and len(data) > self.resolve(rule.max):
            raise self.fail(name, data, f"must have at most {self.resolve(rule.max)} {rule.items or 'entries'}")
        found = {}
        for key, value in data.items():
            if not isinstance(key, str) or (rule.pattern and not rule.pattern.fullmatch(key)):
                raise self.fail(f"{name}.{key}", key, rule.form or "must be a name")
            noun, form = rule.each
            if not isinstance(value, list) or not 1 <= len(value) <= schema.MAX_TASKS:
                raise self.fail(f"{name}.{key}", value, f"must list 1 to {schema.MAX_TASKS} {noun}")
            if not all(isinstance(item, str) for item in value):
                raise self.fail(f"{name}.{key}", value, f"must hold {form}")
            found[key] = tuple(value)
        return found

    def scalars(
        self, name: str, default: dict[str, Any], rule: schema.Rule, strings_only: bool = False
    ) -> dict[str, Any]:
        """A mapping of plain values (a task's params): names by the rule's pattern, values a string (at most
        MAX_PARAM_CHARS, no NUL or newline, not starting with -), a number or true/false."""
        data = self.get(name, dict, default)
        if rule.max is not None and len(data) > self.resolve(rule.max):
            raise self.fail(name, data, f"must have at most {self.resolve(rule.max)} {rule.items or 'entries'}")
        for key, value in data.items():
            dotted = f"{name}.{key}"
            if not isinstance(key, str) or (rule.pattern and not rule.pattern.fullmatch(key)):
                raise self.fail(dotted, key, rule.form or "must be a name")
            if strings_only and not isinstance(value, str):
                raise self.fail(dotted, value, "must be a string")
            if isinstance(value, str):
                problem = schema.param_problem(value)
                if problem:
                    raise self.fail(dotted, value, problem)
            elif not isinstance(value, int | float | bool) or (isinstance(value, float) and not math.isfinite(value)):
                raise self.fail(dotted, value, "must be a string, a number or true/false")
        return dict(data)


# --------------------------------------------------------------------------- the sections' validate hooks

Hook = Callable[[_Section, dict[str, Any]], dict[str, Any]]
VALIDATE: dict[type, Hook] = {}  # a settings class → its cross-field rules (a subclass keeps its base's)


def _validates(cls: type) -> Callable[[Hook], Hook]:
    """Register a section's validate hook: it gets the section and its values, read, and returns them."""

    def register(hook: Hook) -> Hook:
        VALIDATE[cls] = hook
        return hook

    return register


@_validates(Settings)
def _settings(sec: _Section, values: dict[str, Any]) -> dict[str, Any]:
    """A queue belongs to one pool; every task is routed to a pool's queue; the built-ins each to its own;
    dispatch.tasks names declared tasks."""
    values["tasks"] = {name: _task_retry(sec, task, values["retry"]) for name, task in values["tasks"].items()}
    _check_queue_owners(sec, values["pools"])
    _check_routes(sec, values["tasks"], values["pools"])
    for name in values["dispatch"].tasks:
        if name not in values["tasks"]:
            declared = ", ".join(values["tasks"])
            raise sec.fail("dispatch.tasks", name, f"is not a declared task (tasks: {declared})")
    for folder in values["code"]:
        path = sec.path.parent / folder
        if ".." in Path(folder).parts or not path.is_dir():
            raise sec.fail("code", folder, "must be an existing folder inside the project, relative to this file")
    for scenario, entries in values["scenarios"].items():
        for entry in entries:
            _check_spec(sec, f"scenarios.{scenario}", entry, values["tasks"])
    return values


def _task_retry(sec: _Section, task: TaskSettings, policy: RetryPolicy) -> TaskSettings:
    """A task's retry: as read gives every key (the unset ones at their defaults): the ones given replace the
    top-level section's, the others are the section's."""
    given = ((sec.data.get("tasks") or {}).get(task.name) or {}).get("retry")
    if task.retry is None or not isinstance(given, dict):
        return task
    shared = set(schema.names(type(policy))) - set(given)
    inherited = {k: getattr(policy, k) for k in schema.names(type(task.retry)) if k in shared}
    return dataclasses.replace(task, retry=dataclasses.replace(task.retry, **inherited))


def _check_spec(sec: _Section, key: str, entry: str, tasks: dict[str, TaskSettings]) -> None:
    """A scenario's entry: NAME[:KEY=VALUE,...] naming a declared task and keys it takes."""
    spec = schema.task_spec(entry)
    if isinstance(spec, str):
        raise sec.fail(key, entry, spec)
    _, name, given = spec
    if name not in tasks:
        raise sec.fail(key, entry, f"names no declared task (tasks: {', '.join(tasks)})")
    task = tasks[name]
    takes = set(task.params) if task.call or task.command else set(schema.SIMULATED_KEYS)
    unknown = sorted(set(given) - takes)
    if unknown:
        raise sec.fail(key, entry, f"gives {name} a key it does not take: {unknown[0]}")
    for param, value in given.items():
        problem = schema.param_rule_problem(task, param, value) if task.call or task.command else None
        if problem:
            raise sec.fail(key, entry, f"gives {name}:{param} a value it does not take: it {problem}")


@_validates(BrokerSettings)
def _broker(sec: _Section, broker: dict[str, Any]) -> dict[str, Any]:
    """The URL's form (and $BROKER_URL's, which replaces it); delivery_limit only for quorum queues; TLS
    for an amqps:// URL (the environment's $BROKER_TLS_* files alone make broker.tls)."""
    url, source = broker["url"], sec.key("url")
    _check_amqp_url(sec.path, source, url)
    if "BROKER_URL" in sec.env:
        url, source = sec.env["BROKER_URL"], sec.env.get("BROKER_URL_SOURCE", "$BROKER_URL")
        _check_amqp_url(sec.path, source, url)
    if broker["queue_type"] == "classic" and "delivery_limit" in sec.data:
        raise sec.fail(
            "delivery_limit",
            broker["delivery_limit"],
            "applies to quorum queues only: set broker.queue_type: quorum (or auto) or drop it",
        )
    tls = broker["tls"]
    if tls is None and any(name in sec.env for name in TLS_ENV.values()):
        tls = sec.section("tls").build()
    if tls is not None and "BROKER_URL_TLS" in sec.env:  # the .env vhost/user, at the broker's TLS listener
        url, source = sec.env["BROKER_URL_TLS"], "the .env vhost/user at the broker's TLS port"
        _check_amqp_url(sec.path, source, url)
    if tls is None and url.startswith("amqps://"):
        raise ConfigError(
            f"{sec.path.name}: {source} is an amqps:// URL but broker.tls.ca_file is not set: add "
            "broker.tls: {ca_file: PATH} naming the CA that signed the broker's certificate"
        )
    return {**broker, "url": url, "tls": tls}


@_validates(BrokerTLS)
def _broker_tls(sec: _Section, tls: dict[str, Any]) -> dict[str, Any]:
    """ca_file is required (the file's or $BROKER_TLS_CA_FILE), cert_file and key_file go together, and each
    file exists and can be read now."""
    files = {key: _tls_file(sec, key, tls[key]) for key in TLS_FILE_KEYS}
    if files["ca_file"] is None:
        raise sec.fail("ca_file", None, "is required: the PEM file of the CA that signed the broker's certificate")
    if (files["cert_file"] is None) != (files["key_file"] is None):
        given, missing = ("cert_file", "key_file") if files["cert_file"] else ("key_file", "cert_file")
        raise sec.fail(missing, None, f"is required with {sec.key(given)}: a client certificate needs its key")
    return {**tls, **files}


@_validates(TaskSettings)
def _task(sec: _Section, task: dict[str, Any]) -> dict[str, Any]:
    """A task of your own names its callable and its queue; the hard time limit exceeds the soft one."""
    if sec.facts.get("kind") == schema.OWN:
        _own_task(sec, task)
    soft, hard = task["soft_time_limit"], task["time_limit"]
    if soft and hard and hard <= soft:
        raise sec.fail("time_limit", hard, f"must exceed {sec.key('soft_time_limit')} ({soft:g}), or be 0 (none)")
    return task


def _own_task(sec: _Section, task: dict[str, Any]) -> None:
    """A task of your own: a queue, and exactly one of call: and command:; a command's placeholders are
    declared params, its retry_on_exit codes 1..255."""
    given = sec.data.get("command")
    if isinstance(given, str) or ("command" in sec.data and not task["command"]):
        raise sec.fail("command", given, "must be a list: the program and its arguments, e.g. [pytest, -k, smoke]")
    if task["call"] is None and not task["command"]:
        raise sec.fail("call", None, "is required: the Python callable the workers run, module:function (or command:)")
    if task["call"] is not None and task["command"]:
        raise sec.fail("command", list(task["command"]), "goes without call: a task runs a callable or a command")
    if task["queue"] is None:
        raise sec.fail("queue", None, "is required: the queue the task is routed to (a pool's queue)")
    for code in task["retry_on_exit"]:
        if not 1 <= code <= 255:
            raise sec.fail("retry_on_exit", code, "must hold exit codes from 1 to 255 (0 is success)")
    _param_rules(sec, task)
    if task["call"] is not None:
        given = [k for k in COMMAND_ONLY if k in sec.data]
        if given:
            raise sec.fail(given[0], sec.data[given[0]], "applies to a command task only")
        return
    _command_placeholders(sec, task)


def _param_rules(sec: _Section, task: dict[str, Any]) -> None:
    """choices: and patterns: name declared params; a pattern compiles; each default obeys its rules."""
    for key in ("choices", "patterns"):
        for name, rule in task[key].items():
            if name not in task["params"]:
                declared = ", ".join(task["params"]) or "none"
                raise sec.fail(f"{key}.{name}", name, f"names no declared param (params: {declared})")
            if key == "patterns":
                _check_pattern(sec, f"{key}.{name}", rule)
    probe = schema.TaskSettings(name=sec.name, queue="", choices=task["choices"], patterns=task["patterns"])
    for name, default in task["params"].items():
        problem = schema.param_rule_problem(probe, name, default)
        if problem:
            raise sec.fail(f"params.{name}", default, problem)


def _check_pattern(sec: _Section, key: str, pattern: str) -> None:
    if len(pattern) > schema.MAX_PARAM_PATTERN:
        raise sec.fail(key, pattern, f"must be at most {schema.MAX_PARAM_PATTERN} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise sec.fail(key, pattern, f"must be a regular expression ({exc})") from None


COMMAND_ONLY = ("cwd", "env", "retry_on_exit", "cleanup", "cleanup_timeout", "report")


def _command_placeholders(sec: _Section, task: dict[str, Any]) -> None:
    """The command's and the clean-up's placeholders are declared params; {report} is the report's path,
    in the command when (and only when) report: is given."""
    given = sec.data.get("cleanup")
    if isinstance(given, str) or ("cleanup" in sec.data and not task["cleanup"]):
        raise sec.fail("cleanup", given, "must be a list: the program and its arguments, e.g. [relay, off]")
    report = schema.REPORT_PLACEHOLDER
    if report in task["params"] and task["report"]:
        raise sec.fail("params", report, f"must not declare {report}: {{{report}}} is the report file's path")
    fills = set(task["params"]) | ({report} if task["report"] else set())
    for key in ("command", "cleanup"):
        missing = sorted(schema.command_placeholders(task[key]) - fills)
        if missing:
            hint = "add report: junit" if missing[0] == report else "declare it under params:"
            raise sec.fail(key, list(task[key]), f"has a placeholder with no value: {{{missing[0]}}} ({hint})")
    if task["report"] and report not in schema.command_placeholders(task["command"]):
        raise sec.fail(
            "report",
            task["report"],
            f"needs {{{report}}} in the command, where it writes it (e.g. --junitxml={{report}})",
        )


@_validates(PoolSettings)
def _pool(sec: _Section, pool: dict[str, Any]) -> dict[str, Any]:
    """Each device and volume is one (schema.mount), each at its own container path; a volume's relative host
    path is made absolute here, from the config file's folder: loaded, every entry is host:container:mode."""
    targets: set[str] = set()
    for name in ("devices", "volumes"):
        found = []
        for entry in pool[name]:
            spec = schema.mount(entry, device=name == "devices")
            if isinstance(spec, str):
                raise sec.fail(name, entry, spec)
            host, target, mode = spec
            if target in targets:
                raise sec.fail(name, entry, f"mounts a second thing at {target}: give each its own container path")
            targets.add(target)
            found.append(f"{sec.path.parent.absolute() / host}:{target}:{mode}")  # an absolute host path stays
        pool[name] = tuple(found)
    return pool


@_validates(PoolAutoscale)
def _pool_autoscale(sec: _Section, scale: dict[str, Any]) -> dict[str, Any]:
    """min <= max."""
    if scale["min"] > scale["max"]:
        raise sec.fail("min", scale["min"], f"must be <= {sec.key('max')} ({scale['max']})")
    return scale


@_validates(AutoscaleSettings)
def _autoscale(sec: _Section, loop: dict[str, Any]) -> dict[str, Any]:
    """A pool's range written in the loop's section: its message says where it goes."""
    misplaced = next((k for k in schema.names(PoolAutoscale) if k in sec.data), None)
    if misplaced:
        known = ", ".join(sorted(schema.names(AutoscaleSettings)))
        raise sec.fail(
            misplaced,
            sec.data[misplaced],
            f"is not a known key (known: {known}); a pool's range goes in pools.NAME.autoscale",
        )
    return loop


# --------------------------------------------------------------------------- the hooks' checks


def _check_queue_owners(sec: _Section, pools: dict[str, PoolSettings]) -> None:
    owner: dict[str, str] = {}
    for pool in pools.values():
        for queue in pool.queues:
            if owner.get(queue) == pool.name:
                raise sec.fail(f"pools.{pool.name}.queues", queue, "is listed twice")
            if queue in owner:
                raise sec.fail(
                    f"pools.{pool.name}.queues",
                    queue,
                    f"is already served by pool {owner[queue]}: a queue belongs to one pool",
                )
            owner[queue] = pool.name


def _check_routes(sec: _Section, tasks: dict[str, TaskSettings], pools: dict[str, PoolSettings]) -> None:
    served = [q for p in pools.values() for q in p.queues]
    for task in tasks.values():
        if task.queue not in served:
            raise sec.fail(f"tasks.{task.name}.queue", task.queue, f"must be a pool's queue ({', '.join(served)})")
    first, *others = (tasks[name] for name in schema.DEFAULT_ROUTES)  # the built-ins: one queue each
    for task in others:
        if task.queue == first.queue:
            raise sec.fail(f"tasks.{task.name}.queue", task.queue, f"must differ from {first.name}'s queue")


def _tls_file(sec: _Section, key: str, value: str | None) -> str | None:
    """A file of broker.tls (or the $BROKER_TLS_* that overrides it): it must exist and be readable now,
    not at the first connection (exit 2 naming the key and the file)."""
    source = sec.key(key)
    if TLS_ENV[key] in sec.env:
        value, source = sec.env[TLS_ENV[key]], "$" + TLS_ENV[key]
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
