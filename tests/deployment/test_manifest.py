"""The Deployment's graceful shutdown, read from the manifest and checked against vLLM 0.32's own defaults.

- Kubernetes docs, Pod lifecycle, "Termination of Pods": the preStop hook runs first, then
  SIGTERM; the grace period counts from the start and ends with SIGKILL.
- vllm/engine/arg_utils.py: ``--shutdown-timeout`` (default 0: "0 = abort, >0 = wait").
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from llmserve.core.names import system
from llmserve.core.objects import arg_value, vllm_container
from llmserve.deployment import budgets
from llmserve.world import manifests, mode

DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")
OVERLAYS = sorted(p.parent.relative_to(manifests.MANIFESTS_DIR).as_posix()
                  for p in Path(manifests.MANIFESTS_DIR, "overlays").glob("*/kustomization.yaml"))


def _shutdown(deployment: dict) -> budgets.ShutdownBudget:
    return budgets.shutdown_budget(**budgets.shutdown_from_deployment(deployment))


def test_the_shutdown_timeout_is_set_and_below_the_grace_period():
    c = vllm_container(DEPLOYMENT)
    drain = int(arg_value(c, "--shutdown-timeout"))
    grace = DEPLOYMENT["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < drain < grace
    assert pause + drain < grace, "the preStop pause and the drain must both fit in the grace period"
    budget = _shutdown(DEPLOYMENT)
    assert budget.drains and budget.fits, budget.verdict


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_keeps_the_drain(overlay):
    # An overlay that replaces the args list must carry --shutdown-timeout over.
    (dep,) = [o for o in manifests.render(overlay)
              if o["kind"] == "Deployment" and o["metadata"]["name"] == system().deployment]
    budget = _shutdown(dep)
    assert budget.drains and budget.fits, f"{overlay}: {budget.verdict}"


def _vllm_source(rel: str) -> str | None:
    """A file of the pinned vLLM release next to the local CPU engine (None when it is not installed)."""
    env = Path(mode.vllm_python()).parent.parent
    found = sorted(env.glob(f"lib/python3*/site-packages/vllm/{rel}"))
    return found[0].read_text(encoding="utf-8") if found else None


def test_vllm_aborts_by_default_and_the_flag_exists():
    # Read from the source rather than imported: importing vllm.engine.arg_utils costs ~20 s.
    args, config = _vllm_source("engine/arg_utils.py"), _vllm_source("config/vllm.py")
    if args is None:
        pytest.skip("no local vLLM (scripts/setup.sh installs it)")
    engine_args = next(n for n in ast.parse(args).body if isinstance(n, ast.ClassDef) and n.name == "EngineArgs")
    field = next(n for n in engine_args.body if isinstance(n, ast.AnnAssign)
                 and getattr(n.target, "id", "") == "shutdown_timeout")
    assert ast.literal_eval(field.value) == 0
    flag = re.search(r'"--shutdown-timeout",\s*type=int,\s*default=(\d+),\s*help="([^"]+)"', args)
    assert flag and flag.group(1) == "0" and flag.group(2) == "Shutdown timeout in seconds. 0 = abort, >0 = wait."
    assert "shutdown_timeout: int = Field(default=0, ge=0)" in config


def test_vllm_drains_refusing_new_requests_and_health_only_reads_a_flag():
    # The page's claims about SIGTERM and /health, against the pinned source.
    core, health = _vllm_source("v1/engine/core.py"), _vllm_source("entrypoints/serve/instrumentator/health.py")
    if core is None:
        pytest.skip("no local vLLM (scripts/setup.sh installs it)")
    assert 'mode = "abort" if shutdown_timeout == 0 else "drain"' in core
    assert "def _reject_add_in_shutdown" in core and "if self._reject_add_in_shutdown(req):" in core
    assert "await client.check_health()" in health and "status_code=503" in health
    check = _vllm_source("v1/engine/async_llm.py")
    body = check[check.index("async def check_health"):][:200]
    assert "if self.errored:" in body and "await" not in body.split(":", 1)[1]  # no request to the engine

