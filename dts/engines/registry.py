"""The engines' names: the registry (an engine's name -> the dotted path of its class, resolved on use, as
celery's `celery.concurrency` ALIASES are). It imports nothing of the project, so the config validates
`engine.name` against it without loading the engines.

    names()                                      # ('auto', 'compose', 'local', 'swarm', 'stub')
    register("k8s-live", "mypkg.engines:KubernetesEngine")   # a new engine: its module plus this one line
"""

from __future__ import annotations

AUTO = "auto"  # compose when a Docker engine answers and compose is installed, else local (never swarm)
ENGINES = {
    "compose": "dts.engines.compose:ComposeEngine",
    "local": "dts.engines.local:LocalEngine",
    "swarm": "dts.engines.swarm:SwarmEngine",
    "stub": "dts.engines.stub:StubEngine",  # pools as counters in memory: for tests and dry runs
}


def register(name: str, dotted: str) -> None:
    """Make the engine class at `dotted` ("module:Class") known as `name`."""
    ENGINES[name] = dotted


def names() -> tuple[str, ...]:
    """Every name an engine can be asked for by: auto, then the registered engines."""
    return (AUTO, *ENGINES)
