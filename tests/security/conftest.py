"""Fixtures of the security tests: the local nginx the gateway tests run (skip only outside CI)."""
from __future__ import annotations


import pytest

from llmserve.core.errors import ServerError
from llmserve.security import gateway
from tests.support import missing_tool


@pytest.fixture(scope="session")
def nginx() -> str:
    """The nginx binary. CI installs Debian's nginx (scripts/setup.sh): there a missing one fails."""
    try:
        return gateway.nginx_binary()
    except ServerError as err:
        missing_tool(f"no nginx for the gateway tests: {err.what} {err.fix}")
