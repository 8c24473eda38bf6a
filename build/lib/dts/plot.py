"""load_test.py --plot: a latency histogram and a completion timeline per task type (matplotlib: requirements-plot.txt, which `make install` installs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dts.errors import CliError, ExitCode


def write_plot(samples: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install -r requirements-plot.txt", ExitCode.USAGE) from None
    done = [s for s in samples if s["received_at"] is not None and s["ok"]]
    t0 = min(s["sent_at"] for s in samples)
    fig, (hist, timeline) = plt.subplots(1, 2, figsize=(11, 4))
    for task in sorted({s["task"] for s in samples}):
        lat = [s["received_at"] - s["sent_at"] for s in done if s["task"] == task]
        hist.hist(lat, bins=20, alpha=0.6, label=task)
        finished = sorted(s["received_at"] - t0 for s in done if s["task"] == task)
        timeline.step(finished, range(1, len(finished) + 1), where="post", label=task)
    hist.set(title="End-to-end latency", xlabel="seconds", ylabel="tasks")
    timeline.set(title="Completions over time", xlabel="seconds since first publish", ylabel="tasks completed")
    hist.legend()
    timeline.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
