"""Render the system with some of the chapter's components, from a throwaway kustomization (paths relative to it)."""
from __future__ import annotations

import os
from pathlib import Path

from llmserve.core.manifest_files import MANIFESTS_DIR
from llmserve.world import manifests


def render_with(folder: Path, *components: str, base: str = "overlays/gpu-box") -> list[dict]:
    """``base`` plus ``components`` (names under manifests/components), rendered by kustomize in ``folder``."""
    def rel(p: Path) -> str:
        return os.path.relpath(p, folder)
    listed = "".join(f"  - {rel(MANIFESTS_DIR / 'components' / c)}\n" for c in components)
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {rel(MANIFESTS_DIR / base)}\n" + (f"components:\n{listed}" if components else ""))
    return manifests.render(folder)
