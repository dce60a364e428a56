"""What several test folders share: the repository's paths, the offline environment,
the strict book build, the browser's path and the notebook runner.

Fixtures and skip rules live in tests/conftest.py; everything here is imported
explicitly (``from tests.support import REPO``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# The suite always runs offline: CI has no cluster, and a developer's kubeconfig
# must not make a test act on a real cluster.
OFFLINE_ENV = {"COURSE_MODE": "offline", "KUBECONFIG": str(REPO / ".no-kubeconfig-in-tests")}


def offline_env() -> dict:
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def build_book(source: Path, out: Path) -> subprocess.CompletedProcess:
    """The README's strict build (same flags as scripts/build-book.sh), offline."""
    cmd = [str(VENV_BIN / "jupyter-book"), "build", str(source), "--path-output", str(out),
           "-W", "-n", "--keep-going"]
    return subprocess.run(cmd, capture_output=True, text=True, env=offline_env(), timeout=1800)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# -- notebooks -------------------------------------------------------------------------
class NotebookFailed(AssertionError):
    pass


def run_notebook(path: Path, timeout_s: int = 900) -> nbformat.NotebookNode:
    """Run every cell top to bottom with the notebook's folder as working directory."""
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)  # the kernel inherits the environment
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                                         resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    except CellExecutionError as exc:
        raise NotebookFailed(f"{path.name}: a cell failed offline:\n{str(exc)[-4000:]}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb
