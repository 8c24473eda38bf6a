from __future__ import annotations

import pytest

from bench import board_dir


def pytest_addoption(parser):
    parser.addoption("--board", default="rev-a")


@pytest.fixture
def board(request):
    return board_dir(request.config.getoption("--board"))
