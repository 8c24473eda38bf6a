"""What task events cost: the same no-op load (1 + 1 local workers, results collected) with
`monitoring.task_events` true and false, alternated round by round so both see the same machine.

    python bench/task_events.py                  # 3 rounds of 500 task_a + 500 task_b each way
    python bench/task_events.py --tasks 1000 --rounds 5

Prints each round's throughput (tasks/s) and the ratio of the medians (events on / off). Uses the
broker of the CLIs ($BROKER_URL, else .env from `make broker`); stops the workers it started.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import PROJECT_DIR, RUN_DIR
from dts.app import make_app
from dts.config import load_settings
from dts.engines.local import LocalEngine
from dts.testing import local_workers


def variant_config(events: bool) -> Path:
    """test-config.yml with 1 worker per pool and task events on or off."""
    doc = yaml.safe_load((PROJECT_DIR / "test-config.yml").read_text())
    doc.setdefault("monitoring", {})["task_events"] = events
    for pool in doc["pools"].values():
        pool["replicas"] = 1
    path = RUN_DIR / "bench" / f"task-events-{'on' if events else 'off'}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def one_load(config: Path, tasks: int) -> float:
    settings = load_settings(config)
    app = make_app(settings)
    argv = ["load_test.py", "--config", str(config), "--tasks", str(tasks), "--json", "--no-save"]
    argv += ["--duration-a", "0", "--duration-b", "0"]
    with local_workers(settings, app, RUN_DIR / "bench" / config.stem):
        proc = subprocess.run([sys.executable, *argv], cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)["reports"][0]["throughput"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--tasks", type=int, default=500, help="tasks of each kind per load (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="loads per variant, alternated (default 3)")
    args = parser.parse_args()
    if any(LocalEngine(replace(load_settings()), None).workers().values()):
        print("stop the running local workers first (make down ENGINE=local)", file=sys.stderr)
        return 2
    configs = {"on": variant_config(True), "off": variant_config(False)}
    seen: dict[str, list[float]] = {"on": [], "off": []}
    for n in range(args.rounds):
        for name, config in configs.items():
            seen[name].append(one_load(config, args.tasks))
            print(f"round {n + 1}: task events {name:<3} {seen[name][-1]:7.1f} tasks/s", flush=True)
    on, off = statistics.median(seen["on"]), statistics.median(seen["off"])
    print(f"median: events on {on:.1f} tasks/s, off {off:.1f} tasks/s; on/off = {on / off:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
