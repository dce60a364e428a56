"""Every custom resource in manifests/ is checked against its project's schema, or named as cluster-only."""
from __future__ import annotations

import shutil

import pytest

from llmserve.world import manifests
from tests.manifests import custom_resources as cr
from tests.manifests.test_schemas import ROOT, kustomizations, manifest_files
from tests.support import missing_tool


def custom_objects() -> list[tuple[str, dict]]:
    found = []
    for f in manifest_files(ROOT):
        found += [(f"{f.relative_to(ROOT)}#{i}", o) for i, o in enumerate(manifests.load(f)) if cr.is_custom(o)]
    for k in kustomizations(ROOT):
        found += [(f"kustomize {k.relative_to(ROOT)}#{i}", o)
                  for i, o in enumerate(manifests.render(k)) if cr.is_custom(o)]
    return found


@pytest.fixture(scope="module")
def node_models():
    missing = [] if shutil.which("node") else ["node"]
    if not (cr.MODELS_DIR / "node_modules" / "@kubernetes-models").is_dir():
        missing.append(f"the @kubernetes-models packages in {cr.MODELS_DIR}")
    if missing:
        missing_tool(f"{' and '.join(missing)} missing: run scripts/setup.sh")


def test_every_custom_resource_is_checked_or_named_cluster_only(node_models):
    objects = custom_objects()
    checkable = [(i, o) for i, o in objects if cr.group_of(o) not in cr.LIVE_ONLY]
    errors = {i: e for i, e in cr.validate(checkable).items() if e}
    assert not errors, "\n".join(f"{i}: {e}" for i, e in errors.items())


def test_the_validator_bites(node_models):
    """A wrong type in a ScaledObject and in an HTTPRoute are both reported.

    These models are not strict about unknown fields (the CRDs' schemas allow them in
    places): a typo'd field name is caught only by `kubectl apply --dry-run=server`.
    """
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
              "spec": {"scaleTargetRef": {"name": "d"}, "pollingInterval": "often",
                       "triggers": [{"type": "prometheus", "metadata": {}}]}}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
             "spec": {"parentRefs": "g"}}
    good = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "ok"},
            "spec": {"scaleTargetRef": {"name": "d"}, "triggers": [{"type": "prometheus", "metadata": {}}]}}
    result = cr.validate([("scaled", scaled), ("route", route), ("good", good)])
    assert "pollingInterval" in (result["scaled"] or "")
    assert result["route"] and result["good"] is None


def test_cluster_only_groups_say_how_a_cluster_checks_them():
    assert all(len(reason) > 20 for reason in cr.LIVE_ONLY.values()) and "--dry-run=server" in cr.LIVE_CHECK
