"""Unit tests: the one atomic file write (dts.files)."""

from __future__ import annotations

import os

import pytest

from dts.files import atomic_write, write_atomic


def test_write_atomic_replaces_the_file_with_its_mode(tmp_path):
    path = tmp_path / "secret"
    path.write_text("old")
    write_atomic(path, "new", mode=0o600)
    assert path.read_text() == "new"
    assert os.stat(path).st_mode & 0o777 == 0o600
    write_atomic(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]  # no temp file left behind


def test_an_error_while_writing_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("complete")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
