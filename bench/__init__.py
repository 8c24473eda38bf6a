"""The benchmark (`make bench`): this project against plain Celery and raw AMQP, in this repository."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent  # the repository: its test-config.yml, its .run/
RUN_DIR = PROJECT_DIR / ".run"
