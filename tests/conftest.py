"""Fixtures (the built book, built once per session) and the markers' skip rules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import REPO, build_book

@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """Build the whole book once; return the HTML folder. Fails with the build's log."""
    reuse = os.environ.get("COURSE_BUILT_HTML")  # a developer's shortcut, never set in CI
    if reuse:
        return Path(reuse)
    out = tmp_path_factory.mktemp("book")
    proc = build_book(REPO, out)
    log = proc.stdout + proc.stderr
    (out / "build.log").write_text(log)
    if proc.returncode != 0:
        pytest.fail(f"the strict book build failed (exit {proc.returncode}):\n{log[-6000:]}")
    return out / "_build" / "html"


def pytest_collection_modifyitems(config, items):
    from llmserve.world import mode

    device, device_reason = mode.detect_device()
    has_vllm = mode.vllm_python().exists()
    for item in items:
        if "gpu" in item.keywords and device != "cuda":
            item.add_marker(pytest.mark.skip(reason=f"needs a CUDA GPU ({device_reason}); not counted as passing in CI"))
        if "cluster" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a live Kubernetes cluster; the suite always runs offline"))
        if "vllm" in item.keywords and not has_vllm and not os.environ.get("CI"):
            # CI installs .venv-vllm (scripts/setup.sh): there a missing engine fails the test instead.
            item.add_marker(pytest.mark.skip(reason=f"no CPU vLLM at {mode.vllm_python()}: run scripts/setup.sh"))
