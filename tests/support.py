"""What several test folders share: the repository's paths, the offline environment,
the strict book build, the browser's path, the notebook runner, the participants' by-hand
reads and the rule for a missing tool (a failure under CI, a skip elsewhere).

Fixtures and skip rules live in tests/conftest.py; everything here is imported
explicitly (``from tests.support import REPO``).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest


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


#: The strict build executes every lab (real engines, a router, Prometheus): far beyond the
#: suite's per-test timeout (pyproject.toml), so the tests that wait for it carry this one.
BUILD_TIMEOUT_S = 2400

#: The keyed engine's settings (the ``keyed_engine`` fixture of tests/conftest.py;
#: tests/serving/test_client.py checks its KV report against them).
# It starts with "-" as a random URL-safe key may: the engine must still take it as the key.
KEYED_ENGINE_KEY = "-course-test-key"
#: 16 blocks of 128 tokens: small enough that a burst of long requests fills it.
KEYED_ENGINE_KV_BYTES = 16 * 128 * 1024
KEYED_ENGINE_MAX_MODEL_LEN = 512


def refuses_connections(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing accepts a TCP connection on ``port`` (what a probe of a loading engine meets)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def build_command(source: Path, out: Path) -> list[str]:
    """The README's strict build (same flags as scripts/build-book.sh); run it with :func:`offline_env`."""
    return [str(VENV_BIN / "jupyter-book"), "build", str(source), "--path-output", str(out),
            "-W", "-n", "--keep-going"]


def build_book(source: Path, out: Path) -> subprocess.CompletedProcess:
    """The strict build of ``source``, offline, waited for."""
    return subprocess.run(build_command(source, out), capture_output=True, text=True, env=offline_env(),
                          timeout=BUILD_TIMEOUT_S - 60)


@dataclass(frozen=True)
class BookBuild:
    """One run of the strict build: its --path-output folder, exit code and log."""

    root: Path
    returncode: int
    log: str

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"

    def executed(self, notebook: Path) -> Path:
        """Where the build saved a notebook after executing it."""
        return self.root / "_build" / "jupyter_execute" / "notebooks" / f"{notebook.stem}.ipynb"

    def error_report(self, notebook: Path) -> Path:
        """The traceback myst-nb writes when a cell of the notebook failed."""
        return self.html / "reports" / "notebooks" / f"{notebook.stem}.err.log"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def check_executed_notebook(build: BookBuild, notebook: Path):
    """The notebook as the book build executed it; :class:`NotebookFailed` naming the failing cell if one failed."""
    import nbformat  # Jupyter imports stay out of the module: scripts/gpu-check.sh runs on a box without them
    report = build.error_report(notebook)
    if report.exists():
        text = _ANSI.sub("", report.read_text(encoding="utf-8", errors="replace"))
        raise NotebookFailed(f"{notebook.name}: a cell failed when the book build executed it offline:\n"
                             f"{text[-4000:]}")
    executed = build.executed(notebook)
    if not executed.exists():
        raise NotebookFailed(f"{notebook.name} was not executed by the book build (is it in _toc.yml?). "
                             f"Build log tail:\n{build.log[-3000:]}")
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    if errors:
        raise NotebookFailed(f"{notebook.name}: {len(errors)} cell(s) raised: "
                             + "; ".join(f"{e.get('ename')}: {e.get('evalue')}" for e in errors))
    return nb


#: Debian's Chromium, headless and quiet: no background requests that could leave the machine.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# -- notebooks -------------------------------------------------------------------------
class NotebookFailed(AssertionError):
    pass


def run_notebook(path: Path, timeout_s: int = 900):
    """Run every cell top to bottom with the notebook's folder as working directory."""
    import nbclient  # see check_executed_notebook
    import nbformat
    from nbclient.exceptions import CellExecutionError
    nb = nbformat.read(path, as_version=4)
    try:
        with environment(OFFLINE_ENV):
            client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                                             resources={"metadata": {"path": str(path.parent)}})
            client.execute()
    except CellExecutionError as exc:
        raise NotebookFailed(f"{path.name}: a cell failed offline:\n{str(exc)[-4000:]}") from None
    return nb


@contextmanager
def environment(values: dict, drop: tuple[str, ...] = ()) -> Iterator[None]:
    """Set ``values`` and remove ``drop`` in os.environ for the block (a kernel started inside
    inherits them), then put every variable back as it was."""
    saved = {k: os.environ.get(k) for k in (*values, *drop)}
    os.environ.update(values)
    for var in drop:
        os.environ.pop(var, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# What the labs' live cells send is derived, not listed: tests/world/test_lab_access.py compares the
# requests every lab sends to the recording fake API server with these grants. What no lab sends is
# the kubectl commands they print for doing a step by hand: the read-only ones must work for a
# participant too. (kubectl get NAME --watch and rollout status list and watch with
# fieldSelector=metadata.name=NAME: RBAC then checks the name, requestinfo.go.)
def participant_by_hand_reads() -> dict[str, list[tuple[str, str, str, str | None]]]:
    """The read-only kubectl commands the labs print, each with the checks RBAC makes of it
    ``(verb, group, resource, name)`` (tests/workshop/test_rbac.py, tests/world/test_lab_access.py)."""
    from llmserve.core import names
    from llmserve.deployment.workload import kubectl_commands
    from llmserve.storage.live import by_hand

    n = names.system()
    deployment = next(o for o in names.base_objects() if o["kind"] == "Deployment")
    cmds = kubectl_commands(deployment)
    named = [(verb, group, resource, name) for group, resource, name in
             [("apps", "deployments", n.deployment), ("", "persistentvolumeclaims", n.pvc)]
             for verb in ("get", "list", "watch")]
    return {
        cmds["rollout"]: [a for a in named if a[2] == "deployments"],
        cmds["pods"]: [("list", "", "pods", None), ("watch", "", "pods", None)],
        cmds["owners"]: [("list", "apps", "replicasets", None), ("list", "", "pods", None)],
        cmds["logs"]: [("get", "apps", "deployments", n.deployment), ("list", "", "pods", None),
                       ("get", "", "pods/log", None)],
        f"kubectl get events -n {n.namespace} -w": [("list", "", "events", None), ("watch", "", "events", None)],
        by_hand("watch"): [a for a in named if a[2] == "persistentvolumeclaims"],
        by_hand("get"): [("get", "", "persistentvolumes", n.pv), ("get", "", "persistentvolumeclaims", n.pvc)],
        by_hand("default-class"): [("list", "storage.k8s.io", "storageclasses", None)],
        f"kubectl -n {n.namespace} get hpa {n.deployment} --watch":
            [(v, "autoscaling", "horizontalpodautoscalers", n.deployment) for v in ("get", "list", "watch")],
    }


def missing_tool(message: str) -> None:
    """A tool the tests need is not installed: a failure under CI (scripts/setup.sh installs every
    one there, so its absence is a broken set-up), a skip with the message elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}; in CI a missing tool is a failure, not a skip")
    pytest.skip(message)
