"""The docs' reference pages are the code's: `make docs-check` (scripts/docs_reference.py --check) passes
on the tree and fails as soon as a config key, a CLI flag or a make target is added without regenerating."""

from __future__ import annotations

import shutil
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import docs_reference


def test_the_reference_pages_match_the_code():
    assert docs_reference.main(["--check"]) == 0


def test_a_new_cli_flag_makes_the_check_fail(monkeypatch, capsys):
    import dispatch

    built = dispatch.build_parser

    def with_a_flag():
        parser = built()
        parser.add_argument("--brand-new", help="a flag nobody documented")
        return parser

    monkeypatch.setattr(dispatch, "build_parser", with_a_flag)
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
