"""Fixtures of the observability tests: Debian's prometheus/promtool (a failure, not a skip, under CI)."""
from __future__ import annotations


import pytest

from llmserve.core.errors import ServerError
from llmserve.observability import prometheus
from tests.support import missing_tool


def _binary(name: str) -> str:
    try:
        return prometheus.binary(name)
    except ServerError as err:
        missing_tool(f"no {name} for the observability tests: {err.what} {err.fix}")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _binary("prometheus")
