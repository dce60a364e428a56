"""Fixtures of the security tests: the local nginx the gateway tests run (skip only outside CI)."""
from __future__ import annotations

import os

import pytest

from llmserve.core.errors import ServerError
from llmserve.security import gateway


@pytest.fixture(scope="session")
def nginx() -> str:
    """The nginx binary. CI installs Debian's nginx (scripts/setup.sh): there a missing one fails."""
    try:
        return gateway.nginx_binary()
    except ServerError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have nginx for the gateway tests: {err}")
        pytest.skip(f"no nginx here: {err.fix}")
