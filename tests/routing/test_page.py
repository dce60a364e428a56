"""book/routing.md: every helper, file and router default the page names is the real one.

The router's defaults are read from the pinned vllm-router's own ``--help``; the block
arithmetic the page states is checked against the measured plan in test_experiment.py.
"""
from __future__ import annotations

import importlib
import re
import subprocess

from tests.support import REPO

PAGE = (REPO / "book" / "routing.md").read_text(encoding="utf-8")
TEXT = re.sub(r"\s+", " ", PAGE)


def _says(phrase: str) -> None:
    assert re.sub(r"\s+", " ", phrase) in TEXT, f"book/routing.md should say: {phrase!r}"


def test_every_helper_the_page_names_exists():
    names = set(re.findall(r"`(llmserve\.routing\.\w+)(?:\.(\w+))?", PAGE))
    assert len(names) >= 4
    for module, attr in names:
        mod = importlib.import_module(module)
        assert not attr or hasattr(mod, attr), f"{module}.{attr}"
    for attr in re.findall(r"`(?:workload|experiment|stats|policy)\.(\w+)`", PAGE):
        assert any(hasattr(importlib.import_module(f"llmserve.routing.{m}"), attr)
                   for m in ("workload", "experiment", "stats", "policy")), attr


def test_every_file_the_page_includes_or_names_exists():
    for rel in re.findall(r"\{literalinclude\} \.\./(\S+)", PAGE):
        assert (REPO / rel).is_file(), rel
    for rel in set(re.findall(r"`((?:manifests|tests)/[\w./-]+)`", PAGE)):
        assert (REPO / rel.rstrip("/")).exists(), rel
    vllm_src = REPO / ".venv-vllm" / "lib" / "python3.11" / "site-packages"
    if vllm_src.exists():
        for rel in set(re.findall(r"`(vllm/[\w/]+\.py)`", PAGE)):
            assert (vllm_src / rel).is_file(), rel


def test_the_router_defaults_the_page_states_are_the_pinned_routers(router_bin):
    help_text = re.sub(r"\s+", " ", subprocess.run([str(router_bin), "--help"], capture_output=True,
                                                   text=True, timeout=60).stdout)
    for flag, phrase in [("--cache-threshold", "`--cache-threshold` (0.3)"),
                         ("--balance-abs-threshold", "`--balance-abs-threshold` (64)"),
                         ("--balance-rel-threshold", "`--balance-rel-threshold` (1.5)"),
                         ("--kv-event-block-size", "(16 by default in 0.1.17)")]:
        _says(phrase)
        value = re.search(r"\((\d+(?:\.\d+)?)", phrase).group(1)
        assert re.search(re.escape(flag) + r" \S+ .*?\(default: " + re.escape(value) + r"\)", help_text), flag
    # Every --policy choice of the pinned router is on the page.
    for policy in re.findall(r"\{([a-z_,]+)\}", help_text)[0].split(","):
        _says(f"`{policy}`")


def test_the_flag_the_page_warns_about_is_in_the_manifests_and_the_fleet():
    _says("`--enable-scale-out`")
    patch = (REPO / "manifests" / "components" / "router" / "vllm-replicas-patch.yaml").read_text()
    assert "--enable-scale-out" in patch
    fleet = (REPO / "llmserve" / "routing" / "fleet.py").read_text()
    assert '"--enable-scale-out"' in fleet
