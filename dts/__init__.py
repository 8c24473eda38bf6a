"""The Distributed Test System: route test jobs to isolated pools of Celery workers over RabbitMQ.

`pip install .` gives the `dts` command (dts.cli.main); docs/concepts/architecture.md maps the modules.
A task of your own (`call:` in test-config.yml) raises `dts.Transient` for a failure worth a retry.
"""

from dts.errors import Transient

__all__ = ["Transient", "__version__"]
__version__ = "0.9.0"
