"""The Celery app of the Distributed Test System and its two tasks, as a reader of this repository expects
to find them. Both come from the package (dts.app makes the app from the settings; dts.runtime.work does the work).

`task_a` is routed to `queue_a` and `task_b` to `queue_b` (by default; `tasks:` in test-config.yml), each
served by its own pool of workers (`pools:`).

    dts worker worker-a                                          # a worker of pool worker-a (what engines run)
    DTS_CONFIG=my-config.yml python dispatch.py                  # another config
    BROKER_URL=amqp://user:pw@host:5672/vhost python dispatch.py # another broker
"""

from __future__ import annotations

from dts.app import make_app, task_name
from dts.config import load_settings

app = make_app(load_settings())  # the settings of test-config.yml ($DTS_CONFIG)
task_a = app.tasks[task_name("task_a")]
task_b = app.tasks[task_name("task_b")]
TASKS = {"task_a": task_a, "task_b": task_b}
