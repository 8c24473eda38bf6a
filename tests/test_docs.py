"""The docs' reference pages are the code's: `make docs-check` (scripts/docs_reference.py --check) passes
on the tree and fails as soon as a config key, a CLI flag or a make target is added without regenerating."""

from __future__ import annotations

import re
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


def guide_pages():
    """The pages a user reads as guides: README, SCALING.md and docs/ (not the generated reference, the
    samples or the changelog, which is where history goes)."""
    yield ROOT / "README.md"
    yield ROOT / "SCALING.md"
    for page in sorted((ROOT / "docs").rglob("*.md")):
        if page.parent.name not in ("reference", "samples") and page.name != "changelog.md":
            yield page


def prose(text: str) -> str:
    """The text outside fenced code blocks (pasted output may carry its own timestamps and paths)."""
    return re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("page", list(guide_pages()), ids=lambda p: str(p.relative_to(ROOT)))
def test_guides_have_no_dates_or_machine_paths(page):
    text = prose(page.read_text())
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", text), "a date in the guide: history goes to CHANGELOG.md"
    assert not re.findall(r"(?<![\w.])/(?:work|home|tmp/fresh)/\S+", text), "a machine path in the guide"
