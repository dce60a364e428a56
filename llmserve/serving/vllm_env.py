"""Run one file of this package by path under ``.venv-vllm``'s Python, where vLLM is installed.

Used by :mod:`llmserve.serving.tinymodel` (building the tiny model) and
:mod:`llmserve.serving.vllm_bench` (running ``vllm bench serve``), for the KV-cache chapter
and the capstone. Layer: live (a child process). The course's ``.venv`` has no vLLM and
``.venv-vllm`` has no ``llmserve``, so such a file is run by path (``-I``: isolated, no
user site, no script folder on ``sys.path``) and its result read back; a failure or a
run past ``timeout_s`` becomes a :class:`~llmserve.core.errors.ServerError`.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from llmserve.core.errors import ServerError


def run_file(python: str | Path, script: str | Path, args: list[str], *, timeout_s: float, what: str,
             fix: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -I script args…``; return the finished process (its output captured as text)."""
    try:
        proc = subprocess.run([str(python), "-I", str(Path(script).resolve()), *args],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what} took longer than {timeout_s:.0f} s.",
                          "The machine may be busy: try again, or ask for less work.") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ServerError(f"{what} failed (exit {proc.returncode}):\n{tail}", fix)
    return proc
