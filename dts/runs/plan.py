"""What a dispatch sends (pure): the declared tasks it names, each with its kwargs, checked against the
config before anything is published. The config is the allowlist: a dispatch names a declared task and
fills its params; nothing else.

    task_arg("flash:board=rev-b,slot=2")       # argparse type of --task: ('flash', {'board': 'rev-b', 'slot': '2'})
    dispatch_plan(settings, [("flash", {"board": "rev-b"})], overrides={})   # [('flash', {'board': 'rev-b'})]
    dispatch_plan(settings, [], overrides={"fail_times": 2})    # dispatch.tasks, the built-ins' fault injection
    task_list(settings)                        # `dts dispatch --list`: every task, its route and params
"""

from __future__ import annotations

import argparse
from typing import Any

from dts.config import Settings, TaskSettings
from dts.config.schema import SIMULATED_KEYS, param_problem, param_rule_problem, task_spec
from dts.errors import CliError, ExitCode, excerpt

Plan = list[tuple[str, dict[str, Any]]]  # (a declared task's name, its kwargs)


def task_arg(text: str) -> tuple[str, dict[str, str]]:
    """argparse type of --task: NAME[:KEY=VALUE[,KEY=VALUE...]] (names checked here, values by the plan);
    a leading N* sends it N times."""
    spec = task_spec(text)
    if isinstance(spec, str):
        raise argparse.ArgumentTypeError(f"{spec} (got {excerpt(text)})")
    count, name, values = spec
    return [(name, values)] * count


task_arg.rule = "[N*]NAME[:KEY=VALUE,...]: a declared task, its params"


def _typed(task: str, key: str, value: str, like: Any) -> Any:
    """A dispatch's value as its declared default's type (a string stays a string, checked by the rule)."""
    where = f"--task {task}:{key}"
    if isinstance(like, bool):
        if value not in ("true", "false"):
            raise CliError(f"{where} must be true or false (got {excerpt(value)})", ExitCode.USAGE)
        return value == "true"
    if isinstance(like, int | float):
        try:
            return type(like)(value)
        except ValueError:
            kind = "an integer" if isinstance(like, int) else "a number"
            raise CliError(f"{where} must be {kind} (got {excerpt(value)})", ExitCode.USAGE) from None
    problem = param_problem(value)
    if problem:
        raise CliError(f"{where} {problem} (got {excerpt(value)})", ExitCode.USAGE)
    return value


def _simulated(spec: TaskSettings, given: dict[str, str]) -> dict[str, Any]:
    kwargs = {}
    for key, value in given.items():
        if key not in SIMULATED_KEYS:
            known = ", ".join(SIMULATED_KEYS)
            raise CliError(f"--task {spec.name}: unknown key {excerpt(key)} (a built-in takes {known})", ExitCode.USAGE)
        kind, low, high = SIMULATED_KEYS[key]
        number = _typed(spec.name, key, value, kind(0))
        if not low <= number <= high:
            raise CliError(f"--task {spec.name}:{key} must be from {low} to {high} (got {value})", ExitCode.USAGE)
        kwargs[key] = number
    return kwargs


def _own(spec: TaskSettings, given: dict[str, str]) -> dict[str, Any]:
    kwargs = {}
    for key, value in given.items():
        if key not in spec.params:
            declared = ", ".join(spec.params) or "none"
            raise CliError(f"--task {spec.name}: unknown param {excerpt(key)} (declared: {declared})", ExitCode.USAGE)
        kwargs[key] = _typed(spec.name, key, value, spec.params[key])
        problem = param_rule_problem(spec, key, kwargs[key])
        if problem:
            raise CliError(f"--task {spec.name}:{key} {problem} (got {excerpt(value)})", ExitCode.USAGE)
    return kwargs


def scenario_tasks(settings: Settings, scenario: str) -> list[tuple[str, dict[str, str]]]:
    """The tasks of a declared scenario (checked at load time), N* entries repeated."""
    if scenario not in settings.scenarios:
        declared = ", ".join(settings.scenarios) or "none"
        raise CliError(
            f"unknown scenario {excerpt(scenario)}: {settings.path.name} declares {declared}", ExitCode.USAGE
        )
    tasks = []
    for entry in settings.scenarios[scenario]:
        count, name, values = task_spec(entry)
        tasks += [(name, values)] * count
    return tasks


def dispatch_plan(settings: Settings, asked: list[tuple[str, dict[str, str]]], overrides: dict[str, Any]) -> Plan:
    """The tasks to send: those asked for (--task, a scenario), else dispatch.tasks; a built-in gets the run's
    fault injection (`overrides`: --fail-rate, --fail-times) under its own values. Unknown tasks, keys or
    values are a CliError (exit 2), before anything is sent."""
    plan: Plan = []
    for name, given in asked or [(name, {}) for name in settings.dispatch.tasks]:
        spec = settings.tasks.get(name)
        if spec is None:
            declared = ", ".join(settings.tasks)
            raise CliError(
                f"unknown task {excerpt(name)}: {settings.path.name} declares {declared} (dts dispatch --list)",
                ExitCode.USAGE,
            )
        own = spec.call or spec.command
        plan.append((name, _own(spec, given) if own else {**overrides, **_simulated(spec, given)}))
    return plan


def task_list(settings: Settings) -> list[str]:
    """Every declared task: its route (queue and pool), what it runs, its params; then dispatch.tasks."""
    lines = []
    for spec in settings.tasks.values():
        work = f"call {spec.call}" if spec.call else "simulated work (built-in)"
        if spec.command:
            work = "command " + " ".join(spec.command)
        params = ", ".join(f"{k}={v!r}{_rule_of(spec, k)}" for k, v in spec.params.items())
        lines.append(f"{spec.name}: {spec.queue} -> {settings.pool_for_task(spec.name).name}; {work}")
        if params:
            lines.append(f"  params: {params}")
    lines.append(f"dispatched without --task: {', '.join(settings.dispatch.tasks)}")
    lines += [f"scenario {name}: {' '.join(entries)}" for name, entries in settings.scenarios.items()]
    return lines


def _rule_of(spec: TaskSettings, param: str) -> str:
    """How --list shows a param's rule: ` (one of a|b)`, ` (matching RE)`, or nothing."""
    if param in spec.choices:
        return f" (one of {'|'.join(spec.choices[param])})"
    return f" (matching {spec.patterns[param]})" if param in spec.patterns else ""
