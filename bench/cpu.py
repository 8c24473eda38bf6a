"""Where the CPU goes during a load of `make bench`: seconds of CPU used by the workers (each process and
its descendants), the broker (beam.smp) and the load generator, and how busy the machine was.

    meter = CpuMeter(worker_pids)        # snapshot now
    ... run the load (the generator as a child process, waited for) ...
    usage = meter.stop(tasks)            # {"workers_ms", "broker_ms", "generator_ms", "all_ms", "busy"}

Per task, in milliseconds of CPU. `busy` is the share of all cores' time that was not idle (/proc/stat)
over the load: near 1.0, the machine itself is the limit, not any one process. The generator's CPU comes
from the children this process waited for meanwhile (getrusage RUSAGE_CHILDREN): run it as a child.
Linux only (/proc).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """utime + stime of one process, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return out


def tree(pids: list[int]) -> set[int]:
    """The processes and all their live descendants."""
    parents, found = _parents(), set(pids)
    grew = True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in found and pid not in found}
        found |= new
        grew = bool(new)
    return found


def broker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (idle and iowait count as not busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    def __init__(self, worker_pids: list[int]):
        self.worker_pids = list(worker_pids)
        self.broker = broker_pids()
        self.start = self._snapshot()

    def _snapshot(self) -> dict[str, float]:
        workers = tree(self.worker_pids)
        busy, total = machine_ticks()
        return {
            "workers": sum(process_seconds(p) for p in workers),
            "broker": sum(map(process_seconds, self.broker)),
            "generator": children_seconds(),
            "busy": busy,
            "total": total,
        }

    def stop(self, tasks: int) -> dict[str, float]:
        end = self._snapshot()
        delta = {k: end[k] - self.start[k] for k in end}
        per_task = {f"{k}_ms": 1000 * delta[k] / max(1, tasks) for k in ("workers", "broker", "generator")}
        per_task["all_ms"] = sum(per_task.values())
        per_task["busy"] = delta["busy"] / delta["total"] if delta["total"] else None
        return per_task
