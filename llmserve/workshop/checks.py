"""Every check of the workshop's GPU box, decided on plain data.

Pure rules of the workshop kit (``book/workshop/gpu-box.md``,
``notebooks/gpu-box-check.ipynb``): functions over manifest dicts, Node/Pod/DaemonSet
dicts as the API returns them, ``nvidia-smi`` text and a description of the weights
folder, each returning one :class:`~llmserve.core.findings.Finding` whose ``check`` is
the line's name and whose ``see`` is a troubleshooting slug
(``book/troubleshooting.md#ts-<see>``). :mod:`llmserve.workshop.live` gathers the
inputs; nothing here reads a file, runs a program or calls the cluster.

Every value a check compares with comes from the manifests (passed in by the caller:
the image, the Pod's user and group, the Pod's requests, the model folder), from the
pinned vLLM release (:data:`MIN_CAPABILITY`, checked against its source by
``tests/workshop/test_checks.py``) or from a public source named beside it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterable

from llmserve.core import vllm
from llmserve.core.errors import InputError
from llmserve.core.findings import ERROR, OK, SKIP, WARNING, Finding
from llmserve.core.names import SystemNames
from llmserve.core.objects import name_of, vllm_container
from llmserve.core.quantity import GIB, parse_quantity

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_STORAGECLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"

# -- sizes (bytes), each from a public source ---------------------------------------------
#: The files of Qwen/Qwen2.5-Coder-7B-Instruct-AWQ on the Hugging Face Hub (its "Files" tab) total ≈ 5.6 GB.
AWQ_WEIGHT_BYTES = 5.6e9
#: The most recent public size of the vLLM image: "Size of official out-of-the-box `vllm-openai:latest`
#: docker image: 28.6 GB" (vllm-project/vllm#22377, December 2025). Images grew with each release
#: (vllm-project/vllm#17163: "up to 25GB", April 2025), so for the pinned release it is an estimate.
VLLM_IMAGE_BYTES_SEEN = 28.6e9
#: A fresh box holds the image twice over (containerd keeps the compressed layers it downloaded beside
#: the unpacked ones unless ``discard_unpacked_layers`` is set, and compressed is at most unpacked) plus
#: the weights.
MIN_FREE_BYTES = 2 * VLLM_IMAGE_BYTES_SEEN + AWQ_WEIGHT_BYTES

# -- GPU capability -------------------------------------------------------------------------
#: Minimum CUDA compute capability (major × 10 + minor, as vLLM compares it) per ``--quantization``
#: value, from ``get_min_capability()`` of the config each name maps to in vLLM 0.32
#: (vllm/model_executor/layers/quantization/__init__.py: awq, awq_marlin and auto_awq all map to
#: AutoAWQConfig, whose minimum is 75). tests/workshop/test_checks.py derives it from the source.
MIN_CAPABILITY = {"awq": 75, "awq_marlin": 75, "auto_awq": 75}
#: Without quantization: vLLM's GPU installation page asks for compute capability 7.0 or higher.
UNQUANTIZED_MIN_CAPABILITY = 70

#: The lines of the report that need the API server (in report order).
CLUSTER_CHECKS = ("cluster reachable", "GPU allocatable", "CPU and memory allocatable", "device plugin DaemonSet",
                  "default StorageClass", "vLLM image on the node")


def capability_text(capability: int) -> str:
    """``75`` → ``"7.5"``: how nvidia-smi and the vLLM docs write it."""
    return f"{capability // 10}.{capability % 10}"


# ----------------------------------------------------------------- manifests
def model_subpath(n: SystemNames) -> PurePosixPath:
    """The model folder below the volume's mount point: ``<model>`` for ``--model=/models/<model>``."""
    return PurePosixPath(n.model_path).relative_to(n.models_mount_path)


def pod_user(deployment: dict, container: str = "vllm") -> tuple[int, int]:
    """The uid and gid the vLLM container runs as: its own securityContext, else the Pod's."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    own = vllm_container(deployment, container).get("securityContext") or {}
    shared = pod.get("securityContext") or {}
    uid = own.get("runAsUser", shared.get("runAsUser"))
    gid = own.get("runAsGroup", shared.get("runAsGroup"))
    if uid is None:
        raise InputError(f"Deployment {name_of(deployment)} sets no runAsUser: the image's user would run vLLM.",
                         "Set securityContext.runAsUser (and runAsGroup) in the Pod template.")
    return int(uid), int(gid if gid is not None else 0)


def pod_requests(deployment: dict, container: str = "vllm") -> dict[str, str]:
    """The vLLM container's resource requests (``cpu``, ``memory``, ``nvidia.com/gpu``) as written."""
    resources = vllm_container(deployment, container).get("resources") or {}
    return {k: str(v) for k, v in (resources.get("requests") or resources.get("limits") or {}).items()}


def check_image(deployment: dict, expected: str = vllm.IMAGE) -> Finding:
    image = vllm_container(deployment).get("image", "")
    tag = image.rpartition(":")[2] if ":" in image.split("/")[-1] else ""
    name, fix = "image pinned", f"Set image: {expected} in manifests/base/vllm-deployment.yaml."
    if "@sha256:" in image:
        return Finding(OK, f"{image} is pinned by digest", check=name)
    if not tag or tag == "latest":
        return Finding(ERROR, f"{image} has no fixed tag: each pull may bring another vLLM", fix, check=name)
    if image != expected:
        return Finding(WARNING, f"{image} is pinned, but the course is written for {expected}", fix, check=name)
    return Finding(OK, f"{image} (the version the course is written for)", check=name)


# -------------------------------------------------------------- model folder
@dataclass(frozen=True)
class FileStat:
    """What a permission check needs of one file (from ``os.stat``)."""

    size: int
    mode: int
    uid: int
    gid: int
    is_dir: bool = False


@dataclass(frozen=True)
class WeightsFolder:
    """The downloaded weights as plain data: :func:`llmserve.workshop.live.read_weights_folder` fills it."""

    path: str
    exists: bool
    folder: FileStat | None = None
    files: dict[str, FileStat] = field(default_factory=dict)   # top-level files by name
    config: dict | None = None            # config.json parsed; None when absent
    config_error: str | None = None       # why config.json could not be read
    index_shards: frozenset[str] | None = None   # shards model.safetensors.index.json lists
    index_error: str | None = None
    partial: tuple[str, ...] = ()         # unfinished downloads (*.incomplete), relative paths


def readable_by(st: FileStat, uid: int, gid: int) -> bool:
    """Whether a process with this uid/gid may read the file (or list and enter the directory)."""
    need = 0o5 if st.is_dir else 0o4
    if st.uid == uid:
        bits = (st.mode >> 6) & 0o7
    elif st.gid == gid:
        bits = (st.mode >> 3) & 0o7
    else:
        bits = st.mode & 0o7
    return (bits & need) == need


def _missing_pieces(w: WeightsFolder) -> list[str]:
    """What a complete ``hf download`` would hold and this folder lacks."""
    problems = []
    shards = sorted(n for n in w.files if n.endswith(".safetensors"))
    if not shards:
        problems.append("no *.safetensors weights")
    if w.index_error:
        problems.append(w.index_error)
    missing = sorted((w.index_shards or frozenset()) - set(shards))
    if missing:
        problems.append(f"shards listed in the index but missing: {', '.join(missing)}")
    if "tokenizer_config.json" not in w.files:
        problems.append("no tokenizer_config.json")
    if "tokenizer.json" not in w.files and not {"vocab.json", "merges.txt"} <= set(w.files):
        problems.append("no tokenizer.json (nor vocab.json + merges.txt)")
    if w.partial:
        problems.append(f"unfinished download: {', '.join(w.partial[:3])}")
    return problems


def check_downloaded_weights(w: WeightsFolder, uid: int, gid: int,
                             expected_bytes: float | None = AWQ_WEIGHT_BYTES) -> Finding:
    """The weights folder on the box: complete, readable by the Pod's user, the AWQ build, the expected size.

    (The storage chapter's ``check_model_dir`` judges a listing's layout; this one the
    files themselves, as the GPU box holds them.)
    """
    name = "model folder"
    download = (f"On the box: `hf download Qwen/Qwen2.5-Coder-7B-Instruct-AWQ --local-dir {w.path}` "
                "(see the GPU box page).")
    if not w.exists:
        return Finding(ERROR, f"{w.path} does not exist", download, check=name, see="hostpath-missing")
    if w.config is None and not w.config_error:
        return Finding(ERROR, f"{w.path} has no config.json: vLLM would not see a model here", download,
                       check=name, see="model-path-wrong")
    if w.config_error:
        return Finding(ERROR, f"{w.path}/config.json cannot be read as JSON ({w.config_error})", download,
                       check=name, see="model-path-wrong")
    problems = _missing_pieces(w)
    if problems:
        return Finding(ERROR, f"{w.path}: " + "; ".join(problems), download, check=name, see="model-path-wrong")

    shards = sorted(n for n in w.files if n.endswith(".safetensors"))
    weight_bytes = sum(w.files[s].size for s in shards)
    quant = (w.config.get("quantization_config") or {}).get("quant_method")
    detail = (f"{w.path}: config.json, {len(shards)} safetensors shard(s) ({weight_bytes / 1e9:.2f} GB), "
              f"tokenizer files; quant_method={quant}")
    unreadable = ([w.path] if w.folder and not readable_by(w.folder, uid, gid) else []) + \
        [n for n, st in sorted(w.files.items()) if not readable_by(st, uid, gid)]
    if unreadable:
        return Finding(ERROR, f"{detail}; not readable by uid {uid} gid {gid} (the Pod's user, from the "
                       f"Deployment): {', '.join(unreadable[:3])}",
                       f"`sudo chmod -R a+rX {w.path}`: a hostPath volume ignores fsGroup, so the files need "
                       "world-read permission.", check=name, see="model-path-wrong")
    if quant != "awq":
        return Finding(WARNING, detail + " (the course's Deployment expects an AWQ build)",
                       "Download Qwen/Qwen2.5-Coder-7B-Instruct-AWQ, or change --quantization.",
                       check=name, see="quantization-capability")
    if expected_bytes and weight_bytes < 0.9 * expected_bytes:
        return Finding(WARNING, detail + f" — smaller than the ≈{expected_bytes / 1e9:.1f} GB expected",
                       "Compare with the file list on the model's Hub page; re-run the download.", check=name)
    return Finding(OK, detail, check=name)


def check_free_disk(free_bytes: float, where: str, min_free_bytes: float = MIN_FREE_BYTES) -> Finding:
    detail = f"{free_bytes / 1e9:.0f} GB free on the filesystem of {where}"
    if free_bytes < min_free_bytes:
        return Finding(WARNING, f"{detail}; a fresh box wants ≥ {min_free_bytes / 1e9:.0f} GB for the image "
                       "(twice: compressed and unpacked) and the weights",
                       "Free space (`sudo k3s crictl rmi --prune`) or give /var/lib/rancher and the weights a "
                       "bigger disk.", check="free disk", see="disk-pressure")
    return Finding(OK, detail, check="free disk")


def compare_checksums(computed: dict[str, str], expected: dict[str, str]) -> list[str]:
    """Names whose SHA-256 differs from (or is missing in) ``expected``; [] when all match."""
    for n, h in expected.items():
        if not re.fullmatch(r"[0-9a-f]{64}", h.lower()):
            raise InputError(f"{n}: {h!r} is not a SHA-256 hex digest.",
                             "Copy the 64 hex characters from the file's page on the Hub (Git LFS details).")
    bad = [n for n, h in computed.items() if expected.get(n, "").lower() != h]
    bad += [n for n in expected if n not in computed]
    return sorted(set(bad))


# ----------------------------------------------------------------------- GPU
def parse_nvidia_smi(csv_text: str) -> list[dict]:
    """Rows of ``nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader,nounits``."""
    gpus = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        name, mem, cap, driver = parts[:4]
        try:
            gpus.append({"name": name, "memory_mib": int(float(mem)), "compute_cap": float(cap), "driver": driver})
        except ValueError:
            continue
    return gpus


def check_nvidia_smi(gpus: list[dict] | None, error: str | None, on_box: bool) -> Finding:
    name = "nvidia-smi"
    if gpus:
        desc = "; ".join(f"{g['name']} ({g['memory_mib'] / 1024:.0f} GiB, compute capability {g['compute_cap']}, "
                         f"driver {g['driver']})" for g in gpus)
        return Finding(OK, desc, check=name)
    fix = "Install the NVIDIA driver on the box (see the GPU box page) and reboot; `nvidia-smi` must list the GPU."
    if on_box:
        return Finding(ERROR, error or "nvidia-smi lists no GPU", fix, check=name)
    return Finding(SKIP, f"{error or 'no GPU listed'} — expected on a machine that is not the GPU box", fix,
                   check=name)


def check_compute_capability(gpus: list[dict] | None, quantization: str | None) -> Finding:
    """Does the GPU reach the minimum vLLM 0.32 asks of ``--quantization`` (``None``: unquantized)?"""
    name = "compute capability"
    if quantization is not None and quantization not in MIN_CAPABILITY:
        return Finding(SKIP, f"--quantization={quantization}: this check knows only "
                       f"{', '.join(MIN_CAPABILITY)}", "Look the method up in vLLM's supported-hardware table.",
                       check=name)
    need = MIN_CAPABILITY.get(quantization, UNQUANTIZED_MIN_CAPABILITY)
    if not gpus:
        return Finding(SKIP, f"no GPU seen here; --quantization={quantization} needs ≥ {capability_text(need)}",
                       check=name)
    have = max(round(g["compute_cap"] * 10) for g in gpus)
    if have < need:
        return Finding(ERROR, f"GPU has {capability_text(have)}, --quantization={quantization} needs ≥ "
                       f"{capability_text(need)}", "Use a newer GPU, or an unquantized fp16 model that fits.",
                       check=name, see="quantization-capability")
    return Finding(OK, f"GPU has {capability_text(have)} ≥ {capability_text(need)} needed by "
                   f"--quantization={quantization}", check=name)


def check_torch(device: str, reason: str, on_box: bool) -> Finding:
    name = "torch sees CUDA"
    if device == "cuda":
        return Finding(OK, reason, check=name)
    fix = ("Install a CUDA build of torch in the notebook environment, or ignore this if the notebooks run "
           "elsewhere: vLLM itself runs in its own image.")
    return Finding(WARNING if on_box else SKIP, f"{reason} (notebooks' GPU measurements fall back to the CPU)", fix,
                   check=name)


# ------------------------------------------------------------------- cluster
def _count(value) -> int:
    """A whole-number quantity (``"1"``) as an int; 0 when absent or not a number."""
    try:
        return int(parse_quantity(value, "count")) if value is not None else 0
    except InputError:
        return 0


def gpu_allocatable(nodes: Iterable[dict]) -> dict[str, int]:
    """node name -> allocatable nvidia.com/gpu (0 when the node advertises none)."""
    return {name_of(n): _count(((n.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE)) for n in nodes}


def _active(pods: Iterable[dict]) -> list[dict]:
    """Pods that hold their requests: placed on a node and not finished."""
    return [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and (p.get("spec") or {}).get("nodeName")]


def gpus_requested(pods: Iterable[dict]) -> dict[str, int]:
    """node name -> nvidia.com/gpu limits of the Pods running or pending there (not finished ones)."""
    used: dict[str, int] = {}
    for p in _active(pods):
        node = p["spec"]["nodeName"]
        for c in p["spec"].get("containers") or []:
            limits = (c.get("resources") or {}).get("limits") or {}
            used[node] = used.get(node, 0) + _count(limits.get(GPU_RESOURCE))
    return used


def check_gpu_nodes(nodes: list[dict], pods: list[dict] | None = None) -> Finding:
    name = "GPU allocatable"
    alloc = gpu_allocatable(nodes)
    with_gpu = {n: g for n, g in alloc.items() if g > 0}
    if not with_gpu:
        return Finding(ERROR, f"no node advertises {GPU_RESOURCE} ({', '.join(alloc) or 'no nodes'})",
                       "Install the NVIDIA container toolkit and the device plugin (see the GPU box page).",
                       check=name, see="insufficient-gpu")
    used = gpus_requested(pods or [])
    desc = ", ".join(f"{n}: {g} allocatable, {used.get(n, 0)} requested" for n, g in with_gpu.items())
    if all(used.get(n, 0) >= g for n, g in with_gpu.items()):
        return Finding(WARNING, desc + " — no GPU is free for a new vLLM Pod",
                       "Find the Pod holding it: `kubectl get pods -A -o wide`; delete test Pods before the workshop.",
                       check=name, see="insufficient-gpu")
    return Finding(OK, desc, check=name)


def check_node_fits(nodes: list[dict], requests: dict[str, str]) -> Finding:
    """Does one node's allocatable CPU and memory hold the vLLM Pod's requests (read from the Deployment)?"""
    name = "CPU and memory allocatable"
    wanted = {k: parse_quantity(requests[k], k) for k in ("cpu", "memory") if k in requests}
    want_text = ", ".join(f"{k} {requests[k]}" for k in wanted)
    fitting, lines = [], []
    for n in nodes:
        alloc = ((n.get("status") or {}).get("allocatable") or {})
        have = {k: parse_quantity(alloc.get(k, "0"), k) for k in wanted}
        lines.append(f"{name_of(n)}: cpu {alloc.get('cpu', '?')}, memory {float(have.get('memory', 0)) / GIB:.1f} GiB")
        if all(have[k] >= v for k, v in wanted.items()):
            fitting.append(name_of(n))
    if not fitting:
        return Finding(ERROR, f"no node can hold the vLLM Pod's requests ({want_text}): {'; '.join(lines)}",
                       "Give the box more CPU or memory, or lower the Deployment's requests (see the Deployment "
                       "chapter's memory budget).", check=name)
    return Finding(OK, f"{', '.join(fitting)} can hold the vLLM Pod's requests ({want_text})", check=name)


def check_device_plugin(daemonsets: list[dict]) -> Finding:
    name = "device plugin DaemonSet"
    plugins = [d for d in daemonsets if "nvidia-device-plugin" in name_of(d)]
    if not plugins:
        return Finding(ERROR, "no DaemonSet named *nvidia-device-plugin* in any namespace",
                       "helm upgrade -i nvdp nvdp/nvidia-device-plugin --namespace nvidia-device-plugin "
                       "--create-namespace (see the GPU box page).", check=name, see="insufficient-gpu")
    lines, ok = [], True
    for d in plugins:
        st = d.get("status") or {}
        desired, ready = st.get("desiredNumberScheduled", 0), st.get("numberReady", 0)
        ok = ok and desired > 0 and ready == desired
        lines.append(f"{d['metadata'].get('namespace')}/{name_of(d)}: {ready}/{desired} ready")
    if not ok:
        return Finding(ERROR, "; ".join(lines), "Read its log: `kubectl logs -n <namespace> ds/<name>`.",
                       check=name, see="device-plugin-no-gpus")
    return Finding(OK, "; ".join(lines), check=name)


def default_storageclasses(storage_classes: list[dict]) -> list[str]:
    return [name_of(sc) for sc in storage_classes
            if ((sc.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_STORAGECLASS_ANNOTATION) == "true"]


def check_default_storageclass(storage_classes: list[dict]) -> Finding:
    name = "default StorageClass"
    defaults = default_storageclasses(storage_classes)
    if not defaults:
        return Finding(OK, "none: a claim without storageClassName stays Pending instead of being provisioned",
                       check=name)
    return Finding(WARNING, f"{', '.join(defaults)} is the default: a claim WITHOUT storageClassName that does not "
                   "name its volume is handed to it (a new empty volume, or Pending with ProvisioningFailed for a "
                   "ReadOnlyMany claim on local-path) instead of the weights; the course's claim is pre-bound",
                   "Nothing to change for the course's manifests; warn participants who write their own claim.",
                   check=name, see="pvc-default-storageclass")


def check_image_on_node(nodes: list[dict], image: str = vllm.IMAGE) -> Finding:
    name = "vLLM image on the node"
    wanted = {image, f"docker.io/{image}"}
    have = [name_of(n) for n in nodes
            if any(wanted & set(img.get("names") or []) for img in ((n.get("status") or {}).get("images") or []))]
    if have:
        return Finding(OK, f"{image} already pulled on {', '.join(have)}", check=name)
    return Finding(WARNING, f"{image} is not on any node yet: the first start will wait for a large pull",
                   f"Pull it the day before, on the box: `sudo k3s crictl pull docker.io/{image}`.",
                   check=name, see="disk-pressure")


def skipped_offline(name: str, reason: str) -> Finding:
    return Finding(SKIP, f"skipped: offline — {reason}", check=name)
