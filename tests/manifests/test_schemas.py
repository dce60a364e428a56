"""Every manifest file and every kustomization validates strictly for every supported Kubernetes version."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.manifests.custom_resources import is_custom
from tests.support import REPO
from llmserve.world import manifests
from llmserve.core.errors import ManifestError

ROOT = REPO / "manifests"


def patch_files(root: Path) -> set[Path]:
    """Files that kustomizations use as patches: partial objects, checked once rendered."""
    found = set()
    for k in root.rglob("kustomization.yaml"):
        spec = yaml.safe_load(k.read_text()) or {}
        entries = [p.get("path") for p in spec.get("patches", []) if isinstance(p, dict)]
        entries += list(spec.get("patchesStrategicMerge", []) or [])
        found |= {(k.parent / e).resolve() for e in entries if isinstance(e, str) and e.endswith((".yaml", ".yml"))}
    return found


def manifest_files(root: Path) -> list[Path]:
    """Every whole-object manifest: not kustomizations, not patches, not the deliberately
    invalid teaching files (named invalid-*)."""
    patches = patch_files(root)
    files = sorted(p for p in root.rglob("*.yaml") if p.name != "kustomization.yaml")
    return [p for p in files if not p.name.startswith("invalid-") and p.resolve() not in patches]


def kustomizations(root: Path) -> list[Path]:
    """Folders that render on their own (``kind: Kustomization``); a ``kind: Component`` renders only inside one."""
    return sorted(p.parent for p in root.rglob("kustomization.yaml")
                  if (yaml.safe_load(p.read_text()) or {}).get("kind", "Kustomization") == "Kustomization")


def problems_in_tree(root: Path) -> list[str]:
    """What the suite reports for a manifests tree (used on the real tree and on a planted one)."""
    found = []
    for f in manifest_files(root):
        try:
            found += [f"{f.relative_to(root)}: {p}" for p in manifests.validate(manifests.load(f))]
        except ManifestError as exc:
            found.append(f"{f.relative_to(root)}: {exc}")
    return found


def test_supported_versions_are_three_recent_minors():
    minors = [tuple(int(x) for x in v.split(".")[:2]) for v in manifests.SUPPORTED_K8S_VERSIONS]
    assert len(minors) >= 3 and minors == sorted(minors)
    assert all(b[1] - a[1] == 1 for a, b in zip(minors, minors[1:])), "consecutive minor versions"


def core_objects(objs: list[dict]) -> list[dict]:
    """The built-in kinds; custom resources are checked by tests/manifests/test_custom_resources.py."""
    return [o for o in objs if not is_custom(o)]


@pytest.mark.parametrize("path", manifest_files(ROOT), ids=lambda p: str(p.relative_to(ROOT)))
def test_manifest_file_is_strictly_valid(path):
    problems = manifests.validate(core_objects(manifests.load(path)))
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("path", kustomizations(ROOT), ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_renders_and_is_strictly_valid(path):
    objs = manifests.render(path)
    assert objs, f"{path} rendered nothing"
    problems = manifests.validate(core_objects(objs))
    assert not problems, "\n".join(map(str, problems))


def test_base_holds_the_whole_system():
    kinds = {(o["kind"], o["metadata"]["name"]) for o in manifests.render("base")}
    for expected in [("Namespace", "ai-platform"), ("PersistentVolume", "model-storage"),
                     ("PersistentVolumeClaim", "model-storage-claim"),
                     ("Deployment", "vllm-qwen25-coder-7b"), ("Service", "vllm-qwen25-coder-7b")]:
        assert expected in kinds


def test_an_invalid_manifest_fails_the_suite(tmp_path):
    """The check bites: a typo'd field and a wrong type are both reported, for every version."""
    pvc = manifests.load_one("base/model-pvc.yaml")
    pvc["spec"]["accesModes"] = pvc["spec"].pop("accessModes")   # typo: unknown field
    pvc["spec"]["resources"]["requests"] = "200Gi"                # wrong type: must be a map
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "claim.yaml").write_text(manifests.to_yaml(pvc))
    found = problems_in_tree(tmp_path)
    assert any("accesModes" in p for p in found)
    assert any("resources.requests" in p for p in found)
    assert {v for v in manifests.SUPPORTED_K8S_VERSIONS if any(f"[Kubernetes {v}]" in p for p in found)} \
        == set(manifests.SUPPORTED_K8S_VERSIONS)


def test_not_yaml_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("kind: Pod\n  metadata: [\n")
    with pytest.raises(ManifestError, match="not valid YAML at line"):
        manifests.load(bad)


def test_unknown_kind_is_reported():
    problems = manifests.validate({"apiVersion": "v1", "kind": "Podd", "metadata": {"name": "x"}})
    assert problems and "no schema" in problems[0].message
