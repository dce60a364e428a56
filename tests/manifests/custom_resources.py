"""Custom resources in the manifests: which upstream schema checks each, or why only a cluster can.

The core Kubernetes objects validate strictly against kubernetes-validate's schemas
(tests/manifests/test_schemas.py). A custom resource (KEDA's ScaledObject, the Prometheus
Operator's PodMonitor and PrometheusRule, Gateway API's HTTPRoute, …) has no schema there:

* where a well-kept package carries the CRD's schema, it is validated with it: the
  ``@kubernetes-models`` npm packages (installed by scripts/setup.sh into .cache/k8s-models)
  generate their models from the projects' CRDs and validate with ajv;
* where none does, the group is listed in :data:`LIVE_ONLY` with the command that checks it
  on a cluster that has the CRD installed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from llmserve.core.objects import api_group, is_custom_resource
from tests.support import REPO

#: API group -> the npm package whose models carry that group's schemas.
MODEL_PACKAGES = {
    "keda.sh": "@kubernetes-models/keda",
    "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
    "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
}
#: API group -> why no package here checks it, and how a cluster does.
LIVE_ONLY = {
    "inference.networking.k8s.io": "the Gateway API Inference Extension publishes CRDs, no schema package",
    "inference.networking.x-k8s.io": "the Gateway API Inference Extension publishes CRDs, no schema package",
    "leaderworkerset.x-k8s.io": "LeaderWorkerSet publishes CRDs, no schema package",
}
LIVE_CHECK = "kubectl apply --dry-run=server -f FILE (on a cluster with the CRD installed)"
MODELS_DIR = REPO / ".cache" / "k8s-models"
SCRIPT = Path(__file__).with_name("validate_custom.mjs")


group_of = api_group
is_custom = is_custom_resource


def validate(objects: list[tuple[str, dict]]) -> dict[str, str | None]:
    """``{id: None}`` for a valid object, ``{id: message}`` otherwise (live-only groups are not passed here)."""
    items = []
    for ident, obj in objects:
        package = MODEL_PACKAGES.get(group_of(obj))
        if package is None:
            raise AssertionError(f"{ident}: no schema package for {obj.get('apiVersion')}; add it to "
                                 "MODEL_PACKAGES or LIVE_ONLY in tests/manifests/custom_resources.py")
        items.append({"id": ident, "module": f"{package}/{obj['apiVersion']}", "kind": obj["kind"], "object": obj})
    if not items:
        return {}
    # ES modules resolve packages from the script's own folder: run a copy beside node_modules.
    runner = MODELS_DIR / SCRIPT.name
    shutil.copyfile(SCRIPT, runner)
    proc = subprocess.run(["node", str(runner)], input=json.dumps(items), capture_output=True, text=True,
                          cwd=MODELS_DIR, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["id"]: r["error"] for r in json.loads(proc.stdout)}
