"""Which API requests the labs' live cells send: run every lab notebook live against the recording fake.

Refresh the stored observation (from the repository root; about 10 minutes on 2 cores,
most of it the observability lab's local autoscaling run)::

    .venv/bin/python -m tests.fakes.observe_rbac --write              # every lab
    .venv/bin/python -m tests.fakes.observe_rbac --write --lab NAME   # one lab (repeatable)
    .venv/bin/python -m tests.fakes.observe_rbac                      # print only

Each notebook runs top to bottom in its own kernel with ``COURSE_MODE=live`` and a
kubeconfig pointing at a fresh :class:`~tests.fakes.apiserver.FakeAPIServer` with
its stand-in controllers, seeded as the instructor leaves the workshop's box
(``manifests/base`` applied, the Pod Ready, one GPU node, k3s's default
StorageClass); port-forwards reach :class:`~tests.fakes.vllm.FakeVllm`. Every
request is recorded and turned into the checks RBAC makes of it
(:mod:`tests.fakes.rbac`). Cells that fail against the stand-ins are listed with
the observation, each marked whether it acts on the cluster (``MODE.act`` or
``cluster`` in its code): a failure there could hide requests, so the comparison
test (tests/world/test_lab_access.py) refuses such an observation.

Each lab's record also holds the sha256 of what decided its requests
(:func:`sources`): its notebook's code cells, the llmserve modules that talk to the
API server, the manifests the labs render and apply, and this observer's own
files. The test compares them with the tree, so a change to any of them without a
new observation fails the suite, naming the labs to observe again.
"""
from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

from llmserve.core.names import system
from llmserve.world import manifests
from tests.fakes import rbac
from tests.fakes.apiserver import FakeAPIServer
from tests.fakes.portforward import PodPort
from tests.fakes.vllm import FakeVllm
from tests.support import REPO, environment

OBSERVED = Path(__file__).with_name("observed_rbac.json")
REFRESH = "python -m tests.fakes.observe_rbac --write"
INSTRUCTOR_ONLY = ("gpu-box-check",)     # the instructor's check of the box, not a participant's lab
CELL_TIMEOUT_S = 900                     # the observability lab's autoscaling cell runs ~5 min on 2 busy cores
#: Labs whose cells wait on a controller the fakes do not run: the full stack's load waits up to
#: 20 min for an HPA to add a replica (finale.cluster_profile). Its requests before the wait are
#: observed; the cell then counts as failed (timed out), listed in tests/world/test_lab_access.py.
CELL_TIMEOUT_BY_LAB = {"full-stack-lab": 90}
WORKSHOP_KEY = "sk-course-workshop-key"
GPU_NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-box", "labels": {
    "kubernetes.io/hostname": "gpu-box", "nvidia.com/gpu.present": "true"}},
    "status": {"capacity": {"nvidia.com/gpu": "1", "cpu": "16", "memory": "64Gi"},
               "allocatable": {"nvidia.com/gpu": "1", "cpu": "16", "memory": "64Gi"}}}
LOCAL_PATH = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {
    "name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}

# What decides the requests a lab sends, besides its own code cells (see sources()).
CLIENT_MODULES = ("llmserve.world.cluster", "llmserve.world.portforward")
MANIFEST_DIRS = ("manifests/base", "manifests/components", "manifests/overlays")
OBSERVER_FILES = ("tests/fakes/observe_rbac.py", "tests/fakes/recorded.py", "tests/fakes/rbac.py")


# -- what was observed, and from which sources ----------------------------------------------
def lab_notebooks(root: Path = REPO) -> list[Path]:
    """Every notebook a participant runs (all of notebooks/ but the instructor's box check)."""
    return [p for p in sorted((root / "notebooks").glob("*.ipynb")) if p.stem not in INSTRUCTOR_ONLY]


def talks_to_cluster(source: str) -> bool:
    """Whether a cell acts on the cluster (a failure there could hide requests the lab sends)."""
    # The full-stack lab acts through its stack object (finale.open_stack) rather than MODE.act.
    return "MODE.act(" in source or "cluster" in source or "stack." in source


def _sends_requests(path: Path) -> bool:
    """Whether a module imports the client (``world/cluster.py``, ``world/portforward.py``) or takes a
    ``cluster`` argument (the course passes its :class:`~llmserve.world.cluster.Cluster` by that name)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name in CLIENT_MODULES for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module in CLIENT_MODULES or any(f"{node.module}.{a.name}" in CLIENT_MODULES
                                                     for a in node.names)):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                a.arg == "cluster" for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)):
            return True
    return False


def client_modules(root: Path = REPO) -> list[Path]:
    """The llmserve modules whose code sends requests to the API server.

    The two that hold the client (``world/cluster.py``, ``world/portforward.py``), every
    module importing either and every module with a function taking a ``cluster`` (found by
    ``ast``, so a new chapter ``live.py`` joins by itself): ``world/mode.py`` (the probe),
    each chapter's ``live.py``, ``stack/apply.py``, ``observability/finale.py``,
    ``routing/experiment.py``. Pure rules and presentation cannot send a request
    (tests/test_layers.py), so a change there cannot change what a lab asks of the cluster.
    """
    out = []
    for path in sorted((root / "llmserve").rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        if module in CLIENT_MODULES or _sends_requests(path):
            out.append(path)
    return out


def manifest_files(root: Path = REPO) -> list[Path]:
    """The manifests the labs render and apply (kustomize's base, components and overlays)."""
    return sorted(p for d in MANIFEST_DIRS for p in (root / d).rglob("*") if p.is_file())


def code_cells_digest(path: Path) -> str:
    """sha256 of a notebook's code cells (their source, in order): markdown and outputs do not count."""
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def shared_sources(root: Path = REPO) -> dict[str, str]:
    """``{path: sha256}`` of what decides every lab's requests: the client modules, the manifests, the observer."""
    shared = [*client_modules(root), *manifest_files(root), *(root / f for f in OBSERVER_FILES)]
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in shared}


def sources(lab: str, root: Path = REPO, shared: dict[str, str] | None = None) -> dict[str, str]:
    """``{path: sha256}`` of what decided ``lab``'s requests, paths relative to ``root``
    (``shared``: :func:`shared_sources` of the same root, when the caller has it already)."""
    out = {f"notebooks/{lab}.ipynb": code_cells_digest(root / "notebooks" / f"{lab}.ipynb")}
    out.update(shared_sources(root) if shared is None else shared)
    return out


def stale_sources(observation: dict, root: Path = REPO) -> dict[str, list[str]]:
    """``{lab: [path: changed|new|gone, …]}`` for each lab whose sources differ from the stored ones."""
    out, shared = {}, shared_sources(root)
    for lab, seen in observation["labs"].items():
        if not (root / "notebooks" / f"{lab}.ipynb").exists():
            out[lab] = [f"notebooks/{lab}.ipynb: gone"]
            continue
        then, now = seen.get("sources", {}), sources(lab, root, shared)
        diff = [f"{p}: {'new' if p not in then else 'gone' if p not in now else 'changed'}"
                for p in sorted(then.keys() | now.keys()) if then.get(p) != now.get(p)]
        if diff:
            out[lab] = diff
    return out


# -- running a lab against the fake cluster ---------------------------------------------------
def seed(api: FakeAPIServer) -> None:
    """The box as the instructor leaves it: the base stack applied with a real key, the Pod Ready."""
    objects = manifests.render("base")
    for obj in objects:
        if obj["kind"] == "Secret":
            obj["stringData"] = {"api-key": WORKSHOP_KEY}
    api.put(GPU_NODE, LOCAL_PATH, *objects, manager="instructor")


def _secret_key(api: FakeAPIServer):
    n = system()

    def key() -> str:
        secret = api.get("v1", "Secret", n.api_key_secret, n.namespace) or {}
        return base64.b64decode((secret.get("data") or {}).get("api-key", "")).decode()

    return key


def _failed_cells(nb) -> list[dict]:
    failed = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                first = next((line for line in cell.source.splitlines() if line.strip()), "")
                failed.append({"cell": i, "first_line": first, "error": out.get("ename"),
                               "message": str(out.get("evalue", "")).splitlines()[0][:200] if out.get("evalue")
                               else "", "talks_to_cluster": talks_to_cluster(cell.source)})
    return failed


def run_lab(path: Path, timeout_s: int | None = None) -> dict:
    """Run one notebook live against a fresh fake cluster; return its accesses, failed cells and sources."""
    timeout_s = timeout_s or CELL_TIMEOUT_BY_LAB.get(path.stem, CELL_TIMEOUT_S)
    with tempfile.TemporaryDirectory() as tmp, FakeAPIServer(controllers_on=True) as api:
        seed(api)
        with FakeVllm(key=_secret_key(api)) as vllm:
            api.any_pod_port = PodPort(vllm.address)
            env = {"COURSE_MODE": "live", "KUBECONFIG": str(api.kubeconfig(Path(tmp) / "kubeconfig")),
                   "TMPDIR": tmp, "VLLM_API_KEY": WORKSHOP_KEY, "COURSE_DEVICE": "cpu", "PYTHONUNBUFFERED": "1",
                   # the kernel imports this checkout's llmserve, whatever is installed
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            nb = nbformat.read(path, as_version=4)
            with environment(env, drop=("COURSE_CONTEXT", "COURSE_SERVER", "KUBERNETES_SERVICE_HOST")):
                # interrupt_on_timeout: a cell over its time becomes a failed cell, the next cells still run
                client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3", allow_errors=True,
                                                 interrupt_on_timeout=True,
                                                 resources={"metadata": {"path": str(path.parent)}})
                client.execute()
            return {"access": [a.as_json() for a in rbac.accesses(api.requests)], "failed_cells": _failed_cells(nb),
                    "sources": sources(path.stem)}


def observe(labs: list[str] | None = None) -> dict:
    """Run the labs named (all by default) and return the observation."""
    chosen = [p for p in lab_notebooks() if labs is None or p.stem in labs]
    return {"how": f"{REFRESH}: each lab notebook run live against tests.fakes.apiserver with its stand-in "
                   "controllers", "labs": {p.stem: run_lab(p) for p in chosen}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"store the observation in {OBSERVED.name}")
    parser.add_argument("--lab", action="append", choices=[p.stem for p in lab_notebooks()],
                        help="observe only this lab (repeatable); --write then replaces only its record")
    args = parser.parse_args(argv)
    observation = observe(args.lab)
    if args.write:
        stored = json.loads(OBSERVED.read_text(encoding="utf-8")) if args.lab and OBSERVED.exists() else {}
        labs = {**stored.get("labs", {}), **observation["labs"]}
        known = {p.stem for p in lab_notebooks()}
        written = {**observation, "labs": {k: v for k, v in sorted(labs.items()) if k in known}}
        OBSERVED.write_text(json.dumps(written, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {OBSERVED.relative_to(REPO)}")
    for lab, seen in observation["labs"].items():
        print(f"{lab}: {len(seen['access'])} checks; cells failing against the stand-ins: "
              f"{[c['cell'] for c in seen['failed_cells']] or 'none'}")
        for c in seen["failed_cells"]:
            print(f"    cell {c['cell']} {c['error']}: {c['message']}  [{c['first_line']}]")
        for a in seen["access"]:
            print("   ", rbac.Access.from_json(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
