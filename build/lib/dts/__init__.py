"""The Distributed Test System: route test jobs to isolated pools of Celery workers over RabbitMQ.

`pip install .` gives the `dts` command (dts.cli.main); docs/concepts/architecture.md maps the modules.
"""

__version__ = "0.9.0"
