"""A participant's first five minutes: the first cell of every lab says the mode and how to switch it.

The first cell is the same in every notebook, and what it prints
(:meth:`llmserve.world.mode.Mode.describe`) names the switches of both directions:
the kubeconfig, ``COURSE_MODE`` and ``COURSE_CONTEXT``. The JupyterLab test checks
that a lab opened there prints exactly this; the book runs the same cell at build time.
"""
from __future__ import annotations

import ast

import nbformat
import pytest

from llmserve.world.mode import Mode
from tests.support import REPO

FIRST_CELL = "from llmserve.world import mode\nMODE = mode.detect()\nMODE.banner()"
LABS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", LABS, ids=[p.name for p in LABS])
def test_the_first_code_cell_is_the_mode_banner(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert ast.dump(ast.parse(first.source)) == ast.dump(ast.parse(FIRST_CELL)), (
        f"{path.name}: the first code cell must be exactly the mode banner:\n{FIRST_CELL}")
    assert "remove-input" not in first.metadata.get("tags", []), f"{path.name}: the banner's code is hidden"


def test_offline_says_how_to_go_live():
    text = Mode("offline", "no kubeconfig at ~/.kube/config", "cpu", "torch sees no CUDA GPU").describe()
    first, *rest = text.splitlines()
    assert first == "Cluster mode: OFFLINE — no kubeconfig at ~/.kube/config"
    how = "\n".join(rest)
    assert "To go live" in how
    for switch in ("KUBECONFIG=", "COURSE_CONTEXT=", "COURSE_MODE", "%env"):
        assert switch in how, switch


def test_live_names_its_context_and_how_to_go_offline():
    text = Mode("live", "API server https://10.0.0.1:6443 answered", "cuda", "torch sees an L4",
                context="workshop").describe()
    assert text.startswith("Cluster mode: LIVE — API server")
    assert "context: workshop" in text
    for switch in ("COURSE_MODE=offline", "COURSE_CONTEXT=", "KUBECONFIG", "COURSE_DEVICE=cpu"):
        assert switch in text, switch
    assert "To go live" not in text
