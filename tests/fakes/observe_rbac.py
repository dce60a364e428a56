"""Which API requests the labs' live cells send: run every lab notebook live against the recording fake.

Usage (from the repository root)::

    .venv/bin/python -m tests.fakes.observe_rbac            # print the observation
    .venv/bin/python -m tests.fakes.observe_rbac --write    # and store it in tests/fakes/observed_rbac.json

Each notebook runs top to bottom in its own kernel with ``COURSE_MODE=live`` and a
kubeconfig pointing at a fresh :class:`~tests.fakes.apiserver.FakeAPIServer` with
its stand-in controllers, seeded as the instructor leaves the workshop's box
(``manifests/base`` applied, the Pod Ready, one GPU node, k3s's default
StorageClass); port-forwards reach :class:`~tests.fakes.vllm.FakeVllm`. Every
request is recorded and turned into the checks RBAC makes of it
(:mod:`tests.fakes.rbac`). Cells that fail against the stand-ins (vLLM calls the
stand-in does not serve) are listed with the observation, each marked whether it
acts on the cluster (``MODE.act`` or ``cluster`` in its code): a failure there could
hide requests, so the comparison test refuses such an observation.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import nbclient
import nbformat

from llmserve.core.names import system
from llmserve.world import manifests
from tests.fakes import rbac
from tests.fakes.apiserver import FakeAPIServer
from tests.fakes.portforward import PodPort
from tests.fakes.vllm import FakeVllm
from tests.support import REPO

OBSERVED = Path(__file__).with_name("observed_rbac.json")
NOTEBOOKS = REPO / "notebooks"
INSTRUCTOR_ONLY = ("gpu-box-check",)     # the instructor's check of the box, not a participant's lab
WORKSHOP_KEY = "sk-course-workshop-key"
GPU_NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-box", "labels": {
    "kubernetes.io/hostname": "gpu-box", "nvidia.com/gpu.present": "true"}},
    "status": {"capacity": {"nvidia.com/gpu": "1", "cpu": "16", "memory": "64Gi"},
               "allocatable": {"nvidia.com/gpu": "1", "cpu": "16", "memory": "64Gi"}}}
LOCAL_PATH = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {
    "name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}


def lab_notebooks() -> list[Path]:
    """Every notebook a participant runs (all of notebooks/ but the instructor's box check)."""
    return [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if p.stem not in INSTRUCTOR_ONLY]


def talks_to_cluster(source: str) -> bool:
    """Whether a cell acts on the cluster (a failure there could hide requests the lab sends)."""
    return "MODE.act(" in source or "cluster" in source


def seed(api: FakeAPIServer) -> None:
    """The box as the instructor leaves it: the base stack applied with a real key, the Pod Ready."""
    objects = manifests.render("base")
    for obj in objects:
        if obj["kind"] == "Secret":
            obj["stringData"] = {"api-key": WORKSHOP_KEY}
    api.put(GPU_NODE, LOCAL_PATH, *objects, manager="instructor")


def _secret_key(api: FakeAPIServer):
    import base64
    n = system()

    def key() -> str:
        secret = api.get("v1", "Secret", n.api_key_secret, n.namespace) or {}
        return base64.b64decode((secret.get("data") or {}).get("api-key", "")).decode()

    return key


@contextmanager
def _environment(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)      # the kernel inherits the environment
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_lab(path: Path, timeout_s: int = 300) -> dict:
    """Run one notebook live against a fresh fake cluster; return its accesses and failed cells."""
    with tempfile.TemporaryDirectory() as tmp, FakeAPIServer(controllers_on=True) as api:
        seed(api)
        with FakeVllm(key=_secret_key(api)) as vllm:
            api.any_pod_port = PodPort(vllm.address)
            env = {"COURSE_MODE": "live", "KUBECONFIG": str(api.kubeconfig(Path(tmp) / "kubeconfig")),
                   "TMPDIR": tmp, "VLLM_API_KEY": WORKSHOP_KEY, "COURSE_DEVICE": "cpu", "PYTHONUNBUFFERED": "1",
                   # the kernel imports this checkout's llmserve, whatever is installed
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            nb = nbformat.read(path, as_version=4)
            with _environment(env):
                for var in ("COURSE_CONTEXT", "COURSE_SERVER", "KUBERNETES_SERVICE_HOST"):
                    os.environ.pop(var, None)
                client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3", allow_errors=True,
                                                 resources={"metadata": {"path": str(path.parent)}})
                client.execute()
            failed = []
            for i, cell in enumerate(nb.cells):
                for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
                    if out.get("output_type") == "error":
                        first = next((line for line in cell.source.splitlines() if line.strip()), "")
                        failed.append({"cell": i, "first_line": first, "error": out.get("ename"),
                                       "talks_to_cluster": talks_to_cluster(cell.source)})
            return {"access": [a.as_json() for a in rbac.accesses(api.requests)], "failed_cells": failed}


def observe() -> dict:
    return {"how": "python -m tests.fakes.observe_rbac --write: each lab notebook run live against "
                   "tests.fakes.apiserver with its stand-in controllers",
            "labs": {p.stem: run_lab(p) for p in lab_notebooks()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"store the observation in {OBSERVED.name}")
    args = parser.parse_args(argv)
    observation = observe()
    text = json.dumps(observation, indent=1, sort_keys=True) + "\n"
    if args.write:
        OBSERVED.write_text(text, encoding="utf-8")
        print(f"wrote {OBSERVED.relative_to(REPO)}")
    for lab, seen in observation["labs"].items():
        print(f"{lab}: {len(seen['access'])} checks; cells failing against the stand-ins: "
              f"{[c['cell'] for c in seen['failed_cells']] or 'none'}")
        for a in seen["access"]:
            print("   ", rbac.Access.from_json(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
