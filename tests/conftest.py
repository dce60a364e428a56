"""Fixtures (the built book, built once per session) and the markers' skip rules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import REPO, BookBuild, build_book

@pytest.fixture(scope="session")
def book_build(tmp_path_factory) -> BookBuild:
    """Build the whole book once per run (every notebook executed there, once); never fails by itself.

    The notebook tests read the notebooks this build executed, so each notebook runs once
    per test run and still fails with its own message.
    """
    reuse = os.environ.get("COURSE_BUILT_BOOK")  # a developer's shortcut (a --path-output folder), never set in CI
    if reuse:
        root = Path(reuse)
        return BookBuild(root, 0, (root / "build.log").read_text() if (root / "build.log").exists() else "")
    out = tmp_path_factory.mktemp("book")
    proc = build_book(REPO, out)
    log = proc.stdout + proc.stderr
    (out / "build.log").write_text(log)
    return BookBuild(out, proc.returncode, log)


@pytest.fixture(scope="session")
def built_book(book_build) -> Path:
    """The HTML folder of the strict build; fails with the build's log when the build failed."""
    if book_build.returncode != 0:
        pytest.fail(f"the strict book build failed (exit {book_build.returncode}):\n{book_build.log[-6000:]}")
    return book_build.html


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
