"""`dts config check`: validate a config and print it resolved: every key with its value, defaults filled
in, the environment's overrides applied (BROKER_URL, .env), secrets redacted.

    dts config check                   # the project's test-config.yml, as YAML
    dts config check --json            # the same as one JSON document
    dts config check --config ci.yml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from dts.cli import HelpFormatter, Parser, json_option, run_main, shared_options
from dts.config import Settings, load_settings
from dts.errors import ExitCode, exit_epilog

PROG = "dts config"
DESCRIPTION = "Check a config file: valid (exit 0, printed resolved, secrets redacted) or one line naming the key."
EPILOG = """examples:
  dts config check                  the project's test-config.yml, resolved, as YAML
  dts config check --json | jq .pools
  dts config check --config lab.yml

""" + exit_epilog("config")


def plain(value: Any) -> Any:
    """Settings as YAML/JSON values: dataclasses as mappings, tuples as lists, paths as strings (pure)."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def resolved(settings: Settings) -> dict[str, Any]:
    """The settings as a document, with the broker URL's passwords redacted."""
    from dts.amqp.checks import redact_url

    doc = plain(settings)
    doc["broker"]["url"] = redact_url(settings.broker.url)
    return doc


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=DESCRIPTION, formatter_class=HelpFormatter, epilog=EPILOG)
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def add_commands(sub) -> None:
    sub.add_parser(
        "check",
        parents=[shared_options(), json_option()],
        help="validate the config, print it resolved",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    doc = resolved(settings)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        import yaml

        print(f"# {settings.path}: valid; resolved (defaults filled, environment applied, secrets redacted)")
        print(yaml.safe_dump(doc, sort_keys=False).rstrip())
    return ExitCode.OK


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_main(prog, build_parser(prog), run, argv)
