"""The benchmark (`make bench`): this project against plain Celery and raw AMQP, in this repository."""

import argparse
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent  # the repository: its test-config.yml, its .run/
RUN_DIR = PROJECT_DIR / ".run"


def parser_for(module: str, doc: str) -> argparse.ArgumentParser:
    """A bench module's parser: `python -m MODULE`, its docstring's first paragraph as the description and
    the whole docstring as the epilog (the commands it shows)."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc,
    )
