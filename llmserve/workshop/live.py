"""Gather what the GPU-box check decides on: files, disk, ``nvidia-smi``, torch, the cluster.

Live layer of the workshop kit (``notebooks/gpu-box-check.ipynb``,
``book/workshop/gpu-box.md``)::

    from llmserve.world import mode
    from llmserve.workshop import live, report
    MODE = mode.detect()
    print(report.text(live.check_box(MODE)))

Two kinds of line:

* **local** lines always run, on whatever machine runs the notebook: the pinned
  image in the manifests, the weights folder (``$COURSE_MODELS_DIR``, else the
  PersistentVolume's hostPath), free disk, ``nvidia-smi``, torch;
* **cluster** lines need the API server (``MODE.live``) and read it through
  :class:`llmserve.world.cluster.Cluster`: allocatable GPUs, CPU and memory, the
  device plugin, the default StorageClass, whether the image is already pulled.
  Offline each one says ``skipped: offline — <reason>``.

Every value a line compares with is read from ``manifests/base`` here
(:func:`llmserve.core.names.system`, the Deployment's securityContext and requests)
and handed to the pure decisions in :mod:`llmserve.workshop.checks`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from llmserve.core import names
from llmserve.core.errors import CourseError
from llmserve.core.findings import ERROR, OK, SKIP, Finding, Report
from llmserve.core.objects import arg_value, vllm_container
from llmserve.workshop import checks
from llmserve.world.cluster import Cluster

#: Where k3s keeps its images and containers (its data dir, ``--data-dir``, defaults to this).
K3S_DATA_DIR = Path("/var/lib/rancher")


def course_deployment() -> dict:
    """The vLLM Deployment of ``manifests/base`` (the one the names are read from)."""
    return next(o for o in names.base_objects() if o.get("kind") == "Deployment")


def models_root() -> Path:
    """Where the weights live: ``$COURSE_MODELS_DIR``, else the PersistentVolume's hostPath."""
    return Path(os.environ.get("COURSE_MODELS_DIR") or names.system().pv_host_path)


def weights_dir(root: Path | None = None) -> Path:
    """The model folder the Deployment's ``--model`` names, under ``root`` (default :func:`models_root`)."""
    return (root or models_root()) / checks.model_subpath(names.system())


def on_the_box() -> bool:
    """Whether this machine looks like the GPU box (``COURSE_ON_BOX=1``, or the hostPath exists)."""
    return os.environ.get("COURSE_ON_BOX") == "1" or Path(names.system().pv_host_path).is_dir()


# ------------------------------------------------------------ files and disk
def _stat(p: Path) -> checks.FileStat:
    st = p.stat()
    return checks.FileStat(st.st_size, st.st_mode, st.st_uid, st.st_gid, p.is_dir())


def _read_json(p: Path) -> tuple[dict | None, str | None]:
    try:
        return json.loads(p.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, str(exc)


def read_weights_folder(path: Path) -> checks.WeightsFolder:
    """Describe the weights folder for :func:`checks.check_downloaded_weights` (stat and parse, no judgement)."""
    if not path.is_dir():
        return checks.WeightsFolder(str(path), exists=False)
    files = {p.name: _stat(p) for p in path.iterdir() if p.is_file()}
    config, config_error = _read_json(path / "config.json") if "config.json" in files else (None, None)
    index_shards, index_error = None, None
    if "model.safetensors.index.json" in files:
        index, problem = _read_json(path / "model.safetensors.index.json")
        if problem or not isinstance(index, dict):
            index_error = "model.safetensors.index.json is not valid JSON"
        else:
            index_shards = frozenset((index.get("weight_map") or {}).values())
    # `hf download --local-dir` keeps unfinished files under .cache/huggingface/download/ (huggingface_hub docs).
    partial = tuple(sorted(str(p.relative_to(path)) for p in path.rglob("*.incomplete")))
    return checks.WeightsFolder(str(path), True, _stat(path), files, config, config_error, index_shards,
                                index_error, partial)


def disk_root(root: Path | None = None) -> Path:
    """The filesystem the image lands on: k3s's data dir when it exists, else the weights' root, else /."""
    for candidate in (K3S_DATA_DIR, root or models_root()):
        if candidate.is_dir():
            return candidate
    return Path("/")


def sha256_files(path: Path, pattern: str = "*.safetensors", chunk: int = 1 << 24) -> dict[str, str]:
    """SHA-256 of each matching file (minutes for the weights): compare with the Hub's file pages."""
    out = {}
    for f in sorted(path.glob(pattern)):
        h = hashlib.sha256()
        with f.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        out[f.name] = h.hexdigest()
    return out


def query_nvidia_smi(run: Callable = subprocess.run) -> tuple[list[dict] | None, str | None]:
    """The GPUs ``nvidia-smi`` lists, or ``(None, why not)``."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None, "nvidia-smi is not installed on this machine"
    try:
        proc = run([exe, "--query-gpu=name,memory.total,compute_cap,driver_version",
                    "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi failed: {exc}"
    if proc.returncode != 0:
        return None, f"nvidia-smi failed: {(proc.stderr or proc.stdout).strip()[:200]}"
    return checks.parse_nvidia_smi(proc.stdout), None


def _guard(name: str, decide: Callable[[], Finding]) -> Finding:
    """Run one line; a CourseError on the way (a bad manifest, a refused call) becomes that line's error."""
    try:
        return decide()
    except CourseError as err:
        return Finding(ERROR, err.what, err.fix, check=name)


def local_checks(device: str, device_reason: str, root: Path | None = None,
                 nvidia: tuple[list[dict] | None, str | None] | None = None,
                 disk_usage: Callable = shutil.disk_usage) -> list[Finding]:
    """The lines that need no cluster, in report order."""
    on_box = on_the_box()
    dep = course_deployment()
    found = [_guard("image pinned", lambda: checks.check_image(dep))]
    root = root or models_root()
    folder = weights_dir(root)
    if root.is_dir() or on_box:
        uid, gid = checks.pod_user(dep)
        found.append(_guard("model folder",
                            lambda: checks.check_downloaded_weights(read_weights_folder(folder), uid, gid)))
    else:
        found.append(Finding(SKIP, f"would check {folder} on the GPU box; set COURSE_MODELS_DIR to a folder "
                             f"that holds {checks.model_subpath(names.system())} to check a copy here",
                             check="model folder"))
    where = disk_root(root)
    found.append(checks.check_free_disk(disk_usage(where).free, str(where)))
    gpus, error = nvidia if nvidia is not None else query_nvidia_smi()
    found.append(checks.check_nvidia_smi(gpus, error, on_box))
    found.append(checks.check_compute_capability(gpus, arg_value(vllm_container(dep), "--quantization")))
    found.append(checks.check_torch(device, device_reason, on_box))
    return found


def cluster_checks(cluster) -> list[Finding]:
    """The lines that read the cluster (an :class:`~llmserve.world.cluster.Cluster` or a fake with ``list``)."""
    found = [Finding(OK, f"API server {cluster.host} (context {cluster.context})", check="cluster reachable")]
    nodes: list[dict] = []

    def gpu_nodes() -> Finding:
        nodes.extend(cluster.list("v1", "Node"))
        return checks.check_gpu_nodes(nodes, cluster.list("v1", "Pod"))

    found.append(_guard("GPU allocatable", gpu_nodes))
    found.append(_guard("CPU and memory allocatable",
                        lambda: checks.check_node_fits(nodes, checks.pod_requests(course_deployment()))))
    found.append(_guard("device plugin DaemonSet",
                        lambda: checks.check_device_plugin(cluster.list("apps/v1", "DaemonSet"))))
    found.append(_guard("default StorageClass",
                        lambda: checks.check_default_storageclass(cluster.list("storage.k8s.io/v1", "StorageClass"))))
    found.append(_guard("vLLM image on the node", lambda: checks.check_image_on_node(nodes)))
    return found


def check_box(mode, cluster_factory: Callable | None = None, root: Path | None = None) -> Report:
    """Every line, in report order. Offline, the cluster lines are skipped with the mode's reason."""
    found = local_checks(mode.device, mode.device_reason, root)
    if not mode.live:
        found += [checks.skipped_offline(n, mode.cluster_reason) for n in checks.CLUSTER_CHECKS]
    else:
        try:
            cluster = (cluster_factory or (lambda: Cluster(mode.context)))()
        except CourseError as err:
            found.append(Finding(ERROR, err.what, err.fix, check="cluster reachable"))
        else:
            found += cluster_checks(cluster)
    return Report("GPU box", tuple(found), ok_text="ready")

