"""The stub engine (`engine.name: stub`, `--engine stub`): pools in memory, for tests and dry runs (like
dramatiq's `brokers/stub.py`): no process, no container, no Docker. Its workers are names in a dict that
every StubEngine of a process shares, as every LocalEngine sees the same supervisord, so a test can drive
the pool commands (which make their own engine) and look at what they did. Nothing runs a task.

    scale.main(["set", "worker-a", "3", "--engine", "stub"])
    StubEngine.sizes                                  # {"worker-a": 3}; StubEngine.calls: what was asked

A worker of the stub answers no ping: `status` shows it as not answering, and `health` exits 4.
"""

from __future__ import annotations

from typing import ClassVar

from dts.engines.base import Engine, check_sizes, replicas, scale_plan


class StubEngine(Engine):
    """Pools as counters; resize() changes them at once."""

    name = "stub"
    sizes: ClassVar[dict[str, int]] = {}  # pool -> workers, shared by every instance (reset() empties it)
    calls: ClassVar[list[tuple]] = []  # ("resize", {...}), ("stop", volumes), ... in the order asked

    def __init__(self, settings, app):
        self.settings, self.app = settings, app

    @classmethod
    def reset(cls) -> None:
        cls.sizes.clear()
        cls.calls.clear()

    def node(self, pool: str, index: int) -> str:
        return f"{pool}@stub-{index}"

    def workers(self) -> dict[str, list[str]]:
        return {
            pool: [self.node(pool, i) for i in range(1, self.sizes.get(pool, 0) + 1)] for pool in self.settings.pools
        }

    def resize(self, desired: dict[str, int]) -> dict[str, int]:
        check_sizes(desired, self.settings)
        self.calls.append(("resize", dict(desired)))
        plan = scale_plan(replicas(self), desired)
        self.sizes.update(desired)
        return plan

    def stop(self, volumes: bool = False) -> dict[str, int]:
        self.calls.append(("stop", volumes))
        before = replicas(self)
        self.sizes.clear()
        return {pool: -count for pool, count in before.items()}

    def logs(self, lines: int, follow: bool) -> None:
        for node in (node for nodes in self.workers().values() for node in nodes):
            print(f"{node}: (the stub engine keeps no log)")

    def status_lines(self) -> list[str]:
        return [f"stub: {sum(self.sizes.values())} worker(s) in memory"]
