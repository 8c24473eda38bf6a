"""The one `dts` command: every sub-command's --help has examples and its exit codes and fits the terminal,
the shared options are declared once, and the top-level scripts are the same commands as `dts`'s."""

from __future__ import annotations

import argparse
import re

import pytest
from helpers import ROOT

from dts.cli.main import build_parser


def leaves(parser: argparse.ArgumentParser, prog: str = "dts"):
    """(prog, parser) of every command that runs something: those without sub-commands of their own."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prog, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, f"{prog} {name}")


COMMANDS = dict(leaves(build_parser()))


def test_the_commands_the_issue_names_are_there():
    wanted = {"init", "up", "down", "scale", "status", "health", "logs", "dispatch", "load-test", "autoscale"}
    wanted |= {"dlq list", "dlq replay", "dlq purge", "dlq migrate", "flower", "worker", "broker", "k8s"}
    assert {f"dts {name}" for name in wanted | {"config check"}} <= set(COMMANDS)


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_every_help_has_examples_and_exit_codes(prog):
    text = COMMANDS[prog].format_help()
    assert "examples:" in text and "exit codes:" in text, prog
    example = re.search(rf"^  {re.escape(prog)}\b", text, re.M)
    assert example, f"{prog} --help shows no example of itself"


@pytest.mark.parametrize("columns", [90, 72])
def test_every_help_fits_the_terminal(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))  # argparse formats for 2 columns fewer
    for prog, parser in [("dts", build_parser()), *COMMANDS.items()]:
        wide = [line for line in parser.format_help().splitlines() if len(line) > columns - 2]
        assert not wide, f"{prog} --help at COLUMNS={columns}: {wide}"


def test_a_long_help_line_goes_on_under_its_own_text():
    from dts.reports.console import fit

    example = "  dts up --engine swarm   deploy the pools as a swarm stack (makes a single-node swarm if needed)"
    assert fit(example, 60) == [
        "  dts up --engine swarm   deploy the pools as a swarm stack",
        "                          (makes a single-node swarm if",
        "                          needed)",
    ]
    codes = "exit codes: 0 ok, 1 a worker failed to start, 2 bad usage or config, 3 broker unreachable"
    assert fit(codes, 60) == [
        "exit codes: 0 ok, 1 a worker failed to start, 2 bad usage or",
        "            config, 3 broker unreachable",
    ]
    prose = "Every command takes --config PATH (default: ./test-config.yml or the nearest one above) and -v."
    assert fit(prose, 60) == [
        "Every command takes --config PATH (default:",
        "./test-config.yml or the nearest one above) and -v.",
    ]
    assert fit("  dts down   stop every worker", 60) == ["  dts down   stop every worker"]


def test_the_shared_options_are_declared_once():
    declared = {flag: [] for flag in ('"--config"', '"-v"', '"--json"')}
    for path in sorted((ROOT / "dts").rglob("*.py")):
        for flag in declared:
            if re.search(rf"add_argument\(\s*{flag}", path.read_text()):
                declared[flag].append(str(path.relative_to(ROOT)))
    assert declared['"--config"'] == ["dts/cli/__init__.py"]
    assert declared['"-v"'] == ["dts/cli/__init__.py"]


def test_version(capsys):
    from dts import __version__

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dts {__version__}"


@pytest.mark.parametrize("command", ["dispatch", "load-test", "worker", "dlq list", "config check", "status"])
def test_a_usage_error_names_the_dts_command(command, capsys):
    from dts.cli.main import main

    with pytest.raises(SystemExit) as done:
        main([*command.split(), "--no-such-flag"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    # argparse reports an unknown flag from the parser that parsed the line: the command's, or `dts`'s
    assert re.match(r"dts( [a-z-]+)?: error: unrecognized arguments: --no-such-flag \(see dts", err), err
    assert err.count("\n") == 1
