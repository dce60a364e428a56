"""Execute a notebook offline the way the book does, and explain a failure."""
from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
from nbclient.exceptions import CellExecutionError

from conftest import OFFLINE_ENV


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
