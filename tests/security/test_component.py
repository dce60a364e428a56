"""The api-gateway component renders on top of the base (kubectl kustomize), strictly valid,
and changes nothing of the base's objects. The schema and checkov suites (tests/test_manifests.py,
tests/test_security_scan.py) pick up the component's files and the gpu-box-gateway overlay too."""
from __future__ import annotations

from llmserve.world import manifests

OVERLAY = "overlays/gpu-box-gateway"
COMPONENT = "components/api-gateway"


def kinds(objs):
    return {(o["kind"], o["metadata"]["name"]) for o in objs}


def test_the_overlay_is_the_gpu_box_plus_the_component():
    with_gateway = manifests.render(OVERLAY)
    assert manifests.validate(with_gateway) == []
    base = manifests.render("overlays/gpu-box")
    added = kinds(with_gateway) - kinds(base)
    assert added == kinds(manifests.render(COMPONENT)) == {
        ("ConfigMap", "vllm-api-gateway"), ("Deployment", "vllm-api-gateway"), ("Service", "vllm-api-gateway"),
        ("NetworkPolicy", "vllm-api-gateway"), ("NetworkPolicy", "vllm-qwen25-coder-7b-from-gateway")}
    # The component adds objects and patches none: the GPU box's objects come out unchanged.
    same = {(o["kind"], o["metadata"]["name"]): o for o in with_gateway}
    assert all(same[(o["kind"], o["metadata"]["name"])] == o for o in base)


def test_the_component_holds_no_secret():
    # Applying it alone (`kubectl apply -k manifests/components/api-gateway`) never writes the
    # placeholder key of the base's Secret.
    assert all(o["kind"] != "Secret" for o in manifests.render(COMPONENT))
    assert all(o["metadata"]["namespace"] == "ai-platform" for o in manifests.render(COMPONENT))
