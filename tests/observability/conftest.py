"""Fixtures of the observability tests: Debian's prometheus/promtool (a failure, not a skip, under CI)."""
from __future__ import annotations

import os

import pytest

from llmserve.core.errors import ServerError
from llmserve.observability import prometheus


def _binary(name: str) -> str:
    try:
        return prometheus.binary(name)
    except ServerError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {name} for the observability tests: {err}")
        pytest.skip(f"no {name} here: {err.fix}")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _binary("prometheus")
