"""The docs' reference pages are the code's: `make docs-check` (scripts/docs_reference.py --check) passes
on the tree and fails as soon as a config key, a CLI flag or a make target is added without regenerating."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import docs_reference


def test_the_reference_pages_match_the_code():
    assert docs_reference.main(["--check"]) == 0


def test_a_new_cli_flag_makes_the_check_fail(monkeypatch, capsys):
    from dts.cli import dispatch

    built = dispatch.add_arguments

    def with_a_flag(parser):
        built(parser)
        parser.add_argument("--brand-new", help="a flag nobody documented")

    monkeypatch.setattr(dispatch, "add_arguments", with_a_flag)
    assert docs_reference.main(["--check"]) == 1
    assert "docs/reference/cli.md" in capsys.readouterr().err


def test_a_new_config_key_makes_the_check_fail(monkeypatch, capsys):
    import dataclasses

    import dts.config

    declared = dts.config.keys

    def with_a_key():
        first = next(iter(declared()))
        yield from declared()
        yield dataclasses.replace(first, name="brand_new", help="a key nobody documented")

    monkeypatch.setattr(dts.config, "keys", with_a_key)
    assert docs_reference.main(["--check"]) == 1
    assert "docs/reference/config.md" in capsys.readouterr().err


def test_a_new_make_target_makes_the_check_fail(monkeypatch, tmp_path, capsys):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    with (tmp_path / "Makefile").open("a") as f:
        f.write("\nbrand-new: ## a target nobody documented\n\t@true\n")
    monkeypatch.setattr(docs_reference, "MAKEFILE", tmp_path / "Makefile")
    assert docs_reference.main(["--check"]) == 1
    assert "make-targets.md" in capsys.readouterr().err


@pytest.mark.parametrize("page", sorted(docs_reference.PAGES))
def test_each_page_says_it_is_generated(page):
    assert (docs_reference.OUT / page).read_text().startswith(docs_reference.HEADER)


def test_a_new_environment_variable_makes_the_check_fail(monkeypatch, capsys):
    from dts.config import variables

    extra = variables.Variable("DTS_BRAND_NEW", variables.OUTPUT, "a variable nobody documented")
    monkeypatch.setattr(variables, "VARIABLES", (*variables.VARIABLES, extra))
    assert docs_reference.main(["--check"]) == 1
    assert "docs/reference/environment.md" in capsys.readouterr().err


def test_the_readme_is_a_short_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


import docs_check  # noqa: E402 - scripts/ is on sys.path above


@pytest.mark.parametrize("page", list(docs_check.guide_pages()), ids=lambda p: str(p.relative_to(ROOT)))
def test_guides_carry_no_workshop_notes(page):
    assert docs_check.workshop_notes(page) == []


@pytest.mark.parametrize(
    "planted, what",
    [
        ("Measured on 2026-12-04 against the previous commit.", "a date"),
        ("Run at 4e1c2b9a, with the same config.", "a commit reference"),
        ("These machines are shared, so the figures are noisy.", "'these machines'"),
        ("Compare both in a `git worktree` of the old tree.", "`git worktree`"),
        ("Not run here: a second machine.", "what was not run here"),
        ("Then `worker-a@buildhost-1` answers the ping.", "this machine's host name"),
        ("Its log is in /work/main/.run/worker-a-1.log.", "a path on the machine"),
    ],
)
def test_make_docs_check_fails_on_a_planted_workshop_note(tmp_path, monkeypatch, capsys, planted, what):
    page = tmp_path / "guide.md"
    page.write_text(f"# A guide\n\nHow to scale a pool.\n\n```\n{planted}\n```\n\n{planted}\n")
    monkeypatch.setattr(docs_check, "guide_pages", lambda: [page])
    monkeypatch.setattr(docs_check.socket, "gethostname", lambda: "buildhost")
    assert docs_check.main([]) == 1
    (line,) = [n for n in capsys.readouterr().err.splitlines() if what in n]  # the prose, not the code block
    assert line.startswith(f"{page}:9: {what}"), line


def test_make_docs_check_fails_on_a_command_line_wider_than_the_page(tmp_path, monkeypatch, capsys):
    page = tmp_path / "guide.md"
    wide = "dts dispatch --no-save   # " + "a comment that belongs under the block, " * 2
    page.write_text(f"# A guide\n\n```bash\ndts status\n{wide}\n```\n")
    monkeypatch.setattr(docs_check, "guide_pages", lambda: [page])
    monkeypatch.setattr(docs_check, "all_pages", lambda: [page])
    monkeypatch.setattr(docs_check, "coverage_problems", lambda: [])
    assert docs_check.main([]) == 1
    (line,) = [n for n in capsys.readouterr().err.splitlines() if "characters" in n]
    assert line.startswith(f"{page}:5: a command line of {len(wide)} characters (at most 88): put its comment")


def test_make_docs_check_fails_on_an_output_line_wider_than_the_page(tmp_path, monkeypatch, capsys):
    """Every fenced block counts, as the site shows it: pasted output, yaml, a generated reference page, a
    sample a page includes (reported at its own line and at the page's)."""
    wide = "Result from task_a: FAILED: " + "a long error, " * 5
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "run.txt").write_text(f"$ dts dispatch\n{wide}\n")
    guide, reference = tmp_path / "guide.md", tmp_path / "reference" / "cli.md"
    guide.write_text(f'# A guide\n\n```text\n$ dts dispatch\n{wide}\n```\n\n```\n--8<-- "samples/run.txt"\n```\n')
    reference.parent.mkdir()
    reference.write_text(f"# Command line\n\n```yaml\nkey: {'x' * 88}\n```\n\n```text\n{'y' * 88}\n```\n")
    monkeypatch.setattr(docs_check, "guide_pages", lambda: [guide])
    monkeypatch.setattr(docs_check, "all_pages", lambda: [guide, reference])
    monkeypatch.setattr(docs_check, "coverage_problems", lambda: [])
    monkeypatch.setattr(docs_check.docs_blocks, "SNIPPETS", tmp_path)
    assert docs_check.main([]) == 1
    found = [n for n in capsys.readouterr().err.splitlines() if "characters" in n]
    assert found == [
        f"{guide}:5: a line of {len(wide)} characters in a text block (at most 88): wrap it, cut it (`…`) and "
        "say so above the block, or draw it narrower",
        f"{tmp_path}/samples/run.txt:2 (included at {guide}:9): a line of {len(wide)} characters in a plain "
        "block (at most 88): make the report that prints it fit, then `make docs-samples`",
        f"{reference}:4: a line of 93 characters in a yaml block (at most 88): make the code that draws it fit, "
        "then `make docs-ref`",
    ]  # the 88-character line fits


import docs_samples  # noqa: E402 - scripts/ is on sys.path above


def test_every_samples_renderer_is_the_one_it_was_made_with():
    assert set(docs_samples.RENDERERS) <= set(docs_samples.SAMPLES)
    assert docs_samples.changed_renderers() == []


def test_make_docs_check_fails_on_a_sample_whose_renderer_changed(tmp_path, monkeypatch, capsys):
    stored = json.loads(docs_samples.HASHES.read_text())
    stored["load-test"]["dts/reports/load_report.py:render_load"] = "0" * 12  # as if made by other code
    (tmp_path / "renderers.json").write_text(json.dumps(stored))
    monkeypatch.setattr(docs_samples, "HASHES", tmp_path / "renderers.json")
    for nothing_else in ("guide_pages", "all_pages"):
        monkeypatch.setattr(docs_check, nothing_else, lambda: [])
    monkeypatch.setattr(docs_check, "coverage_problems", lambda: [])
    assert docs_check.main([]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "docs/samples/load-test.txt: its renderer (dts/reports/load_report.py:render_load) changed since the "
        "sample was made: run `make docs-samples`"
    ]
