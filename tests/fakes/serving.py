"""Start a :class:`~tests.fakes.apiserver.FakeAPIServer` for one test, with KUBECONFIG pointing at it.

Test modules wrap :func:`fake_cluster` in a fixture::

    @pytest.fixture
    def api(tmp_path, monkeypatch):
        with fake_cluster(tmp_path, monkeypatch) as server:
            yield server
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.fakes.apiserver import FakeAPIServer

ENV_TO_CLEAR = ("KUBERNETES_SERVICE_HOST", "COURSE_CONTEXT", "COURSE_MODE")


@contextmanager
def fake_cluster(tmp_path: Path, monkeypatch, **kwargs) -> Iterator[FakeAPIServer]:
    for var in ENV_TO_CLEAR:
        monkeypatch.delenv(var, raising=False)
    # The dynamic client keeps its discovery cache in the temporary folder: one per test.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with FakeAPIServer(**kwargs) as server:
        monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path / "kubeconfig")))
        yield server
