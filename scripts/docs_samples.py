"""The sample outputs the docs show, regenerated from a real run (make docs-samples):

    make up ENGINE=local                 # the broker and the shipped pools (1 + 1 workers)
    python scripts/docs_samples.py       # runs each command below, writes docs/samples/NAME.txt (+ NAME.json)

Each text file starts with the command as a user types it, then what it printed (stdout, or stderr for an
error), piped (no colour), fitted to the page's code blocks (`for_the_page`: the live view's lines, and any
line wider than 88 characters, have their task ids shortened to their first 8 characters and `…`; a line
still too wide has its middle cut out). Where the command writes a result file or has --json, the JSON is kept beside it:
tests/test_docs_samples.py renders it again with the report code and checks that the text matches, so a
changed table header or line format fails until the samples are regenerated (the reports themselves fit
88 characters: a cut report line fails there too).

It also records, in docs/samples/renderers.json, a hash of the source of each function that prints a
sample (RENDERERS): `make docs-check` fails on a sample whose renderer changed since it was made, even
where the stored JSON would render the same.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "samples"
TIMEOUT = 120  # seconds per command: the slowest (a task giving up after its retries) takes about 8

# name -> (the command as shown, its arguments, where the JSON comes from: "result" file, "--json" run, or None)
SAMPLES = {
    "dispatch": ("python dispatch.py | cat", ["dispatch.py"], "result"),
    "dispatch-retry": ("python dispatch.py --fail-times 1 | cat", ["dispatch.py", "--fail-times", "1"], "result"),
    "dispatch-quiet": ("python dispatch.py --quiet", ["dispatch.py", "--quiet", "--no-save"], None),
    "dispatch-gave-up": (
        "python dispatch.py --fail-rate 1 | cat",
        ["dispatch.py", "--fail-rate", "1"],
        "result",
    ),
    "health": ("python scale.py health --engine local", ["scale.py", "health", "--engine", "local"], "--json"),
    "status": ("python scale.py status --engine local", ["scale.py", "status", "--engine", "local"], "--json"),
    "load-test": ("python load_test.py --tasks 20", ["load_test.py", "--tasks", "20"], "result"),
    "bad-config": (
        "python dispatch.py --config docs/samples/bad-config.yml",
        ["dispatch.py", "--config", "docs/samples/bad-config.yml"],
        None,
    ),
}
# sample -> the functions that print it (file:function): the report (dts/reports/) and the live lines
DISPATCH = (
    "dts/reports/dispatch_report.py:dispatch_rows",
    "dts/reports/dispatch_report.py:dispatch_totals",
    "dts/reports/dispatch_report.py:challenge_lines",
    "dts/reports/console.py:table_lines",
    "dts/reports/console.py:fit",
    "dts/runs/live.py:TaskEvent.line",
)
STATUS = (
    "dts/reports/status_report.py:status_rows",
    "dts/reports/status_report.py:node_lines",
    "dts/reports/status_report.py:fitted",
    "dts/reports/console.py:table_lines",
    "dts/reports/console.py:fit",
)
RENDERERS = {
    "dispatch": DISPATCH,
    "dispatch-retry": DISPATCH,
    "dispatch-gave-up": DISPATCH,
    "dispatch-quiet": ("dts/reports/dispatch_report.py:bare_results",),
    "health": ("dts/reports/status_report.py:render_health", *STATUS),
    "status": ("dts/reports/status_report.py:render_status", *STATUS),
    "load-test": (
        "dts/reports/load_report.py:render_load_test",
        "dts/reports/load_report.py:render_load",
        "dts/reports/load_report.py:render_task_types",
        "dts/reports/console.py:fit",
    ),
}
HASHES = OUT / "renderers.json"  # sample -> {file:function: the hash of its source when the sample was made}
RESULT_FILE = re.compile(r"^Result file: (?P<path>\S+)$", re.MULTILINE)
TASK_ID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
CUT = " … "  # where a line's middle was cut out
LIVE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")  # a line of the live view (dts.live): its time first


def for_the_page(text: str) -> str:
    """The output as the page shows it: a line of the live view, or any line wider than the reports' width
    (88), with its task ids shortened (`4f386f66…`), then, still too wide, its middle cut out at spaces (CUT), its start and its
    end kept."""
    sys.path.insert(0, str(ROOT))
    from dts.reports.console import WIDTH as width

    lines = []
    for line in text.splitlines():
        if len(line) > width or LIVE.match(line):  # every live line alike: the same task, the same id
            line = TASK_ID.sub(r"\1…", line)
        if len(line) > width:
            tail = line[-(width // 4) :]
            tail = tail[tail.find(" ") + 1 :]
            head = line[: width - len(tail) - len(CUT)]
            line = head[: head.rfind(" ")].rstrip() + CUT + tail
        lines.append(line)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def sample(name: str, shown: str, args: list[str], source: str | None) -> None:
    done = run(args)
    text = done.stdout if done.stdout.strip() else done.stderr
    (OUT / f"{name}.txt").write_text(for_the_page(f"$ {shown}\n{text}"))
    if source == "result":
        path = ROOT / RESULT_FILE.search(done.stdout)["path"]
        (OUT / f"{name}.json").write_text(path.read_text())
    elif source == "--json":
        document = json.loads(run([*args, "--json"]).stdout)
        (OUT / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote docs/samples/{name}.txt (exit {done.returncode})")


def source_hash(renderer: str) -> str:
    """The first 12 hex digits of the sha256 of a function's source, named `path/to/module.py:Class.function`."""
    sys.path.insert(0, str(ROOT))
    path, _, name = renderer.partition(":")
    found = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    for part in name.split("."):
        found = getattr(found, part)
    return hashlib.sha256(inspect.getsource(found).encode()).hexdigest()[:12]


def record_renderers(names) -> None:
    """Store the hashes of the renderers of these samples (the others' are kept) in HASHES."""
    stored = json.loads(HASHES.read_text()) if HASHES.exists() else {}
    stored.update({name: {r: source_hash(r) for r in RENDERERS[name]} for name in names if name in RENDERERS})
    HASHES.write_text(json.dumps(dict(sorted(stored.items())), indent=2) + "\n")


def changed_renderers() -> list[str]:
    """One line per sample whose renderer's source no longer has the hash stored when it was made."""
    stored = json.loads(HASHES.read_text()) if HASHES.exists() else {}
    return [
        f"docs/samples/{name}.txt: its renderer ({renderer}) changed since the sample was made: run `make docs-samples`"
        for name, renderers in RENDERERS.items()
        for renderer in renderers
        if stored.get(name, {}).get(renderer) != source_hash(renderer)
    ]


def main(argv: list[str]) -> int:
    if run(["scale.py", "health", "--engine", "local"]).returncode != 0:
        print("docs_samples: the pools are not healthy: start them with `make up ENGINE=local` first", file=sys.stderr)
        return 1
    made = [name for name in SAMPLES if not argv or name in argv]
    for name in made:
        sample(name, *SAMPLES[name])
    record_renderers(made)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
